//! A lookup in a 200-node network over the in-memory transport asks a few dozen peers
//! at most and finds the true k closest nodes (checked against a brute-force sort).

use std::sync::Arc;
use std::time::Duration;

use dht_core::{BootstrapPeer, Key, MemoryNetwork, MemoryStore, Node, NodeConfig, NodeId};
use dht_tests::init_tracing;
use rand::{Rng, SeedableRng};

const NODES: usize = 200;
const K: usize = 20;

fn config(bootstrap: Option<std::net::SocketAddr>) -> NodeConfig {
    NodeConfig {
        p2p_address: "127.0.0.1:0".parse().expect("literal"),
        bootstrap_peers: bootstrap
            .map(|addr| BootstrapPeer {
                id: None,
                address: addr.to_string(),
            })
            .into_iter()
            .collect(),
        k: K,
        pow_difficulty: dht_tests::TEST_POW,
        min_pow_difficulty: dht_tests::TEST_POW,
        rpc_timeout: Duration::from_secs(2),
        lookup_peer_timeout: Duration::from_secs(1),
        ..NodeConfig::default()
    }
}

async fn start(net: &MemoryNetwork, bootstrap: Option<std::net::SocketAddr>) -> Node {
    let config = config(bootstrap);
    let store = Box::new(MemoryStore::new(config.store_limits.clone()));
    Node::start_with(config, Arc::new(net.transport()), store)
        .await
        .expect("node starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_in_200_nodes_is_exact_and_cheap() {
    init_tracing();
    let net = MemoryNetwork::new();
    let first = start(&net, None).await;
    let entry = first.listen_addr();
    let mut nodes = vec![first];
    for _ in 1..NODES {
        nodes.push(start(&net, Some(entry)).await);
    }
    let ids: Vec<NodeId> = nodes.iter().map(Node::id).collect();

    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut most_contacted = 0;
    for round in 0..10 {
        let target = Key::random(&mut rng);
        let from = &nodes[rng.gen_range(0..NODES)];
        let (found, stats) = from.find_closest(target).await;

        let mut expected: Vec<NodeId> = ids.iter().copied().filter(|id| *id != from.id()).collect();
        expected.sort_by_key(|id| id.distance(&target));
        expected.truncate(K);
        let found_ids: Vec<NodeId> = found.iter().map(|c| c.id).collect();
        assert_eq!(
            found_ids, expected,
            "round {round}: lookup missed some of the true {K} closest"
        );
        assert!(
            stats.contacted <= 40,
            "round {round}: a lookup asked {} peers",
            stats.contacted
        );
        most_contacted = most_contacted.max(stats.contacted);
    }
    println!("200 nodes: at most {most_contacted} peers contacted per lookup");

    for node in &nodes {
        node.shutdown().await;
    }
}
