//! `dht-node -c FILE`: a DHT node with the VoidPhone API.

use std::process::ExitCode;
use std::sync::Arc;

use dht_api::process::{BoxError, shutdown_signal};
use dht_api::{ApiServer, Config};
use dht_core::Node;

const USAGE: &str = "usage: dht-node -c FILE

Runs a DHT node: a Kademlia peer on [dht] p2p_address and the VoidPhone DHT API on
[dht] api_address. FILE is the TOML configuration (see configs/node.toml).";

fn main() -> ExitCode {
    dht_api::process::main("dht-node", USAGE, run)
}

async fn run(config: Config) -> Result<(), BoxError> {
    let node = Arc::new(Node::start(config.node).await?);
    let api = ApiServer::bind(config.api.clone(), node.clone())
        .await
        .map_err(|e| format!("binding api_address {}: {e}", config.api.address))?;
    tracing::info!(id = %node.id(), p2p = %node.listen_addr(), api = %api.local_addr(), "dht-node ready");
    shutdown_signal().await;
    tracing::info!("stopping");
    api.shutdown().await;
    node.shutdown().await;
    Ok(())
}
