//! Read repair and copies sent back: a GET that finds one of a key's replicas without
//! the record, or with an older version, sends it the newest; a STORE of an older copy
//! is answered "kept newer" and the newer copy goes back to its sender. Replication is
//! an hour away in these tests: only the repair can mend the replicas.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dht_core::{Key, Node, NodeConfig};
use dht_tests::raw_peer::RawPeer;
use dht_tests::{init_tracing, test_config, wait_for};
use dht_wire::{PeerFrame, PeerMessage, StoreStatus, WireRecord};
use futures::{SinkExt, StreamExt};

fn config(bootstrap: &[SocketAddr]) -> NodeConfig {
    NodeConfig {
        replicate_interval: Duration::from_secs(3600),
        ..test_config(bootstrap)
    }
}

/// A bootstrap node and five more, each knowing all the others.
async fn network() -> Vec<Arc<Node>> {
    let bootstrap = Arc::new(Node::start(config(&[])).await.expect("bootstrap"));
    let mut nodes = vec![bootstrap.clone()];
    for _ in 0..5 {
        let node = Node::start(config(&[bootstrap.listen_addr()]))
            .await
            .expect("node");
        nodes.push(Arc::new(node));
    }
    let all = nodes.len() - 1;
    let everyone_known = wait_for(Duration::from_secs(20), || async {
        nodes.iter().all(|n| n.routing_contacts().len() == all)
    })
    .await;
    assert!(everyone_known, "the six nodes did not all learn each other");
    nodes
}

/// The nodes in order of their distance to `key`.
fn by_distance(nodes: &[Arc<Node>], key: &Key) -> Vec<Arc<Node>> {
    let mut sorted = nodes.to_vec();
    sorted.sort_by_key(|n| n.id().distance(key));
    sorted
}

fn record(key: Key, value: &'static [u8], version: u64) -> WireRecord {
    WireRecord {
        key,
        value: Bytes::from_static(value),
        lifetime: 600,
        version,
        replication: 3,
    }
}

/// STOREs `record` on `node` through a peer of its own.
async fn store_on(node: &Node, record: WireRecord) {
    let (mut peer, _) = RawPeer::connect(node.listen_addr()).await.expect("peer");
    let answer = peer
        .request(PeerMessage::Store { record })
        .await
        .expect("answer");
    assert_eq!(
        answer,
        PeerMessage::StoreResult {
            status: StoreStatus::Stored
        }
    );
}

/// The version of `key` that `node` answers a FIND_VALUE with, if any.
async fn version_on(node: &Node, key: Key) -> Option<u64> {
    let (mut peer, _) = RawPeer::connect(node.listen_addr()).await.ok()?;
    match peer.request(PeerMessage::FindValue { key }).await.ok()? {
        PeerMessage::Value { record } => Some(record.version),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_gives_the_record_to_a_replica_that_missed_it() {
    init_tracing();
    let nodes = network().await;
    let key = Key::sha256(b"read repair: missing");
    let sorted = by_distance(&nodes, &key);
    // Two of the three replicas got the record; the third did not.
    for replica in &sorted[..2] {
        store_on(replica, record(key, b"v", 7)).await;
    }
    assert!(!sorted[2].holds(&key));
    let reader = &sorted[5];
    assert_eq!(
        reader.get(key).await.expect("get").as_deref(),
        Some(&b"v"[..])
    );
    let repaired = wait_for(Duration::from_secs(10), || async { sorted[2].holds(&key) }).await;
    assert!(
        repaired,
        "the replica that missed the record did not get it"
    );
    assert!(reader.stats().read_repairs >= 1);
    // Nodes outside the three closest are not sent copies.
    assert!(!sorted[4].holds(&key));
    for n in &nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_gives_the_newest_version_to_a_replica_with_an_older_one() {
    init_tracing();
    let nodes = network().await;
    let key = Key::sha256(b"read repair: stale");
    let sorted = by_distance(&nodes, &key);
    store_on(&sorted[0], record(key, b"new", 9)).await;
    store_on(&sorted[1], record(key, b"new", 9)).await;
    store_on(&sorted[2], record(key, b"old", 3)).await;
    let reader = &sorted[5];
    let got = reader.get(key).await.expect("get");
    assert!(got.is_some());
    let repaired = wait_for(Duration::from_secs(10), || async {
        version_on(&sorted[2], key).await == Some(9)
    })
    .await;
    assert!(repaired, "the stale replica still holds the older version");
    // And the next GET, from anywhere, sees the newest.
    assert_eq!(
        sorted[4].get(key).await.expect("get").as_deref(),
        Some(&b"new"[..])
    );
    for n in &nodes {
        n.shutdown().await;
    }
}

#[tokio::test]
async fn a_store_of_an_older_copy_gets_the_newer_one_sent_back() {
    init_tracing();
    let a = Node::start(config(&[])).await.expect("a");
    let key = Key::sha256(b"sent back");
    store_on(&a, record(key, b"newer", 20)).await;
    let (mut peer, _) = RawPeer::connect(a.listen_addr()).await.expect("peer");
    let answer = peer
        .request(PeerMessage::Replicate {
            record: record(key, b"older", 10),
        })
        .await
        .expect("answer");
    assert_eq!(
        answer,
        PeerMessage::StoreResult {
            status: StoreStatus::KeptNewer
        }
    );
    // The node now sends the newer copy to the peer, over the same connection.
    let sent_back = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match peer.framed.next().await {
                Some(Ok(frame)) if !frame.is_response => {
                    let request = frame.message.clone();
                    let answer = dht_tests::raw_peer::honest_answer(&request);
                    let _ = peer
                        .framed
                        .send(PeerFrame::response(frame.request_id, answer))
                        .await;
                    if let PeerMessage::Replicate { record } = request {
                        return Some(record);
                    }
                }
                Some(Ok(_)) => {}
                _ => return None,
            }
        }
    })
    .await
    .ok()
    .flatten()
    .expect("no copy sent back");
    assert_eq!(
        (sent_back.version, sent_back.value.as_ref()),
        (20, &b"newer"[..])
    );
    assert_eq!(a.stats().copies_sent_back, 1);
    a.shutdown().await;
}
