//! STORE and PUT rules of one node: lifetimes, versions, hints, the per-peer quota.

use super::*;

#[tokio::test]
async fn store_never_extends_lifetime_nor_replaces_newer() {
    let a = Node::start(config(&[])).await.expect("a");
    let (mut peer, hello) = RawPeer::connect(a.listen_addr()).await.expect("handshake");
    assert_eq!(hello.node_id, a.id());
    let key = Key::sha256(b"store rules");

    // A lifetime far beyond max_ttl is cut to max_ttl.
    let far = 10 * 365 * 86_400;
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
    assert!(held.lifetime <= 86_400, "the lifetime was not capped");
    assert_eq!(held.value.as_ref(), b"v2");

    // An older version is refused and the newer one stays.
    let older = peer
        .request(PeerMessage::Store {
            record: record(key, b"v1", 600, 100),
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
            record: record(Key::sha256(b"old"), b"x", 0, 1),
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

/// The attack of issue 18 (2): a peer STOREs a copy of a record it read, same version and
/// value, with a far expiry, again and again, to keep it alive for ever.
#[tokio::test]
async fn a_peer_cannot_push_back_the_expiry_of_a_record_it_did_not_write() {
    let a = Node::start(config(&[])).await.expect("a");
    let key = Key::sha256(b"short-lived");
    a.put(
        key,
        Bytes::from_static(b"v"),
        PutOptions {
            ttl: Duration::from_secs(60),
            replication: 3,
        },
    )
    .await
    .expect("put");
    let (mut peer, _) = RawPeer::connect(a.listen_addr()).await.expect("handshake");
    let read = |answer: PeerMessage| match answer {
        PeerMessage::Value { record } => record,
        other => panic!("FIND_VALUE answered {other:?}"),
    };
    let held = read(
        peer.request(PeerMessage::FindValue { key })
            .await
            .expect("value"),
    );
    let written_lifetime = held.lifetime;
    assert!(written_lifetime <= 60);
    for _ in 0..3 {
        let answer = peer
            .request(PeerMessage::Store {
                record: WireRecord {
                    lifetime: 1 << 63,
                    ..held.clone()
                },
            })
            .await
            .expect("store");
        assert_eq!(
            answer,
            PeerMessage::StoreResult {
                status: StoreStatus::KeptNewer
            }
        );
        let now_held = read(
            peer.request(PeerMessage::FindValue { key })
                .await
                .expect("value"),
        );
        assert!(
            now_held.lifetime <= written_lifetime,
            "the expiry was pushed back: {} s left, {written_lifetime} s written",
            now_held.lifetime
        );
    }
    // The writer itself renews with a new version.
    a.put(
        key,
        Bytes::from_static(b"v"),
        PutOptions {
            ttl: Duration::from_secs(600),
            replication: 3,
        },
    )
    .await
    .expect("renew");
    let renewed = read(
        peer.request(PeerMessage::FindValue { key })
            .await
            .expect("value"),
    );
    assert!(renewed.lifetime > written_lifetime + 500);
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
    let expires = 600;
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
async fn a_version_from_the_future_is_refused() {
    let a = Node::start(config(&[])).await.expect("a");
    let (mut peer, _) = RawPeer::connect(a.listen_addr()).await.expect("peer");
    let key = Key::sha256(b"pinned");
    let answer = peer
        .request(PeerMessage::Store {
            record: record(key, b"forever", 600, u64::MAX),
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
