//! A node frozen (SIGSTOP) until the others have dropped it from their tables, then
//! thawed while every other node is frozen, so that it finds nobody and drops them all
//! in turn, comes back by itself once the others thaw: both sides find each other again
//! and every key is found through it. Issue 17 saw this on a running network; kept as a
//! regression test. Five dht-node processes with upkeep intervals of seconds.

use std::net::SocketAddr;
use std::time::Duration;

use dht_tests::http::{http_get, samples};
use dht_tests::process::{NodeProcess, all_found, keys, node_binary, put_in_turn};
use dht_tests::wait_for;

const NODES: usize = 5;
/// Upkeep in seconds: a contact quiet for a second is pinged, and one failed ping
/// removes it.
const SETTINGS: &str = "neighbour_liveness_secs = 1\n\
    liveness_interval_secs = 2\n\
    ping_failures = 1\n\
    rpc_timeout_ms = 500\n\
    lookup_peer_timeout_ms = 300\n\
    connect_timeout_ms = 1000";
const DEADLINE: Duration = Duration::from_secs(90);

/// The node's routing-table contacts, from its metrics.
async fn contacts(metrics: SocketAddr) -> Option<usize> {
    let answer = http_get(metrics, "/metrics").await.ok()?;
    let value = samples(&answer.body)
        .get("dht_routing_table_contacts")
        .copied()?;
    // A gauge of contacts: a small whole number.
    Some(value as usize)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_frozen_until_forgotten_then_left_alone_comes_back_by_itself() {
    let binary = node_binary();
    let dir = std::env::temp_dir().join(format!("dht-frozen-{}", rand::random::<u64>()));
    let setups = NodeProcess::network(&dir, NODES, Duration::from_millis(1000), SETTINGS);
    let mut nodes = Vec::new();
    for setup in &setups {
        nodes.push(setup.start(&binary).await);
    }
    let everyone_knows = |n: usize| {
        let setups = &setups;
        async move {
            for setup in setups {
                if contacts(setup.metrics).await != Some(n) {
                    return false;
                }
            }
            true
        }
    };
    assert!(
        wait_for(DEADLINE, || everyone_knows(NODES - 1)).await,
        "the nodes never all knew each other"
    );
    let keys = keys("frozen", 10);
    put_in_turn(&setups[..NODES - 1], &keys, 3).await;
    let (frozen, others) = (&nodes[NODES - 1], &nodes[..NODES - 1]);
    let frozen_setup = &setups[NODES - 1];

    // Frozen until every other node has dropped it.
    frozen.signal("-STOP");
    let dropped = wait_for(DEADLINE, || async {
        for setup in &setups[..NODES - 1] {
            if contacts(setup.metrics).await != Some(NODES - 2) {
                return false;
            }
        }
        true
    })
    .await;
    assert!(dropped, "the others never dropped the frozen node");

    // Thawed while all the others are frozen: it drops them all in turn.
    for node in others {
        node.signal("-STOP");
    }
    frozen.signal("-CONT");
    let alone = wait_for(DEADLINE, || async {
        contacts(frozen_setup.metrics).await == Some(0)
    })
    .await;
    assert!(alone, "the lone node never dropped the frozen others");

    // The others thaw: the lone node comes back by itself.
    for node in others {
        node.signal("-CONT");
    }
    assert!(
        wait_for(DEADLINE, || everyone_knows(NODES - 1)).await,
        "the node and the others never found each other again"
    );
    assert!(
        wait_for(DEADLINE, || all_found(frozen_setup.api, &keys)).await,
        "the keys are not found through the node that came back"
    );
    drop(nodes);
    let _ = std::fs::remove_dir_all(&dir);
}
