//! `dht-bootstrap -c FILE`: a well-known entry node, a full DHT peer (it routes and
//! stores) without the client API.

use std::process::ExitCode;

use anyhow::Context;
use dht_api::Config;
use dht_api::process::{Command, parse_args, shutdown_signal};
use dht_core::Node;

const USAGE: &str = "usage: dht-bootstrap -c FILE

Runs a bootstrap node: a full Kademlia peer on [dht] p2p_address that other nodes list
in their bootstrap_peers. It serves no client API (api_address is ignored).
FILE is the TOML configuration (see configs/bootstrap.toml). Log level from RUST_LOG.";

fn main() -> ExitCode {
    let config = match parse_args(std::env::args().skip(1)) {
        Ok(Command::Run { config }) => config,
        Ok(Command::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(reason) => {
            eprintln!("dht-bootstrap: {reason}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    init_tracing();
    let config = match Config::load(&config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("dht-bootstrap: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("dht-bootstrap: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dht-bootstrap: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let node = Node::start(config.node)
        .await
        .context("starting the node")?;
    tracing::info!(id = %node.id(), p2p = %node.listen_addr(), "dht-bootstrap ready");
    shutdown_signal().await;
    tracing::info!("stopping");
    node.shutdown().await;
    Ok(())
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
}
