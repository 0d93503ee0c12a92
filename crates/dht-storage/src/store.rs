//! The [`RecordStore`] interface, its limits, outcomes and errors.

use dht_id::Key;

use crate::quota::{Origin, QuotaLimits};
use crate::record::Record;

/// Bounds a store enforces.
#[derive(Debug, Clone)]
pub struct StoreLimits {
    /// Largest value accepted, in bytes (default 65 495, the largest UDP payload over IPv4).
    pub max_value_len: usize,
    /// Most records held at once, expired ones not yet purged included (default 100 000).
    pub max_records: usize,
    /// Most bytes held at once, as the sum of [`Record::footprint`]s (default 256 MiB).
    pub max_bytes: usize,
    /// Per-peer quotas that apply when the store is nearly full (see [`QuotaLimits`]).
    pub quota: QuotaLimits,
}

impl Default for StoreLimits {
    fn default() -> Self {
        StoreLimits {
            max_value_len: 65_495,
            max_records: 100_000,
            max_bytes: 256 * 1024 * 1024,
            quota: QuotaLimits::default(),
        }
    }
}

impl StoreLimits {
    /// Checks what a store checks of an offered record before looking at what it holds,
    /// in this order: an empty value ([`StoreError::EmptyValue`]), a value longer than
    /// `max_value_len` ([`StoreError::ValueTooLarge`]), an expiry already passed at `now`
    /// ([`StoreError::Expired`]). Shared by every [`RecordStore`] implementation.
    pub fn validate(&self, record: &Record, now: u64) -> Result<(), StoreError> {
        if record.value.is_empty() {
            return Err(StoreError::EmptyValue);
        }
        if record.value.len() > self.max_value_len {
            return Err(StoreError::ValueTooLarge {
                len: record.value.len(),
                max: self.max_value_len,
            });
        }
        if record.is_expired(now) {
            return Err(StoreError::Expired);
        }
        Ok(())
    }

    /// True if a store holding `records` records of `bytes` bytes in total is within the
    /// limits.
    pub fn allows(&self, records: usize, bytes: usize) -> bool {
        records <= self.max_records && bytes <= self.max_bytes
    }
}

/// What [`RecordStore::put_from`] (or [`RecordStore::put`]) did with an accepted record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// A new key.
    Inserted,
    /// Replaced an older version (or an expired record) of the key.
    Replaced,
    /// The same write was already held ([`Record::same_write`]: all fields equal, the
    /// expiry within [`EXPIRY_SLACK_SECS`](crate::EXPIRY_SLACK_SECS)); nothing changed.
    Unchanged,
    /// The store holds a newer version of the key; the offered record was ignored.
    KeptNewer,
}

/// Why a store refused a record or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The record's value is empty.
    #[error("empty value")]
    EmptyValue,
    /// The record's value is longer than the store accepts.
    #[error("value of {len} bytes exceeds the maximum of {max}")]
    ValueTooLarge {
        /// Length of the offered value.
        len: usize,
        /// The store's `max_value_len`.
        max: usize,
    },
    /// The record's expiry has already passed.
    #[error("record already expired")]
    Expired,
    /// Storing would exceed `max_records` or `max_bytes` (after purging expired records).
    #[error("store full: holding {records} records of {bytes} bytes")]
    Full {
        /// Records the store holds (unchanged by the refused put).
        records: usize,
        /// Bytes the store holds (unchanged by the refused put).
        bytes: usize,
    },
    /// The store is under pressure and the peer that sent the record already holds its
    /// share (see [`QuotaLimits`]); only [`Origin::Peer`] puts are refused this way.
    #[error("peer quota exceeded: the peer holds {records} records of {bytes} bytes")]
    QuotaExceeded {
        /// Records charged to the peer (unchanged by the refused put).
        records: usize,
        /// Bytes charged to the peer (unchanged by the refused put).
        bytes: usize,
    },
    /// A backend (database, IO) failure, for persistent stores.
    #[error("storage backend failure: {0}")]
    Backend(String),
}

/// The disk half of a batch that [`RecordStore::stage_many`] applied in memory: run
/// without holding the store, on the thread that staged it.
pub trait StagedWrite: Send {
    /// Writes the batch to disk and commits it.
    fn commit(&mut self) -> Result<(), StoreError>;

    /// The concrete type, for the store that made it ([`RecordStore::unstage`]).
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any>;
}

/// What [`RecordStore::stage_many`] returns: the results of the puts, and the disk half
/// of the batch if there is one.
pub type Staging = (
    Vec<Result<PutOutcome, StoreError>>,
    Option<Box<dyn StagedWrite>>,
);

/// Makes a store's committed changes durable on disk (see [`RecordStore::syncer`]).
pub type Syncer = std::sync::Arc<dyn Fn() -> Result<(), StoreError> + Send + Sync>;

/// Saves the node's contacts blob, replacing the one saved before (see
/// [`RecordStore::contacts_saver`]).
pub type ContactsSaver = std::sync::Arc<dyn Fn(&[u8]) -> Result<(), StoreError> + Send + Sync>;

/// A store of [`Record`]s, one per key. Object safe: the node holds a
/// `Box<dyn RecordStore>`.
///
/// Every method that depends on time takes `now`, wall-clock UNIX seconds; a store never
/// reads the clock. A record is expired when `now >= expires_at`; expired records are never
/// returned but are held (and counted) until purged or replaced.
pub trait RecordStore: Send {
    /// Offers a record on behalf of `origin`. Checks, in order:
    /// [`StoreLimits::validate`] (empty, too large, expired); an unexpired record of the key
    /// that equals it ([`PutOutcome::Unchanged`], the held record keeps its origin) or
    /// [supersedes](Record::supersedes) it ([`PutOutcome::KeptNewer`]); otherwise it
    /// inserts the record ([`PutOutcome::Inserted`]) or replaces the held one, expired or
    /// older ([`PutOutcome::Replaced`]), and charges it to `origin`, if
    ///
    /// 1. the store stays within `max_records` and `max_bytes`, otherwise
    ///    [`StoreError::Full`], whatever the origin;
    /// 2. for an [`Origin::Peer`], the peer stays within its quota
    ///    (see [`QuotaLimits`]), otherwise [`StoreError::QuotaExceeded`].
    ///    [`Origin::Local`] and [`Origin::Replication`] are never refused by the quota.
    ///
    /// Expired records are purged if that is needed and enough to pass both checks. A
    /// refused put leaves the store unchanged.
    fn put_from(
        &mut self,
        record: Record,
        now: u64,
        origin: Origin,
    ) -> Result<PutOutcome, StoreError>;

    /// Several puts; a persistent store commits them together (group commit). Results
    /// in order.
    fn put_many(
        &mut self,
        puts: Vec<(Record, Origin)>,
        now: u64,
    ) -> Vec<Result<PutOutcome, StoreError>> {
        puts.into_iter()
            .map(|(record, origin)| self.put_from(record, now, origin))
            .collect()
    }

    /// [`put_many`](Self::put_many) in two halves, so that the caller can let readers in
    /// while the disk works: the puts are applied in memory now (readers see them at
    /// once) and their results returned with the disk half, if there is one, which the
    /// caller runs without holding the store ([`StagedWrite::commit`]). If that fails,
    /// the caller hands it back to [`unstage`](Self::unstage), which undoes the batch in
    /// memory, and every put of the batch failed with that error. Stores that keep
    /// nothing on disk (the default) do it all now and return no disk half.
    fn stage_many(&mut self, puts: Vec<(Record, Origin)>, now: u64) -> Staging {
        (self.put_many(puts, now), None)
    }

    /// [`purge_expired`](Self::purge_expired) in two halves, as
    /// [`stage_many`](Self::stage_many): the expired records leave memory now, and the
    /// disk half (if any) removes them from disk without the store. How many were
    /// purged.
    fn stage_purge(
        &mut self,
        now: u64,
    ) -> Result<(usize, Option<Box<dyn StagedWrite>>), StoreError> {
        Ok((self.purge_expired(now)?, None))
    }

    /// Undoes in memory a batch of [`stage_many`](Self::stage_many) whose disk half
    /// failed.
    fn unstage(&mut self, staged: Box<dyn StagedWrite>) {
        let _ = staged;
    }

    /// [`put_from`](Self::put_from) on behalf of [`Origin::Local`]: never refused by the
    /// quota, only by the hard limits.
    fn put(&mut self, record: Record, now: u64) -> Result<PutOutcome, StoreError> {
        self.put_from(record, now, Origin::Local)
    }

    /// Records and bytes currently charged to `peer`: the records held whose last
    /// [`Inserted`](PutOutcome::Inserted) or [`Replaced`](PutOutcome::Replaced) put came
    /// from [`Origin::Peer`]`(peer)` (its STOREs; replication is not counted), expired ones
    /// not yet purged included.
    fn usage_of(&self, peer: &Key) -> (usize, usize);

    /// The unexpired record of `key`, if any.
    fn get(&self, key: &Key, now: u64) -> Result<Option<Record>, StoreError>;

    /// Removes the record of `key`, expired or not, and returns it.
    fn remove(&mut self, key: &Key) -> Result<Option<Record>, StoreError>;

    /// Removes expired records; returns how many.
    fn purge_expired(&mut self, now: u64) -> Result<usize, StoreError>;

    /// All unexpired records (for replication; bounded by `max_records`), in key order.
    fn records(&self, now: u64) -> Result<Vec<Record>, StoreError>;

    /// Up to `limit` unexpired records whose keys are `from` or after it, in key order:
    /// a page of a walk through the store that holds the store only for a page (the
    /// next page starts after the last key returned).
    fn records_from(&self, from: &Key, limit: usize, now: u64) -> Result<Vec<Record>, StoreError> {
        let mut records = self.records(now)?;
        records.retain(|r| r.key >= *from);
        records.sort_unstable_by_key(|r| r.key);
        records.truncate(limit);
        Ok(records)
    }

    /// What keeps the node's contacts (an opaque blob the node encodes) for its next
    /// start, callable from any thread while the store goes on serving (it needs no
    /// access to the store, so readers never wait for its commit); `None` for stores
    /// that do not outlive the process.
    fn contacts_saver(&self) -> Option<ContactsSaver> {
        None
    }

    /// The contacts saved through the [`contacts_saver`](Self::contacts_saver), if any.
    fn load_contacts(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(None)
    }

    /// Whether a commit waits for the disk (`true`) or for the OS only (`false`, made
    /// durable by the [`syncer`](Self::syncer)); see
    /// [`DurableStore::set_sync_every_commit`]. Stores that keep nothing on disk ignore it.
    ///
    /// [`DurableStore::set_sync_every_commit`]: crate::DurableStore::set_sync_every_commit
    fn set_sync_every_commit(&mut self, on: bool) -> Result<(), StoreError> {
        let _ = on;
        Ok(())
    }

    /// What makes the changes committed so far durable on disk, callable from any thread
    /// while the store goes on serving (it needs no access to the store); `None` for
    /// stores that keep nothing on disk.
    fn syncer(&self) -> Option<Syncer> {
        None
    }

    /// Whether a put or a purge may wait for file IO (a commit to disk). The caller runs
    /// those of such a store off its async workers; a store that only changes memory
    /// (`false`) is changed in place, which also keeps a node on simulated time from
    /// waiting for a thread the simulated clock knows nothing of.
    fn does_io(&self) -> bool {
        true
    }

    /// Number of records held (expired ones not yet purged included).
    fn len(&self) -> usize;

    /// True if the store holds no record.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sum of footprints of the records held.
    fn bytes(&self) -> usize;
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn record(value: Bytes, expires_at: u64) -> Record {
        Record {
            key: Key::sha256(b"k"),
            value,
            expires_at,
            replication: 3,
            version: 1,
        }
    }

    #[test]
    fn default_limits() {
        let limits = StoreLimits::default();
        assert_eq!(limits.max_value_len, 65_495);
        assert_eq!(limits.max_records, 100_000);
        assert_eq!(limits.max_bytes, 268_435_456);
        assert_eq!(limits.quota.pressure, 0.8);
        assert_eq!(limits.quota.peer_share, 0.05);
        assert_eq!(limits.quota.floor_records, 100);
    }

    #[test]
    fn validate_checks_in_order() {
        let limits = StoreLimits {
            max_value_len: 4,
            ..StoreLimits::default()
        };
        // Empty and expired: empty is reported first.
        assert_eq!(
            limits.validate(&record(Bytes::new(), 10), 10),
            Err(StoreError::EmptyValue)
        );
        // Too large and expired: too large is reported first.
        assert_eq!(
            limits.validate(&record(Bytes::from_static(b"12345"), 10), 10),
            Err(StoreError::ValueTooLarge { len: 5, max: 4 })
        );
        assert_eq!(
            limits.validate(&record(Bytes::from_static(b"1234"), 10), 10),
            Err(StoreError::Expired)
        );
        assert_eq!(
            limits.validate(&record(Bytes::from_static(b"1234"), 10), 9),
            Ok(())
        );
    }

    #[test]
    fn allows_is_inclusive() {
        let limits = StoreLimits {
            max_value_len: 10,
            max_records: 2,
            max_bytes: 100,
            ..StoreLimits::default()
        };
        assert!(limits.allows(2, 100));
        assert!(!limits.allows(3, 100));
        assert!(!limits.allows(2, 101));
    }

    #[test]
    fn errors_display() {
        assert_eq!(
            StoreError::ValueTooLarge { len: 5, max: 4 }.to_string(),
            "value of 5 bytes exceeds the maximum of 4"
        );
        assert_eq!(
            StoreError::QuotaExceeded {
                records: 3,
                bytes: 300
            }
            .to_string(),
            "peer quota exceeded: the peer holds 3 records of 300 bytes"
        );
        assert_eq!(
            StoreError::Backend("disk".into()).to_string(),
            "storage backend failure: disk"
        );
    }
}
