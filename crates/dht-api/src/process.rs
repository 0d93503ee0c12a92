//! What the `dht-node` and `dht-bootstrap` binaries share: their command line and
//! waiting for a stop signal.

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::Config;

/// An error a binary's `run` reports; printed with its chain of causes.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The whole `main` of a node binary: parses `-c FILE`, prints `usage` for `--help`,
/// calls `init_logs`, loads the configuration and runs `run` on a tokio runtime.
/// Exit codes: 0 after a clean stop, 2 for a bad command line or configuration, 1 when
/// `run` fails.
pub fn main<F, Fut>(name: &str, usage: &str, init_logs: fn(), run: F) -> ExitCode
where
    F: FnOnce(Config) -> Fut,
    Fut: Future<Output = Result<(), BoxError>>,
{
    let config = match parse_args(std::env::args().skip(1)) {
        Ok(Command::Run { config }) => config,
        Ok(Command::Help) => {
            println!("{usage}");
            return ExitCode::SUCCESS;
        }
        Err(reason) => {
            eprintln!("{name}: {reason}\n\n{usage}");
            return ExitCode::from(2);
        }
    };
    init_logs();
    let config = match Config::load(&config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::from(2);
        }
    };
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

/// The command line of the node binaries: `-c FILE` / `--config FILE`, or `--help`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run with this configuration file.
    Run {
        /// The configuration file.
        config: PathBuf,
    },
    /// Print the usage text.
    Help,
}

/// Parses the arguments after the program name. The error is a one-line reason.
pub fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut args = args.into_iter();
    let mut config = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-c" | "--config" => {
                let value = args
                    .next()
                    .ok_or_else(|| format!("{arg} needs a file name"))?;
                config = Some(PathBuf::from(value));
            }
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    config
        .map(|config| Command::Run { config })
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
                config: "a.toml".into()
            })
        );
        assert_eq!(
            parse_args(args(&["--config", "b.toml"])),
            Ok(Command::Run {
                config: "b.toml".into()
            })
        );
        assert_eq!(parse_args(args(&["--help"])), Ok(Command::Help));
        assert!(parse_args(args(&[])).is_err());
        assert!(parse_args(args(&["-c"])).is_err());
        assert!(parse_args(args(&["-x"])).is_err());
    }
}
