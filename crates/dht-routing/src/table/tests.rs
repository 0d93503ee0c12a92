//! Tests of the routing table against brute force and of bucket upkeep.
use super::*;
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

fn contact(id: NodeId, port: u16) -> Contact {
    Contact::new(id, SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
}

fn table(local: NodeId, k: usize, cache: usize) -> RoutingTable {
    wide_table(local, k, cache, 0)
}

fn wide_table(local: NodeId, k: usize, cache: usize, wide_buckets: usize) -> RoutingTable {
    RoutingTable::new(
        local,
        RoutingConfig {
            k,
            wide_buckets,
            replacement_cache: cache,
            diversity: None,
        },
    )
}

fn brute_force(table: &RoutingTable, target: &Key, n: usize) -> Vec<Contact> {
    let mut all: Vec<Contact> = table.iter().collect();
    all.sort_by_key(|c| c.id.distance(target));
    all.truncate(n);
    all
}

proptest! {
    #[test]
    fn closest_is_exact(seed in any::<u64>(), count in 0usize..300, k in 1usize..8,
                        cache in 0usize..4, n in 1usize..=40, target_kind in 0u8..4,
                        wide in 0usize..4) {
        let mut rng = StdRng::seed_from_u64(seed);
        let local = Key::random(&mut rng);
        let mut t = wide_table(local, k, cache, wide);
        let t0 = Instant::now();
        let mut ids = Vec::new();
        for i in 0..count {
            // Crowd the far buckets well past k, sprinkle the rest at random.
            let id = if rng.gen_bool(0.7) {
                local.random_in_bucket(rng.gen_range(0..10), &mut rng)
            } else {
                Key::random(&mut rng)
            };
            ids.push(id);
            t.insert(contact(id, i as u16), t0 + Duration::from_millis(i as u64));
        }
        for _ in 0..count / 10 {
            let victim = ids[rng.gen_range(0..ids.len())];
            t.remove(&victim);
        }
        let target = match target_kind {
            0 => local,
            1 if !ids.is_empty() => ids[rng.gen_range(0..ids.len())],
            2 => local.random_in_bucket(rng.gen_range(0..12), &mut rng),
            _ => Key::random(&mut rng),
        };
        let got = t.closest(&target, n);
        prop_assert_eq!(&got, &brute_force(&t, &target, n));
        prop_assert!(got.iter().all(|c| c.id != local));

        // Invariants: len, bucket sizes, bucket placement, no duplicates.
        prop_assert_eq!(t.len(), t.iter().count());
        let mut seen = std::collections::HashSet::new();
        for c in t.iter() {
            prop_assert!(seen.insert(c.id));
            let index = local.bucket_index(&c.id);
            prop_assert!(index.is_some());
            prop_assert!(!t.is_pending(&c.id));
        }
        for i in 0..KEY_BITS {
            let capacity = if i < wide { k << (wide - i) } else { k };
            prop_assert_eq!(t.capacity(i), capacity);
            prop_assert!(t.bucket_len(i) <= capacity);
            prop_assert!(t.replacement_len(i) <= cache);
            for (c, _) in t.bucket_entries(i) {
                prop_assert_eq!(local.bucket_index(&c.id), Some(i));
            }
        }
        let closer = t.iter().filter(|c| c.id.distance(&target) < local.distance(&target)).count();
        prop_assert_eq!(t.count_closer_than_local(&target), closer);
        let expected_top = (0..KEY_BITS).rev().find(|&i| t.bucket_len(i) > 0);
        prop_assert_eq!(t.closest_bucket_index(), expected_top);
    }
}

#[test]
fn full_bucket_pending_and_replacement() {
    let mut rng = StdRng::seed_from_u64(7);
    let local = Key::random(&mut rng);
    let mut t = table(local, 3, 2);
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    let ids: Vec<NodeId> = (0..6)
        .map(|_| local.random_in_bucket(0, &mut rng))
        .collect();
    for (i, id) in ids.iter().take(3).enumerate() {
        assert_eq!(
            t.insert(contact(*id, i as u16), at(i as u64)),
            InsertOutcome::Inserted
        );
    }
    let oldest = contact(ids[0], 0);
    assert_eq!(
        t.insert(contact(ids[3], 3), at(3)),
        InsertOutcome::Pending { oldest }
    );
    assert!(!t.contains(&ids[3]));
    assert!(t.is_pending(&ids[3]));
    assert_eq!(t.bucket_len(0), 3);
    assert_eq!(t.len(), 3);

    // The cache is bounded: ids[3] is dropped when ids[4] and ids[5] arrive.
    t.insert(contact(ids[4], 4), at(4));
    t.insert(contact(ids[5], 5), at(5));
    assert_eq!(t.replacement_len(0), 2);
    assert!(!t.is_pending(&ids[3]));
    // Re-inserting a cached contact refreshes it: ids[4] becomes the newest.
    assert!(matches!(
        t.insert(contact(ids[4], 44), at(6)),
        InsertOutcome::Pending { .. }
    ));

    // Removing the oldest promotes the newest replacement (ids[4], refreshed address).
    assert_eq!(t.remove(&ids[0]), Some(oldest));
    assert!(!t.contains(&ids[0]));
    assert_eq!(t.get(&ids[4]), Some(contact(ids[4], 44)));
    assert_eq!(t.last_seen(&ids[4]), Some(at(6)));
    assert!(!t.is_pending(&ids[4]));
    assert_eq!(t.replacement_len(0), 1);
    assert_eq!(t.len(), 3);
    let order: Vec<NodeId> = t.bucket_entries(0).map(|(c, _)| c.id).collect();
    assert_eq!(order, vec![ids[1], ids[2], ids[4]]);

    // Removing a cached contact only drops it from the cache.
    assert_eq!(t.remove(&ids[5]), None);
    assert_eq!(t.replacement_len(0), 0);
    assert_eq!(t.len(), 3);
    // Removing with an empty cache leaves room.
    assert_eq!(t.remove(&ids[1]), Some(contact(ids[1], 1)));
    assert_eq!(t.len(), 2);
    assert_eq!(t.remove(&ids[1]), None);
    assert_eq!(t.insert(contact(ids[3], 3), at(7)), InsertOutcome::Inserted);
}

#[test]
fn wide_buckets_hold_more_of_the_far_id_space() {
    let mut rng = StdRng::seed_from_u64(11);
    let local = Key::random(&mut rng);
    let (k, now) = (4, Instant::now());
    let mut plain = table(local, k, 0);
    let mut wide = wide_table(local, k, 0, 2);
    // Bucket 0 takes 4k contacts, bucket 1 2k, bucket 2 and the rest k.
    for (bucket, fits) in [(0, 4 * k), (1, 2 * k), (2, k), (5, k)] {
        for i in 0..fits + 1 {
            let c = contact(local.random_in_bucket(bucket, &mut rng), i as u16);
            let expected = if i < fits {
                InsertOutcome::Inserted
            } else {
                InsertOutcome::Pending {
                    oldest: wide.bucket_entries(bucket).next().unwrap().0,
                }
            };
            assert_eq!(
                wide.insert(c, now),
                expected,
                "bucket {bucket}, contact {i}"
            );
            plain.insert(c, now);
        }
        assert_eq!(wide.bucket_len(bucket), fits);
        assert_eq!(plain.bucket_len(bucket), k);
    }
    // So a target in the far half finds closer contacts in the wide table.
    let closer = (0..64)
        .filter(|_| {
            let target = local.random_in_bucket(0, &mut rng);
            let best = |t: &RoutingTable| t.closest(&target, 1)[0].id.distance(&target);
            best(&wide) < best(&plain)
        })
        .count();
    assert!(
        closer > 32,
        "the wide table was closer for {closer} of 64 targets"
    );
    // Only the k most recently seen of a wide bucket are its core.
    let bucket0: Vec<Contact> = wide.bucket_entries(0).map(|(c, _)| c).collect();
    let core: Vec<bool> = bucket0.iter().map(|c| wide.is_core(&c.id)).collect();
    assert_eq!(core, (0..4 * k).map(|i| i >= 3 * k).collect::<Vec<_>>());
    assert_eq!(wide.core_len(), 4 * k);
    assert_eq!(plain.core_len(), plain.len());
    // Seen again, the oldest becomes core, and the oldest of the rest drops out of it.
    assert_eq!(wide.core_edge(&bucket0[0].id), Some(bucket0[3 * k - 1]));
    wide.insert(bucket0[0], now + Duration::from_secs(1));
    assert!(wide.is_core(&bucket0[0].id));
    assert!(!wide.is_core(&bucket0[3 * k].id));
    assert_eq!(wide.core_edge(&bucket0[0].id), Some(bucket0[3 * k]));
    assert_eq!(plain.core_edge(&bucket0[0].id), None);
    assert!(!wide.is_core(&local));
    // Widening is bounded.
    let capped = wide_table(local, 1, 0, 100);
    assert_eq!(capped.capacity(0), 1 << MAX_WIDE_BUCKETS);
}

#[test]
fn promoted_replacement_keeps_last_seen_order() {
    let mut rng = StdRng::seed_from_u64(8);
    let local = Key::random(&mut rng);
    let mut t = table(local, 2, 2);
    let t0 = Instant::now();
    let ids: Vec<NodeId> = (0..3)
        .map(|_| local.random_in_bucket(1, &mut rng))
        .collect();
    t.insert(contact(ids[0], 0), t0);
    t.insert(contact(ids[1], 1), t0 + Duration::from_secs(1));
    t.insert(contact(ids[2], 2), t0 + Duration::from_secs(2));
    // ids[1] is seen again after the replacement was cached.
    t.insert(contact(ids[1], 1), t0 + Duration::from_secs(3));
    t.remove(&ids[0]);
    let order: Vec<NodeId> = t.bucket_entries(1).map(|(c, _)| c.id).collect();
    assert_eq!(order, vec![ids[2], ids[1]]);
}

#[test]
fn update_moves_to_most_recent_end() {
    let mut rng = StdRng::seed_from_u64(9);
    let local = Key::random(&mut rng);
    let mut t = table(local, 4, 4);
    let t0 = Instant::now();
    let ids: Vec<NodeId> = (0..3)
        .map(|_| local.random_in_bucket(2, &mut rng))
        .collect();
    for (i, id) in ids.iter().enumerate() {
        t.insert(contact(*id, i as u16), t0);
    }
    let later = t0 + Duration::from_secs(10);
    assert_eq!(
        t.insert(contact(ids[0], 999), later),
        InsertOutcome::Updated
    );
    let order: Vec<Contact> = t.bucket_entries(2).map(|(c, _)| c).collect();
    assert_eq!(
        order,
        vec![contact(ids[1], 1), contact(ids[2], 2), contact(ids[0], 999)]
    );
    assert_eq!(t.last_seen(&ids[0]), Some(later));
    assert_eq!(t.len(), 3);
}

#[test]
fn self_id_is_ignored() {
    let local = Key::from_bytes([5; 32]);
    let mut t = RoutingTable::new(local, RoutingConfig::default());
    assert_eq!(
        t.insert(contact(local, 1), Instant::now()),
        InsertOutcome::SelfId
    );
    assert!(t.is_empty());
    assert!(!t.contains(&local));
    assert_eq!(t.remove(&local), None);
    assert_eq!(t.closest_bucket_index(), None);
    assert!(t.closest(&local, 5).is_empty());
    assert_eq!(t.bucket_len(KEY_BITS), 0);
    assert_eq!(t.k(), DEFAULT_K);
}

#[test]
fn zero_k_is_one() {
    let mut rng = StdRng::seed_from_u64(10);
    let local = Key::random(&mut rng);
    let mut t = table(local, 0, 0);
    assert_eq!(t.k(), 1);
    let a = local.random_in_bucket(3, &mut rng);
    let b = local.random_in_bucket(3, &mut rng);
    let now = Instant::now();
    assert_eq!(t.insert(contact(a, 1), now), InsertOutcome::Inserted);
    assert_eq!(
        t.insert(contact(b, 2), now),
        InsertOutcome::Pending {
            oldest: contact(a, 1)
        }
    );
    // No cache: the newcomer is dropped, removing a leaves the bucket empty.
    assert_eq!(t.remove(&a), Some(contact(a, 1)));
    assert!(t.is_empty());
}

#[test]
fn bucket_order_is_a_permutation() {
    let mut rng = StdRng::seed_from_u64(11);
    let d = Key::random(&mut rng).distance(&Key::random(&mut rng));
    for count in [0, 1, 13, KEY_BITS, KEY_BITS + 1] {
        let mut order: Vec<usize> = bucket_order(&d, count).collect();
        order.sort_unstable();
        assert_eq!(order, (0..count.min(KEY_BITS)).collect::<Vec<_>>());
    }
}

#[test]
fn buckets_are_allocated_up_to_the_closest_one_used() {
    let mut rng = StdRng::seed_from_u64(12);
    let local = Key::random(&mut rng);
    let mut t = RoutingTable::new(local, RoutingConfig::default());
    assert!(t.buckets.is_empty());
    let now = Instant::now();
    for i in 0..500u16 {
        t.insert(contact(Key::random(&mut rng), i), now);
    }
    // 500 random ids share at most a dozen or so leading bits with ours.
    let top = t.closest_bucket_index().unwrap();
    assert_eq!(t.buckets.len(), top + 1);
    assert!(t.buckets.len() < 24, "{} buckets", t.buckets.len());
    // A bucket beyond the last allocated one reads as empty.
    assert_eq!(t.bucket_len(top + 1), 0);
    assert_eq!(t.bucket_entries(200).count(), 0);
}
