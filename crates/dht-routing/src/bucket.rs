//! One k-bucket: its entries, its replacement cache and the group counts of its entries.

use std::collections::VecDeque;
use std::time::Instant;

use dht_id::NodeId;

use crate::Contact;
use crate::diversity::GroupCounts;

/// A contact with when it was last seen and its diversity group (None when exempt or when
/// the table has no diversity limits).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    pub(crate) contact: Contact,
    pub(crate) last_seen: Instant,
    pub(crate) group: Option<u64>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Bucket {
    /// Least-recently-seen first.
    pub(crate) entries: VecDeque<Entry>,
    /// Least-recently-seen first.
    pub(crate) replacements: VecDeque<Entry>,
    /// Group counts of `entries` (replacements count toward nothing).
    pub(crate) groups: GroupCounts,
    /// When a lookup last ran in this bucket's range (`None`: not since the table began
    /// to be refreshed).
    pub(crate) last_lookup: Option<Instant>,
}

impl Bucket {
    pub(crate) fn position(&self, id: &NodeId) -> Option<usize> {
        self.entries.iter().position(|e| e.contact.id == *id)
    }

    pub(crate) fn replacement_position(&self, id: &NodeId) -> Option<usize> {
        self.replacements.iter().position(|e| e.contact.id == *id)
    }

    /// Inserts keeping the entries ordered by `last_seen` (a promoted replacement may have
    /// been seen before some of the current entries).
    pub(crate) fn insert_ordered(&mut self, entry: Entry) {
        let at = self
            .entries
            .iter()
            .rposition(|e| e.last_seen <= entry.last_seen)
            .map_or(0, |i| i + 1);
        self.entries.insert(at, entry);
    }
}
