//! `dht-node -c FILE`: a DHT node with the VoidPhone API.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use dht_api::process::{Command, parse_args, shutdown_signal};
use dht_api::{ApiServer, Config};
use dht_core::Node;

const USAGE: &str = "usage: dht-node -c FILE

Runs a DHT node: a Kademlia peer on [dht] p2p_address and the VoidPhone DHT API on
[dht] api_address. FILE is the TOML configuration (see configs/node.toml).
Log level from RUST_LOG (default: info).";

fn main() -> ExitCode {
    let config = match parse_args(std::env::args().skip(1)) {
        Ok(Command::Run { config }) => config,
        Ok(Command::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(reason) => {
            eprintln!("dht-node: {reason}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    init_tracing();
    let config = match Config::load(&config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("dht-node: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("dht-node: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dht-node: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let node = Arc::new(
        Node::start(config.node)
            .await
            .context("starting the node")?,
    );
    let api = ApiServer::bind(config.api.clone(), node.clone())
        .await
        .with_context(|| format!("binding api_address {}", config.api.address))?;
    tracing::info!(id = %node.id(), p2p = %node.listen_addr(), api = %api.local_addr(), "dht-node ready");
    shutdown_signal().await;
    tracing::info!("stopping");
    api.shutdown().await;
    node.shutdown().await;
    Ok(())
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
}
