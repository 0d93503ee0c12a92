//! Hung peers on one host: 20 dht-node processes, 5 of them stopped with SIGSTOP (their
//! kernels keep the connections up; nothing comes back): every GET through the others
//! still finds every key that has a copy on a running node. Kept as a regression test of what issue 17 saw on a running
//! network (every GET succeeded).

use std::time::{Duration, Instant};

use dht_tests::process::{NodeProcess, all_found, keys, node_binary, put_in_turn};
use dht_tests::{ApiClient, wait_for};

const NODES: usize = 20;
const STOPPED: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_quarter_of_the_nodes_stopped_every_get_succeeds() {
    let binary = node_binary();
    let dir = std::env::temp_dir().join(format!("dht-sigstop-{}", rand::random::<u64>()));
    let setups = NodeProcess::network(&dir, NODES, Duration::from_millis(1000), "");
    let mut nodes = Vec::new();
    for setup in &setups {
        nodes.push(setup.start(&binary).await);
    }
    // Keys PUT through the nodes in turn, each readable from another node. Replication
    // 5 (and the copy the accepting node keeps): five stopped nodes never hold every
    // copy of a key, which with 3 copies happens to some of 40 keys about one run in
    // four, and then no GET can succeed.
    let keys = keys("sigstop", 40);
    put_in_turn(&setups, &keys, 5).await;
    let readable = wait_for(Duration::from_secs(60), || {
        all_found(setups[NODES - 1].api, &keys)
    })
    .await;
    assert!(readable, "the keys did not become readable");

    // Five nodes hang (not the first, through which the others joined).
    for node in &nodes[1..=STOPPED] {
        node.signal("-STOP");
    }
    let mut slowest = Duration::ZERO;
    for setup in &setups[STOPPED + 1..] {
        let mut client = ApiClient::connect(setup.api).await.expect("api");
        for (key, value) in &keys {
            let asked = Instant::now();
            let got = client.get(*key).await.expect("answer");
            slowest = slowest.max(asked.elapsed());
            assert_eq!(
                got.as_deref(),
                Some(value.as_slice()),
                "a GET through {} failed with {STOPPED} nodes stopped",
                setup.api
            );
        }
    }
    eprintln!(
        "{} GETs through {} running nodes, {STOPPED} of {NODES} stopped: all found; slowest {slowest:?}",
        keys.len() * (NODES - STOPPED - 1),
        NODES - STOPPED - 1
    );
    for node in &nodes[1..=STOPPED] {
        node.signal("-CONT");
    }
    drop(nodes);
    let _ = std::fs::remove_dir_all(&dir);
}
