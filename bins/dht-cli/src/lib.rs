//! `dht-cli`: the command-line client of the VoidPhone DHT API.
//!
//! `dht-cli [--api HOST:PORT] put KEY [VALUE]`, `get KEY`, `key KEY`; `dht-cli --help`
//! explains keys, values, output and exit statuses with examples. It speaks only the
//! VoidPhone API, through [`client::Client`], which is kept small and plain so that the
//! authors of other modules can read it as the reference client.
//!
//! - [`args`]: the command line (clap), and the parsing of keys and addresses.
//! - [`client`]: one API connection: `connect`, `put`, `get`, `close`.
//! - [`deployment`]: which node to use when `--api` does not say: the record of a local
//!   deployment (`--node NAME`, or its first node).
//! - `run`: reading the value, the deadline, printing, exit statuses.

pub mod args;
pub mod client;
pub mod deployment;
mod run;

pub use run::run;
