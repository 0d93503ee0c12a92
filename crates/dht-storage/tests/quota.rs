//! Per-peer quotas of [`MemoryStore`] through the public API: the cap under pressure, the
//! origins it never refuses, replacements, purges, and the usage accounting against a
//! brute-force recount.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use dht_id::Key;
use dht_storage::{
    MemoryStore, Origin, PutOutcome, QuotaLimits, RECORD_OVERHEAD, Record, RecordStore, StoreError,
    StoreLimits,
};
use proptest::prelude::*;

const NOW: u64 = 1_000;

fn key(n: u16) -> Key {
    let mut bytes = [0; 32];
    bytes[..2].copy_from_slice(&n.to_be_bytes());
    Key::from_bytes(bytes)
}

fn node(n: u8) -> Key {
    Key::from_bytes([n; 32])
}

fn peer(n: u8) -> Origin {
    Origin::Peer(node(n))
}

fn rec(k: u16, version: u64, len: usize, expires_at: u64) -> Record {
    Record {
        key: key(k),
        value: Bytes::from(vec![7; len]),
        expires_at,
        replication: 3,
        version,
    }
}

/// Footprint of a record with a value of `len` bytes.
fn fp(len: usize) -> usize {
    len + 32 + RECORD_OVERHEAD
}

/// 100 records and plenty of bytes: pressure above 80 records, a peer's share is 10.
fn by_count() -> StoreLimits {
    StoreLimits {
        max_records: 100,
        max_bytes: 1 << 30,
        quota: QuotaLimits {
            pressure: 0.8,
            peer_share: 0.1,
            floor_records: 5,
            replication_share: 0.25,
        },
        ..StoreLimits::default()
    }
}

/// `n` records of one byte from `origin`, keys `first..first + n`; all must be inserted.
fn fill(store: &mut MemoryStore, origin: Origin, first: u16, n: u16) {
    for k in first..first + n {
        assert_eq!(
            store.put_from(rec(k, 1, 1, NOW + 100), NOW, origin),
            Ok(PutOutcome::Inserted),
            "key {k}"
        );
    }
}

#[test]
fn without_pressure_one_peer_fills_up_to_the_pressure_point() {
    let mut store = MemoryStore::new(by_count());
    fill(&mut store, peer(1), 0, 80);
    assert_eq!(store.usage_of(&node(1)), (80, 80 * fp(1)));
    // The 81st record would put the store under pressure, and the peer is over its share.
    assert_eq!(
        store.put_from(rec(80, 1, 1, NOW + 100), NOW, peer(1)),
        Err(StoreError::QuotaExceeded {
            records: 80,
            bytes: 80 * fp(1)
        })
    );
    assert_eq!(store.len(), 80);
    assert_eq!(store.get(&key(80), NOW), Ok(None));
}

#[test]
fn under_pressure_a_peer_is_capped_while_others_still_store() {
    let mut store = MemoryStore::new(by_count());
    fill(&mut store, peer(1), 0, 80);
    // Another peer gets its share of 10, not one more.
    fill(&mut store, peer(2), 100, 10);
    assert_eq!(
        store.put_from(rec(110, 1, 1, NOW + 100), NOW, peer(2)),
        Err(StoreError::QuotaExceeded {
            records: 10,
            bytes: 10 * fp(1)
        })
    );
    // A third peer, the node's own API and replication still store.
    fill(&mut store, peer(3), 200, 1);
    fill(&mut store, Origin::Local, 300, 4);
    fill(&mut store, Origin::Replication(node(1)), 400, 5);
    assert_eq!(store.len(), 100);
    // Replication is accounted apart from the peer's STOREs.
    assert_eq!(store.usage_of(&node(1)), (80, 80 * fp(1)));
    assert_eq!(store.usage(&Origin::Replication(node(1))), (5, 5 * fp(1)));
    assert_eq!(store.usage(&Origin::Local), (4, 4 * fp(1)));
    assert_eq!(store.origins(), 5);
    // A full store refuses every origin with Full.
    for origin in [
        Origin::Local,
        Origin::Replication(node(2)),
        peer(4),
        peer(1),
    ] {
        assert_eq!(
            store.put_from(rec(500, 1, 1, NOW + 100), NOW, origin),
            Err(StoreError::Full {
                records: 100,
                bytes: 100 * fp(1)
            })
        );
    }
}

#[test]
fn put_is_a_local_put() {
    let mut store = MemoryStore::new(by_count());
    fill(&mut store, peer(1), 0, 80);
    for k in 80..100 {
        assert_eq!(
            store.put(rec(k, 1, 1, NOW + 100), NOW),
            Ok(PutOutcome::Inserted)
        );
    }
    assert_eq!(store.usage(&Origin::Local), (20, 20 * fp(1)));
    assert!(matches!(
        store.put(rec(100, 1, 1, NOW + 100), NOW),
        Err(StoreError::Full { .. })
    ));
}

#[test]
fn byte_pressure_and_byte_share() {
    // Room for 1 000 records of 1 000 bytes; pressure above half the bytes.
    let limits = StoreLimits {
        max_records: 100_000,
        max_bytes: 1_000 * fp(1_000),
        quota: QuotaLimits {
            pressure: 0.5,
            peer_share: 0.01,
            floor_records: 100,
            replication_share: 0.25,
        },
        ..StoreLimits::default()
    };
    let share = limits.peer_quota().1;
    assert_eq!(share, 10 * fp(1_000));
    let mut store = MemoryStore::new(limits);
    for k in 0..500 {
        store
            .put_from(rec(k, 1, 1_000, NOW + 100), NOW, peer(1))
            .unwrap();
    }
    // Over its byte share (though under the record floor of 100).
    assert!(matches!(
        store.put_from(rec(500, 1, 1_000, NOW + 100), NOW, peer(1)),
        Err(StoreError::QuotaExceeded { records: 500, .. })
    ));
    for k in 1_000..1_010 {
        store
            .put_from(rec(k, 1, 1_000, NOW + 100), NOW, peer(2))
            .unwrap();
    }
    assert_eq!(store.usage_of(&node(2)), (10, share));
    assert!(matches!(
        store.put_from(rec(1_010, 1, 1, NOW + 100), NOW, peer(2)),
        Err(StoreError::QuotaExceeded { records: 10, .. })
    ));
}

#[test]
fn replacing_own_records_under_pressure() {
    let mut store = MemoryStore::new(by_count());
    fill(&mut store, peer(1), 0, 80);
    fill(&mut store, Origin::Local, 100, 10);
    // Over its share: same-size and smaller new versions of its own records still go in.
    assert_eq!(
        store.put_from(rec(0, 2, 1, NOW + 100), NOW, peer(1)),
        Ok(PutOutcome::Replaced)
    );
    store
        .put_from(rec(1, 1, 50, NOW + 100), NOW, Origin::Local)
        .unwrap();
    assert_eq!(store.usage_of(&node(1)), (79, 79 * fp(1)));
    assert_eq!(
        store.put_from(rec(1, 2, 40, NOW + 100), NOW, Origin::Replication(node(1))),
        Ok(PutOutcome::Replaced)
    );
    // Not a bigger one, nor taking over a record another origin wrote.
    assert!(matches!(
        store.put_from(rec(2, 2, 2, NOW + 100), NOW, peer(1)),
        Err(StoreError::QuotaExceeded { .. })
    ));
    assert!(matches!(
        store.put_from(rec(1, 3, 1, NOW + 100), NOW, peer(1)),
        Err(StoreError::QuotaExceeded { .. })
    ));
    // A peer within its share may take over a record.
    assert_eq!(
        store.put_from(rec(1, 3, 1, NOW + 100), NOW, peer(2)),
        Ok(PutOutcome::Replaced)
    );
    assert_eq!(store.usage_of(&node(2)), (1, fp(1)));
    assert_eq!(store.usage(&Origin::Replication(node(1))), (0, 0));
    // An identical record changes nothing, its origin included.
    assert_eq!(
        store.put_from(rec(1, 3, 1, NOW + 100), NOW, peer(3)),
        Ok(PutOutcome::Unchanged)
    );
    assert_eq!(store.usage_of(&node(3)), (0, 0));
    assert_eq!(store.usage_of(&node(2)), (1, fp(1)));
}

#[test]
fn removals_and_purges_give_usage_back() {
    let mut store = MemoryStore::new(by_count());
    fill(&mut store, peer(1), 0, 79);
    store
        .put_from(rec(79, 1, 1, NOW + 1), NOW, peer(1))
        .unwrap();
    fill(&mut store, peer(2), 100, 1);
    assert_eq!(store.origins(), 2);
    store.remove(&key(100)).unwrap();
    assert_eq!(store.usage_of(&node(2)), (0, 0));
    assert_eq!(store.origins(), 1);
    assert_eq!(store.purge_expired(NOW + 1), Ok(1));
    assert_eq!(store.usage_of(&node(1)), (79, 79 * fp(1)));
}

#[test]
fn a_refused_put_purges_expired_records_when_that_is_enough() {
    let mut store = MemoryStore::new(by_count());
    fill(&mut store, peer(1), 0, 70);
    for k in 70..80 {
        store.put_from(rec(k, 1, 1, NOW + 1), NOW, peer(1)).unwrap();
    }
    fill(&mut store, peer(2), 100, 10);
    let later = NOW + 1;
    // Without its 10 expired records the store would still be under pressure after the
    // put, and 71 records are over the share: refused, and nothing is purged.
    assert!(matches!(
        store.put_from(rec(80, 1, 1, later + 100), later, peer(1)),
        Err(StoreError::QuotaExceeded { records: 80, .. })
    ));
    assert_eq!(store.len(), 90);
    // Without its 10 expired records the peer would hold 70 of 75: no pressure, and the
    // put purges them to go in.
    let mut small = MemoryStore::new(by_count());
    fill(&mut small, peer(1), 0, 70);
    for k in 70..80 {
        small.put_from(rec(k, 1, 1, NOW + 1), NOW, peer(1)).unwrap();
    }
    fill(&mut small, peer(2), 100, 1);
    assert_eq!(
        small.put_from(rec(80, 1, 1, later + 100), later, peer(1)),
        Ok(PutOutcome::Inserted)
    );
    assert_eq!(small.len(), 72);
    assert_eq!(small.usage_of(&node(1)), (71, 71 * fp(1)));
}

/// Usage per origin recounted from these records.
fn recount<'a>(
    held: impl Iterator<Item = (&'a Record, Origin)>,
) -> HashMap<Origin, (usize, usize)> {
    let mut usage: HashMap<Origin, (usize, usize)> = HashMap::new();
    for (record, origin) in held {
        let entry = usage.entry(origin).or_default();
        entry.0 += 1;
        entry.1 += record.footprint();
    }
    usage
}

/// The records held with their origins, by key.
fn snapshot(store: &MemoryStore) -> Vec<(Record, Origin)> {
    let mut held: Vec<(Record, Origin)> = store.held().map(|(r, o)| (r.clone(), o)).collect();
    held.sort_by_key(|(r, _)| r.key);
    held
}

fn arb_origin() -> impl Strategy<Value = Origin> {
    prop_oneof![
        1 => Just(Origin::Local),
        4 => (0u8..3).prop_map(peer),
        1 => (0u8..2).prop_map(|n| Origin::Replication(node(n))),
    ]
}

#[derive(Debug, Clone)]
enum Op {
    Put(Record, u64, Origin),
    Remove(u16),
    Purge(u64),
}

fn arb_op() -> impl Strategy<Value = Op> {
    let put = (
        0u16..8,
        0u64..3,
        1usize..4,
        NOW + 1..NOW + 4,
        NOW - 1..NOW + 4,
        arb_origin(),
    )
        .prop_map(|(k, version, len, expires_at, now, origin)| {
            Op::Put(rec(k, version, len, expires_at), now, origin)
        });
    prop_oneof![
        6 => put,
        1 => (0u16..8).prop_map(Op::Remove),
        1 => (NOW - 1..NOW + 4).prop_map(Op::Purge),
    ]
}

proptest! {
    #[test]
    fn usage_matches_a_recount(ops in prop::collection::vec(arb_op(), 0..60)) {
        // Pressure above 3 records or 3 * fp(2) bytes; a peer's share is 2 records and
        // 2 * fp(2) bytes.
        let limits = StoreLimits {
            max_value_len: 3,
            max_records: 6,
            max_bytes: 6 * fp(2),
            quota: QuotaLimits {
                pressure: 0.5,
                peer_share: 1.0 / 3.0,
                floor_records: 1,
                replication_share: 1.0 / 3.0,
            },
        };
        let (max_records, max_bytes) = limits.peer_quota();
        prop_assert_eq!((max_records, max_bytes), (2, 2 * fp(2)));
        prop_assert_eq!(limits.replication_quota(), (2, 2 * fp(2)));
        let mut store = MemoryStore::new(limits.clone());
        for op in ops {
            let before = snapshot(&store);
            let usage_before = recount(before.iter().map(|(r, o)| (r, *o)));
            match op {
                Op::Put(r, now, origin) => {
                    let result = store.put_from(r.clone(), now, origin);
                    let usage = |o: &Origin| store.usage(o);
                    match result {
                        Ok(PutOutcome::Inserted | PutOutcome::Replaced) => {
                            prop_assert_eq!(store.get(&r.key, now).unwrap(), Some(r.clone()));
                            let written = store.held().find(|(h, _)| h.key == r.key).map(|(_, o)| o);
                            prop_assert_eq!(written, Some(origin));
                            if let Origin::Peer(_) | Origin::Replication(_) = origin {
                                // What the store held when it decided: without the expired
                                // records if the put purged them.
                                let held_now: HashSet<Key> = store.held().map(|(h, _)| h.key).collect();
                                let purged = |h: &Record| h.key != r.key && h.is_expired(now) && !held_now.contains(&h.key);
                                let decided: Vec<(&Record, Origin)> = before.iter().filter(|(h, _)| !purged(h)).map(|(h, o)| (h, *o)).collect();
                                let old = recount(decided.iter().copied()).get(&origin).copied().unwrap_or_default();
                                let new = usage(&origin);
                                let grew = new.0 > old.0 || new.1 > old.1;
                                let pressure = limits.under_pressure(decided.len(), decided.iter().map(|(h, _)| h.footprint()).sum())
                                    || limits.under_pressure(store.len(), store.bytes());
                                if grew && pressure {
                                    prop_assert!(new.0 <= max_records && new.1 <= max_bytes, "{:?} over its share: {:?}", origin, new);
                                }
                            }
                        }
                        Ok(PutOutcome::Unchanged | PutOutcome::KeptNewer) | Err(StoreError::Full { .. }) => {
                            prop_assert_eq!(&snapshot(&store), &before);
                        }
                        Err(StoreError::QuotaExceeded { records, bytes }) => {
                            prop_assert!(matches!(origin, Origin::Peer(_) | Origin::Replication(_)));
                            prop_assert_eq!(
                                Some(&(records, bytes)),
                                usage_before.get(&origin).or(Some(&(0, 0)))
                            );
                            prop_assert_eq!(&snapshot(&store), &before);
                        }
                        Err(StoreError::Expired) => prop_assert!(r.is_expired(now)),
                        Err(e) => prop_assert!(false, "unexpected {e}"),
                    }
                }
                Op::Remove(k) => {
                    store.remove(&key(k)).unwrap();
                }
                Op::Purge(now) => {
                    store.purge_expired(now).unwrap();
                    prop_assert!(store.held().all(|(r, _)| !r.is_expired(now)));
                }
            }
            // The accounting equals a brute-force recount, with no entry for an origin
            // that holds nothing.
            let counted = recount(store.held());
            prop_assert_eq!(store.origins(), counted.len());
            for origin in [Origin::Local, peer(0), peer(1), peer(2), Origin::Replication(node(0)), Origin::Replication(node(1))] {
                prop_assert_eq!(store.usage(&origin), counted.get(&origin).copied().unwrap_or_default());
            }
            for n in 0..3 {
                prop_assert_eq!(store.usage_of(&node(n)), store.usage(&peer(n)));
            }
            let total: usize = counted.values().map(|u| u.1).sum();
            prop_assert_eq!(store.bytes(), total);
            prop_assert_eq!(store.len(), counted.values().map(|u| u.0).sum::<usize>());
            prop_assert!(limits.allows(store.len(), store.bytes()));
        }
    }
}
