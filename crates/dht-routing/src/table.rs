//! The k-bucket routing table.
//!
//! Bucket `i` holds the contacts whose id shares exactly `i` leading bits with the local id,
//! so bucket 0 covers the farthest half of the id space and bucket 255 the single closest id.
//! Each bucket keeps at most `k` entries (more in the farthest buckets with
//! [`RoutingConfig::wide_buckets`]) in least-recently-seen order (front = oldest) and a
//! bounded replacement cache of contacts that were seen while the bucket was full.
//!
//! With [`RoutingConfig::diversity`] set, the table also keeps per-group counts of its bucket
//! entries, per bucket and for the whole table, so that the [`Diversity`] limits are checked
//! in O(1) on every insert, address change and promotion.

use std::net::IpAddr;
use std::time::Instant;

use dht_id::{Distance, KEY_BITS, Key, NodeId};

use crate::bucket::{Bucket, Entry};
use crate::diversity::{Diversity, GroupCounts, admits};
use crate::{Contact, DEFAULT_K};

/// Parameters of a [`RoutingTable`].
#[derive(Debug, Clone)]
pub struct RoutingConfig {
    /// Bucket size, "k" in the Kademlia paper (default 20). A value of 0 is treated as 1.
    pub k: usize,
    /// The farthest buckets are wider (default 0: every bucket holds k): bucket `i` below
    /// `wide_buckets` holds `k * 2^(wide_buckets - i)` contacts, so with 3 the far half
    /// of the id space holds 8k, the next quarter 4k and the next eighth 2k. The closest
    /// of 8k contacts to a target in the far half shares 3 more bits with it than the
    /// closest of k, which saves a lookup about one round trip in a network of 10,000
    /// (Jimenez, Osmani and Knutsson, "Sub-second lookups on a large-scale Kademlia-based
    /// overlay", IEEE P2P 2011, widened mainline's first buckets the same way). At most
    /// [`MAX_WIDE_BUCKETS`].
    pub wide_buckets: usize,
    /// Capacity of each bucket's replacement cache (default 20). 0 disables the cache.
    pub replacement_cache: usize,
    /// Limits on contacts of one network group per bucket and per table, against one operator
    /// filling a bucket or the table with many ids from one network. None (the default) = no
    /// limits; the caller supplies the group function (e.g. dht-security's IP groups).
    pub diversity: Option<Diversity>,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            k: DEFAULT_K,
            wide_buckets: 0,
            replacement_cache: DEFAULT_K,
            diversity: None,
        }
    }
}

/// The most buckets [`RoutingConfig::wide_buckets`] widens (bucket 0 then holds 64k).
pub const MAX_WIDE_BUCKETS: usize = 6;

/// What [`RoutingTable::insert`] did with a contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    /// Added to a bucket with room.
    Inserted,
    /// Already present: moved to the most-recently-seen end, address updated to the given
    /// one, `last_seen = now`.
    Updated,
    /// The bucket is full: the newcomer waits in the bucket's replacement cache (bounded;
    /// the oldest cache entry is dropped when full; re-inserting a cached contact refreshes
    /// it). The caller should ping `oldest` (the least-recently-seen contact of the bucket):
    /// if it answers, [`RoutingTable::insert`] it again (it moves to the most-recently-seen
    /// end); if it fails, [`RoutingTable::remove`] it and the newest cache entry takes its
    /// place. The table never evicts a contact by itself.
    Pending {
        /// The least-recently-seen contact of the full bucket.
        oldest: Contact,
    },
    /// The contact is the local node; ignored.
    SelfId,
    /// The contact's group already has its share of this bucket or of the table
    /// ([`RoutingConfig::diversity`]); nothing changed. For a contact already present this
    /// means its new address is in such a group: the old entry (address, `last_seen` and
    /// position) is left untouched. Checked before [`InsertOutcome::Pending`]: a contact of
    /// a full group is not cached and causes no ping.
    Rejected,
}

/// The Kademlia routing table of one node: 256 k-buckets indexed by shared prefix length.
#[derive(Debug, Clone)]
pub struct RoutingTable {
    pub(crate) local_id: NodeId,
    config: RoutingConfig,
    /// Buckets `0..buckets.len()`; the ones beyond are empty and not allocated. A network
    /// of N nodes fills about log2(N) buckets, so a table holds a dozen rather than 256
    /// (32 kB per node, and every scan over the buckets, saved).
    pub(crate) buckets: Vec<Bucket>,
    len: usize,
    /// Group counts of all bucket entries.
    groups: GroupCounts,
}

impl RoutingTable {
    /// An empty table for the node `local_id`.
    pub fn new(local_id: NodeId, config: RoutingConfig) -> Self {
        let config = RoutingConfig {
            k: config.k.max(1),
            wide_buckets: config.wide_buckets.min(MAX_WIDE_BUCKETS),
            ..config
        };
        RoutingTable {
            local_id,
            config,
            buckets: Vec::new(),
            len: 0,
            groups: GroupCounts::default(),
        }
    }

    /// The id of the local node.
    pub fn local_id(&self) -> NodeId {
        self.local_id
    }

    /// The bucket size.
    pub fn k(&self) -> usize {
        self.config.k
    }

    /// How many contacts bucket `index` holds: k, or more for the farthest buckets
    /// ([`RoutingConfig::wide_buckets`]).
    pub fn capacity(&self, index: usize) -> usize {
        let wide = self.config.wide_buckets;
        match wide.checked_sub(index) {
            Some(doublings) if doublings > 0 => self.config.k << doublings,
            _ => self.config.k,
        }
    }

    /// The configuration in use (with `k` at least 1, `wide_buckets` at most
    /// [`MAX_WIDE_BUCKETS`]).
    pub fn config(&self) -> &RoutingConfig {
        &self.config
    }

    fn bucket_of(&self, id: &NodeId) -> Option<&Bucket> {
        self.local_id
            .bucket_index(id)
            .and_then(|index| self.buckets.get(index))
    }

    /// Bucket `index` (below 256), allocating it and the ones before it when needed.
    pub(crate) fn bucket_mut(&mut self, index: usize) -> &mut Bucket {
        allocated(&mut self.buckets, index)
    }

    /// The diversity group the table assigns to `ip`: None without diversity limits or when
    /// the address is exempt.
    pub fn group_of(&self, ip: IpAddr) -> Option<u64> {
        self.config.diversity.and_then(|d| (d.group)(ip))
    }

    /// How many contacts in the buckets (not counting replacement caches) belong to `group`.
    /// Always 0 without diversity limits.
    pub fn group_count(&self, group: u64) -> usize {
        self.groups.get(group)
    }

    /// How many contacts of bucket `index` belong to `group` (0 for an index of 256 or more).
    pub fn bucket_group_count(&self, index: usize, group: u64) -> usize {
        self.buckets.get(index).map_or(0, |b| b.groups.get(group))
    }

    /// Records that `contact` was seen alive at `now`.
    ///
    /// With diversity limits, a contact whose group already has its share of the bucket or
    /// the table is [`InsertOutcome::Rejected`], and so is an address change of a present
    /// contact into such a group.
    pub fn insert(&mut self, contact: Contact, now: Instant) -> InsertOutcome {
        let cache = self.config.replacement_cache;
        let diversity = self.config.diversity;
        let group = self.group_of(contact.addr.ip());
        let Some(index) = self.local_id.bucket_index(&contact.id) else {
            return InsertOutcome::SelfId;
        };
        let capacity = self.capacity(index);
        let bucket = allocated(&mut self.buckets, index);
        let fresh = Entry {
            contact,
            last_seen: now,
            group,
        };
        if let Some(pos) = bucket.position(&contact.id) {
            let old_group = bucket.entries.get(pos).and_then(|e| e.group);
            if group != old_group {
                // The old entry is of another group, so it frees no slot of the new one.
                if !admits(diversity.as_ref(), group, &bucket.groups, &self.groups) {
                    return InsertOutcome::Rejected;
                }
                bucket.groups.sub(old_group);
                self.groups.sub(old_group);
                bucket.groups.add(group);
                self.groups.add(group);
            }
            bucket.entries.remove(pos);
            bucket.entries.push_back(fresh);
            return InsertOutcome::Updated;
        }
        if !admits(diversity.as_ref(), group, &bucket.groups, &self.groups) {
            return InsertOutcome::Rejected;
        }
        if let Some(pos) = bucket.replacement_position(&contact.id) {
            bucket.replacements.remove(pos);
        }
        // Unreachable fallback when the bucket is full: as capacity >= 1 it has an oldest entry;
        // otherwise keep the contact rather than panic.
        let oldest = bucket.entries.front().map(|e| e.contact);
        match oldest {
            Some(oldest) if bucket.entries.len() >= capacity => {
                if cache > 0 {
                    while bucket.replacements.len() >= cache {
                        bucket.replacements.pop_front();
                    }
                    bucket.replacements.push_back(fresh);
                }
                InsertOutcome::Pending { oldest }
            }
            _ => {
                bucket.entries.push_back(fresh);
                bucket.groups.add(group);
                self.groups.add(group);
                self.len += 1;
                InsertOutcome::Inserted
            }
        }
    }

    /// Removes a contact (e.g. it failed to answer); the most recently seen entry of that
    /// bucket's replacement cache takes its place. With diversity limits, cached candidates
    /// whose group is full at that moment are dropped from the cache and the next newest is
    /// tried. Also removes the contact from the replacement cache if it is there. Returns the
    /// removed contact if it was in the bucket.
    pub fn remove(&mut self, id: &NodeId) -> Option<Contact> {
        let diversity = self.config.diversity;
        let bucket = self
            .local_id
            .bucket_index(id)
            .and_then(|index| self.buckets.get_mut(index))?;
        if let Some(pos) = bucket.replacement_position(id) {
            bucket.replacements.remove(pos);
        }
        let removed = bucket.entries.remove(bucket.position(id)?)?;
        bucket.groups.sub(removed.group);
        self.groups.sub(removed.group);
        self.len -= 1;
        while let Some(candidate) = bucket.replacements.pop_back() {
            if admits(
                diversity.as_ref(),
                candidate.group,
                &bucket.groups,
                &self.groups,
            ) {
                bucket.groups.add(candidate.group);
                self.groups.add(candidate.group);
                bucket.insert_ordered(candidate);
                self.len += 1;
                break;
            }
        }
        Some(removed.contact)
    }

    /// Whether `id` is one of the k most recently seen contacts of its bucket: any
    /// contact of a bucket of k, the k most active of a wide one
    /// ([`RoutingConfig::wide_buckets`]).
    pub fn is_core(&self, id: &NodeId) -> bool {
        let k = self.config.k;
        self.bucket_of(id)
            .and_then(|bucket| {
                let position = bucket.position(id)?;
                Some(position + k >= bucket.entries.len())
            })
            .unwrap_or(false)
    }

    /// The most recently seen contact of `id`'s bucket that is not in its core: after
    /// `id` was inserted or seen again, the one that may just have left the core.
    /// `None` while the bucket holds at most k.
    pub fn core_edge(&self, id: &NodeId) -> Option<Contact> {
        let bucket = self.bucket_of(id)?;
        let edge = bucket.entries.len().checked_sub(self.config.k + 1)?;
        bucket.entries.get(edge).map(|e| e.contact)
    }

    /// Contacts for which [`RoutingTable::is_core`] holds: at most k per bucket.
    pub fn core_len(&self) -> usize {
        let k = self.config.k;
        self.buckets.iter().map(|b| b.entries.len().min(k)).sum()
    }

    /// Whether `id` is in a bucket (not counting replacement caches).
    pub fn contains(&self, id: &NodeId) -> bool {
        self.get(id).is_some()
    }

    /// The contact with this id, if it is in a bucket.
    pub fn get(&self, id: &NodeId) -> Option<Contact> {
        let bucket = self.bucket_of(id)?;
        bucket.position(id).map(|pos| bucket.entries[pos].contact)
    }

    /// When the contact with this id (in a bucket) was last seen.
    pub fn last_seen(&self, id: &NodeId) -> Option<Instant> {
        let bucket = self.bucket_of(id)?;
        bucket.position(id).map(|pos| bucket.entries[pos].last_seen)
    }

    /// Whether `id` waits in a replacement cache.
    pub fn is_pending(&self, id: &NodeId) -> bool {
        self.bucket_of(id)
            .is_some_and(|bucket| bucket.replacement_position(id).is_some())
    }

    /// The `n` contacts closest to `target` (never the local id), nearest first. Exact: equal
    /// to sorting all contacts in the buckets by XOR distance to `target`.
    ///
    /// Buckets are visited in increasing distance from `target`, so only the buckets needed
    /// for `n` results are sorted. Writing `d = local ^ target`, every contact of bucket `i`
    /// agrees with `d` on the bits before `i` and differs from it at bit `i` (its distance to
    /// the target is `d ^ (local ^ contact)`). Hence bucket `i` lies entirely before every
    /// bucket `j > i` when bit `i` of `d` is 1, and entirely after them when it is 0: the
    /// order is the buckets whose bit is 1 ascending, then those whose bit is 0 descending.
    pub fn closest(&self, target: &Key, n: usize) -> Vec<Contact> {
        let mut out = Vec::with_capacity(n.min(self.len));
        let mut scratch: Vec<(Distance, Contact)> = Vec::new();
        let distance = self.local_id.distance(target);
        for index in bucket_order(&distance, self.buckets.len()) {
            if out.len() >= n {
                break;
            }
            let Some(bucket) = self.buckets.get(index) else {
                continue;
            };
            if bucket.entries.is_empty() {
                continue;
            }
            scratch.clear();
            scratch.extend(
                bucket
                    .entries
                    .iter()
                    .map(|e| (e.contact.id.distance(target), e.contact)),
            );
            scratch.sort_unstable_by_key(|entry| entry.0);
            let wanted = n - out.len();
            out.extend(scratch.iter().take(wanted).map(|(_, c)| *c));
        }
        out
    }

    /// Number of contacts in the buckets (not counting replacement caches).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buckets are all empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of contacts in bucket `index` (0 for an index of 256 or more).
    pub fn bucket_len(&self, index: usize) -> usize {
        self.buckets.get(index).map_or(0, |b| b.entries.len())
    }

    /// Number of contacts waiting in the replacement cache of bucket `index`.
    pub fn replacement_len(&self, index: usize) -> usize {
        self.buckets.get(index).map_or(0, |b| b.replacements.len())
    }

    /// The contacts of bucket `index`, least-recently-seen first, with their `last_seen`.
    pub fn bucket_entries(&self, index: usize) -> impl Iterator<Item = (Contact, Instant)> + '_ {
        self.buckets
            .get(index)
            .into_iter()
            .flat_map(|b| b.entries.iter().map(|e| (e.contact, e.last_seen)))
    }

    /// Index of the highest (closest) non-empty bucket, i.e. the bucket of our closest
    /// neighbour.
    pub fn closest_bucket_index(&self) -> Option<usize> {
        self.buckets.iter().rposition(|b| !b.entries.is_empty())
    }

    /// All contacts in the buckets, bucket by bucket (bucket 0 first), each bucket
    /// least-recently-seen first.
    pub fn iter(&self) -> impl Iterator<Item = Contact> + '_ {
        self.buckets
            .iter()
            .flat_map(|b| b.entries.iter().map(|e| e.contact))
    }

    /// How many contacts are strictly closer to `target` than the local id is.
    ///
    /// A contact of bucket `i` is closer exactly when bit `i` of `local ^ target` is 1 (see
    /// [`RoutingTable::closest`]), so this is a sum of bucket sizes.
    pub fn count_closer_than_local(&self, target: &Key) -> usize {
        let d = self.local_id.distance(target);
        self.buckets
            .iter()
            .enumerate()
            .filter(|&(i, _)| bit(&d, i))
            .map(|(_, bucket)| bucket.entries.len())
            .sum()
    }
}

/// `buckets[index]`, allocating it and the ones before it when needed.
fn allocated(buckets: &mut Vec<Bucket>, index: usize) -> &mut Bucket {
    if buckets.len() <= index {
        buckets.resize_with(index + 1, Bucket::default);
    }
    &mut buckets[index]
}

/// Bit `i` (0 = most significant) of a distance.
fn bit(d: &Distance, i: usize) -> bool {
    d.as_bytes()
        .get(i / 8)
        .is_some_and(|byte| byte & (0x80 >> (i % 8)) != 0)
}

/// Indices of the buckets `0..count` in increasing distance from the target, `d` being
/// `local ^ target`.
fn bucket_order(d: &Distance, count: usize) -> impl Iterator<Item = usize> + '_ {
    let count = count.min(KEY_BITS);
    let ones = (0..count).filter(move |&i| bit(d, i));
    let zeros = (0..count).rev().filter(move |&i| !bit(d, i));
    ones.chain(zeros)
}

#[cfg(test)]
mod tests;
