//! Differential test of [`DurableStore`] against [`MemoryStore`]: any sequence of puts
//! (single and batched), removes, purges and reopens gives the same results and the same
//! state (records, origins, totals, usage), expired records not yet purged included.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use dht_id::Key;
use dht_storage::{
    DurableStore, MemoryStore, Origin, QuotaLimits, Record, RecordStore, StorageKey, StoreLimits,
};
use proptest::prelude::*;

const NOW: u64 = 1_000;

fn key(n: u8) -> Key {
    Key::from_bytes([n; 32])
}

/// Small limits, so that puts meet `Full`, `QuotaExceeded` and purges to make room: 4
/// records; pressure above 2; a peer's share is 1 record.
fn limits() -> StoreLimits {
    StoreLimits {
        max_value_len: 3,
        max_records: 4,
        max_bytes: 4 * (32 + dht_storage::RECORD_OVERHEAD) + 8,
        quota: QuotaLimits {
            pressure: 0.5,
            peer_share: 0.25,
            floor_records: 1,
            replication_share: 0.5,
        },
    }
}

fn arb_origin() -> impl Strategy<Value = Origin> {
    prop_oneof![
        Just(Origin::Local),
        (0u8..2).prop_map(|n| Origin::Peer(key(100 + n))),
        (0u8..2).prop_map(|n| Origin::Replication(key(100 + n))),
    ]
}

/// Records over a few keys with colliding versions and values, some empty or too long.
fn arb_record() -> impl Strategy<Value = Record> {
    (
        0u8..6,
        0u64..3,
        prop::collection::vec(0u8..3, 0..5),
        NOW - 1..NOW + 5,
        0u8..2,
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
    Put(Record, Origin, u64),
    Batch(Vec<(Record, Origin)>, u64),
    Remove(u8),
    Purge(u64),
    /// Reopen; with `Some(now)`, purging at open.
    Reopen(Option<u64>),
}

fn arb_now() -> impl Strategy<Value = u64> {
    NOW - 1..NOW + 5
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (arb_record(), arb_origin(), arb_now()).prop_map(|(r, o, now)| Op::Put(r, o, now)),
        2 => (prop::collection::vec((arb_record(), arb_origin()), 0..5), arb_now())
            .prop_map(|(puts, now)| Op::Batch(puts, now)),
        1 => (0u8..6).prop_map(Op::Remove),
        1 => arb_now().prop_map(Op::Purge),
        1 => prop::option::of(arb_now()).prop_map(Op::Reopen),
    ]
}

/// A fresh directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "dht-storage-differential-{}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn storage_key() -> StorageKey {
    StorageKey::from_bytes([42; 32])
}

/// Everything a store shows: records with origins (expired ones included), totals, usage.
type State = (Vec<(Record, Origin)>, usize, usize, Vec<(usize, usize)>);

fn state<'a>(held: impl Iterator<Item = (&'a Record, Origin)>, store: &dyn RecordStore) -> State {
    let mut held: Vec<(Record, Origin)> = held.map(|(r, o)| (r.clone(), o)).collect();
    held.sort_by_key(|(r, _)| r.key);
    let usage = (0..2).map(|n| store.usage_of(&key(100 + n))).collect();
    (held, store.len(), store.bytes(), usage)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn durable_store_behaves_like_memory_store(ops in prop::collection::vec(arb_op(), 0..30)) {
        let dir = TempDir::new();
        let (mut durable, report) = DurableStore::open(&dir.0, storage_key(), limits()).unwrap();
        prop_assert_eq!(report.records, 0);
        let mut memory = MemoryStore::new(limits());
        for op in ops {
            match op {
                Op::Put(record, origin, now) => {
                    prop_assert_eq!(
                        durable.put_from(record.clone(), now, origin),
                        memory.put_from(record, now, origin)
                    );
                }
                Op::Batch(puts, now) => {
                    let expected: Vec<_> = puts
                        .iter()
                        .map(|(r, o)| memory.put_from(r.clone(), now, *o))
                        .collect();
                    prop_assert_eq!(durable.put_many(puts, now), expected);
                }
                Op::Remove(k) => {
                    prop_assert_eq!(durable.remove(&key(k)), memory.remove(&key(k)));
                }
                Op::Purge(now) => {
                    prop_assert_eq!(durable.purge_expired(now), memory.purge_expired(now));
                }
                Op::Reopen(now) => {
                    drop(durable);
                    let (reopened, report) = match now {
                        Some(now) => DurableStore::open_at(&dir.0, storage_key(), limits(), now),
                        None => DurableStore::open(&dir.0, storage_key(), limits()),
                    }
                    .unwrap();
                    durable = reopened;
                    let purged = match now {
                        Some(now) => memory.purge_expired(now).unwrap(),
                        None => 0,
                    };
                    prop_assert_eq!(report.expired_purged, purged);
                    prop_assert_eq!(report.records, memory.len());
                    prop_assert_eq!(
                        (report.corrupt_skipped, report.dropped_over_limits),
                        (0, 0)
                    );
                    prop_assert_eq!(report.moved_aside, None);
                }
            }
            prop_assert_eq!(
                state(durable.held(), &durable),
                state(memory.held(), &memory)
            );
            for now in [NOW - 1, NOW + 2] {
                prop_assert_eq!(durable.records(now), memory.records(now));
                for k in 0..6 {
                    prop_assert_eq!(durable.get(&key(k), now), memory.get(&key(k), now));
                }
            }
        }
        // What is on disk is what the store held.
        let expected = state(durable.held(), &durable);
        drop(durable);
        let (reopened, _) = DurableStore::open(&dir.0, storage_key(), limits()).unwrap();
        prop_assert_eq!(state(reopened.held(), &reopened), expected);
    }
}
