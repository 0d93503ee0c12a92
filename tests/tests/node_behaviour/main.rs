//! Behaviour of single nodes and small networks: connections (`peers.rs`: the tie-break,
//! handshake refusals, hostile frames, connection limits, shutdown with PUTs in flight or
//! stuck peers), the rules of STOREs and PUTs (`records.rs`), and restarts over a durable
//! store (`restart.rs`). The helpers they share are here.

mod peers;
mod records;
mod restart;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use dht_core::{
    BootstrapPeer, DEFAULT_NETWORK_ID, Key, MemoryNetwork, MemoryStore, Node, NodeConfig,
    PutOptions,
};
use dht_tests::TEST_POW;
use dht_tests::raw_peer::RawPeer;
use dht_wire::{PeerFrame, PeerMessage, StoreStatus, WireRecord};
use futures::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn config(bootstrap: &[BootstrapPeer]) -> NodeConfig {
    NodeConfig {
        pow_difficulty: TEST_POW,
        min_pow_difficulty: TEST_POW,
        p2p_address: "127.0.0.1:0".parse().expect("literal"),
        bootstrap_peers: bootstrap.to_vec(),
        rpc_timeout: Duration::from_millis(1500),
        lookup_peer_timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_millis(1500),
        ..NodeConfig::default()
    }
}

/// A node keeping its host key and its durable store in `dir` (`dir/data`).
fn durable_config(dir: &std::path::Path, bootstrap: &[BootstrapPeer]) -> NodeConfig {
    NodeConfig {
        hostkey: Some(dir.join("hostkey.pem")),
        storage: dht_core::StorageBackend::Durable {
            data_dir: dir.join("data"),
            key: None,
            sync: dht_core::DiskSync::default(),
        },
        ..config(bootstrap)
    }
}

fn peer_of(node: &Node) -> BootstrapPeer {
    BootstrapPeer {
        id: None,
        address: node.listen_addr().to_string(),
    }
}

async fn wait_for(deadline: Duration, mut check: impl FnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + deadline;
    while tokio::time::Instant::now() < end {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// A record as sent on the wire: `lifetime` is the seconds it has left to live.
fn record(key: Key, value: &'static [u8], lifetime: u64, version: u64) -> WireRecord {
    WireRecord {
        key,
        value: Bytes::from_static(value),
        lifetime,
        version,
        replication: 3,
    }
}
