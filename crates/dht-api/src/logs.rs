//! Logging of the node binaries, through tracing-subscriber: human-readable lines by
//! default, JSON objects with `--log-format json` or `log_format = "json"`. The level is
//! `RUST_LOG` when set, else the configuration's `log_level`, else `info`.
//!
//! Values of records are never logged by any crate of the workspace (a test in
//! `tests/tests/hostile` checks this at TRACE), so JSON logs can be shipped as they are.

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// The level used when neither `RUST_LOG` nor `log_level` says one.
const DEFAULT_LEVEL: &str = "info";

/// Checks that `filter` is a tracing filter directive (`info`, `dht_core=debug,warn`).
pub(crate) fn check_filter(filter: &str) -> Result<(), String> {
    EnvFilter::try_new(filter)
        .map(drop)
        .map_err(|e| format!("not a log filter ({e}); e.g. \"info\" or \"dht_core=debug,info\""))
}

/// Installs the process-wide subscriber. `format` (from the command line) overrides the
/// configuration's. An unusable `RUST_LOG` is said in a warning and ignored.
pub(crate) fn init(config: &LogConfig, format: Option<LogFormat>) {
    let mut warning = None;
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => match EnvFilter::try_new(&directives) {
            Ok(filter) => filter,
            Err(e) => {
                warning = Some(format!("RUST_LOG={directives:?} ignored: {e}"));
                configured_filter(config)
            }
        },
        _ => configured_filter(config),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    // `try_init`: a second call (tests running `main` twice) keeps the first subscriber.
    let _ = match format.unwrap_or(config.format) {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    if let Some(warning) = warning {
        tracing::warn!("{warning}");
    }
}

fn configured_filter(config: &LogConfig) -> EnvFilter {
    // The level was checked when the configuration was read.
    config
        .level
        .as_deref()
        .and_then(|level| EnvFilter::try_new(level).ok())
        .unwrap_or_else(|| EnvFilter::new(DEFAULT_LEVEL))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_checked() {
        assert!(check_filter("info").is_ok());
        assert!(check_filter("dht_core=debug,warn").is_ok());
        let bad = check_filter("dht_core=loud").unwrap_err();
        assert!(bad.contains("not a log filter"), "{bad}");
    }
}
