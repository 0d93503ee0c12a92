//! The routing table's IP diversity limits: at most `per_bucket` contacts of one network group
//! per bucket and `per_table` per table, exempt addresses never limited, and per-group counts
//! that always match a recount.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use dht_id::{KEY_BITS, Key, NodeId};
use dht_routing::{Contact, Diversity, InsertOutcome, RoutingConfig, RoutingTable};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

/// IPv4 /24 and IPv6 /48, loopback and private ranges exempt.
fn group24(ip: IpAddr) -> Option<u64> {
    match ip {
        IpAddr::V4(v4) if v4.is_loopback() || v4.is_private() => None,
        IpAddr::V4(v4) => Some(u64::from(u32::from(v4) >> 8)),
        IpAddr::V6(v6) if v6.is_loopback() => None,
        IpAddr::V6(v6) => Some(((u128::from(v6) >> 80) as u64) | 1 << 63),
    }
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(a, b, c, d), 4000))
}

/// Group A = 203.0.113.0/24, B = 198.51.100.0/24, C = 192.0.2.0/24.
fn a(host: u8) -> SocketAddr {
    v4(203, 0, 113, host)
}
fn b(host: u8) -> SocketAddr {
    v4(198, 51, 100, host)
}
fn c(host: u8) -> SocketAddr {
    v4(192, 0, 2, host)
}
fn group(addr: SocketAddr) -> u64 {
    group24(addr.ip()).expect("not exempt")
}

struct Setup {
    local: NodeId,
    table: RoutingTable,
    rng: StdRng,
    t0: Instant,
}

impl Setup {
    fn new(seed: u64, k: usize, cache: usize, per_bucket: usize, per_table: usize) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let local = Key::random(&mut rng);
        let config = RoutingConfig {
            k,
            wide_buckets: 0,
            replacement_cache: cache,
            diversity: Some(Diversity {
                per_bucket,
                per_table,
                group: group24,
            }),
        };
        Setup {
            local,
            table: RoutingTable::new(local, config),
            rng,
            t0: Instant::now(),
        }
    }

    fn id(&mut self, bucket: usize) -> NodeId {
        self.local.random_in_bucket(bucket, &mut self.rng)
    }

    fn at(&self, secs: u64) -> Instant {
        self.t0 + Duration::from_secs(secs)
    }

    fn insert(&mut self, id: NodeId, addr: SocketAddr, secs: u64) -> InsertOutcome {
        let now = self.at(secs);
        self.table.insert(Contact::new(id, addr), now)
    }
}

#[test]
fn default_config_has_no_limits() {
    assert!(RoutingConfig::default().diversity.is_none());
    let mut rng = StdRng::seed_from_u64(1);
    let local = Key::random(&mut rng);
    let mut t = RoutingTable::new(local, RoutingConfig::default());
    for i in 0..15 {
        let id = local.random_in_bucket(i % 3, &mut rng);
        let outcome = t.insert(Contact::new(id, a(i as u8)), Instant::now());
        assert_eq!(outcome, InsertOutcome::Inserted);
    }
    assert_eq!(t.len(), 15);
    assert_eq!(t.group_of(a(1).ip()), None);
    assert_eq!(t.group_count(group(a(1))), 0);
}

#[test]
fn per_bucket_limit_is_enforced() {
    let mut s = Setup::new(2, 20, 20, 2, 10);
    let ids: Vec<NodeId> = (0..4).map(|_| s.id(0)).collect();
    assert_eq!(s.insert(ids[0], a(1), 0), InsertOutcome::Inserted);
    assert_eq!(s.insert(ids[1], a(2), 1), InsertOutcome::Inserted);
    assert_eq!(s.insert(ids[2], a(3), 2), InsertOutcome::Rejected);
    assert!(!s.table.contains(&ids[2]));
    assert!(!s.table.is_pending(&ids[2]));
    assert_eq!(s.table.len(), 2);
    assert_eq!(s.table.group_count(group(a(1))), 2);
    assert_eq!(s.table.bucket_group_count(0, group(a(1))), 2);
    // Another group, and the same group in another bucket, still fit.
    assert_eq!(s.insert(ids[3], b(1), 3), InsertOutcome::Inserted);
    let other = s.id(1);
    assert_eq!(s.insert(other, a(4), 4), InsertOutcome::Inserted);
    assert_eq!(s.table.group_count(group(a(1))), 3);
    assert_eq!(s.table.bucket_group_count(1, group(a(1))), 1);
    assert_eq!(s.table.group_of(a(9).ip()), Some(group(a(1))));
}

#[test]
fn per_table_limit_is_enforced() {
    let mut s = Setup::new(3, 20, 20, 2, 3);
    for bucket in 0..3 {
        let id = s.id(bucket);
        assert_eq!(s.insert(id, a(bucket as u8), 0), InsertOutcome::Inserted);
    }
    let fourth = s.id(3);
    assert_eq!(s.insert(fourth, a(10), 1), InsertOutcome::Rejected);
    assert!(!s.table.contains(&fourth));
    // The bucket of the fourth is empty: only the table limit refused it.
    assert_eq!(s.table.bucket_len(3), 0);
    assert_eq!(s.table.group_count(group(a(1))), 3);
    assert_eq!(s.insert(fourth, b(10), 2), InsertOutcome::Inserted);
}

#[test]
fn full_group_is_rejected_before_pending() {
    let mut s = Setup::new(4, 2, 4, 2, 10);
    let ids: Vec<NodeId> = (0..4).map(|_| s.id(0)).collect();
    s.insert(ids[0], a(1), 0);
    s.insert(ids[1], a(2), 1);
    // The bucket is full and so is group A in it: no ping, nothing cached.
    assert_eq!(s.insert(ids[2], a(3), 2), InsertOutcome::Rejected);
    assert!(!s.table.is_pending(&ids[2]));
    assert_eq!(s.table.replacement_len(0), 0);
    // Another group gets the usual treatment.
    assert_eq!(
        s.insert(ids[3], b(1), 3),
        InsertOutcome::Pending {
            oldest: Contact::new(ids[0], a(1))
        }
    );
    assert!(s.table.is_pending(&ids[3]));
}

#[test]
fn exempt_addresses_are_never_limited() {
    let mut s = Setup::new(5, 20, 20, 1, 1);
    let exempt = [
        v4(127, 0, 0, 1),
        v4(10, 1, 2, 3),
        v4(192, 168, 1, 9),
        v4(172, 16, 0, 4),
        SocketAddr::from((Ipv6Addr::LOCALHOST, 4000)),
    ];
    let mut inserted = 0;
    for bucket in 0..3 {
        for addr in exempt {
            let id = s.id(bucket);
            assert_eq!(s.insert(id, addr, 0), InsertOutcome::Inserted);
            inserted += 1;
        }
    }
    assert_eq!(s.table.len(), inserted);
    // A non-exempt address still meets the (tiny) limits.
    let first = s.id(0);
    assert_eq!(s.insert(first, a(1), 1), InsertOutcome::Inserted);
    let second = s.id(1);
    assert_eq!(s.insert(second, a(2), 1), InsertOutcome::Rejected);
}

#[test]
fn removing_a_contact_frees_its_slot() {
    let mut s = Setup::new(6, 20, 20, 2, 10);
    let ids: Vec<NodeId> = (0..3).map(|_| s.id(0)).collect();
    s.insert(ids[0], a(1), 0);
    s.insert(ids[1], a(2), 1);
    assert_eq!(s.insert(ids[2], a(3), 2), InsertOutcome::Rejected);
    assert_eq!(s.table.remove(&ids[0]), Some(Contact::new(ids[0], a(1))));
    assert_eq!(s.table.group_count(group(a(1))), 1);
    assert_eq!(s.table.bucket_group_count(0, group(a(1))), 1);
    assert_eq!(s.insert(ids[2], a(3), 3), InsertOutcome::Inserted);
    s.table.remove(&ids[1]);
    s.table.remove(&ids[2]);
    assert_eq!(s.table.group_count(group(a(1))), 0);
    assert!(s.table.is_empty());
}

#[test]
fn promotion_skips_groups_full_in_the_table() {
    let mut s = Setup::new(7, 3, 4, 2, 2);
    let ids: Vec<NodeId> = (0..5).map(|_| s.id(0)).collect();
    s.insert(ids[0], a(1), 0);
    s.insert(ids[1], b(1), 1);
    s.insert(ids[2], c(1), 2);
    // Cached while their groups have room: first ids[3] (group D = 100.64.0.0/24), then ids[4].
    let d = v4(100, 64, 0, 1);
    assert!(matches!(
        s.insert(ids[3], d, 3),
        InsertOutcome::Pending { .. }
    ));
    assert!(matches!(
        s.insert(ids[4], a(2), 4),
        InsertOutcome::Pending { .. }
    ));
    // Group A fills up elsewhere in the table.
    let elsewhere = s.id(1);
    assert_eq!(s.insert(elsewhere, a(3), 5), InsertOutcome::Inserted);
    assert_eq!(s.table.group_count(group(a(1))), 2);
    // ids[2] fails: the newest candidate ids[4] (group A) is dropped, ids[3] is promoted.
    assert_eq!(s.table.remove(&ids[2]), Some(Contact::new(ids[2], c(1))));
    assert!(!s.table.contains(&ids[4]));
    assert!(!s.table.is_pending(&ids[4]));
    assert_eq!(s.table.get(&ids[3]), Some(Contact::new(ids[3], d)));
    assert_eq!(s.table.replacement_len(0), 0);
    assert_eq!(s.table.bucket_len(0), 3);
    assert_eq!(s.table.group_count(group(a(1))), 2);
}

#[test]
fn promotion_skips_groups_full_in_the_bucket() {
    let mut s = Setup::new(8, 3, 4, 2, 10);
    let ids: Vec<NodeId> = (0..4).map(|_| s.id(0)).collect();
    s.insert(ids[0], a(1), 0);
    s.insert(ids[1], b(1), 1);
    s.insert(ids[2], c(1), 2);
    assert!(matches!(
        s.insert(ids[3], a(2), 3),
        InsertOutcome::Pending { .. }
    ));
    // ids[1] moves into group A, which is now full in bucket 0.
    assert_eq!(s.insert(ids[1], a(3), 4), InsertOutcome::Updated);
    assert_eq!(s.table.bucket_group_count(0, group(a(1))), 2);
    assert_eq!(s.table.group_count(group(b(1))), 0);
    // ids[2] fails: the only candidate is over the limit, so it is dropped.
    s.table.remove(&ids[2]);
    assert!(!s.table.contains(&ids[3]));
    assert!(!s.table.is_pending(&ids[3]));
    assert_eq!(s.table.bucket_len(0), 2);
    assert_eq!(s.table.len(), 2);
    // With one A contact gone, a candidate of A is promoted again.
    let ids4 = s.id(0);
    s.insert(ids4, b(2), 5);
    assert_eq!(s.insert(ids[3], a(2), 6), InsertOutcome::Rejected);
    s.table.remove(&ids[0]);
    assert_eq!(s.insert(ids[3], a(2), 7), InsertOutcome::Inserted);
    assert_eq!(s.table.bucket_group_count(0, group(a(1))), 2);
}

#[test]
fn address_change_into_a_full_group_is_rejected() {
    let mut s = Setup::new(9, 20, 20, 2, 10);
    let ids: Vec<NodeId> = (0..3).map(|_| s.id(0)).collect();
    s.insert(ids[0], a(1), 0);
    s.insert(ids[1], a(2), 1);
    s.insert(ids[2], b(1), 2);
    let before: Vec<(Contact, Instant)> = s.table.bucket_entries(0).collect();
    assert_eq!(s.insert(ids[2], a(3), 10), InsertOutcome::Rejected);
    // Untouched: address, last_seen and position.
    let after: Vec<(Contact, Instant)> = s.table.bucket_entries(0).collect();
    assert_eq!(before, after);
    assert_eq!(s.table.get(&ids[2]), Some(Contact::new(ids[2], b(1))));
    assert_eq!(s.table.last_seen(&ids[2]), Some(s.at(2)));
    assert_eq!(s.table.group_count(group(a(1))), 2);
    assert_eq!(s.table.group_count(group(b(1))), 1);

    // Within its own (full) group, an address change is an update.
    assert_eq!(s.insert(ids[0], a(7), 11), InsertOutcome::Updated);
    assert_eq!(s.table.get(&ids[0]), Some(Contact::new(ids[0], a(7))));
    assert_eq!(s.table.group_count(group(a(1))), 2);
    // Into an exempt address: the group's slot is freed.
    assert_eq!(
        s.insert(ids[0], v4(10, 0, 0, 1), 12),
        InsertOutcome::Updated
    );
    assert_eq!(s.table.group_count(group(a(1))), 1);
    // Into a group with room: the counts move.
    assert_eq!(s.insert(ids[2], a(3), 13), InsertOutcome::Updated);
    assert_eq!(s.table.group_count(group(a(1))), 2);
    assert_eq!(s.table.group_count(group(b(1))), 0);
    assert_eq!(s.table.bucket_group_count(0, group(b(1))), 0);
}

/// Everything observable about the table: the non-empty buckets with their entries and
/// cache sizes, and which of `ids` are pending.
type Snapshot = (Vec<(usize, Vec<(Contact, Instant)>, usize)>, Vec<NodeId>);

fn snapshot(t: &RoutingTable, ids: &[NodeId]) -> Snapshot {
    let buckets = (0..KEY_BITS)
        .filter(|&i| t.bucket_len(i) > 0 || t.replacement_len(i) > 0)
        .map(|i| (i, t.bucket_entries(i).collect(), t.replacement_len(i)))
        .collect();
    let pending = ids.iter().copied().filter(|id| t.is_pending(id)).collect();
    (buckets, pending)
}

const ADDRS: [fn() -> SocketAddr; 8] = [
    || a(1),
    || a(2),
    || b(1),
    || b(7),
    || c(1),
    || v4(10, 0, 0, 1),
    || v4(127, 0, 0, 1),
    || SocketAddr::from((Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1), 4000)),
];

proptest! {
    #[test]
    fn counts_match_a_recount_and_limits_hold(
        seed in any::<u64>(), k in 1usize..5, cache in 0usize..4, per_bucket in 0usize..4,
        per_table in 0usize..8,
        ops in prop::collection::vec((0u8..4, 0usize..24, 0usize..ADDRS.len()), 0..200),
    ) {
        let mut s = Setup::new(seed, k, cache, per_bucket, per_table);
        let buckets = 4;
        let mut ids: Vec<NodeId> = (0..23).map(|i| s.id(i % buckets)).collect();
        ids.push(s.local);
        let groups: HashSet<u64> = ADDRS.iter().filter_map(|f| group24(f().ip())).collect();
        for (step, (kind, id_index, addr_index)) in ops.into_iter().enumerate() {
            let id = ids[id_index];
            let before = snapshot(&s.table, &ids);
            if kind < 3 {
                let contact = Contact::new(id, ADDRS[addr_index]());
                let outcome = s.table.insert(contact, s.t0 + Duration::from_millis(step as u64));
                match outcome {
                    InsertOutcome::Inserted | InsertOutcome::Updated => {
                        prop_assert_eq!(s.table.get(&id), Some(contact));
                    }
                    InsertOutcome::Pending { .. } => {
                        prop_assert!(!s.table.contains(&id));
                        prop_assert_eq!(s.table.is_pending(&id), cache > 0);
                    }
                    InsertOutcome::SelfId => prop_assert_eq!(id, s.local),
                    InsertOutcome::Rejected => {
                        prop_assert_eq!(&snapshot(&s.table, &ids), &before);
                    }
                }
            } else {
                s.table.remove(&id);
                prop_assert!(!s.table.contains(&id));
                prop_assert!(!s.table.is_pending(&id));
            }

            // Brute-force recount, per table and per bucket, and the limits.
            let mut table_counts: HashMap<u64, usize> = HashMap::new();
            for contact in s.table.iter() {
                if let Some(g) = group24(contact.addr.ip()) {
                    *table_counts.entry(g).or_default() += 1;
                }
            }
            for &g in &groups {
                let count = table_counts.get(&g).copied().unwrap_or(0);
                prop_assert_eq!(s.table.group_count(g), count);
                prop_assert!(count <= per_table);
            }
            for bucket in 0..buckets {
                let mut bucket_counts: HashMap<u64, usize> = HashMap::new();
                for (contact, _) in s.table.bucket_entries(bucket) {
                    if let Some(g) = group24(contact.addr.ip()) {
                        *bucket_counts.entry(g).or_default() += 1;
                    }
                }
                for &g in &groups {
                    let count = bucket_counts.get(&g).copied().unwrap_or(0);
                    prop_assert_eq!(s.table.bucket_group_count(bucket, g), count);
                    prop_assert!(count <= per_bucket);
                }
                prop_assert!(s.table.bucket_len(bucket) <= k);
                prop_assert!(s.table.replacement_len(bucket) <= cache);
            }
            prop_assert_eq!(s.table.len(), s.table.iter().count());
        }
    }
}

#[test]
fn ipv6_addresses_are_grouped_too() {
    let mut s = Setup::new(10, 20, 20, 1, 10);
    let v6 =
        |last: u16| SocketAddr::from((Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last), 4000));
    let (first, second) = (s.id(0), s.id(0));
    assert_eq!(s.insert(first, v6(1), 0), InsertOutcome::Inserted);
    assert_eq!(s.insert(second, v6(2), 1), InsertOutcome::Rejected);
    let in_other_48 = SocketAddr::from((Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2), 4000));
    assert_eq!(s.insert(second, in_other_48, 2), InsertOutcome::Inserted);
}
