//! Project automation, run as `cargo xtask <command>` (the alias is in
//! `.cargo/config.toml`). `cargo xtask help` lists the commands.

mod api_probe;
mod cluster;
mod deploy;
mod overrides;
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
            println!("{USAGE}\n{}", deploy::USAGE);
            Ok(())
        }
        ["deploy", "stop"] => deploy::stop(),
        ["deploy", "--help" | "-h" | "help", ..] => {
            println!("usage: cargo xtask deploy ...\n\n{}", deploy::USAGE);
            Ok(())
        }
        ["deploy", options @ ..] => deploy::deploy(&deploy::Options::parse(options)?),
        [command, ..] => {
            anyhow::bail!("unknown command {command:?}\n\n{USAGE}\n{}", deploy::USAGE)
        }
    }
}
