//! IP diversity limits of the routing table.
//!
//! One operator with many ids but few addresses should not be able to fill a bucket, or the
//! whole table, with its own nodes (an eclipse attack). As go-libp2p-kad-dht and geth do, the
//! table therefore admits at most [`Diversity::per_bucket`] contacts of one network group per
//! bucket and [`Diversity::per_table`] per table. The caller defines the groups with a
//! [`GroupFn`] (typically IPv4 /24 and IPv6 /48, with loopback and private ranges exempt).

use std::collections::HashMap;
use std::net::IpAddr;

/// The network group of an address for the diversity limits (e.g. its IPv4 /24 or IPv6 /48),
/// or None when the address is exempt (by default loopback and private ranges, so that local
/// networks work).
///
/// It must be a pure function: the table computes the group of a contact once, when it sees
/// the contact's address, and remembers it.
pub type GroupFn = fn(IpAddr) -> Option<u64>;

/// Limits on how many contacts of one network group the routing table holds.
///
/// Only contacts in the buckets count (not those waiting in replacement caches), and contacts
/// whose group is None (exempt) are never limited. A limit of 0 rejects every non-exempt
/// address.
#[derive(Debug, Clone, Copy)]
pub struct Diversity {
    /// At most this many contacts of one group per bucket (default 2).
    pub per_bucket: usize,
    /// At most this many contacts of one group in the whole table (default 10).
    pub per_table: usize,
    /// The group of an address, None if exempt.
    pub group: GroupFn,
}

impl Diversity {
    /// Default of [`Diversity::per_bucket`].
    pub const DEFAULT_PER_BUCKET: usize = 2;
    /// Default of [`Diversity::per_table`].
    pub const DEFAULT_PER_TABLE: usize = 10;

    /// The default limits (2 per bucket, 10 per table) with this group function.
    pub fn new(group: GroupFn) -> Self {
        Diversity {
            per_bucket: Self::DEFAULT_PER_BUCKET,
            per_table: Self::DEFAULT_PER_TABLE,
            group,
        }
    }

    /// Whether one more contact of `group` fits, given the counts of its bucket and of the
    /// table. Exempt contacts (None) always fit.
    pub(crate) fn admits(
        &self,
        group: Option<u64>,
        bucket: &GroupCounts,
        table: &GroupCounts,
    ) -> bool {
        group.is_none_or(|g| bucket.get(g) < self.per_bucket && table.get(g) < self.per_table)
    }
}

/// Whether one more contact of `group` fits given the counts of its bucket and of the table:
/// always without diversity limits (None) and for exempt contacts.
pub(crate) fn admits(
    diversity: Option<&Diversity>,
    group: Option<u64>,
    bucket: &GroupCounts,
    table: &GroupCounts,
) -> bool {
    diversity.is_none_or(|d| d.admits(group, bucket, table))
}

/// How many contacts of each group there are (groups with a count of 0 are not stored, so the
/// map never holds more keys than there are contacts).
#[derive(Debug, Clone, Default)]
pub(crate) struct GroupCounts(HashMap<u64, usize>);

impl GroupCounts {
    /// The count of `group` (0 if absent).
    pub(crate) fn get(&self, group: u64) -> usize {
        self.0.get(&group).copied().unwrap_or(0)
    }

    /// Counts one more contact of `group`; nothing for an exempt contact (None).
    pub(crate) fn add(&mut self, group: Option<u64>) {
        if let Some(g) = group {
            *self.0.entry(g).or_insert(0) += 1;
        }
    }

    /// Counts one contact of `group` less; nothing for an exempt contact (None).
    pub(crate) fn sub(&mut self, group: Option<u64>) {
        let Some(g) = group else {
            return;
        };
        if let Some(count) = self.0.get_mut(&g) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.0.remove(&g);
            }
        }
    }

    /// Number of groups with a nonzero count.
    #[cfg(test)]
    pub(crate) fn groups(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_groups(_: IpAddr) -> Option<u64> {
        None
    }

    #[test]
    fn counts_add_and_sub() {
        let mut c = GroupCounts::default();
        c.add(Some(7));
        c.add(Some(7));
        c.add(Some(8));
        c.add(None);
        assert_eq!((c.get(7), c.get(8), c.get(9)), (2, 1, 0));
        assert_eq!(c.groups(), 2);
        c.sub(Some(7));
        c.sub(Some(8));
        c.sub(None);
        assert_eq!((c.get(7), c.get(8)), (1, 0));
        // A group that drops to 0 is forgotten; subtracting from it again is harmless.
        assert_eq!(c.groups(), 1);
        c.sub(Some(8));
        assert_eq!(c.get(8), 0);
        assert_eq!(c.groups(), 1);
    }

    #[test]
    fn admits_checks_both_limits() {
        let d = Diversity {
            per_bucket: 2,
            per_table: 3,
            group: no_groups,
        };
        let mut bucket = GroupCounts::default();
        let mut table = GroupCounts::default();
        assert!(d.admits(Some(1), &bucket, &table));
        bucket.add(Some(1));
        bucket.add(Some(1));
        table.add(Some(1));
        table.add(Some(1));
        assert!(!d.admits(Some(1), &bucket, &table), "bucket limit");
        let other_bucket = GroupCounts::default();
        assert!(d.admits(Some(1), &other_bucket, &table));
        table.add(Some(1));
        assert!(!d.admits(Some(1), &other_bucket, &table), "table limit");
        assert!(d.admits(Some(2), &bucket, &table));
        assert!(d.admits(None, &bucket, &table), "exempt");
        let zero = Diversity { per_bucket: 0, ..d };
        assert!(!zero.admits(Some(2), &other_bucket, &GroupCounts::default()));
        assert!(zero.admits(None, &other_bucket, &GroupCounts::default()));
    }

    #[test]
    fn new_has_default_limits() {
        let d = Diversity::new(no_groups);
        assert_eq!(d.per_bucket, 2);
        assert_eq!(d.per_table, 10);
        assert_eq!((d.group)(IpAddr::from([1, 2, 3, 4])), None);
    }
}
