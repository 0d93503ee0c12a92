//! Behaviour of single nodes and small networks: the connection tie-break, handshake
//! refusals, hostile frames, STORE rules, connection limits, and shutdown with PUTs or
//! stuck peers.

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

fn record(key: Key, value: &'static [u8], expires_at: u64, version: u64) -> WireRecord {
    WireRecord {
        key,
        value: Bytes::from_static(value),
        expires_at,
        version,
        replication: 3,
    }
}

#[tokio::test]
async fn simultaneous_dials_leave_one_connection() {
    let net = MemoryNetwork::new();
    let start = |net: &MemoryNetwork| {
        let c = config(&[]);
        let store = Box::new(MemoryStore::new(c.store_limits.clone()));
        Node::start_with(c, Arc::new(net.transport()), store)
    };
    let a = start(&net).await.expect("a");
    let b = start(&net).await.expect("b");
    // Both dial each other at the same time.
    let (ra, rb) = tokio::join!(a.ping(b.contact()), b.ping(a.contact()));
    ra.expect("a pings b");
    rb.expect("b pings a");
    assert_eq!(a.connected_peers(), 1);
    assert_eq!(b.connected_peers(), 1);
    // The duplicate (if any) closes once idle; exactly one connection remains.
    assert!(
        wait_for(Duration::from_secs(10), || a.open_connections() == 1
            && b.open_connections() == 1)
        .await,
        "open connections: a {}, b {}",
        a.open_connections(),
        b.open_connections()
    );
    // And it works both ways.
    a.ping(b.contact()).await.expect("a pings b again");
    b.ping(a.contact()).await.expect("b pings a again");
    assert_eq!((a.open_connections(), b.open_connections()), (1, 1));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn other_network_id_and_wrong_expected_id_are_refused() {
    let a = Node::start(config(&[])).await.expect("a");
    let other_net = Node::start(NodeConfig {
        network_id: DEFAULT_NETWORK_ID + 1,
        ..config(&[peer_of(&a)])
    })
    .await
    .expect("b starts even if it cannot join");
    assert_eq!(other_net.routing_table_len(), 0);
    assert_eq!(a.routing_table_len(), 0);

    let wrong_id = Node::start(config(&[BootstrapPeer {
        id: Some(Key::sha256(b"not a's id")),
        address: a.listen_addr().to_string(),
    }]))
    .await
    .expect("c starts");
    assert_eq!(wrong_id.routing_table_len(), 0);

    let right_id = Node::start(config(&[BootstrapPeer {
        id: Some(a.id()),
        address: a.listen_addr().to_string(),
    }]))
    .await
    .expect("d starts");
    assert!(right_id.routing_contacts().iter().any(|c| c.id == a.id()));
    for n in [&a, &other_net, &wrong_id, &right_id] {
        n.shutdown().await;
    }
}

#[tokio::test]
async fn garbage_closes_only_that_connection() {
    let a = Node::start(config(&[])).await.expect("a");
    // Garbage instead of a TLS handshake: the node may answer with a TLS alert, then
    // it closes the connection.
    let mut raw = TcpStream::connect(a.listen_addr()).await.expect("connect");
    raw.write_all(&[0xff; 64]).await.expect("write");
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = [0u8; 256];
        loop {
            match tokio::io::AsyncReadExt::read(&mut raw, &mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "connection not closed");

    // A valid peer that then sends a malformed frame (unknown type 99) is cut off too.
    let (mut peer, _) = RawPeer::connect(a.listen_addr()).await.expect("handshake");
    assert_eq!(
        peer.request(PeerMessage::Ping).await.expect("pong"),
        PeerMessage::Pong
    );
    peer.framed
        .get_mut()
        .write_all(&[0, 0, 0, 10, 99, 0, 0, 0, 0, 0, 0, 0, 0, 1])
        .await
        .expect("write");
    let next = tokio::time::timeout(Duration::from_secs(5), peer.framed.next())
        .await
        .expect("closed in time");
    assert!(next.is_none() || matches!(next, Some(Err(_))));

    // The node still serves everyone else.
    let b = Node::start(config(&[peer_of(&a)])).await.expect("b");
    b.ping(a.contact()).await.expect("a still answers");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn store_never_extends_lifetime_nor_replaces_newer() {
    let a = Node::start(config(&[])).await.expect("a");
    let (mut peer, hello) = RawPeer::connect(a.listen_addr()).await.expect("handshake");
    assert_eq!(hello.node_id, a.id());
    let key = Key::sha256(b"store rules");
    let now = unix_now();

    // An expiry far beyond max_ttl is cut to now + max_ttl.
    let far = now + 10 * 365 * 86_400;
    let stored = peer
        .request(PeerMessage::Store {
            record: record(key, b"v2", far, 200),
        })
        .await
        .expect("store");
    assert_eq!(
        stored,
        PeerMessage::StoreResult {
            status: StoreStatus::Stored
        }
    );
    let PeerMessage::Value { record: held } = peer
        .request(PeerMessage::FindValue { key })
        .await
        .expect("value")
    else {
        panic!("FIND_VALUE did not return the value");
    };
    assert!(
        held.expires_at <= unix_now() + 86_400,
        "expiry was not capped"
    );
    assert_eq!(held.value.as_ref(), b"v2");

    // An older version is refused and the newer one stays.
    let older = peer
        .request(PeerMessage::Store {
            record: record(key, b"v1", now + 600, 100),
        })
        .await
        .expect("store");
    assert_eq!(
        older,
        PeerMessage::StoreResult {
            status: StoreStatus::KeptNewer
        }
    );
    let PeerMessage::Value { record: held } = peer
        .request(PeerMessage::FindValue { key })
        .await
        .expect("value")
    else {
        panic!("FIND_VALUE did not return the value");
    };
    assert_eq!(held.value.as_ref(), b"v2");

    // An already expired record is refused.
    let expired = peer
        .request(PeerMessage::Store {
            record: record(Key::sha256(b"old"), b"x", now.saturating_sub(1), 1),
        })
        .await
        .expect("store");
    assert_eq!(
        expired,
        PeerMessage::StoreResult {
            status: StoreStatus::Expired
        }
    );

    // FIND_NODE answers contacts, never the asker itself.
    let PeerMessage::Nodes { contacts } = peer
        .request(PeerMessage::FindNode { target: key })
        .await
        .expect("nodes")
    else {
        panic!("FIND_NODE not answered with NODES");
    };
    assert!(contacts.iter().all(|c| c.id != hello.node_id));
    a.shutdown().await;
}

#[tokio::test]
async fn a_lonely_node_keeps_its_value_and_hands_it_out_later() {
    let a = Node::start(config(&[])).await.expect("a");
    let key = Key::sha256(b"lonely");
    let report = a
        .put(key, Bytes::from_static(b"kept"), PutOptions::default())
        .await
        .expect("put");
    assert_eq!(report.replicas, 0);
    assert!(report.stored_locally);
    assert_eq!(
        a.get(key).await.expect("get").as_deref(),
        Some(&b"kept"[..])
    );

    let b = Node::start(config(&[peer_of(&a)])).await.expect("b");
    assert_eq!(
        b.get(key).await.expect("get").as_deref(),
        Some(&b"kept"[..])
    );
    assert_eq!(b.get(Key::sha256(b"nothing")).await.expect("get"), None);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn put_clamps_its_hints_and_refuses_bad_values() {
    let a = Node::start(config(&[])).await.expect("a");
    let report = a
        .put(
            Key::sha256(b"k"),
            Bytes::from_static(b"v"),
            PutOptions {
                ttl: Duration::from_secs(1),
                replication: 0,
            },
        )
        .await
        .expect("put");
    assert_eq!(report.ttl, Duration::from_secs(60));
    assert_eq!(report.replication, 3);
    assert!(
        a.put(Key::sha256(b"k"), Bytes::new(), PutOptions::default())
            .await
            .is_err()
    );
    let too_big = Bytes::from(vec![1u8; dht_wire::MAX_VALUE_LEN + 1]);
    assert!(
        a.put(Key::sha256(b"k"), too_big, PutOptions::default())
            .await
            .is_err()
    );
    a.shutdown().await;
}

#[tokio::test]
async fn shutdown_finishes_puts_in_flight() {
    let a = Arc::new(Node::start(config(&[])).await.expect("a"));
    let mut others = Vec::new();
    for _ in 0..4 {
        others.push(Node::start(config(&[peer_of(&a)])).await.expect("peer"));
    }
    let key = Key::sha256(b"in flight");
    let put = tokio::spawn({
        let a = a.clone();
        async move {
            a.put(
                key,
                Bytes::from_static(b"v"),
                PutOptions {
                    ttl: Duration::from_secs(600),
                    replication: 3,
                },
            )
            .await
        }
    });
    // Once the PUT is under way (stored locally), shut the node down.
    assert!(wait_for(Duration::from_secs(5), || a.holds(&key)).await);
    a.shutdown().await;
    let report = put.await.expect("join").expect("the PUT completed");
    assert_eq!(report.replicas, 3);
    assert_eq!(others.iter().filter(|n| n.holds(&key)).count(), 3);
    for n in &others {
        n.shutdown().await;
    }
}

#[tokio::test]
async fn a_peer_that_never_reads_cannot_block_shutdown() {
    let a = Node::start(config(&[])).await.expect("a");
    let key = Key::sha256(b"big");
    a.put(
        key,
        Bytes::from(vec![7u8; 60_000]),
        PutOptions {
            ttl: Duration::from_secs(600),
            replication: 3,
        },
    )
    .await
    .expect("put");
    let (mut peer, _) = RawPeer::connect(a.listen_addr()).await.expect("handshake");
    // 600 requests whose answers (36 MB) fill every buffer; the peer reads none.
    for id in 1..=600 {
        peer.framed
            .feed(PeerFrame::request(id, PeerMessage::FindValue { key }))
            .await
            .expect("queue request");
    }
    SinkExt::<PeerFrame>::flush(&mut peer.framed)
        .await
        .expect("send requests");
    tokio::time::timeout(Duration::from_secs(15), a.shutdown())
        .await
        .expect("shutdown finished although the peer does not read");
    drop(peer);
}

#[tokio::test]
async fn at_max_connections_the_least_recently_used_idle_one_makes_room() {
    let a = Node::start(NodeConfig {
        max_connections: 2,
        ..config(&[])
    })
    .await
    .expect("a");
    let mut others = Vec::new();
    for _ in 0..4 {
        others.push(Node::start(config(&[])).await.expect("peer"));
    }
    for other in &others {
        a.ping(other.contact())
            .await
            .expect("a reaches every peer, closing idle connections as needed");
        assert!(a.open_connections() <= 2, "{} open", a.open_connections());
    }
    a.shutdown().await;
    for other in &others {
        other.shutdown().await;
    }
}

#[tokio::test]
async fn one_peer_cannot_fill_a_nearly_full_store() {
    let a = Node::start(NodeConfig {
        store_limits: dht_core::StoreLimits {
            max_records: 200,
            ..dht_core::StoreLimits::default()
        },
        ..config(&[])
    })
    .await
    .expect("a");
    let expires = unix_now() + 600;
    let (mut flooder, _) = RawPeer::connect(a.listen_addr()).await.expect("flooder");
    let mut stored = 0;
    let mut refused = 0;
    for i in 0u32..300 {
        let key = Key::sha256(format!("flood/{i}").as_bytes());
        match flooder
            .request(PeerMessage::Store {
                record: record(key, b"x", expires, 1),
            })
            .await
            .expect("answer")
        {
            PeerMessage::StoreResult {
                status: StoreStatus::Stored,
            } => stored += 1,
            PeerMessage::StoreResult {
                status: StoreStatus::Refused,
            } => refused += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    // The flooder fills the store up to the pressure point (80 %), then is capped.
    assert!(stored <= 160, "the flooder stored {stored}");
    assert!(refused >= 140, "only {refused} refused");
    assert!(a.stats().stores_refused_quota >= 140);
    // Replication from a peer among a key's closest nodes is accounted apart: the quota
    // does not refuse it.
    let replica = Key::sha256(b"flood/replica");
    assert_eq!(
        flooder
            .request(PeerMessage::Replicate {
                record: record(replica, b"r", expires, 1),
            })
            .await
            .expect("answer"),
        PeerMessage::StoreResult {
            status: StoreStatus::Stored
        }
    );
    // An honest peer still stores, and so does a PUT through this node.
    let (mut honest, _) = RawPeer::connect(a.listen_addr()).await.expect("honest");
    for i in 0u32..20 {
        let key = Key::sha256(format!("honest/{i}").as_bytes());
        assert_eq!(
            honest
                .request(PeerMessage::Store {
                    record: record(key, b"y", expires, 1),
                })
                .await
                .expect("answer"),
            PeerMessage::StoreResult {
                status: StoreStatus::Stored
            }
        );
    }
    let report = a
        .put(
            Key::sha256(b"local"),
            Bytes::from_static(b"z"),
            PutOptions::default(),
        )
        .await
        .expect("put");
    assert!(report.stored_locally);
    a.shutdown().await;
}

#[tokio::test]
async fn one_network_group_gets_a_limited_share_of_the_routing_table() {
    // With the local exemption off, 127.0.0.0/24 is one group like any public /24.
    let a = Node::start(NodeConfig {
        limit_local_addresses: true,
        ..config(&[])
    })
    .await
    .expect("a");
    let mut peers = Vec::new();
    for _ in 0..14 {
        peers.push(RawPeer::connect(a.listen_addr()).await.expect("peer").0);
    }
    let (per_bucket, per_table) = a.config().diversity;
    let contacts = a.routing_contacts();
    assert!(
        contacts.len() <= per_table,
        "{} contacts of one /24",
        contacts.len()
    );
    assert!(contacts.len() >= per_bucket.min(14));
    // With the exemption (the default), local peers are not limited.
    let b = Node::start(config(&[])).await.expect("b");
    for _ in 0..14 {
        peers.push(RawPeer::connect(b.listen_addr()).await.expect("peer").0);
    }
    assert_eq!(b.routing_table_len(), 14);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_version_from_the_future_is_refused() {
    let a = Node::start(config(&[])).await.expect("a");
    let (mut peer, _) = RawPeer::connect(a.listen_addr()).await.expect("peer");
    let key = Key::sha256(b"pinned");
    let answer = peer
        .request(PeerMessage::Store {
            record: record(key, b"forever", unix_now() + 600, u64::MAX),
        })
        .await
        .expect("answer");
    assert_eq!(
        answer,
        PeerMessage::StoreResult {
            status: StoreStatus::Refused
        }
    );
    assert!(!a.holds(&key));
    // A PUT of the key is then stored normally.
    let report = a
        .put(key, Bytes::from_static(b"mine"), PutOptions::default())
        .await
        .expect("put");
    assert!(report.stored_locally);
    a.shutdown().await;
}

#[tokio::test]
async fn an_advertised_ip_is_not_believed() {
    let a = Node::start(config(&[])).await.expect("a");
    let identity = dht_tests::raw_peer::PeerIdentity::new().expect("identity");
    let mut hello = identity.hello();
    hello.listen_addr = "10.9.8.7:4567".parse().expect("literal");
    let id = identity.id;
    let (_peer, _) = RawPeer::connect_as(a.listen_addr(), identity, hello)
        .await
        .expect("handshake");
    let contact = a
        .routing_contacts()
        .into_iter()
        .find(|c| c.id == id)
        .expect("in the table");
    assert_eq!(
        contact.addr,
        "127.0.0.1:4567".parse().expect("literal"),
        "the seen IP with the advertised port"
    );
    a.shutdown().await;
}

#[tokio::test]
async fn bare_tcp_connects_cannot_evict_authenticated_peers() {
    let a = Node::start(NodeConfig {
        max_connections: 4,
        ..config(&[])
    })
    .await
    .expect("a");
    let mut peers = Vec::new();
    for _ in 0..4 {
        peers.push(RawPeer::connect(a.listen_addr()).await.expect("peer").0);
    }
    assert_eq!(a.stats().open_connections, 4);
    // Connections that never start TLS take places of the handshake reserve only.
    let mut bare = Vec::new();
    for _ in 0..20 {
        bare.push(TcpStream::connect(a.listen_addr()).await.expect("connect"));
    }
    for peer in &mut peers {
        assert_eq!(
            peer.request(PeerMessage::Ping)
                .await
                .expect("still connected"),
            PeerMessage::Pong
        );
    }
    assert_eq!(a.stats().connections_evicted, 0);
    // A newcomer that proves itself does get a place, closing the idlest peer.
    let (mut newcomer, _) = RawPeer::connect(a.listen_addr()).await.expect("newcomer");
    assert_eq!(
        newcomer.request(PeerMessage::Ping).await.expect("served"),
        PeerMessage::Pong
    );
    assert_eq!(a.stats().connections_evicted, 1);
    drop(bare);
    a.shutdown().await;
}

#[tokio::test]
async fn a_restarted_node_comes_back_with_its_records() {
    let dir = std::env::temp_dir().join(format!("dht-restart-{}", rand::random::<u64>()));
    let durable = durable_config(&dir, &[]);
    let a = Node::start(durable.clone()).await.expect("a");
    let id = a.id();
    let keys: Vec<Key> = (0..5)
        .map(|i| Key::sha256(format!("restart/{i}").as_bytes()))
        .collect();
    for key in &keys {
        let report = a
            .put(
                *key,
                Bytes::from_static(b"kept on disk"),
                PutOptions::default(),
            )
            .await
            .expect("put");
        assert!(report.stored_locally);
    }
    // A record acknowledged to a peer is on disk when the answer leaves.
    let (mut peer, _) = RawPeer::connect(a.listen_addr()).await.expect("peer");
    let acked = Key::sha256(b"restart/acked");
    assert_eq!(
        peer.request(PeerMessage::Store {
            record: record(acked, b"acked", unix_now() + 600, 7),
        })
        .await
        .expect("answer"),
        PeerMessage::StoreResult {
            status: StoreStatus::Stored
        }
    );
    drop(peer);
    a.shutdown().await;

    let again = Node::start(durable).await.expect("restarted");
    assert_eq!(
        again.id(),
        id,
        "the same key and proof of work give the same id"
    );
    for key in keys.iter().chain(std::iter::once(&acked)) {
        assert!(again.holds(key), "record {key:?} lost across the restart");
    }
    assert_eq!(
        again.get(acked).await.expect("get").as_deref(),
        Some(&b"acked"[..])
    );
    again.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_restarted_node_rejoins_through_its_saved_contacts() {
    let dir = std::env::temp_dir().join(format!("dht-rejoin-{}", rand::random::<u64>()));
    let bootstrap = Node::start(config(&[])).await.expect("bootstrap");
    let others: Vec<Node> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(
                Node::start(config(&[peer_of(&bootstrap)]))
                    .await
                    .expect("peer"),
            );
        }
        v
    };
    let durable = durable_config(&dir, &[peer_of(&bootstrap)]);
    let b = Node::start(durable.clone()).await.expect("b");
    assert!(b.routing_table_len() >= 3);
    b.shutdown().await;
    // The bootstrap node goes away: only the saved contacts can bring b back.
    bootstrap.shutdown().await;
    let again = Node::start(durable).await.expect("restarted");
    let known = again.routing_contacts();
    assert!(
        others.iter().any(|o| known.iter().any(|c| c.id == o.id())),
        "the restarted node found none of its old neighbours"
    );
    again.shutdown().await;
    for o in &others {
        o.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_expired_record_is_never_served_even_after_a_restart() {
    let dir = std::env::temp_dir().join(format!("dht-expiry-{}", rand::random::<u64>()));
    let durable = durable_config(&dir, &[]);
    let a = Node::start(durable.clone()).await.expect("a");
    let (mut peer, _) = RawPeer::connect(a.listen_addr()).await.expect("peer");
    let key = Key::sha256(b"short-lived");
    let expires_at = unix_now() + 2;
    assert_eq!(
        peer.request(PeerMessage::Store {
            record: record(key, b"soon gone", expires_at, 1),
        })
        .await
        .expect("answer"),
        PeerMessage::StoreResult {
            status: StoreStatus::Stored
        }
    );
    // Served before its expiry...
    assert!(matches!(
        peer.request(PeerMessage::FindValue { key })
            .await
            .expect("answer"),
        PeerMessage::Value { .. }
    ));
    assert_eq!(
        a.get(key).await.expect("get").as_deref(),
        Some(&b"soon gone"[..])
    );
    // ...never after it (poll the clock, not a fixed sleep).
    assert!(wait_for(Duration::from_secs(10), || unix_now() >= expires_at).await);
    assert!(matches!(
        peer.request(PeerMessage::FindValue { key })
            .await
            .expect("answer"),
        PeerMessage::Nodes { .. }
    ));
    assert!(!a.holds(&key));
    drop(peer);
    a.shutdown().await;
    // Nor after a restart.
    let again = Node::start(durable).await.expect("restarted");
    assert!(!again.holds(&key));
    assert_eq!(again.get(key).await.expect("get"), None);
    again.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_database_damaged_beyond_opening_is_moved_aside() {
    let dir = std::env::temp_dir().join(format!("dht-damaged-{}", rand::random::<u64>()));
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("dir");
    std::fs::write(
        data.join(dht_storage::durable::FILE_NAME),
        vec![0x5a; 10_000],
    )
    .expect("garbage database");
    let a = Node::start(durable_config(&dir, &[]))
        .await
        .expect("the node starts anyway");
    assert_eq!(a.stored_records(), 0);
    let kept: Vec<_> = std::fs::read_dir(&data)
        .expect("data dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("broken"))
        .collect();
    assert_eq!(kept.len(), 1, "the damaged file is kept for inspection");
    let report = a
        .put(
            Key::sha256(b"after"),
            Bytes::from_static(b"works"),
            PutOptions::default(),
        )
        .await
        .expect("put");
    assert!(report.stored_locally);
    a.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
