//! Project automation, run as `cargo xtask <command>` (the alias is in
//! `.cargo/config.toml`). `cargo xtask help` lists the commands.

mod api_probe;
mod bench;
mod cluster;
mod deploy;
mod docker;
mod docker_deploy;
mod docker_test;
mod fuzz;
mod http;
mod layout;
mod monitoring;
mod overrides;
mod partition;
mod progress;
mod report;
mod sim;
mod startup;

use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <command>

commands:
  help
      Print this text.";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // The chain, without the backtrace `{:?}` would add under RUST_BACKTRACE.
            eprintln!("error: {error}");
            for cause in error.chain().skip(1) {
                eprintln!("caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

/// The one dispatch over the subcommands.
fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        [] | ["help" | "-h" | "--help"] => {
            println!("{USAGE}\n{}\n{}", deploy::USAGE, report::USAGE);
            println!("{}\n{}", docker::USAGE, docker_test::USAGE);
            println!("{}\n{}\n{}", bench::USAGE, sim::USAGE, fuzz::USAGE);
            Ok(())
        }
        ["deploy", "stop"] => deploy::stop(),
        ["deploy", "status"] => monitoring::status(),
        ["deploy", "--help" | "-h" | "help", ..] => {
            println!("usage: cargo xtask deploy ...\n\n{}", deploy::USAGE);
            Ok(())
        }
        ["deploy", options @ ..] => deploy::deploy(&deploy::Options::parse(options)?),
        ["docker"] => docker::command(),
        ["docker-test"] => docker_test::command(),
        ["docker" | "docker-test", "--help" | "-h" | "help"] => {
            println!("{}\n{}", docker::USAGE, docker_test::USAGE);
            Ok(())
        }
        [command @ ("docker" | "docker-test"), rest @ ..] => anyhow::bail!(
            "{command} takes no arguments, got {rest:?}\n\n{}\n{}",
            docker::USAGE,
            docker_test::USAGE
        ),
        ["bench", "--help" | "-h" | "help", ..] => {
            println!("usage: cargo xtask bench ...\n\n{}", bench::USAGE);
            Ok(())
        }
        ["bench", options @ ..] => bench::command(options),
        ["sim", "--help" | "-h" | "help", ..] => {
            println!("usage: cargo xtask sim ...\n\n{}", sim::USAGE);
            Ok(())
        }
        ["sim", options @ ..] => sim::command(options),
        ["test-report", "--help" | "-h" | "help", ..] => {
            println!("usage: cargo xtask test-report ...\n\n{}", report::USAGE);
            Ok(())
        }
        ["test-report", rest @ ..] => report::command(rest),
        ["fuzz", "--help" | "-h" | "help", ..] => {
            println!("usage: cargo xtask fuzz ...\n\n{}", fuzz::USAGE);
            Ok(())
        }
        ["fuzz", options @ ..] => fuzz::command(options),
        [command, ..] => {
            anyhow::bail!(
                "unknown command {command:?}\n\n{USAGE}\n{}\n{}\n{}\n{}",
                deploy::USAGE,
                report::USAGE,
                docker::USAGE,
                docker_test::USAGE
            )
        }
    }
}
