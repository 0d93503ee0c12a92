//! [`MemoryStore`]: the bounded in-memory [`RecordStore`].

use std::collections::HashMap;
use std::fmt;

use dht_id::Key;

use crate::record::Record;
use crate::store::{PutOutcome, RecordStore, StoreError, StoreLimits};

/// A [`RecordStore`] in a `HashMap`, bounded by [`StoreLimits`]. Nothing survives a restart.
#[derive(Default)]
pub struct MemoryStore {
    limits: StoreLimits,
    records: HashMap<Key, Record>,
    /// Sum of the footprints of `records`.
    bytes: usize,
}

impl MemoryStore {
    /// An empty store with these limits.
    pub fn new(limits: StoreLimits) -> Self {
        MemoryStore {
            limits,
            records: HashMap::new(),
            bytes: 0,
        }
    }

    /// The limits the store enforces.
    pub fn limits(&self) -> &StoreLimits {
        &self.limits
    }

    /// Count and bytes of the expired records a purge at `now` would remove, leaving out
    /// the record of `except`.
    fn expired_totals(&self, now: u64, except: &Key) -> (usize, usize) {
        self.records
            .values()
            .filter(|r| r.key != *except && r.is_expired(now))
            .fold((0, 0), |(count, bytes), r| {
                (count + 1, bytes.saturating_add(r.footprint()))
            })
    }
}

impl fmt::Debug for MemoryStore {
    /// Shows the limits and totals, not the records.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("limits", &self.limits)
            .field("records", &self.records.len())
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl RecordStore for MemoryStore {
    fn put(&mut self, record: Record, now: u64) -> Result<PutOutcome, StoreError> {
        self.limits.validate(&record, now)?;
        let (outcome, replaced_bytes) = match self.records.get(&record.key) {
            None => (PutOutcome::Inserted, 0),
            Some(held) if held.is_expired(now) => (PutOutcome::Replaced, held.footprint()),
            Some(held) if *held == record => return Ok(PutOutcome::Unchanged),
            Some(held) if held.supersedes(&record) => return Ok(PutOutcome::KeptNewer),
            Some(held) => (PutOutcome::Replaced, held.footprint()),
        };
        let records = self.records.len() + usize::from(outcome == PutOutcome::Inserted);
        let bytes = self
            .bytes
            .saturating_sub(replaced_bytes)
            .saturating_add(record.footprint());
        if !self.limits.allows(records, bytes) {
            // Purge only if that makes room, so that a refused put changes nothing.
            let (expired, expired_bytes) = self.expired_totals(now, &record.key);
            if !self
                .limits
                .allows(records - expired, bytes.saturating_sub(expired_bytes))
            {
                return Err(StoreError::Full {
                    records: self.records.len(),
                    bytes: self.bytes,
                });
            }
            self.purge_expired(now)?;
        }
        self.bytes = self.bytes.saturating_add(record.footprint());
        if let Some(old) = self.records.insert(record.key, record) {
            self.bytes = self.bytes.saturating_sub(old.footprint());
        }
        Ok(outcome)
    }

    fn get(&self, key: &Key, now: u64) -> Result<Option<Record>, StoreError> {
        Ok(self
            .records
            .get(key)
            .filter(|r| !r.is_expired(now))
            .cloned())
    }

    fn remove(&mut self, key: &Key) -> Result<Option<Record>, StoreError> {
        let removed = self.records.remove(key);
        if let Some(r) = &removed {
            self.bytes = self.bytes.saturating_sub(r.footprint());
        }
        Ok(removed)
    }

    fn purge_expired(&mut self, now: u64) -> Result<usize, StoreError> {
        let before = self.records.len();
        let mut freed = 0usize;
        self.records.retain(|_, r| {
            let keep = !r.is_expired(now);
            if !keep {
                freed = freed.saturating_add(r.footprint());
            }
            keep
        });
        self.bytes = self.bytes.saturating_sub(freed);
        Ok(before - self.records.len())
    }

    /// All unexpired records, sorted by key.
    fn records(&self, now: u64) -> Result<Vec<Record>, StoreError> {
        let mut out: Vec<Record> = self
            .records
            .values()
            .filter(|r| !r.is_expired(now))
            .cloned()
            .collect();
        out.sort_unstable_by_key(|r| r.key);
        Ok(out)
    }

    fn len(&self) -> usize {
        self.records.len()
    }

    fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use proptest::prelude::*;

    use super::*;

    const NOW: u64 = 1_000;

    fn key(n: u8) -> Key {
        Key::from_bytes([n; 32])
    }

    fn rec(k: u8, version: u64, value: &[u8], expires_at: u64) -> Record {
        Record {
            key: key(k),
            value: Bytes::copy_from_slice(value),
            expires_at,
            replication: 3,
            version,
        }
    }

    /// Footprint of a record with a value of `len` bytes.
    fn fp(len: usize) -> usize {
        rec(0, 0, &vec![1; len], 1).footprint()
    }

    /// Checks the byte accounting against the records actually held.
    fn assert_consistent(store: &MemoryStore) {
        let sum: usize = store.records.values().map(Record::footprint).sum();
        assert_eq!(store.bytes(), sum);
        assert!(store.records.iter().all(|(k, r)| *k == r.key));
    }

    #[test]
    fn insert_then_get() {
        let mut store = MemoryStore::default();
        assert!(store.is_empty());
        let r = rec(1, 1, b"v", NOW + 10);
        assert_eq!(store.put(r.clone(), NOW), Ok(PutOutcome::Inserted));
        assert_eq!(store.get(&key(1), NOW), Ok(Some(r.clone())));
        assert_eq!(store.get(&key(2), NOW), Ok(None));
        assert_eq!(store.len(), 1);
        assert_eq!(store.bytes(), r.footprint());
    }

    #[test]
    fn rejects_empty_and_too_large_values() {
        let mut store = MemoryStore::new(StoreLimits {
            max_value_len: 3,
            ..StoreLimits::default()
        });
        assert_eq!(
            store.put(rec(1, 1, b"", NOW + 10), NOW),
            Err(StoreError::EmptyValue)
        );
        assert_eq!(
            store.put(rec(1, 1, b"abcd", NOW + 10), NOW),
            Err(StoreError::ValueTooLarge { len: 4, max: 3 })
        );
        assert!(store.is_empty());
        assert_eq!(
            store.put(rec(1, 1, b"abc", NOW + 10), NOW),
            Ok(PutOutcome::Inserted)
        );
    }

    #[test]
    fn expiry_boundary() {
        let mut store = MemoryStore::default();
        // Expired when now == expires_at.
        assert_eq!(
            store.put(rec(1, 1, b"v", NOW), NOW),
            Err(StoreError::Expired)
        );
        assert_eq!(
            store.put(rec(1, 1, b"v", NOW - 1), NOW),
            Err(StoreError::Expired)
        );
        assert!(store.is_empty());
        assert_eq!(
            store.put(rec(1, 1, b"v", NOW + 1), NOW),
            Ok(PutOutcome::Inserted)
        );
        assert!(store.get(&key(1), NOW).unwrap().is_some());
        assert_eq!(store.get(&key(1), NOW + 1), Ok(None));
        assert!(store.records(NOW + 1).unwrap().is_empty());
        // Still held and counted until purged.
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn identical_record_is_unchanged() {
        let mut store = MemoryStore::default();
        let r = rec(1, 1, b"v", NOW + 10);
        store.put(r.clone(), NOW).unwrap();
        assert_eq!(store.put(r.clone(), NOW), Ok(PutOutcome::Unchanged));
        assert_eq!(store.len(), 1);
        assert_eq!(store.bytes(), r.footprint());
    }

    #[test]
    fn newer_version_replaces_older() {
        let mut store = MemoryStore::default();
        store.put(rec(1, 1, b"zzz", NOW + 10), NOW).unwrap();
        let newer = rec(1, 2, b"a", NOW + 5);
        assert_eq!(store.put(newer.clone(), NOW), Ok(PutOutcome::Replaced));
        assert_eq!(store.get(&key(1), NOW), Ok(Some(newer.clone())));
        assert_eq!(store.bytes(), newer.footprint());
    }

    #[test]
    fn older_version_is_ignored() {
        let mut store = MemoryStore::default();
        let newer = rec(1, 2, b"a", NOW + 5);
        store.put(newer.clone(), NOW).unwrap();
        assert_eq!(
            store.put(rec(1, 1, b"zzz", NOW + 10), NOW),
            Ok(PutOutcome::KeptNewer)
        );
        assert_eq!(store.get(&key(1), NOW), Ok(Some(newer)));
    }

    #[test]
    fn tie_break_converges_in_either_order() {
        let a = rec(1, 7, b"abc", NOW + 10);
        let b = rec(1, 7, b"abd", NOW + 10);
        let mut ab = MemoryStore::default();
        assert_eq!(ab.put(a.clone(), NOW), Ok(PutOutcome::Inserted));
        assert_eq!(ab.put(b.clone(), NOW), Ok(PutOutcome::Replaced));
        let mut ba = MemoryStore::default();
        assert_eq!(ba.put(b.clone(), NOW), Ok(PutOutcome::Inserted));
        assert_eq!(ba.put(a.clone(), NOW), Ok(PutOutcome::KeptNewer));
        assert_eq!(ab.records(NOW), ba.records(NOW));
        assert_eq!(ab.get(&key(1), NOW), Ok(Some(b)));
    }

    #[test]
    fn expired_record_is_replaced_even_by_an_older_version() {
        let mut store = MemoryStore::default();
        let old = rec(1, 9, b"newest", NOW + 5);
        store.put(old, NOW).unwrap();
        let later = NOW + 5;
        let r = rec(1, 1, b"x", later + 10);
        assert_eq!(store.put(r.clone(), later), Ok(PutOutcome::Replaced));
        assert_eq!(store.get(&key(1), later), Ok(Some(r.clone())));
        assert_eq!(store.len(), 1);
        assert_eq!(store.bytes(), r.footprint());
    }

    #[test]
    fn remove_returns_the_record() {
        let mut store = MemoryStore::default();
        let r = rec(1, 1, b"v", NOW + 10);
        store.put(r.clone(), NOW).unwrap();
        store.put(rec(2, 1, b"w", NOW + 10), NOW).unwrap();
        assert_eq!(store.remove(&key(1)), Ok(Some(r)));
        assert_eq!(store.remove(&key(1)), Ok(None));
        assert_eq!(store.len(), 1);
        assert_eq!(store.bytes(), fp(1));
        // An expired record is still removable.
        assert!(store.remove(&key(2)).unwrap().is_some());
        assert!(store.is_empty());
        assert_eq!(store.bytes(), 0);
    }

    #[test]
    fn purge_removes_only_expired() {
        let mut store = MemoryStore::default();
        store.put(rec(1, 1, b"a", NOW + 1), NOW).unwrap();
        store.put(rec(2, 1, b"bb", NOW + 2), NOW).unwrap();
        store.put(rec(3, 1, b"ccc", NOW + 3), NOW).unwrap();
        assert_eq!(store.purge_expired(NOW), Ok(0));
        assert_eq!(store.purge_expired(NOW + 2), Ok(2));
        assert_eq!(store.len(), 1);
        assert_eq!(store.bytes(), fp(3));
        assert!(store.get(&key(3), NOW + 2).unwrap().is_some());
        assert_eq!(store.purge_expired(NOW + 2), Ok(0));
        assert_consistent(&store);
    }

    #[test]
    fn records_lists_unexpired_sorted_by_key() {
        let mut store = MemoryStore::default();
        for k in [5, 1, 3, 2] {
            store.put(rec(k, 1, b"v", NOW + u64::from(k)), NOW).unwrap();
        }
        let keys: Vec<Key> = store
            .records(NOW + 2)
            .unwrap()
            .iter()
            .map(|r| r.key)
            .collect();
        assert_eq!(keys, vec![key(3), key(5)]);
    }

    #[test]
    fn full_by_count() {
        let mut store = MemoryStore::new(StoreLimits {
            max_records: 2,
            ..StoreLimits::default()
        });
        store.put(rec(1, 1, b"a", NOW + 10), NOW).unwrap();
        store.put(rec(2, 1, b"b", NOW + 10), NOW).unwrap();
        assert_eq!(
            store.put(rec(3, 1, b"c", NOW + 10), NOW),
            Err(StoreError::Full {
                records: 2,
                bytes: 2 * fp(1)
            })
        );
        // Replacing a held key does not add a record.
        assert_eq!(
            store.put(rec(2, 2, b"b", NOW + 10), NOW),
            Ok(PutOutcome::Replaced)
        );
    }

    #[test]
    fn full_by_bytes() {
        let mut store = MemoryStore::new(StoreLimits {
            max_bytes: fp(4) + fp(5),
            ..StoreLimits::default()
        });
        store.put(rec(1, 1, b"aaaa", NOW + 10), NOW).unwrap();
        assert!(matches!(
            store.put(rec(2, 1, b"bbbbbb", NOW + 10), NOW),
            Err(StoreError::Full { .. })
        ));
        // Exactly at the limit is allowed.
        assert_eq!(
            store.put(rec(2, 1, b"bbbbb", NOW + 10), NOW),
            Ok(PutOutcome::Inserted)
        );
        assert_eq!(store.bytes(), fp(4) + fp(5));
    }

    #[test]
    fn replacing_counts_only_the_difference() {
        let mut store = MemoryStore::new(StoreLimits {
            max_bytes: fp(3) + fp(5),
            ..StoreLimits::default()
        });
        store.put(rec(1, 1, b"aaa", NOW + 10), NOW).unwrap();
        store.put(rec(2, 1, b"bbb", NOW + 10), NOW).unwrap();
        // 3 -> 5 bytes fits exactly, although a second copy would not.
        assert_eq!(
            store.put(rec(1, 2, b"aaaaa", NOW + 10), NOW),
            Ok(PutOutcome::Replaced)
        );
        assert_eq!(store.bytes(), fp(3) + fp(5));
        // One byte more does not.
        assert!(matches!(
            store.put(rec(2, 2, b"bbbb", NOW + 10), NOW),
            Err(StoreError::Full { .. })
        ));
        // Shrinking always fits.
        assert_eq!(
            store.put(rec(1, 3, b"a", NOW + 10), NOW),
            Ok(PutOutcome::Replaced)
        );
        assert_eq!(store.bytes(), fp(1) + fp(3));
    }

    #[test]
    fn full_purges_expired_records_to_make_room() {
        let mut store = MemoryStore::new(StoreLimits {
            max_records: 2,
            ..StoreLimits::default()
        });
        store.put(rec(1, 1, b"a", NOW + 1), NOW).unwrap();
        store.put(rec(2, 1, b"b", NOW + 10), NOW).unwrap();
        let later = NOW + 1;
        assert_eq!(
            store.put(rec(3, 1, b"c", later + 10), later),
            Ok(PutOutcome::Inserted)
        );
        assert_eq!(store.len(), 2);
        assert_eq!(store.get(&key(1), NOW), Ok(None));
        assert_consistent(&store);
    }

    #[test]
    fn full_leaves_the_store_unchanged() {
        let mut store = MemoryStore::new(StoreLimits {
            max_records: 10,
            max_bytes: 3 * fp(2),
            ..StoreLimits::default()
        });
        store.put(rec(1, 1, b"aa", NOW + 1), NOW).unwrap();
        store.put(rec(2, 1, b"bb", NOW + 10), NOW).unwrap();
        store.put(rec(3, 1, b"cc", NOW + 10), NOW).unwrap();
        let later = NOW + 1;
        let before = (store.len(), store.bytes(), store.records(later).unwrap());
        // Purging the expired record would free fp(2) bytes: not enough for this one.
        let big = rec(4, 1, &[7; 2 * 2 + 32 + crate::RECORD_OVERHEAD], later + 10);
        assert_eq!(
            store.put(big, later),
            Err(StoreError::Full {
                records: 3,
                bytes: 3 * fp(2)
            })
        );
        // Nor for a bigger version of a held key.
        assert!(matches!(
            store.put(
                rec(
                    2,
                    2,
                    &[7; 2 * 2 + 32 + crate::RECORD_OVERHEAD + 1],
                    later + 10
                ),
                later
            ),
            Err(StoreError::Full { .. })
        ));
        let after = (store.len(), store.bytes(), store.records(later).unwrap());
        assert_eq!(before, after);
        // The expired record was not purged either.
        assert_eq!(store.len(), 3);
        assert_eq!(
            store.get(&key(2), later),
            Ok(Some(rec(2, 1, b"bb", NOW + 10)))
        );
        assert_consistent(&store);
    }

    #[test]
    fn replacing_an_expired_record_frees_its_bytes() {
        // A full store whose only record is expired accepts a new version of that key.
        let mut store = MemoryStore::new(StoreLimits {
            max_records: 1,
            max_bytes: fp(4),
            ..StoreLimits::default()
        });
        store.put(rec(1, 5, b"aaaa", NOW + 1), NOW).unwrap();
        let later = NOW + 1;
        assert_eq!(
            store.put(rec(1, 1, b"bbbb", later + 1), later),
            Ok(PutOutcome::Replaced)
        );
        assert_eq!(store.bytes(), fp(4));
        assert_consistent(&store);
    }

    #[test]
    fn boxed_store_is_object_safe() {
        let mut store: Box<dyn RecordStore> = Box::new(MemoryStore::default());
        assert!(store.is_empty());
        store.put(rec(1, 1, b"v", NOW + 1), NOW).unwrap();
        assert_eq!(store.len(), 1);
        fn assert_send<T: Send + ?Sized>(_: &T) {}
        assert_send(&store);
    }

    #[test]
    fn debug_shows_no_values() {
        let mut store = MemoryStore::default();
        store.put(rec(1, 1, b"secret", NOW + 1), NOW).unwrap();
        let shown = format!("{store:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("records: 1"), "{shown}");
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
            prop_assert_eq!(a.records(NOW).unwrap(), b.records(NOW).unwrap());
            for k in 0..3 {
                let best = puts
                    .iter()
                    .filter(|r| r.key == key(k))
                    .max_by(|x, y| {
                        (x.version, &x.value, x.expires_at, x.replication)
                            .cmp(&(y.version, &y.value, y.expires_at, y.replication))
                    });
                let held = a.get(&key(k), NOW).unwrap();
                prop_assert_eq!(held.as_ref(), best);
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
            let limits = StoreLimits { max_value_len: 2, max_records: 2, max_bytes: fp(1) + fp(2) };
            let mut store = MemoryStore::new(limits.clone());
            for op in ops {
                match op {
                    Op::Put(r, now) => {
                        let before = (store.len(), store.bytes(), store.records.clone());
                        let result = store.put(r.clone(), now);
                        match result {
                            Ok(PutOutcome::Inserted | PutOutcome::Replaced) => {
                                prop_assert_eq!(store.get(&r.key, now).unwrap(), Some(r));
                            }
                            Ok(PutOutcome::Unchanged | PutOutcome::KeptNewer)
                            | Err(StoreError::Full { .. }) => {
                                prop_assert_eq!(
                                    (store.len(), store.bytes(), &store.records),
                                    (before.0, before.1, &before.2)
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
                        prop_assert!(store.records.values().all(|r| !r.is_expired(now)));
                    }
                }
                assert_consistent(&store);
                prop_assert!(limits.allows(store.len(), store.bytes()));
            }
        }
    }
}
