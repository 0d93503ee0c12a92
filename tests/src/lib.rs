//! Helpers for the integration tests: start real nodes on 127.0.0.1, talk to their
//! VoidPhone API, and wait for conditions by polling with a deadline.

pub mod browser;
pub mod http;
pub mod process;
pub mod raw_peer;
pub mod wan;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use dht_api::{ApiConfig, ApiServer};
use dht_core::{BootstrapPeer, Environment, Key, MemoryStore, Node, NodeConfig, SimNetwork};
use dht_wire::{ApiCodec, ApiMessage};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

/// The workspace root.
pub fn workspace() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Installs a log subscriber for tests once (level from `RUST_LOG`, default warn).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// The proof-of-work difficulty of test nodes: low, so that starting hundreds is quick.
/// (One test in `dht-core` runs at the default.)
pub const TEST_POW: u32 = 4;

/// A node configuration for tests: loopback, any free port, short timeouts, a fresh
/// identity per start and a low proof-of-work difficulty.
pub fn test_config(bootstrap: &[SocketAddr]) -> NodeConfig {
    NodeConfig {
        pow_difficulty: TEST_POW,
        min_pow_difficulty: TEST_POW,
        p2p_address: "127.0.0.1:0".parse().expect("literal address"),
        bootstrap_peers: bootstrap
            .iter()
            .map(|addr| BootstrapPeer {
                id: None,
                address: addr.to_string(),
            })
            .collect(),
        rpc_timeout: Duration::from_millis(1500),
        lookup_peer_timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_millis(1500),
        ..NodeConfig::default()
    }
}

/// Starts a node on the simulated WAN `net` at `ip`, with a memory store, and the clock
/// and random numbers of `env`.
pub async fn start_sim_node(
    net: &SimNetwork,
    ip: IpAddr,
    config: NodeConfig,
    env: Environment,
) -> anyhow::Result<Node> {
    let store = Box::new(MemoryStore::new(config.store_limits.clone()));
    Ok(Node::start_in(config, Arc::new(net.transport(ip)), store, env).await?)
}

/// A node started by a test, with its API server when it has one.
pub struct TestNode {
    /// The node.
    pub node: Arc<Node>,
    /// Its API server (bootstrap nodes have none).
    pub api: Option<ApiServer>,
}

impl TestNode {
    /// Starts a node (joined through `bootstrap`) and, when `with_api`, its API server.
    pub async fn start(config: NodeConfig, with_api: bool) -> anyhow::Result<TestNode> {
        let node = Arc::new(Node::start(config).await.context("starting node")?);
        let api = if with_api {
            let config = ApiConfig {
                address: "127.0.0.1:0".parse().expect("literal address"),
                get_deadline: Duration::from_secs(5),
                ..ApiConfig::default()
            };
            Some(ApiServer::bind(config, node.clone()).await?)
        } else {
            None
        };
        Ok(TestNode { node, api })
    }

    /// Starts a node and an API server with the settings of `api` (its address is
    /// replaced by any free port on 127.0.0.1).
    pub async fn start_with_api(config: NodeConfig, api: ApiConfig) -> anyhow::Result<TestNode> {
        let node = Arc::new(Node::start(config).await.context("starting node")?);
        let api = ApiConfig {
            address: "127.0.0.1:0".parse().expect("literal address"),
            ..api
        };
        let api = ApiServer::bind(api, node.clone()).await?;
        Ok(TestNode {
            node,
            api: Some(api),
        })
    }

    /// The API address; panics for a node without API (a test bug).
    pub fn api_addr(&self) -> SocketAddr {
        self.api.as_ref().expect("node has an API").local_addr()
    }

    /// Stops the API server and the node.
    pub async fn stop(&self) {
        if let Some(api) = &self.api {
            api.shutdown().await;
        }
        self.node.shutdown().await;
    }
}

/// Starts one bootstrap node and `n` API nodes joined through it, one after another.
pub async fn start_network(n: usize) -> anyhow::Result<(TestNode, Vec<TestNode>)> {
    let bootstrap = TestNode::start(test_config(&[]), false).await?;
    let addr = bootstrap.node.listen_addr();
    let mut nodes = Vec::with_capacity(n);
    for _ in 0..n {
        nodes.push(TestNode::start(test_config(&[addr]), true).await?);
    }
    Ok((bootstrap, nodes))
}

/// Polls `check` every 20 ms until it is true or `deadline` passes; returns the last
/// answer.
pub async fn wait_for<F, Fut>(deadline: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + deadline;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A VoidPhone API client, as another module would write one.
pub struct ApiClient {
    framed: Framed<TcpStream, ApiCodec>,
}

impl ApiClient {
    /// Connects to an API server.
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<ApiClient> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(ApiClient {
            framed: Framed::new(stream, ApiCodec),
        })
    }

    /// Sends a DHT_PUT (no reply comes).
    pub async fn put(
        &mut self,
        key: Key,
        value: &[u8],
        ttl: u16,
        replication: u8,
    ) -> anyhow::Result<()> {
        self.send(ApiMessage::Put {
            ttl,
            replication,
            key,
            value: Bytes::copy_from_slice(value),
        })
        .await
    }

    /// Sends any message.
    pub async fn send(&mut self, message: ApiMessage) -> anyhow::Result<()> {
        self.framed.send(message).await?;
        Ok(())
    }

    /// Reads the next answer (error after 10 s or when the server closed).
    pub async fn recv(&mut self) -> anyhow::Result<ApiMessage> {
        match tokio::time::timeout(Duration::from_secs(10), self.framed.next()).await {
            Ok(Some(Ok(message))) => Ok(message),
            Ok(Some(Err(e))) => bail!("bad answer: {e}"),
            Ok(None) => bail!("the server closed the connection"),
            Err(_) => bail!("no answer within 10 s"),
        }
    }

    /// DHT_GET and its answer: `Some(value)` for SUCCESS, `None` for FAILURE.
    pub async fn get(&mut self, key: Key) -> anyhow::Result<Option<Bytes>> {
        self.send(ApiMessage::Get { key }).await?;
        match self.recv().await? {
            ApiMessage::Success { key: k, value } if k == key => Ok(Some(value)),
            ApiMessage::Failure { key: k } if k == key => Ok(None),
            other => bail!("unexpected answer {other:?}"),
        }
    }

    /// True when the server has closed the connection (reads EOF within 5 s).
    pub async fn is_closed_by_server(&mut self) -> bool {
        matches!(
            tokio::time::timeout(Duration::from_secs(5), self.framed.next()).await,
            Ok(None | Some(Err(_)))
        )
    }

    /// The raw stream, for tests that write bytes by hand.
    pub fn stream(&mut self) -> &mut TcpStream {
        self.framed.get_mut()
    }
}

/// GET through the API of `addr` on a fresh connection.
pub async fn api_get(addr: SocketAddr, key: Key) -> anyhow::Result<Option<Bytes>> {
    ApiClient::connect(addr).await?.get(key).await
}
