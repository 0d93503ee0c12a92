//! [`MemoryStore`]: the bounded in-memory [`RecordStore`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use dht_id::Key;

use crate::quota::{Ledger, Origin, Refusal, Tally};

mod trace;

use crate::record::Record;
use crate::store::{PutOutcome, RecordStore, StoreError, StoreLimits};
pub(crate) use trace::Change;

/// A held record and the origin whose put wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    record: Record,
    origin: Origin,
}

/// A [`RecordStore`] in a `BTreeMap` (in key order, so that it can be walked a page at a
/// time), bounded by [`StoreLimits`] (hard limits and per-peer
/// quotas). Nothing survives a restart.
#[derive(Default)]
pub struct MemoryStore {
    limits: StoreLimits,
    records: BTreeMap<Key, Entry>,
    /// The keys of `records` by expiry: what has expired is found without a scan, so a
    /// full store refuses a put in O(log n) (plus the expired records not purged yet).
    by_expiry: BTreeSet<(u64, Key)>,
    /// Sum of the footprints of `records`.
    bytes: usize,
    /// The records and bytes of `records`, per origin.
    ledger: Ledger,
}

impl MemoryStore {
    /// An empty store with these limits.
    pub fn new(limits: StoreLimits) -> Self {
        MemoryStore {
            limits,
            records: BTreeMap::new(),
            by_expiry: BTreeSet::new(),
            bytes: 0,
            ledger: Ledger::default(),
        }
    }

    /// The limits the store enforces.
    pub fn limits(&self) -> &StoreLimits {
        &self.limits
    }

    /// Records and bytes held that `origin` wrote, expired ones not yet purged included.
    /// [`RecordStore::usage_of`] is this for [`Origin::Peer`].
    pub fn usage(&self, origin: &Origin) -> (usize, usize) {
        self.ledger.usage(origin).pair()
    }

    /// Number of origins ([`Origin::Local`], peers, replicating peers) that wrote at least
    /// one of the records held; never more than [`len`](RecordStore::len).
    pub fn origins(&self) -> usize {
        self.ledger.len()
    }

    /// Every record held, expired ones not yet purged included, with the origin that
    /// wrote it, in no particular order.
    pub fn held(&self) -> impl Iterator<Item = (&Record, Origin)> {
        self.records.values().map(|e| (&e.record, e.origin))
    }

    /// Count and bytes of the expired records a purge at `now` would remove, leaving out
    /// the record of `except`: of all origins, and of `origin`.
    fn expired_totals(&self, now: u64, except: &Key, origin: &Origin) -> (Tally, Tally) {
        self.expired(now).filter(|e| e.record.key != *except).fold(
            (Tally::default(), Tally::default()),
            |(all, mine), e| {
                let bytes = e.record.footprint();
                let mine = if e.origin == *origin {
                    mine.plus(bytes)
                } else {
                    mine
                };
                (all.plus(bytes), mine)
            },
        )
    }

    /// The records expired at `now` (`expires_at <= now`), earliest first.
    fn expired(&self, now: u64) -> impl Iterator<Item = &Entry> {
        self.by_expiry
            .range(..=(now, Key::from_bytes([0xff; 32])))
            .filter_map(|(_, key)| self.records.get(key))
    }

    /// The error for a put from `origin` that `refusal` refused.
    fn refused(&self, refusal: Refusal, origin: &Origin) -> StoreError {
        match refusal {
            Refusal::Full => StoreError::Full {
                records: self.records.len(),
                bytes: self.bytes,
            },
            Refusal::Quota => {
                let (records, bytes) = self.usage(origin);
                StoreError::QuotaExceeded { records, bytes }
            }
        }
    }
}

impl fmt::Debug for MemoryStore {
    /// Shows the limits and totals, not the records.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("limits", &self.limits)
            .field("records", &self.records.len())
            .field("bytes", &self.bytes)
            .field("origins", &self.ledger.len())
            .finish()
    }
}

impl RecordStore for MemoryStore {
    fn put_from(
        &mut self,
        record: Record,
        now: u64,
        origin: Origin,
    ) -> Result<PutOutcome, StoreError> {
        self.put_traced(record, now, origin)
            .map(|change| change.outcome)
    }

    fn usage_of(&self, peer: &Key) -> (usize, usize) {
        self.usage(&Origin::Peer(*peer))
    }

    fn get(&self, key: &Key, now: u64) -> Result<Option<Record>, StoreError> {
        Ok(self
            .records
            .get(key)
            .map(|e| &e.record)
            .filter(|r| !r.is_expired(now))
            .cloned())
    }

    fn remove(&mut self, key: &Key) -> Result<Option<Record>, StoreError> {
        Ok(self.take(key).map(|(record, _)| record))
    }

    fn purge_expired(&mut self, now: u64) -> Result<usize, StoreError> {
        Ok(self.purge_traced(now).len())
    }

    /// All unexpired records, sorted by key.
    fn records(&self, now: u64) -> Result<Vec<Record>, StoreError> {
        Ok(self
            .records
            .values()
            .map(|e| &e.record)
            .filter(|r| !r.is_expired(now))
            .cloned()
            .collect())
    }

    fn records_from(&self, from: &Key, limit: usize, now: u64) -> Result<Vec<Record>, StoreError> {
        Ok(self
            .records
            .range(from..)
            .map(|(_, e)| &e.record)
            .filter(|r| !r.is_expired(now))
            .take(limit)
            .cloned()
            .collect())
    }

    fn does_io(&self) -> bool {
        false
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
        let sum: usize = store.records.values().map(|e| e.record.footprint()).sum();
        assert_eq!(store.bytes(), sum);
        assert!(store.records.iter().all(|(k, e)| *k == e.record.key));
        let index: BTreeSet<(u64, Key)> = store
            .records
            .values()
            .map(|e| (e.record.expires_at, e.record.key))
            .collect();
        assert_eq!(store.by_expiry, index);
    }

    #[test]
    fn records_from_walks_the_store_a_page_at_a_time_in_key_order() {
        let mut store = MemoryStore::default();
        for k in [5u8, 1, 9, 3, 7] {
            store.put(rec(k, 1, b"v", NOW + 10), NOW).unwrap();
        }
        store.put(rec(4, 1, b"gone", NOW), NOW - 1).unwrap();
        let page = |from: u8, limit| -> Vec<u8> {
            store
                .records_from(&key(from), limit, NOW)
                .unwrap()
                .iter()
                .map(|r| r.key.as_bytes()[0])
                .collect()
        };
        assert_eq!(page(0, 2), [1, 3]);
        // The expired record of key 4 is skipped.
        assert_eq!(page(4, 2), [5, 7]);
        assert_eq!(page(8, 10), [9]);
        assert!(page(10, 10).is_empty());
    }

    #[test]
    fn the_expiry_index_follows_replacements_and_removals() {
        let mut store = MemoryStore::default();
        store.put(rec(1, 1, b"a", NOW + 5), NOW).unwrap();
        store.put(rec(2, 1, b"b", NOW + 5), NOW).unwrap();
        // A newer version that lives longer: gone from the old expiry's place.
        store.put(rec(1, 2, b"a", NOW + 50), NOW).unwrap();
        assert_consistent(&store);
        assert_eq!(store.expired_keys(NOW + 5), vec![key(2)]);
        assert_eq!(store.purge_expired(NOW + 5), Ok(1));
        assert!(store.get(&key(1), NOW + 5).unwrap().is_some());
        store.remove(&key(1)).unwrap();
        assert_consistent(&store);
        assert!(store.by_expiry.is_empty());
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
    fn a_relayed_copy_of_the_held_write_changes_nothing() {
        // Relayed copies of one write differ in expiry by their transit times: within
        // EXPIRY_SLACK_SECS the held copy stays as it is, whichever is later, so that
        // replication does not rewrite (or answer "kept newer" to) every record it
        // sends again.
        let mut store = MemoryStore::default();
        let held = rec(1, 1, b"v", NOW + 1000);
        store.put(held.clone(), NOW).unwrap();
        for expiry in [NOW + 1001, NOW + 999, NOW + 1000 + crate::EXPIRY_SLACK_SECS] {
            assert_eq!(
                store.put(rec(1, 1, b"v", expiry), NOW),
                Ok(PutOutcome::Unchanged)
            );
            assert_eq!(store.get(&key(1), NOW), Ok(Some(held.clone())));
        }
        // Beyond it, the earlier expiry wins and a later one is refused, as ever.
        let later = rec(1, 1, b"v", NOW + 1001 + crate::EXPIRY_SLACK_SECS);
        assert_eq!(store.put(later, NOW), Ok(PutOutcome::KeptNewer));
        let earlier = rec(1, 1, b"v", NOW + 999 - crate::EXPIRY_SLACK_SECS);
        assert_eq!(store.put(earlier.clone(), NOW), Ok(PutOutcome::Replaced));
        assert_eq!(store.get(&key(1), NOW), Ok(Some(earlier)));
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
}
