//! Properties of [`MemoryStore`] through the public API: replicas converge whatever the
//! order of puts, and the accounting and the hard limits hold over random operations.

use std::collections::HashSet;

use bytes::Bytes;
use dht_id::Key;
use dht_storage::{MemoryStore, Origin, PutOutcome, Record, RecordStore, StoreError, StoreLimits};
use proptest::prelude::*;

const NOW: u64 = 1_000;

fn key(n: u8) -> Key {
    Key::from_bytes([n; 32])
}

/// Footprint of a record with a value of `len` bytes.
fn fp(len: usize) -> usize {
    Record {
        key: key(0),
        value: Bytes::from(vec![1; len]),
        expires_at: 1,
        replication: 3,
        version: 0,
    }
    .footprint()
}

/// The records held with their origins, by key.
fn snapshot(store: &MemoryStore) -> Vec<(Record, Origin)> {
    let mut held: Vec<(Record, Origin)> = store.held().map(|(r, o)| (r.clone(), o)).collect();
    held.sort_by_key(|(r, _)| r.key);
    held
}

/// Checks the totals against the records actually held.
fn assert_consistent(store: &MemoryStore) {
    let sum: usize = store.held().map(|(r, _)| r.footprint()).sum();
    assert_eq!(store.bytes(), sum);
    assert_eq!(store.len(), store.held().count());
    let keys: HashSet<Key> = store.held().map(|(r, _)| r.key).collect();
    assert_eq!(keys.len(), store.len());
}

/// Records over a few keys with colliding versions and values, all unexpired at `NOW`.
fn arb_record() -> impl Strategy<Value = Record> {
    (
        0u8..3,
        0u64..4,
        prop::collection::vec(0u8..3, 1..3),
        NOW + 1..NOW + 4,
        0u8..3,
    )
        .prop_map(|(k, version, value, expires_at, replication)| Record {
            key: key(k),
            value: Bytes::from(value),
            expires_at,
            replication,
            version,
        })
}

#[derive(Debug, Clone)]
enum Op {
    Put(Record, u64),
    Remove(u8),
    Purge(u64),
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (arb_record(), NOW - 2..NOW + 4).prop_map(|(r, now)| Op::Put(r, now)),
        1 => (0u8..3).prop_map(Op::Remove),
        1 => (NOW - 2..NOW + 4).prop_map(Op::Purge),
    ]
}

proptest! {
    #[test]
    fn puts_converge_in_any_order(
        (puts, shuffled) in prop::collection::vec(arb_record(), 0..24)
            .prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle()))
    ) {
        let mut a = MemoryStore::default();
        let mut b = MemoryStore::default();
        for r in &puts {
            a.put(r.clone(), NOW).unwrap();
            assert_consistent(&a);
        }
        for r in &shuffled {
            b.put(r.clone(), NOW).unwrap();
            assert_consistent(&b);
        }
        // The same records, up to the expiry slack between copies of one write (see
        // `Record::same_write`), by which the order of puts may still differ.
        let (held_a, held_b) = (a.records(NOW).unwrap(), b.records(NOW).unwrap());
        prop_assert_eq!(held_a.len(), held_b.len());
        for (x, y) in held_a.iter().zip(&held_b) {
            prop_assert!(x.same_write(y), "{:?} and {:?} are different writes", x, y);
        }
        for k in 0..3 {
            let best = puts
                .iter()
                .filter(|r| r.key == key(k))
                .max_by(|x, y| {
                    // On equal version and value the earlier expiry wins.
                    (x.version, &x.value, std::cmp::Reverse(x.expires_at), x.replication)
                        .cmp(&(y.version, &y.value, std::cmp::Reverse(y.expires_at), y.replication))
                });
            let held = a.get(&key(k), NOW).unwrap();
            prop_assert_eq!(held.is_some(), best.is_some());
            if let (Some(held), Some(best)) = (&held, best) {
                prop_assert!(held.same_write(best), "held {:?}, best {:?}", held, best);
            }
            // In particular the held record has the max (version, value).
            let best_vv = puts
                .iter()
                .filter(|r| r.key == key(k))
                .map(|r| (r.version, r.value.clone()))
                .max();
            prop_assert_eq!(held.map(|r| (r.version, r.value)), best_vv);
        }
    }

    #[test]
    fn accounting_and_limits_hold(ops in prop::collection::vec(arb_op(), 0..40)) {
        let limits = StoreLimits {
            max_value_len: 2,
            max_records: 2,
            max_bytes: fp(1) + fp(2),
            ..StoreLimits::default()
        };
        let mut store = MemoryStore::new(limits.clone());
        for op in ops {
            match op {
                Op::Put(r, now) => {
                    let before = (store.len(), store.bytes(), snapshot(&store));
                    let result = store.put(r.clone(), now);
                    match result {
                        Ok(PutOutcome::Inserted | PutOutcome::Replaced) => {
                            prop_assert_eq!(store.get(&r.key, now).unwrap(), Some(r));
                        }
                        Ok(PutOutcome::Unchanged | PutOutcome::KeptNewer)
                        | Err(StoreError::Full { .. }) => {
                            prop_assert_eq!(
                                (store.len(), store.bytes(), snapshot(&store)),
                                before.clone()
                            );
                        }
                        Err(StoreError::Expired) => prop_assert!(r.is_expired(now)),
                        Err(e) => prop_assert!(false, "unexpected {e}"),
                    }
                }
                Op::Remove(k) => {
                    store.remove(&key(k)).unwrap();
                }
                Op::Purge(now) => {
                    let before = store.len();
                    let n = store.purge_expired(now).unwrap();
                    prop_assert_eq!(n, before - store.len());
                    prop_assert!(store.held().all(|(r, _)| !r.is_expired(now)));
                }
            }
            assert_consistent(&store);
            prop_assert!(limits.allows(store.len(), store.bytes()));
        }
    }
}
