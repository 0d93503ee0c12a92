//! A replication round that would outlast half its interval stops there, and the next
//! round resumes at the first record not done, until every record has been replicated.
//! Simulated WAN (100 ms round trips) on tokio's paused time.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dht_core::{
    Environment, Key, MemoryStore, Node, NodeConfig, Record, SimNetwork, TokioClock, UpkeepKind,
};
use dht_storage::RecordStore;
use dht_tests::{test_config, wait_for};

const RTT: Duration = Duration::from_millis(100);
const START: u64 = 1_800_000_000;

fn host(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, n))
}

async fn start(
    net: &SimNetwork,
    n: u8,
    config: NodeConfig,
    store: MemoryStore,
) -> anyhow::Result<Node> {
    let env = Environment::simulated(Arc::new(TokioClock::starting_at(START)), n.into());
    Ok(Node::start_in(
        config,
        Arc::new(net.transport(host(n))),
        Box::new(store),
        env,
    )
    .await?)
}

fn config(bootstrap: &[SocketAddr], replicate: Duration) -> NodeConfig {
    NodeConfig {
        replicate_interval: replicate,
        liveness_interval: Duration::from_secs(2),
        neighbour_liveness: Duration::from_secs(2),
        ..test_config(bootstrap)
    }
}

#[tokio::test(start_paused = true)]
async fn a_round_stops_at_its_budget_and_the_next_resumes_where_it_stopped() -> anyhow::Result<()> {
    let net = SimNetwork::new(7, 1, 0.0, |_, _| RTT);
    net.authenticate_peers(1);
    let hour = Duration::from_secs(3600);
    let first = start(&net, 1, config(&[], hour), MemoryStore::default()).await?;
    let entry = first.listen_addr();
    let mut nodes = vec![first];
    for n in 2..=8 {
        nodes.push(start(&net, n, config(&[entry], hour), MemoryStore::default()).await?);
    }
    // 600 records, 8 STOREs at a time at 100 ms each: about 8 s of work, against a
    // budget of 5 s (half of 10).
    let replicate = Duration::from_secs(10);
    let x_config = config(&[entry], replicate);
    let mut store = MemoryStore::new(x_config.store_limits.clone());
    let keys: Vec<Key> = (0..600u32).map(|i| Key::sha256(&i.to_be_bytes())).collect();
    for key in &keys {
        let record = Record {
            key: *key,
            value: Bytes::from_static(b"v"),
            expires_at: START + 86_400,
            replication: 3,
            version: 1,
        };
        store.put(record, START)?;
    }
    let x = start(&net, 9, x_config, store).await?;
    nodes.push(x);
    let x = nodes.last().expect("x");
    let rounds = || -> Vec<(usize, Duration)> {
        let mut rounds: Vec<_> = x
            .status()
            .upkeep
            .iter()
            .filter(|r| r.kind == UpkeepKind::Replication)
            .map(|r| (r.items, r.elapsed))
            .collect();
        rounds.reverse();
        rounds
    };
    let covered = wait_for(Duration::from_secs(120), || async {
        rounds().iter().map(|(items, _)| items).sum::<usize>() >= keys.len()
    })
    .await;
    let seen = rounds();
    assert!(covered, "rounds so far: {seen:?}");
    assert!(seen.len() >= 2, "one round did it all: {seen:?}");
    assert!(
        seen[0].0 < keys.len(),
        "the first round was not cut: {seen:?}"
    );
    for (_, elapsed) in &seen {
        // The budget, plus the STOREs already on their way when it came.
        assert!(*elapsed < Duration::from_secs(7), "{seen:?}");
    }
    let everywhere = keys.iter().all(|key| {
        let mut by_distance: Vec<&Node> = nodes.iter().collect();
        by_distance.sort_by_key(|n| n.id().distance(key));
        by_distance
            .iter()
            .take(3)
            .all(|n| n.id() == x.id() || n.holds(key))
    });
    assert!(
        everywhere,
        "a record is missing on one of its 3 closest nodes"
    );
    for node in nodes {
        node.shutdown().await;
    }
    Ok(())
}
