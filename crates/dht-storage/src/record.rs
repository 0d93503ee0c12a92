//! [`Record`]: a stored value with its metadata, and the order that decides which of two
//! records of the same key a store keeps.

use std::cmp::Ordering;
use std::fmt;

use bytes::Bytes;
use dht_id::{KEY_LEN, Key};

/// Fixed number of bytes every record accounts for in store limits on top of its key and
/// value: the metadata fields (expiry, version, replication) and the map entry around them.
pub const RECORD_OVERHEAD: usize = 64;

/// How far apart the expiries of two copies of one write may be and still count as the
/// same ([`Record::same_write`]). Lifetimes travel relative (seconds left), so each hop
/// moves a copy's expiry by its transit time and by the rounding to whole seconds.
pub const EXPIRY_SLACK_SECS: u64 = 60;

/// A stored value with its metadata.
#[derive(Clone, PartialEq, Eq)]
pub struct Record {
    /// The key the value is stored under.
    pub key: Key,
    /// The value. Never logged or printed (see the [`Debug`](fmt::Debug) impl).
    pub value: Bytes,
    /// Absolute expiry, UNIX seconds; the record is expired when `now >= expires_at`.
    pub expires_at: u64,
    /// The replication the publisher asked for (already clamped by the node).
    pub replication: u8,
    /// The publisher's timestamp (UNIX microseconds): a newer version replaces an older
    /// one, never the reverse.
    pub version: u64,
}

impl Record {
    /// True if the record has expired at `now` (UNIX seconds), that is `now >= expires_at`.
    pub fn is_expired(&self, now: u64) -> bool {
        now >= self.expires_at
    }

    /// True if `self` should replace `other`, a record of the same key: the higher version
    /// wins; on equal versions the larger value (lexicographic bytes) wins, so that all
    /// replicas converge deterministically. Identical records: false.
    ///
    /// Records with equal version and value that differ in metadata are ordered too, so
    /// that the order is total and replicas converge on every field: the **earlier**
    /// `expires_at` wins, then the larger `replication`. The key is not compared.
    ///
    /// Why the earlier expiry: only the writer sets a record's lifetime, and it does so
    /// with a new version. A copy with the same version and value but a later expiry can
    /// only come from a peer that changed it, and letting it win would let any peer keep
    /// any record alive for ever (each STORE pushing the expiry to the receiver's
    /// `max_ttl`). A peer that shortens a copy instead gains nothing it could not do with a
    /// newer version of its own: records are not signed.
    pub fn supersedes(&self, other: &Record) -> bool {
        self.precedence(other) == Ordering::Greater
    }

    /// True if `self` and `other` are copies of one write: the same version, value and
    /// replication, with expiries at most [`EXPIRY_SLACK_SECS`] apart. A store that
    /// holds one keeps it when offered the other (neither a replacement nor "kept
    /// newer"), and read repair leaves such a copy alone: the few seconds by which
    /// relayed copies differ are not news worth a write.
    pub fn same_write(&self, other: &Record) -> bool {
        self.version == other.version
            && self.value == other.value
            && self.replication == other.replication
            && self.expires_at.abs_diff(other.expires_at) <= EXPIRY_SLACK_SECS
    }

    /// Compares `self` with `other` in the order [`supersedes`](Self::supersedes) uses.
    fn precedence(&self, other: &Record) -> Ordering {
        self.version
            .cmp(&other.version)
            .then_with(|| self.value.as_ref().cmp(other.value.as_ref()))
            .then_with(|| other.expires_at.cmp(&self.expires_at))
            .then_with(|| self.replication.cmp(&other.replication))
    }

    /// Bytes this record accounts for in store limits: value length + key length
    /// ([`KEY_LEN`]) + [`RECORD_OVERHEAD`].
    pub fn footprint(&self) -> usize {
        self.value
            .len()
            .saturating_add(KEY_LEN)
            .saturating_add(RECORD_OVERHEAD)
    }
}

impl fmt::Debug for Record {
    /// Shows the key, the value's length and the metadata; never the value's bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("key", &self.key)
            .field("value_len", &self.value.len())
            .field("expires_at", &self.expires_at)
            .field("version", &self.version)
            .field("replication", &self.replication)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(version: u64, value: &'static [u8]) -> Record {
        Record {
            key: Key::sha256(b"k"),
            value: Bytes::from_static(value),
            expires_at: 1_000,
            replication: 3,
            version,
        }
    }

    #[test]
    fn expiry_boundary() {
        let r = record(1, b"v");
        assert!(!r.is_expired(999));
        assert!(r.is_expired(1_000));
        assert!(r.is_expired(1_001));
    }

    #[test]
    fn higher_version_supersedes_whatever_the_value() {
        let old = record(1, b"zzzz");
        let new = record(2, b"a");
        assert!(new.supersedes(&old));
        assert!(!old.supersedes(&new));
    }

    #[test]
    fn equal_versions_larger_value_wins() {
        let a = record(5, b"abc");
        let b = record(5, b"abd");
        assert!(b.supersedes(&a));
        assert!(!a.supersedes(&b));
        // A prefix is smaller than its extensions.
        let short = record(5, b"ab");
        assert!(a.supersedes(&short));
        assert!(!short.supersedes(&a));
    }

    #[test]
    fn identical_records_do_not_supersede() {
        let a = record(5, b"abc");
        assert!(!a.supersedes(&a.clone()));
    }

    #[test]
    fn equal_version_and_value_metadata_breaks_the_tie() {
        let a = record(5, b"abc");
        // Nobody but the writer (with a new version) may push an expiry back.
        let later = Record {
            expires_at: 2_000,
            ..a.clone()
        };
        assert!(a.supersedes(&later));
        assert!(!later.supersedes(&a));
        // A newer version decides, whatever the expiry.
        let renewed = Record {
            version: 6,
            ..later.clone()
        };
        assert!(renewed.supersedes(&a));
        let more = Record {
            replication: 4,
            ..a.clone()
        };
        assert!(more.supersedes(&a));
        assert!(!a.supersedes(&more));
    }

    #[test]
    fn footprint_counts_value_key_and_overhead() {
        assert_eq!(record(1, b"").footprint(), KEY_LEN + RECORD_OVERHEAD);
        assert_eq!(
            record(1, b"hello").footprint(),
            5 + KEY_LEN + RECORD_OVERHEAD
        );
    }

    #[test]
    fn debug_never_shows_the_value() {
        let r = record(7, b"secret-value-bytes");
        let shown = format!("{r:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(!shown.contains("115, 101"), "{shown}"); // "se" as decimal bytes
        assert!(shown.contains("value_len: 18"), "{shown}");
        assert!(shown.contains("version: 7"), "{shown}");
        assert!(shown.contains("expires_at: 1000"), "{shown}");
        assert!(shown.contains("replication: 3"), "{shown}");
    }
}
