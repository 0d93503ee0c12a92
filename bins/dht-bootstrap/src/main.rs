//! `dht-bootstrap -c FILE`: a well-known entry node, a full DHT peer (it routes and
//! stores) without the client API.

use std::process::ExitCode;
use std::sync::Arc;

use dht_api::process::{BoxError, shutdown_signal};
use dht_api::{Config, MetricsServer};
use dht_core::Node;

/// jemalloc rather than glibc's malloc: a node's buffers are allocated on one thread
/// and freed on another (tokio's workers, the store writers), and glibc's arena locks
/// made that the node's bottleneck under load (see docs/BENCHMARKS.md, "The allocator").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const USAGE: &str = "usage: dht-bootstrap -c FILE

Runs a bootstrap node: a full Kademlia peer on [dht] p2p_address that other nodes list
in their bootstrap_peers. It serves no client API (api_address is ignored).
FILE is the TOML configuration (see configs/bootstrap.toml), or a VoidPhone INI file
when its name ends in .ini (see configs/voidphone.ini).";

fn main() -> ExitCode {
    dht_api::process::main("dht-bootstrap", USAGE, run)
}

async fn run(config: Config) -> Result<(), BoxError> {
    let node = Arc::new(Node::start_joining(config.node).await?);
    let metrics = match config.metrics_address {
        Some(address) => {
            let mut registry = prometheus_client::registry::Registry::default();
            node.register_metrics(&mut registry);
            Some(
                MetricsServer::bind(address, registry, node.clone(), "dht-bootstrap")
                    .await
                    .map_err(|e| format!("binding metrics_address {address}: {e}"))?,
            )
        }
        None => None,
    };
    tracing::info!(id = %node.id(), p2p = %node.listen_addr(), "dht-bootstrap ready");
    shutdown_signal().await;
    tracing::info!("stopping");
    if let Some(metrics) = &metrics {
        metrics.shutdown().await;
    }
    node.shutdown().await;
    Ok(())
}
