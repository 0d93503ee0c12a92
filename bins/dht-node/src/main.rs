//! `dht-node -c FILE`: a DHT node with the VoidPhone API.

use std::process::ExitCode;
use std::sync::Arc;

use dht_api::process::{BoxError, shutdown_signal};
use dht_api::{ApiServer, Config, MetricsServer};
use dht_core::Node;

/// jemalloc rather than glibc's malloc: a node's buffers are allocated on one thread
/// and freed on another (tokio's workers, the store writers), and glibc's arena locks
/// made that the node's bottleneck under load (see docs/BENCHMARKS.md, "The allocator").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const USAGE: &str = "usage: dht-node -c FILE

Runs a DHT node: a Kademlia peer on [dht] p2p_address and the VoidPhone DHT API on
[dht] api_address. FILE is the TOML configuration (see configs/node.toml), or the
VoidPhone INI file shared by all modules of the peer when its name ends in .ini (see
configs/voidphone.ini).";

fn main() -> ExitCode {
    dht_api::process::main("dht-node", USAGE, run)
}

async fn run(config: Config) -> Result<(), BoxError> {
    let node = Arc::new(Node::start_joining(config.node).await?);
    let api = ApiServer::bind(config.api.clone(), node.clone())
        .await
        .map_err(|e| format!("binding api_address {}: {e}", config.api.address))?;
    let metrics = match config.metrics_address {
        Some(address) => {
            let mut registry = prometheus_client::registry::Registry::default();
            node.register_metrics(&mut registry);
            api.register_metrics(&mut registry);
            Some(
                MetricsServer::bind(address, registry, node.clone(), "dht-node")
                    .await
                    .map_err(|e| format!("binding metrics_address {address}: {e}"))?,
            )
        }
        None => None,
    };
    tracing::info!(id = %node.id(), p2p = %node.listen_addr(), api = %api.local_addr(), "dht-node ready");
    shutdown_signal().await;
    tracing::info!("stopping");
    if let Some(metrics) = &metrics {
        metrics.shutdown().await;
    }
    api.shutdown().await;
    node.shutdown().await;
    Ok(())
}
