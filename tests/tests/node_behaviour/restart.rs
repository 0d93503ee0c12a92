//! A node restarted over its durable store and saved contacts, and a damaged store.

use super::*;

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
            record: record(acked, b"acked", 600, 7),
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
    // Two seconds to live, counted from when the node receives it: by the test's clock
    // it expires by now + 3 at the latest (the second may turn in between).
    let expires_at = unix_now() + 3;
    assert_eq!(
        peer.request(PeerMessage::Store {
            record: record(key, b"soon gone", 2, 1),
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

#[tokio::test]
async fn a_durable_store_without_key_material_is_refused_with_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("dht-nokey-{}", rand::random::<u64>()));
    let config = NodeConfig {
        hostkey: None,
        ..durable_config(&dir, &[])
    };
    let err = match Node::start(config).await {
        Ok(_) => panic!("a durable store whose key would change at every start"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("storage.storage_key"), "{err}");
    assert!(err.contains("hostkey"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Earlier versions derived the storage key from the host key's PEM text, not its DER
/// as docs/STORAGE.md says: their stores are re-sealed at the first open, not lost.
#[tokio::test]
async fn a_store_sealed_under_the_pem_derived_key_is_resealed_and_kept() {
    let dir = std::env::temp_dir().join(format!("dht-rekey-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).expect("dir");
    let host = dht_security::HostKey::generate().expect("key");
    std::fs::write(dir.join("hostkey.pem"), host.to_pem()).expect("hostkey");
    let key = Key::sha256(b"sealed by an earlier version");
    {
        let former = dht_storage::StorageKey::derive(host.to_pem().as_bytes());
        let (mut store, _) = dht_storage::DurableStore::open_at(
            &dir.join("data"),
            former,
            dht_core::StoreLimits::default(),
            unix_now(),
        )
        .expect("store");
        let record = dht_core::Record {
            key,
            value: Bytes::from_static(b"old"),
            expires_at: unix_now() + 600,
            replication: 3,
            version: 1,
        };
        dht_storage::RecordStore::put(&mut store, record, unix_now()).expect("put");
    }
    let a = Node::start(durable_config(&dir, &[])).await.expect("a");
    assert!(a.holds(&key), "the earlier store was not kept");
    assert_eq!(a.get(key).await.expect("get").as_deref(), Some(&b"old"[..]));
    a.shutdown().await;
    // Re-sealed: it now opens under the DER-derived key alone.
    let (store, report) = dht_storage::DurableStore::open_at(
        &dir.join("data"),
        dht_core::storage_key_of(&host),
        dht_core::StoreLimits::default(),
        unix_now(),
    )
    .expect("reopen");
    assert_eq!((report.records, report.moved_aside), (1, None));
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}
