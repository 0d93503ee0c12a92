//! A node reads the wall clock only through its `Environment`: record versions and
//! expiry follow the clock it was given, not the system's (what a simulation of many
//! nodes on simulated time relies on).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use dht_core::{Clock, Environment, Key, MemoryNetwork, MemoryStore, Node, PutOptions};
use dht_tests::{init_tracing, test_config};

/// A wall clock the test sets by hand.
struct HandClock(AtomicU64);

impl Clock for HandClock {
    fn unix_micros(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

const SECOND: u64 = 1_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_expire_on_the_nodes_clock_not_the_systems() -> anyhow::Result<()> {
    init_tracing();
    // Seven years ahead of the system's clock: a node reading the system's clock
    // anywhere would see the record as fresh (or refuse its version as too new).
    let clock = Arc::new(HandClock(AtomicU64::new(2_000_000_000 * SECOND)));
    let env = Environment::simulated(clock.clone(), 1);
    let net = MemoryNetwork::new();
    let config = test_config(&[]);
    let store = Box::new(MemoryStore::new(config.store_limits.clone()));
    let node = Node::start_in(config, Arc::new(net.transport()), store, env).await?;

    let key = Key::sha256(b"on the node's clock");
    let options = PutOptions {
        ttl: Duration::from_secs(60),
        replication: 3,
    };
    node.put(key, Bytes::from_static(b"v"), options).await?;
    assert!(node.get(key).await?.is_some(), "fresh on the node's clock");

    clock.0.fetch_add(59 * SECOND, Ordering::SeqCst);
    assert!(
        node.get(key).await?.is_some(),
        "59 s of its 60 s TTL passed"
    );
    clock.0.fetch_add(2 * SECOND, Ordering::SeqCst);
    assert_eq!(node.get(key).await?, None, "expired 61 s after the PUT");

    // A second node on the same clock takes the records the first one versions on
    // it: seven years ahead of the system's clock, which a node checking versions
    // against the system's clock would refuse as too far ahead.
    let config = test_config(&[node.listen_addr()]);
    let store = Box::new(MemoryStore::new(config.store_limits.clone()));
    let env = Environment::simulated(clock.clone(), 2);
    let other = Node::start_in(config, Arc::new(net.transport()), store, env).await?;
    let report = other.put(key, Bytes::from_static(b"w"), options).await?;
    assert_eq!(report.replicas, 1, "the first node stored it");
    assert_eq!(node.get(key).await?.as_deref(), Some(&b"w"[..]));
    other.shutdown().await;
    node.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_gives_a_node_its_identity() -> anyhow::Result<()> {
    init_tracing();
    let clock: Arc<dyn Clock> = Arc::new(HandClock(AtomicU64::new(2_000_000_000 * SECOND)));
    let id = |seed: u64| {
        let clock = clock.clone();
        async move {
            let config = test_config(&[]);
            let store = Box::new(MemoryStore::new(config.store_limits.clone()));
            let transport = Arc::new(MemoryNetwork::new().transport());
            let env = Environment::simulated(clock, seed);
            let node = Node::start_in(config, transport, store, env).await?;
            let id = node.id();
            node.shutdown().await;
            anyhow::Ok(id)
        }
    };
    assert_eq!(id(5).await?, id(5).await?, "one seed, one id");
    assert_ne!(id(5).await?, id(6).await?);
    Ok(())
}
