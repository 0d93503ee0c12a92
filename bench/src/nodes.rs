//! Starting one benchmark node the way `dht-node` runs: TCP with mutual TLS, proof of
//! work at the given difficulty, the durable store (its storage key derived from the
//! host key, as `dht-node` derives it), and the VoidPhone API on 127.0.0.1.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bytes::Bytes;
use dht_api::{ApiConfig, ApiServer};
use dht_core::{BootstrapPeer, Key, Node, NodeConfig, StorageBackend, TcpTransport};
use dht_security::HostKey;
use dht_storage::{DurableStore, Origin, Record, RecordStore};
use rand::{Rng, RngCore};

use crate::protocol::{FULL_BOUND, NodeSettings};

/// A running node with its API server.
pub struct BenchNode {
    /// Its index in the network.
    pub index: usize,
    /// The node.
    pub node: Arc<Node>,
    /// Its API server.
    pub api: ApiServer,
}

impl BenchNode {
    /// Stops the API server, then the node.
    pub async fn stop(&self) {
        self.api.shutdown().await;
        self.node.shutdown().await;
    }
}

/// The configuration of node `index`: `dht-node`'s defaults except the address
/// (127.0.0.1, any port), the proof-of-work difficulty and the connection bound.
pub fn node_config(index: usize, settings: &NodeSettings, bootstrap: &[String]) -> NodeConfig {
    NodeConfig {
        hostkey: Some(hostkey_path(&settings.hostkey_dir, index)),
        pow_difficulty: settings.pow_difficulty,
        min_pow_difficulty: settings.pow_difficulty,
        p2p_address: ([127, 0, 0, 1], 0).into(),
        bootstrap_peers: bootstrap
            .iter()
            .map(|address| BootstrapPeer {
                id: None,
                address: address.clone(),
            })
            .collect(),
        // As dht-node keeps it: commits reach the disk within a second.
        storage: StorageBackend::Durable {
            data_dir: settings.data_dir.join(format!("node-{index}")),
            key: None,
            sync: dht_core::DiskSync::default(),
        },
        max_connections: match settings.measured {
            Some(measured) if measured == index => FULL_BOUND,
            _ => settings.max_connections,
        },
        ..NodeConfig::default()
    }
}

/// Where node `index` keeps its host key.
pub fn hostkey_path(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("node-{index}.pem"))
}

/// Starts node `index` with its API server: opens its durable store (preloading
/// `settings.preload_records` records straight into it), then starts the node over it.
pub async fn start_node(
    index: usize,
    settings: &NodeSettings,
    bootstrap: &[String],
) -> anyhow::Result<BenchNode> {
    let config = node_config(index, settings, bootstrap);
    let (hostkey, data_dir) = match (&config.hostkey, &config.storage) {
        (Some(hostkey), StorageBackend::Durable { data_dir, .. }) => {
            (hostkey.clone(), data_dir.clone())
        }
        _ => anyhow::bail!("node {index}: benchmark nodes have a host key and a durable store"),
    };
    let (records, value_len) = (settings.preload_records, settings.value_len);
    let store =
        tokio::task::spawn_blocking(move || open_store(&hostkey, &data_dir, records, value_len))
            .await
            .context("store task failed")??;
    let node = Node::start_with(config, Arc::new(TcpTransport), store)
        .await
        .with_context(|| format!("starting node {index}"))?;
    let node = Arc::new(node);
    let api = ApiServer::bind(
        ApiConfig {
            address: ([127, 0, 0, 1], 0).into(),
            ..ApiConfig::default()
        },
        node.clone(),
    )
    .await
    .with_context(|| format!("binding the API of node {index}"))?;
    Ok(BenchNode { index, node, api })
}

/// Opens the durable store of a node whose host key is at `hostkey` (created if
/// missing, as the node would create it) under the key `dht-node` derives from it, and
/// puts `records` records of `value_len` random bytes into it in one commit.
fn open_store(
    hostkey: &Path,
    data_dir: &Path,
    records: usize,
    value_len: usize,
) -> anyhow::Result<Box<dyn RecordStore>> {
    let host = load_or_create_key(hostkey)?;
    let key = dht_core::storage_key_of(&host);
    let now = unix_now();
    let limits = NodeConfig::default().store_limits;
    let (mut store, _) = DurableStore::open_at(data_dir, key, limits, now)
        .with_context(|| format!("opening the store in {}", data_dir.display()))?;
    if records > 0 {
        let batch = preload_records(records, value_len, now);
        let failed = store
            .put_many(batch, now)
            .into_iter()
            .filter(Result::is_err)
            .count();
        anyhow::ensure!(
            failed == 0,
            "{failed} of {records} preloaded records refused by the store"
        );
    }
    Ok(Box::new(store))
}

/// `count` records under random keys with `value_len` random bytes each, valid for a
/// day, charged as replicas held for a peer (what a node's store mostly holds).
///
/// Their replication is 0: a node hands every record it holds to each newly seen node
/// among the record's closest, so records of replication 3 would make the start of a
/// preloaded network a storm of REPLICATEs (tens of thousands per node) and measure
/// that instead of the memory of the records. The footprint of a record does not
/// depend on its replication.
fn preload_records(count: usize, value_len: usize, now: u64) -> Vec<(Record, Origin)> {
    let mut rng = rand::thread_rng();
    let version = now.saturating_mul(1_000_000);
    let peer = Key::random(&mut rng);
    (0..count)
        .map(|_| {
            let mut value = vec![0u8; value_len.max(1)];
            rng.fill_bytes(&mut value);
            let record = Record {
                key: Key::random(&mut rng),
                value: Bytes::from(value),
                expires_at: now + 86_400,
                replication: 0,
                version: version + rng.gen_range(0..1_000_000),
            };
            (record, Origin::Replication(peer))
        })
        .collect()
}

/// Reads the host key at `path`, or creates an Ed25519 key there (owner-only), as
/// `dht-node` does on its first start.
fn load_or_create_key(path: &Path) -> anyhow::Result<HostKey> {
    match std::fs::read_to_string(path) {
        Ok(pem) => HostKey::from_pem(&pem).with_context(|| format!("host key {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let host = HostKey::generate().context("generating a host key")?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            let mut file = owner_only(path)?;
            file.write_all(host.to_pem().as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(host)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

#[cfg(unix)]
fn owner_only(path: &Path) -> anyhow::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))
}

#[cfg(not(unix))]
fn owner_only(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::File::create_new(path).with_context(|| format!("creating {}", path.display()))
}

/// Wall-clock UNIX seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}
