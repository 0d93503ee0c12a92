//! `dht-cli`: stores and looks up values through a DHT node's VoidPhone API.
//! Everything is in the library (`dht_cli::run`); see `dht-cli --help`.

use std::process::ExitCode;

fn main() -> ExitCode {
    dht_cli::run(std::env::args_os())
}
