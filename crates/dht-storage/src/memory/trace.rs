//! Crate-internal operations of [`MemoryStore`] for stores built on it: the put and purge
//! logic reporting what they changed, and raw inserts and removals that bypass the limits
//! (loading from disk, undoing a failed database write).

use dht_id::Key;

use super::{Entry, MemoryStore};
use crate::quota::{Origin, Put, Tally};
use crate::record::Record;
use crate::store::{PutOutcome, StoreError};

/// What a put did to a [`MemoryStore`], for a store that mirrors it (the durable store
/// writes the same changes to its database, and undoes them if that fails).
#[derive(Debug)]
pub(crate) struct Change {
    /// What the put did with the offered record.
    pub(crate) outcome: PutOutcome,
    /// The record of the key held before, with its origin, if the put replaced one.
    pub(crate) replaced: Option<(Record, Origin)>,
    /// The expired records the put purged to make room, with their origins.
    pub(crate) purged: Vec<(Record, Origin)>,
}

impl Change {
    /// True if the store changed: the offered record is now held.
    pub(crate) fn stored(&self) -> bool {
        matches!(self.outcome, PutOutcome::Inserted | PutOutcome::Replaced)
    }
}

/// The put and purge logic of [`RecordStore`](crate::RecordStore), and raw access.
impl MemoryStore {
    /// [`RecordStore::put_from`](crate::RecordStore::put_from), reporting what changed.
    pub(crate) fn put_traced(
        &mut self,
        record: Record,
        now: u64,
        origin: Origin,
    ) -> Result<Change, StoreError> {
        self.limits.validate(&record, now)?;
        let unchanged = |outcome| Change {
            outcome,
            replaced: None,
            purged: Vec::new(),
        };
        let (outcome, held) = match self.records.get(&record.key) {
            None => (PutOutcome::Inserted, None),
            Some(held) if held.record.is_expired(now) => (PutOutcome::Replaced, Some(held)),
            Some(held) if held.record.same_write(&record) => {
                return Ok(unchanged(PutOutcome::Unchanged));
            }
            Some(held) if held.record.supersedes(&record) => {
                return Ok(unchanged(PutOutcome::KeptNewer));
            }
            Some(held) => (PutOutcome::Replaced, Some(held)),
        };
        let put = Put {
            origin,
            footprint: record.footprint(),
            replaces: held.map(|e| (e.origin, e.record.footprint())),
        };
        let totals = Tally {
            records: self.records.len(),
            bytes: self.bytes,
        };
        let usage = self.ledger.usage(&origin);
        let mut purged = Vec::new();
        if self.limits.admit(totals, usage, &put).is_err() {
            // Purge only if that is enough, so that a refused put changes nothing.
            let (expired, expired_mine) = self.expired_totals(now, &record.key, &origin);
            self.limits
                .admit(totals.without(expired), usage.without(expired_mine), &put)
                .map_err(|refusal| self.refused(refusal, &origin))?;
            purged = self.purge_traced(now);
        }
        let replaced = self.restore(record, origin);
        Ok(Change {
            outcome,
            replaced,
            purged,
        })
    }

    /// Removes the expired records and returns them with their origins.
    pub(crate) fn purge_traced(&mut self, now: u64) -> Vec<(Record, Origin)> {
        let expired = self.expired_keys(now);
        expired.iter().filter_map(|key| self.take(key)).collect()
    }

    /// The keys of the records expired at `now`, earliest expiry first.
    pub(crate) fn expired_keys(&self, now: u64) -> Vec<Key> {
        self.expired(now).map(|e| e.record.key).collect()
    }

    /// The record held for `key`, expired or not, with its origin.
    pub(crate) fn entry(&self, key: &Key) -> Option<(&Record, Origin)> {
        self.records.get(key).map(|e| (&e.record, e.origin))
    }

    /// Holds `record` for `origin` without checking any limit, and returns the record of
    /// the key it displaced. The accounting follows.
    pub(crate) fn restore(&mut self, record: Record, origin: Origin) -> Option<(Record, Origin)> {
        let footprint = record.footprint();
        self.bytes = self.bytes.saturating_add(footprint);
        self.ledger.charge(origin, footprint);
        let expires_at = record.expires_at;
        self.by_expiry.insert((expires_at, record.key));
        let old = self.records.insert(record.key, Entry { record, origin })?;
        if old.record.expires_at != expires_at {
            self.by_expiry
                .remove(&(old.record.expires_at, old.record.key));
        }
        let old_bytes = old.record.footprint();
        self.bytes = self.bytes.saturating_sub(old_bytes);
        self.ledger.refund(old.origin, old_bytes);
        Some((old.record, old.origin))
    }

    /// Removes the record of `key`, expired or not, and returns it with its origin.
    pub(crate) fn take(&mut self, key: &Key) -> Option<(Record, Origin)> {
        let e = self.records.remove(key)?;
        self.by_expiry.remove(&(e.record.expires_at, e.record.key));
        let bytes = e.record.footprint();
        self.bytes = self.bytes.saturating_sub(bytes);
        self.ledger.refund(e.origin, bytes);
        Some((e.record, e.origin))
    }
}
