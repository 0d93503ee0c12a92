//! What the `dht-node` and `dht-bootstrap` binaries share: their command line and
//! waiting for a stop signal.

use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::Config;
use crate::config::LogFormat;

/// An error a binary's `run` reports; printed with its chain of causes.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The options every node binary takes, for its usage text.
pub const OPTIONS: &str = "options:
  -c, --config FILE     the configuration file (required)
  --log-format FORMAT   text (default) or json: one JSON object per log line;
                        overrides the configuration's log_format
  -h, --help            print this text

The log level is RUST_LOG when set (e.g. RUST_LOG=dht_core=debug,info), else the
configuration's log_level, else info. Record values are never logged.";

/// The whole `main` of a node binary: parses the command line, prints `usage` for
/// `--help`, loads the configuration, installs logging and runs `run` on a tokio
/// runtime. Exit codes: 0 after a clean stop, 2 for a bad command line or
/// configuration, 1 when `run` fails.
pub fn main<F, Fut>(name: &str, usage: &str, run: F) -> ExitCode
where
    F: FnOnce(Config) -> Fut,
    Fut: Future<Output = Result<(), BoxError>>,
{
    let (config, log_format) = match parse_args(std::env::args().skip(1)) {
        Ok(Command::Run { config, log_format }) => (config, log_format),
        Ok(Command::Help) => {
            // Not println!: a closed stdout (`dht-node --help | head -1`) is no error.
            let _ = writeln!(std::io::stdout(), "{usage}\n\n{OPTIONS}");
            return ExitCode::SUCCESS;
        }
        Err(reason) => {
            eprintln!("{name}: {reason}\n\n{usage}\n\n{OPTIONS}");
            return ExitCode::from(2);
        }
    };
    let config = match Config::load(&config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::from(2);
        }
    };
    crate::logs::init(&config.log, log_format);
    // Read before logging existed: reported now, once.
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("{name}: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut message = e.to_string();
            let mut source = e.source();
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            eprintln!("{name}: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The command line of the node binaries: `-c FILE` / `--config FILE` and
/// `--log-format text|json`, or `--help`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run with this configuration file.
    Run {
        /// The configuration file.
        config: PathBuf,
        /// `--log-format`, overriding the configuration's.
        log_format: Option<LogFormat>,
    },
    /// Print the usage text.
    Help,
}

/// Parses the arguments after the program name. The error is a one-line reason.
pub fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut args = args.into_iter();
    let mut config = None;
    let mut log_format = None;
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = |what: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs {what}"))
        };
        match flag {
            "-h" | "--help" => return Ok(Command::Help),
            "-c" | "--config" => config = Some(PathBuf::from(value("a file name")?)),
            "--log-format" => {
                let format = value("text or json")?;
                log_format = Some(
                    format
                        .parse()
                        .map_err(|reason| format!("--log-format {reason}"))?,
                );
            }
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    config
        .map(|config| Command::Run { config, log_format })
        .ok_or_else(|| "missing -c FILE (the configuration file)".into())
}

/// Resolves when the process gets SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_config_flag() {
        assert_eq!(
            parse_args(args(&["-c", "a.toml"])),
            Ok(Command::Run {
                config: "a.toml".into(),
                log_format: None,
            })
        );
        assert_eq!(
            parse_args(args(&["--config", "b.toml", "--log-format", "json"])),
            Ok(Command::Run {
                config: "b.toml".into(),
                log_format: Some(LogFormat::Json),
            })
        );
        assert_eq!(
            parse_args(args(&["--log-format=text", "--config=c.ini"])),
            Ok(Command::Run {
                config: "c.ini".into(),
                log_format: Some(LogFormat::Text),
            })
        );
        assert!(parse_args(args(&["-c", "a", "--log-format", "xml"])).is_err());
        assert_eq!(parse_args(args(&["--help"])), Ok(Command::Help));
        assert!(parse_args(args(&[])).is_err());
        assert!(parse_args(args(&["-c"])).is_err());
        assert!(parse_args(args(&["-x"])).is_err());
    }
}
