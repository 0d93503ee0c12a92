//! Kademlia upkeep with intervals of a few seconds: a node that disappears leaves
//! every table, records come back to their closest live nodes after churn (40 nodes,
//! 200 keys, a third of the nodes lost), and a node that joins close to a key receives
//! it; a full bucket takes the newcomer waiting in its replacement cache when its old
//! contact dies. Every wait polls with a deadline computed
//! from the configured intervals.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dht_core::{Key, Node, NodeConfig, NodeId, PutOptions};
use dht_security::{HostKey, pow};
use dht_tests::raw_peer::{PeerIdentity, RawPeer};
use dht_tests::{TEST_POW, init_tracing, test_config, wait_for};

const LIVENESS: Duration = Duration::from_secs(1);
const REPLICATE: Duration = Duration::from_secs(2);
const PING_FAILURES: u32 = 2;

fn config(bootstrap: &[SocketAddr]) -> NodeConfig {
    NodeConfig {
        liveness_interval: LIVENESS,
        replicate_interval: REPLICATE,
        refresh_interval: Duration::from_secs(5),
        ping_failures: PING_FAILURES,
        rpc_timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_millis(500),
        ..test_config(bootstrap)
    }
}

/// How long removing a dead contact may take: its liveness interval, the failed pings
/// (each bounded by connect and RPC timeouts), the upkeep tick, and slack for a loaded
/// machine.
fn removal_deadline(c: &NodeConfig) -> Duration {
    c.liveness_interval
        + (c.connect_timeout + c.rpc_timeout) * (c.ping_failures + 1)
        + Duration::from_secs(5)
}

/// Two replication rounds (with their jitter) plus the lookups they make, and slack
/// for 40 nodes on a loaded 2-core machine.
fn replication_deadline(c: &NodeConfig) -> Duration {
    c.replicate_interval.mul_f64(2.5) + removal_deadline(c) + Duration::from_secs(10)
}

async fn network(n: usize) -> (Arc<Node>, Vec<Arc<Node>>) {
    let bootstrap = Arc::new(Node::start(config(&[])).await.expect("bootstrap"));
    let mut nodes = Vec::new();
    for _ in 0..n {
        nodes.push(Arc::new(
            Node::start(config(&[bootstrap.listen_addr()]))
                .await
                .expect("node"),
        ));
    }
    (bootstrap, nodes)
}

/// PUTs `keys[i]` = "value i" (r = 3) from the nodes in turn; each must reach 3 replicas.
async fn put_all(nodes: &[Arc<Node>], keys: &[Key]) {
    let options = PutOptions {
        ttl: Duration::from_secs(600),
        replication: 3,
    };
    for (i, key) in keys.iter().enumerate() {
        let report = nodes[i % nodes.len()]
            .put(*key, Bytes::from(format!("value {i}")), options)
            .await
            .expect("put");
        assert_eq!(report.replicas, 3);
    }
}

/// Whether every key is held by each of its 3 closest nodes of `live`.
fn on_closest(live: &[Arc<Node>], keys: &[Key]) -> bool {
    keys.iter().all(|key| {
        closest(live, key, 3).iter().all(|id| {
            live.iter()
                .find(|n| n.id() == *id)
                .is_some_and(|n| n.holds(key))
        })
    })
}

fn closest(live: &[Arc<Node>], key: &Key, r: usize) -> Vec<NodeId> {
    let mut ids: Vec<NodeId> = live.iter().map(|n| n.id()).collect();
    ids.sort_by_key(|id| id.distance(key));
    ids.truncate(r);
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_disappears_leaves_every_table() {
    init_tracing();
    let (bootstrap, mut nodes) = network(6).await;
    let gone = nodes.remove(2);
    let gone_id = gone.id();
    assert!(
        nodes
            .iter()
            .any(|n| n.routing_contacts().iter().any(|c| c.id == gone_id)),
        "nobody knew the node"
    );
    gone.shutdown().await;
    let deadline = removal_deadline(bootstrap.config());
    let removed = wait_for(deadline, || async {
        nodes
            .iter()
            .chain(std::iter::once(&bootstrap))
            .all(|n| n.routing_contacts().iter().all(|c| c.id != gone_id))
    })
    .await;
    assert!(
        removed,
        "the dead node is still in a table after {deadline:?}"
    );
    for n in nodes.iter().chain(std::iter::once(&bootstrap)) {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_return_to_their_closest_live_nodes_after_churn() {
    init_tracing();
    // 40 nodes, 200 keys, a third of the nodes lost.
    let (bootstrap, mut nodes) = network(39).await;
    let keys: Vec<Key> = (0..200)
        .map(|i| Key::sha256(format!("churn/{i}").as_bytes()))
        .collect();
    put_all(&nodes, &keys).await;
    let holders_before: Vec<Vec<NodeId>> = keys
        .iter()
        .map(|key| {
            nodes
                .iter()
                .chain(std::iter::once(&bootstrap))
                .filter(|n| n.holds(key))
                .map(|n| n.id())
                .collect()
        })
        .collect();
    // A third of the nodes go, holders first, but never every copy of a key: the
    // promise is that a record lives on while one of its replicas does.
    let mut going: Vec<usize> = Vec::new();
    let survivors = |going: &[usize], key: &Key| {
        nodes
            .iter()
            .enumerate()
            .filter(|(i, n)| !going.contains(i) && n.holds(key))
            .count()
            + usize::from(bootstrap.holds(key))
    };
    'pick: for key in keys.iter().cycle().take(keys.len() * 2) {
        for (i, node) in nodes.iter().enumerate() {
            if going.len() >= 13 {
                break 'pick;
            }
            if going.contains(&i) || !node.holds(key) {
                continue;
            }
            let mut trial = going.clone();
            trial.push(i);
            if keys.iter().all(|k| survivors(&trial, k) > 0) {
                going = trial;
                break;
            }
        }
    }
    assert!(going.len() >= 10, "only {} nodes could go", going.len());
    going.sort_unstable();
    for &i in going.iter().rev() {
        nodes.remove(i).shutdown().await;
    }
    let mut live = nodes.clone();
    live.push(bootstrap.clone());
    let all_restored = || on_closest(&live, &keys);
    // Losing holders left some key short of its 3 closest live nodes: the copies that
    // replication must make.
    let new_copies_needed = keys
        .iter()
        .zip(&holders_before)
        .any(|(key, before)| closest(&live, key, 3).iter().any(|id| !before.contains(id)));
    assert!(new_copies_needed, "the churn removed no needed copy");
    let deadline = replication_deadline(bootstrap.config());
    let restored = wait_for(deadline, || async { all_restored() }).await;
    assert!(
        restored,
        "some key is not held by its 3 closest live nodes after {deadline:?}"
    );
    for (i, key) in keys.iter().enumerate() {
        for n in &live {
            assert_eq!(
                n.get(*key).await.expect("get").as_deref(),
                Some(format!("value {i}").as_bytes()),
                "key {i} from {}",
                n.id()
            );
        }
    }
    for n in &live {
        n.shutdown().await;
    }
}

/// With replication an hour away, a replica that leaves is replaced all the same: its
/// neighbours ping it within `neighbour_liveness`, remove it, and hand each record it
/// was a replica of to the node that takes its place among the record's closest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_departed_replica_is_replaced_without_waiting_for_replication() {
    init_tracing();
    let hour = Duration::from_secs(3600);
    let config = |bootstrap: &[SocketAddr]| NodeConfig {
        liveness_interval: hour,
        replicate_interval: hour,
        refresh_interval: hour,
        neighbour_liveness: Duration::from_secs(1),
        ..config(bootstrap)
    };
    let bootstrap = Arc::new(Node::start(config(&[])).await.expect("bootstrap"));
    let mut nodes = Vec::new();
    // Nine nodes: each watches all 8 others (NEIGHBOURS_WATCHED), wherever the ids fall.
    for _ in 0..8 {
        let node = Node::start(config(&[bootstrap.listen_addr()]))
            .await
            .expect("node");
        nodes.push(Arc::new(node));
    }
    // Every node knows every other before the PUTs, so that they find the 3 closest.
    let mut all = nodes.clone();
    all.push(bootstrap.clone());
    assert!(
        wait_for(Duration::from_secs(20), || async {
            all.iter().all(|n| n.routing_table_len() == all.len() - 1)
        })
        .await,
        "the tables did not fill"
    );
    let keys: Vec<Key> = (0..30)
        .map(|i| Key::sha256(format!("departed/{i}").as_bytes()))
        .collect();
    put_all(&nodes, &keys).await;
    assert!(
        on_closest(&all, &keys),
        "a PUT missed one of the 3 closest nodes"
    );
    // Three nodes go (the bootstrap node stays), each a replica of some key, never
    // every replica of one.
    let mut going: Vec<NodeId> = Vec::new();
    for key in &keys {
        let replicas = closest(&all, key, 3);
        let Some(&candidate) = replicas.iter().find(|id| **id != bootstrap.id()) else {
            continue;
        };
        let lost_all = |going: &[NodeId]| {
            keys.iter()
                .any(|k| closest(&all, k, 3).iter().all(|id| going.contains(id)))
        };
        let mut trial = going.clone();
        trial.push(candidate);
        if going.len() < 3 && !going.contains(&candidate) && !lost_all(&trial) {
            going = trial;
        }
    }
    assert_eq!(going.len(), 3);
    let mut live = Vec::new();
    for node in nodes {
        if going.contains(&node.id()) {
            node.shutdown().await;
        } else {
            live.push(node);
        }
    }
    live.push(bootstrap.clone());
    let restored = || on_closest(&live, &keys);
    assert!(
        !restored(),
        "the departures took no copy that needs replacing"
    );
    let c = bootstrap.config();
    let deadline = c.neighbour_liveness
        + (c.connect_timeout + c.rpc_timeout) * (c.ping_failures + 1)
        + Duration::from_secs(10);
    let ok = wait_for(deadline, || async { restored() }).await;
    let missing: Vec<String> = keys
        .iter()
        .flat_map(|key| {
            closest(&live, key, 3)
                .into_iter()
                .filter(|id| !live.iter().any(|n| n.id() == *id && n.holds(key)))
                .map(move |id| format!("{} lacks {}", id.short(), key.short()))
        })
        .collect();
    assert!(
        ok,
        "not held by their 3 closest live nodes after {deadline:?}: {missing:?}; gone: {}",
        going
            .iter()
            .map(|id| id.short().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    for n in &live {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joining_close_to_a_key_receives_it() {
    init_tracing();
    let (bootstrap, nodes) = network(7).await;
    let key = Key::sha256(b"handoff");
    nodes[0]
        .put(
            key,
            Bytes::from_static(b"handed"),
            PutOptions {
                ttl: Duration::from_secs(600),
                replication: 3,
            },
        )
        .await
        .expect("put");
    let mut live = nodes.clone();
    live.push(bootstrap.clone());
    let third = closest(&live, &key, 3)[2];
    // An identity closer to the key than the third closest node.
    let dir = std::env::temp_dir().join(format!("dht-handoff-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).expect("dir");
    let hostkey = dir.join("hostkey.pem");
    loop {
        let host = HostKey::generate().expect("key");
        let (nonce, node_id) = pow::mint(host.spki_der(), TEST_POW, 0, u64::MAX).expect("mint");
        if node_id.distance(&key) < third.distance(&key) {
            std::fs::write(&hostkey, host.to_pem()).expect("write key");
            // The node reuses a saved proof of work: it keeps this id.
            let minted = pow::MintedId {
                nonce,
                node_id,
                difficulty: TEST_POW,
            };
            std::fs::write(dir.join("hostkey.pem.pow"), minted.to_text()).expect("write pow");
            break;
        }
    }
    let newcomer = Node::start(NodeConfig {
        hostkey: Some(hostkey),
        ..config(&[bootstrap.listen_addr()])
    })
    .await
    .expect("newcomer");
    assert!(newcomer.id().distance(&key) < third.distance(&key));
    let deadline = replication_deadline(bootstrap.config());
    assert!(
        wait_for(deadline, || async { newcomer.holds(&key) }).await,
        "the newcomer did not receive the key within {deadline:?}"
    );
    newcomer.shutdown().await;
    for n in &live {
        n.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_bucket_takes_its_newcomer_when_the_old_contact_dies() {
    init_tracing();
    // One contact per bucket: a second peer of the same bucket must wait.
    let a = Node::start(NodeConfig {
        k: 1,
        wide_buckets: 0,
        alpha: 1,
        min_replication: 1,
        ..config(&[])
    })
    .await
    .expect("a");
    let first = PeerIdentity::new().expect("identity");
    let bucket = a.id().bucket_index(&first.id);
    let second = (0..10_000)
        .map(|_| PeerIdentity::new().expect("identity"))
        .find(|p| a.id().bucket_index(&p.id) == bucket)
        .expect("an identity in the same bucket");
    let (first_id, second_id) = (first.id, second.id);
    let hello = first.hello();
    let (old, _) = RawPeer::connect_as(a.listen_addr(), first, hello)
        .await
        .expect("first peer");
    let hello = second.hello();
    let (_newcomer, _) = RawPeer::connect_as(a.listen_addr(), second, hello)
        .await
        .expect("second peer");
    let ids = |n: &Node| {
        n.routing_contacts()
            .iter()
            .map(|c| c.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(&a),
        vec![first_id],
        "the bucket was full: the newcomer waits"
    );
    // The old contact disappears (its advertised port refuses connections).
    drop(old);
    let deadline = removal_deadline(a.config());
    let replaced = wait_for(deadline, || async { ids(&a) == vec![second_id] }).await;
    assert!(
        replaced,
        "the newcomer did not take the dead contact's place: {:?}",
        ids(&a)
    );
    a.shutdown().await;
}

/// A replication round costs one lookup per key region the node holds records in, not
/// one per record: a node holding 300 records spread over the key space, in a network of
/// 24 nodes (a region holds about k/4 nodes), replicates them all with a few dozen
/// lookups at most, and keeps every key on its 3 closest nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_costs_one_lookup_per_key_region_not_per_record() {
    init_tracing();
    let hour = Duration::from_secs(3600);
    let quiet = |bootstrap: &[SocketAddr]| NodeConfig {
        replicate_interval: hour,
        ..config(bootstrap)
    };
    let bootstrap = Arc::new(Node::start(quiet(&[])).await.expect("bootstrap"));
    let mut live = vec![bootstrap.clone()];
    for _ in 0..22 {
        let node = Node::start(quiet(&[bootstrap.listen_addr()]))
            .await
            .expect("node");
        live.push(Arc::new(node));
    }
    // Only this node replicates, ten seconds after it starts.
    let replicate = Duration::from_secs(10);
    let x = Arc::new(
        Node::start(NodeConfig {
            replicate_interval: replicate,
            ..config(&[bootstrap.listen_addr()])
        })
        .await
        .expect("x"),
    );
    live.push(x.clone());
    let keys: Vec<Key> = (0..300)
        .map(|i| Key::sha256(format!("regions/{i}").as_bytes()))
        .collect();
    let options = PutOptions {
        ttl: Duration::from_secs(600),
        replication: 3,
    };
    for chunk in keys.chunks(50) {
        let puts = chunk
            .iter()
            .map(|key| x.put(*key, Bytes::from_static(b"v"), options));
        for report in futures::future::join_all(puts).await {
            assert!(report.expect("put").stored_locally);
        }
    }
    let puts_done = std::time::Instant::now();
    let round_done = || {
        x.status()
            .upkeep
            .iter()
            .any(|round| round.kind == dht_core::UpkeepKind::Replication && round.items >= 300)
    };
    let deadline = replicate.mul_f64(1.25) + Duration::from_secs(30);
    assert!(
        wait_for(deadline, || async { round_done() }).await,
        "no replication round of the 300 records within {deadline:?}"
    );
    // The FIND_NODE lookups since the PUTs: the round's, and a few bucket refreshes.
    let since = puts_done.elapsed();
    let lookups = x
        .status()
        .lookups
        .iter()
        .filter(|l| l.age < since && l.kind == dht_core::LookupKind::FindNode)
        .count();
    let counted = x.stats().replication_lookups;
    assert!(
        lookups <= 60,
        "{lookups} lookups to replicate 300 records ({counted} counted by replication)"
    );
    assert!(
        counted >= 1 && counted as usize <= lookups,
        "{counted} of {lookups}"
    );
    // A STORE the loaded machine timed out is made again by the next round.
    let placed = wait_for(replicate * 3, || async { on_closest(&live, &keys) }).await;
    assert!(placed, "a key is not on its 3 closest nodes");
    for n in &live {
        n.shutdown().await;
    }
}
