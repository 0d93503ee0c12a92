//! One node holding 100,000 records runs its replication rounds in a network of 16 nodes
//! on 127.0.0.1 (replicate interval 60 s, so a round's budget is 30 s; liveness every
//! 5 s): prints each replication round (time, records replicated, records that reached
//! no replica), the lookups they cost, the node's table at the end, and how many records
//! ended on their 3 closest nodes.
//!
//! `cargo run --release -p dht-bench --example replication_at_scale [records]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dht_core::{
    BootstrapPeer, Key, MemoryStore, Node, NodeConfig, Record, TcpTransport, UpkeepKind,
};
use dht_storage::RecordStore;

const NODES: usize = 16;
const REPLICATE: Duration = Duration::from_secs(60);
const LIVENESS: Duration = Duration::from_secs(5);

fn config(bootstrap: &[String], replicate: Duration) -> NodeConfig {
    NodeConfig {
        p2p_address: ([127, 0, 0, 1], 0).into(),
        bootstrap_peers: bootstrap
            .iter()
            .map(|address| BootstrapPeer {
                id: None,
                address: address.clone(),
            })
            .collect(),
        replicate_interval: replicate,
        liveness_interval: LIVENESS,
        neighbour_liveness: LIVENESS,
        ..NodeConfig::default()
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let records: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(100_000);
    let hour = Duration::from_secs(3600);
    let first = Node::start(config(&[], hour)).await?;
    let entry = vec![first.listen_addr().to_string()];
    let mut others = vec![first];
    for _ in 1..NODES - 1 {
        others.push(Node::start(config(&entry, hour)).await?);
    }
    // The node under test, its store filled before it starts.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let x_config = config(&entry, REPLICATE);
    let mut store = MemoryStore::new(x_config.store_limits.clone());
    let keys: Vec<Key> = (0..records as u64)
        .map(|i| Key::sha256(&i.to_be_bytes()))
        .collect();
    for key in &keys {
        let record = Record {
            key: *key,
            value: Bytes::from_static(&[42; 100]),
            expires_at: now + 86_400,
            replication: 3,
            version: 1,
        };
        store.put(record, now)?;
    }
    let x = Node::start_with(x_config, Arc::new(TcpTransport), Box::new(store)).await?;
    let started = Instant::now();
    println!(
        "{records} records on one node of {NODES}; replicate every {}s (budget half), liveness every {}s",
        REPLICATE.as_secs(),
        LIVENESS.as_secs()
    );
    // Until the rounds have covered every record (or 5 intervals).
    let mut seen_rounds = 0;
    let mut covered = 0;
    while covered < records && started.elapsed() < REPLICATE * 5 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let status = x.status();
        let mut rounds: Vec<_> = status
            .upkeep
            .iter()
            .filter(|r| r.kind == UpkeepKind::Replication)
            .collect();
        rounds.reverse();
        for round in rounds.iter().skip(seen_rounds) {
            println!(
                "replication round: {:>6.1} s, {} records replicated, {} reached no replica",
                round.elapsed.as_secs_f64(),
                round.items,
                round.failed
            );
            covered += round.items;
        }
        seen_rounds = rounds.len();
    }
    let stats = x.stats();
    println!(
        "lookups of replication: {}; contacts in the node's table at the end: {} of {}",
        stats.replication_lookups,
        x.routing_table_len(),
        NODES - 1
    );
    let mut all: Vec<&Node> = others.iter().collect();
    all.push(&x);
    let on_closest = keys
        .iter()
        .filter(|key| {
            let mut ids: Vec<_> = all.iter().map(|n| (n.id().distance(key), *n)).collect();
            ids.sort_by_key(|(d, _)| *d);
            ids.iter().take(3).all(|(_, n)| n.holds(key))
        })
        .count();
    println!("records on their 3 closest nodes: {on_closest} of {records}");
    x.shutdown().await;
    for n in others {
        n.shutdown().await;
    }
    Ok(())
}
