//! Nodes whose wall clocks disagree by minutes (up to the bound versions tolerate,
//! `MAX_VERSION_SKEW`, 10 minutes), on a simulated WAN: a record lives on every node
//! for the time its writer gave it, whichever way the writer's clock is off. Lifetimes
//! travel as seconds left, not as an absolute time, so no clock but the holder's enters
//! a record's expiry.
//!
//! Before, the expiry travelled as an absolute UNIX time: a short-lived record written
//! by a node whose clock is behind was already expired on arrival at every other node
//! (refused as expired, so no GET found it), and one written by a node whose clock is
//! ahead lived minutes longer than its TTL on the others.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dht_core::{Environment, Key, Node, PutOptions, SimNetwork, TokioClock};
use dht_tests::{start_sim_node, test_config};

const RTT: Duration = Duration::from_millis(100);
const NODES: u8 = 12;
const TTL: Duration = Duration::from_secs(120);

fn host(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 1, n))
}

/// Node `n`'s clock, off by up to 290 s either way: two nodes' clocks differ by up to
/// 580 s, within the 600 s by which a version may be ahead of its receiver's clock.
fn clock_offset_secs(n: u8) -> i64 {
    [-290, -150, 0, 150, 290][usize::from(n) % 5]
}

/// Asks every node for `key`; returns how many found `value`.
async fn found_by(nodes: &[Node], key: Key, value: &[u8]) -> usize {
    let mut found = 0;
    for node in nodes {
        if node.get(key).await.ok().flatten().as_deref() == Some(value) {
            found += 1;
        }
    }
    found
}

#[tokio::test(start_paused = true)]
async fn a_record_lives_its_ttl_on_every_node_whatever_their_clocks_say() -> anyhow::Result<()> {
    let net = SimNetwork::new(11, 1, 0.0, |_, _| RTT);
    net.authenticate_peers(1);
    let base: i64 = 1_800_000_000;
    let env = |n: u8| {
        let start = u64::try_from(base + clock_offset_secs(n)).unwrap_or(0);
        Environment::simulated(Arc::new(TokioClock::starting_at(start)), n.into())
    };
    let first = start_sim_node(&net, host(1), test_config(&[]), env(1)).await?;
    let entry = first.listen_addr();
    let mut nodes = vec![first];
    for n in 2..=NODES {
        nodes.push(start_sim_node(&net, host(n), test_config(&[entry]), env(n)).await?);
    }
    // Everyone knows everyone before the writes.
    for node in &nodes {
        node.find_closest(node.id()).await;
    }

    let behind = nodes
        .iter()
        .position(|n| n.listen_addr().ip() == host(5))
        .expect("node 5");
    let ahead = nodes
        .iter()
        .position(|n| n.listen_addr().ip() == host(9))
        .expect("node 9");
    assert_eq!((clock_offset_secs(5), clock_offset_secs(9)), (-290, 290));
    let options = PutOptions {
        ttl: TTL,
        replication: 3,
    };
    let slow_key = Key::sha256(b"written by a clock 290 s slow");
    let fast_key = Key::sha256(b"written by a clock 290 s fast");
    let slow = nodes[behind]
        .put(slow_key, Bytes::from_static(b"slow"), options)
        .await?;
    let fast = nodes[ahead]
        .put(fast_key, Bytes::from_static(b"fast"), options)
        .await?;
    assert_eq!(
        (slow.replicas, fast.replicas),
        (3, 3),
        "both PUTs reach 3 replicas"
    );
    let written = tokio::time::Instant::now();

    // Within the TTL, every node finds both.
    assert_eq!(found_by(&nodes, slow_key, b"slow").await, nodes.len());
    assert_eq!(found_by(&nodes, fast_key, b"fast").await, nodes.len());

    // Shortly after the TTL (and the seconds the PUTs' STOREs took), nobody does.
    tokio::time::sleep_until(written + TTL + Duration::from_secs(5)).await;
    assert_eq!(
        found_by(&nodes, slow_key, b"slow").await,
        0,
        "outlived its TTL"
    );
    assert_eq!(
        found_by(&nodes, fast_key, b"fast").await,
        0,
        "outlived its TTL"
    );
    for node in &nodes {
        assert!(!node.holds(&slow_key) && !node.holds(&fast_key));
    }

    for node in nodes {
        node.shutdown().await;
    }
    Ok(())
}
