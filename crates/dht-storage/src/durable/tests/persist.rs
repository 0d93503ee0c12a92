//! Persistence: records, origins and accounting across reopen, group commit, limits and
//! quotas after reopen, removals and purges on disk, rollback of a failed batch.

use bytes::Bytes;

use super::*;
use crate::quota::QuotaLimits;

#[test]
fn records_survive_reopen_and_expired_ones_are_purged_at_open() {
    let dir = TempDir::new("reopen");
    let (mut store, report) = open_default(&dir);
    assert_eq!(report, OpenReport::default());
    let a = rec(1, 1, b"alpha", NOW + 100);
    let b = rec(2, 1, b"beta", NOW + 5);
    let c = rec(3, 1, b"gamma", NOW + 100);
    assert_eq!(store.put(a.clone(), NOW), Ok(PutOutcome::Inserted));
    assert_eq!(
        store.put_from(b.clone(), NOW, Origin::Peer(node(7))),
        Ok(PutOutcome::Inserted)
    );
    assert_eq!(
        store.put_from(c.clone(), NOW, Origin::Replication(node(8))),
        Ok(PutOutcome::Inserted)
    );
    let before = snapshot(&store);
    drop(store);

    // Without `now`: everything comes back, origins and accounting included.
    let (store, report) = DurableStore::open(dir.path(), skey(1), StoreLimits::default()).unwrap();
    assert_eq!(report.records, 3);
    assert_eq!(report.expired_purged, 0);
    assert_eq!(snapshot(&store), before);
    assert_eq!(store.usage_of(&node(7)), (1, b.footprint()));
    assert_eq!(store.bytes(), a.footprint() + b.footprint() + c.footprint());
    drop(store);

    // At a later `now`: the expired record is purged from the file too.
    let later = NOW + 5;
    let (store, report) =
        DurableStore::open_at(dir.path(), skey(1), StoreLimits::default(), later).unwrap();
    assert_eq!((report.records, report.expired_purged), (2, 1));
    assert_eq!(store.get(&key(1), later), Ok(Some(a)));
    assert_eq!(store.get(&key(2), later), Ok(None));
    assert_eq!(store.get(&key(3), later), Ok(Some(c)));
    assert_eq!(store.usage_of(&node(7)), (0, 0));
    drop(store);
    assert_eq!(entries_on_disk(&dir), 2);
}

#[test]
fn put_many_applies_every_put_in_one_commit() {
    let dir = TempDir::new("batch");
    let (mut store, _) = open_default(&dir);
    let results = store.put_many(
        vec![
            (rec(1, 1, b"one", NOW + 10), Origin::Local),
            (rec(2, 1, b"two", NOW + 10), Origin::Peer(node(1))),
            (rec(3, 1, b"", NOW + 10), Origin::Local),
            (rec(1, 2, b"one v2", NOW + 10), Origin::Peer(node(2))),
            (rec(1, 1, b"one", NOW + 10), Origin::Local),
            (rec(2, 1, b"two", NOW + 10), Origin::Local),
            (rec(4, 1, b"four", NOW), Origin::Local),
        ],
        NOW,
    );
    assert_eq!(
        results,
        vec![
            Ok(PutOutcome::Inserted),
            Ok(PutOutcome::Inserted),
            Err(StoreError::EmptyValue),
            Ok(PutOutcome::Replaced),
            Ok(PutOutcome::KeptNewer),
            Ok(PutOutcome::Unchanged),
            Err(StoreError::Expired),
        ]
    );
    assert!(store.put_many(Vec::new(), NOW).is_empty());
    let before = snapshot(&store);
    drop(store);
    let (store, report) = open_default(&dir);
    assert_eq!(report.records, 2);
    assert_eq!(snapshot(&store), before);
    assert_eq!(
        store.get(&key(1), NOW).unwrap().map(|r| r.value),
        Some(Bytes::from_static(b"one v2"))
    );
    // The unchanged record kept its origin.
    assert_eq!(
        store.usage_of(&node(1)),
        (1, rec(2, 1, b"two", 0).footprint())
    );
}

#[test]
fn hard_limits_hold_after_reopen_and_on_disk() {
    let dir = TempDir::new("limits");
    let limits = StoreLimits {
        max_records: 3,
        ..StoreLimits::default()
    };
    let (mut store, _) = open(&dir, limits.clone());
    for k in 1..=3 {
        store.put(rec(k, 1, b"v", NOW + 10), NOW).unwrap();
    }
    assert!(matches!(
        store.put(rec(4, 1, b"v", NOW + 10), NOW),
        Err(StoreError::Full { records: 3, .. })
    ));
    drop(store);
    let (mut store, _) = open(&dir, limits.clone());
    assert!(matches!(
        store.put(rec(4, 1, b"v", NOW + 10), NOW),
        Err(StoreError::Full { records: 3, .. })
    ));
    drop(store);
    assert_eq!(entries_on_disk(&dir), 3);
}

#[test]
fn a_put_that_purges_to_make_room_purges_on_disk_too() {
    let dir = TempDir::new("purge-room");
    let limits = StoreLimits {
        max_records: 3,
        ..StoreLimits::default()
    };
    let (mut store, _) = open(&dir, limits.clone());
    store.put(rec(1, 1, b"a", NOW + 1), NOW).unwrap();
    store.put(rec(2, 1, b"b", NOW + 1), NOW).unwrap();
    store.put(rec(3, 1, b"c", NOW + 10), NOW).unwrap();
    let later = NOW + 1;
    assert_eq!(
        store.put(rec(4, 1, b"d", later + 10), later),
        Ok(PutOutcome::Inserted)
    );
    assert_eq!(store.len(), 2);
    drop(store);
    assert_eq!(entries_on_disk(&dir), 2);
    let (store, report) = DurableStore::open(dir.path(), skey(1), limits).unwrap();
    assert_eq!(report.records, 2);
    assert!(
        store
            .held()
            .all(|(r, _)| r.key != key(1) && r.key != key(2))
    );
}

#[test]
fn quotas_hold_after_reopen() {
    let dir = TempDir::new("quota");
    // 10 records: pressure above 5, a peer's share is 2.
    let limits = StoreLimits {
        max_records: 10,
        quota: QuotaLimits {
            pressure: 0.5,
            peer_share: 0.2,
            floor_records: 2,
            replication_share: 0.5,
        },
        ..StoreLimits::default()
    };
    let (mut store, _) = open(&dir, limits.clone());
    for k in 1..=4 {
        store.put(rec(k, 1, b"local", NOW + 10), NOW).unwrap();
    }
    let peer = Origin::Peer(node(9));
    for k in 5..=6 {
        assert_eq!(
            store.put_from(rec(k, 1, b"p", NOW + 10), NOW, peer),
            Ok(PutOutcome::Inserted)
        );
    }
    let refused = store.put_from(rec(7, 1, b"p", NOW + 10), NOW, peer);
    assert!(matches!(
        refused,
        Err(StoreError::QuotaExceeded { records: 2, .. })
    ));
    drop(store);
    let (mut store, _) = open(&dir, limits);
    assert_eq!(store.usage_of(&node(9)).0, 2);
    assert_eq!(
        store.put_from(rec(7, 1, b"p", NOW + 10), NOW, peer),
        refused
    );
    // Replication is never refused by the quota.
    assert_eq!(
        store.put_from(rec(7, 1, b"p", NOW + 10), NOW, Origin::Replication(node(9))),
        Ok(PutOutcome::Inserted)
    );
}

#[test]
fn lowered_limits_drop_the_records_that_expire_first() {
    let dir = TempDir::new("lowered");
    let (mut store, _) = open_default(&dir);
    for k in 1..=5 {
        store
            .put(rec(k, 1, b"vv", NOW + u64::from(k)), NOW)
            .unwrap();
    }
    store.put(rec(6, 1, b"long value", NOW + 100), NOW).unwrap();
    drop(store);
    let lowered = StoreLimits {
        max_records: 3,
        max_value_len: 5,
        ..StoreLimits::default()
    };
    let (store, report) = open(&dir, lowered);
    assert_eq!(report.dropped_over_limits, 3);
    assert_eq!(report.records, 3);
    let mut kept: Vec<Key> = store.held().map(|(r, _)| r.key).collect();
    kept.sort();
    let mut expected = vec![key(3), key(4), key(5)];
    expected.sort();
    assert_eq!(kept, expected);
    drop(store);
    assert_eq!(entries_on_disk(&dir), 3);
}

#[test]
fn derived_keys_reopen_the_same_store() {
    let dir = TempDir::new("derived");
    let limits = StoreLimits::default();
    let (mut store, _) =
        DurableStore::open(dir.path(), StorageKey::derive(b"pkcs8"), limits.clone()).unwrap();
    store.put(rec(1, 1, b"v", NOW + 10), NOW).unwrap();
    drop(store);
    let (store, report) =
        DurableStore::open(dir.path(), StorageKey::derive(b"pkcs8"), limits).unwrap();
    assert_eq!((report.records, report.corrupt_skipped), (1, 0));
    assert!(store.get(&key(1), NOW).unwrap().is_some());
}

#[test]
fn remove_and_purge_are_durable() {
    let dir = TempDir::new("remove");
    let (mut store, _) = open_default(&dir);
    store.put(rec(1, 1, b"a", NOW + 100), NOW).unwrap();
    store.put(rec(2, 1, b"b", NOW + 2), NOW).unwrap();
    store.put(rec(3, 1, b"c", NOW + 3), NOW).unwrap();
    assert_eq!(store.remove(&key(1)), Ok(Some(rec(1, 1, b"a", NOW + 100))));
    assert_eq!(store.remove(&key(1)), Ok(None));
    assert_eq!(store.purge_expired(NOW + 2), Ok(1));
    assert_eq!(store.purge_expired(NOW + 2), Ok(0));
    drop(store);
    let (store, report) = DurableStore::open(dir.path(), skey(1), StoreLimits::default()).unwrap();
    assert_eq!(report.records, 1);
    assert_eq!(snapshot(&store)[0].0, rec(3, 1, b"c", NOW + 3));
    drop(store);
    assert_eq!(entries_on_disk(&dir), 1);
}

#[test]
fn undo_restores_the_state_before_a_failed_batch() {
    let dir = TempDir::new("undo");
    let limits = StoreLimits {
        max_records: 3,
        ..StoreLimits::default()
    };
    let (mut store, _) = open(&dir, limits);
    store.put(rec(1, 1, b"a", NOW + 1), NOW).unwrap();
    store.put(rec(2, 1, b"b", NOW + 1), NOW).unwrap();
    store
        .put_from(rec(3, 1, b"c", NOW + 100), NOW, Origin::Peer(node(1)))
        .unwrap();
    let before = (snapshot(&store), store.bytes(), store.usage_of(&node(1)));
    // As put_many would: a replacement by another origin, then a put that purges the two
    // expired records to make room, then a put of one of the purged keys.
    let later = NOW + 1;
    let puts = [
        (rec(3, 2, b"cc", NOW + 100), Origin::Local),
        (rec(4, 1, b"d", NOW + 100), Origin::Peer(node(2))),
        (rec(1, 2, b"a2", NOW + 100), Origin::Local),
    ];
    let mut undo = Vec::new();
    for (record, origin) in puts {
        let k = record.key;
        let change = store.cache.put_traced(record, later, origin).unwrap();
        assert!(change.stored());
        undo.push((k, change));
    }
    assert_eq!(undo[1].1.purged.len(), 2);
    assert_ne!(snapshot(&store), before.0);
    store.undo(undo);
    assert_eq!(
        (snapshot(&store), store.bytes(), store.usage_of(&node(1))),
        before
    );
    assert_eq!(store.usage_of(&node(2)), (0, 0));
}

#[test]
fn boxed_store_is_object_safe_and_debug_shows_no_values() {
    let dir = TempDir::new("boxed");
    let (store, _) = open_default(&dir);
    let mut store: Box<dyn RecordStore> = Box::new(store);
    store.put(rec(1, 1, b"secret", NOW + 1), NOW).unwrap();
    assert_eq!(store.len(), 1);
    drop(store);
    let (store, _) = open_default(&dir);
    let shown = format!("{store:?}");
    assert!(!shown.contains("secret"), "{shown}");
    assert!(shown.contains("records: 1"), "{shown}");
}

#[test]
fn commits_can_wait_for_the_os_only_and_the_syncer_runs_beside_the_store() {
    let dir = TempDir::new("nosync");
    let (mut store, _) = open_default(&dir);
    let synchronous = |store: &DurableStore| -> i64 {
        store
            .db()
            .query_row("PRAGMA synchronous", [], |row| row.get(0))
            .unwrap()
    };
    // SQLite's numbers: NORMAL is 1, FULL is 2.
    assert_eq!(
        synchronous(&store),
        2,
        "every commit waits for the disk by default"
    );
    store.set_sync_every_commit(false).unwrap();
    assert_eq!(synchronous(&store), 1);
    let syncer = store.syncer().expect("a durable store has one");
    for k in 0..10 {
        store.put(rec(k, 1, b"v", NOW + 100), NOW).unwrap();
    }
    let mut log = dir.file().into_os_string();
    log.push("-wal");
    let log = std::path::PathBuf::from(log);
    assert!(
        log.exists(),
        "the syncer's file is the log the commits went to"
    );
    // From another thread, while the store is in use here.
    let syncing = std::thread::spawn({
        let syncer = syncer.clone();
        move || syncer()
    });
    store.put(rec(10, 1, b"v", NOW + 100), NOW).unwrap();
    syncing.join().unwrap().unwrap();
    syncer().unwrap();
    drop(store);
    let (store, report) = open_default(&dir);
    assert_eq!(report.records, 11);
    assert_eq!(store.len(), 11);
    drop(store);
    assert!(
        !log.exists(),
        "SQLite removes the log when it closes the database"
    );
    // No log: nothing to sync, no error.
    syncer().unwrap();
}

#[test]
fn a_staged_batch_is_read_before_its_commit_and_withdrawn_if_it_fails() {
    let dir = TempDir::new("staged");
    let (mut store, _) = open_default(&dir);
    store.put(rec(1, 1, b"old", NOW + 100), NOW).unwrap();
    let (results, staged) = store.stage_many(
        vec![
            (rec(1, 2, b"new", NOW + 100), Origin::Local),
            (rec(2, 1, b"two", NOW + 100), Origin::Local),
        ],
        NOW,
    );
    assert_eq!(
        results,
        vec![Ok(PutOutcome::Replaced), Ok(PutOutcome::Inserted)]
    );
    let mut staged = staged.expect("a batch that changed something has a disk half");
    // Readers see the batch while its disk half is pending, and the disk half needs
    // nothing of the store: it commits while the store is borrowed for reading.
    let held = store.get(&key(1), NOW).unwrap();
    staged.commit().unwrap();
    assert_eq!(held.map(|r| r.version), Some(2));
    // The disk half shares the database: the file closes once both are gone.
    drop(staged);
    drop(store);
    let (mut store, _) = open_default(&dir);
    assert_eq!(store.get(&key(1), NOW).unwrap().map(|r| r.version), Some(2));
    assert!(store.get(&key(2), NOW).unwrap().is_some());

    // A disk half that fails is handed back: the batch is withdrawn from memory.
    let before = snapshot(&store);
    let (_, staged) = store.stage_many(vec![(rec(3, 1, b"three", NOW + 100), Origin::Local)], NOW);
    assert!(store.get(&key(3), NOW).unwrap().is_some());
    store.unstage(staged.expect("disk half"));
    assert_eq!(snapshot(&store), before);
    // A batch that changes nothing has no disk half.
    let (results, staged) =
        store.stage_many(vec![(rec(1, 2, b"new", NOW + 100), Origin::Local)], NOW);
    assert_eq!(results, vec![Ok(PutOutcome::Unchanged)]);
    assert!(staged.is_none());
}

#[test]
fn a_staged_purge_leaves_memory_now_and_the_disk_without_the_store() {
    let dir = TempDir::new("staged-purge");
    let (mut store, _) = open_default(&dir);
    store.put(rec(1, 1, b"gone", NOW + 10), NOW).unwrap();
    store.put(rec(2, 1, b"kept", NOW + 100), NOW).unwrap();
    let later = NOW + 10;
    // A failed disk half puts the purged records back.
    let (purged, staged) = store.stage_purge(later);
    assert_eq!(purged, 1);
    assert_eq!(store.len(), 1);
    store.unstage(staged.expect("disk half"));
    assert_eq!(store.len(), 2);
    // Committed: gone from memory at once, and from the file.
    let (purged, staged) = store.stage_purge(later);
    assert_eq!((purged, store.len()), (1, 1));
    let mut staged = staged.expect("disk half");
    staged.commit().unwrap();
    drop(staged);
    drop(store);
    assert_eq!(entries_on_disk(&dir), 1);
    // Nothing expired: nothing to do.
    let (mut store, _) = DurableStore::open(dir.path(), skey(1), StoreLimits::default()).unwrap();
    let (purged, staged) = store.stage_purge(NOW);
    assert_eq!(purged, 0);
    assert!(staged.is_none());
}

#[test]
fn contacts_are_saved_without_the_store_while_it_serves() {
    let dir = TempDir::new("contacts-saver");
    let (mut store, _) = open_default(&dir);
    store.put(rec(1, 1, b"v", NOW + 100), NOW).unwrap();
    let save = store
        .contacts_saver()
        .expect("a durable store saves contacts");
    // The saver runs on another thread while this one reads the store (no `&mut`, no
    // lock of the store: the node's GETs never wait for the contacts' commit).
    std::thread::scope(|s| {
        let saving = s.spawn(|| save(b"id@127.0.0.1:1"));
        for _ in 0..100 {
            assert!(store.get(&key(1), NOW).unwrap().is_some());
        }
        saving.join().expect("saver thread").expect("saved");
    });
    drop((save, store));
    let (store, _) = open_default(&dir);
    assert_eq!(
        store.load_contacts().unwrap().as_deref(),
        Some(&b"id@127.0.0.1:1"[..])
    );
}
