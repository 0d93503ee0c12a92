//! Behaviour of the lookup state machine through its public API: termination, α and stall
//! widening, timeouts, late answers, the deadline and FIND_VALUE.

use std::time::{Duration, Instant};

use dht_id::{Distance, Key, NodeId};
use dht_routing::{Contact, Lookup, LookupConfig, LookupState};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};

fn contact(id: NodeId) -> Contact {
    Contact::new(
        id,
        SocketAddr::from((Ipv4Addr::LOCALHOST, id.as_bytes()[0].into())),
    )
}

fn random_contacts(rng: &mut StdRng, n: usize) -> Vec<Contact> {
    (0..n).map(|_| contact(Key::random(rng))).collect()
}

fn config(k: usize, alpha: usize) -> LookupConfig {
    LookupConfig {
        k,
        alpha,
        ..LookupConfig::default()
    }
}

/// Calls `next` until it stops asking; returns the peers to query.
fn drain(lookup: &mut Lookup, now: Instant, asked: &mut HashSet<NodeId>) -> Vec<Contact> {
    let mut out = Vec::new();
    while let LookupState::Query(peer) = lookup.next(now) {
        assert!(asked.insert(peer.id), "queried twice");
        out.push(peer);
    }
    out
}

#[test]
fn every_peer_failing_terminates() {
    let mut rng = StdRng::seed_from_u64(1);
    let seeds = random_contacts(&mut rng, 12);
    let now = Instant::now();
    let mut lookup = Lookup::new(
        Key::random(&mut rng),
        Key::random(&mut rng),
        seeds,
        config(5, 3),
        now,
    );
    let mut asked = HashSet::new();
    loop {
        let batch = drain(&mut lookup, now, &mut asked);
        if lookup.is_finished() {
            break;
        }
        assert!(!batch.is_empty());
        assert!(lookup.in_flight() <= 3);
        for peer in batch {
            assert!(lookup.on_failure(&peer.id, now));
        }
    }
    let result = lookup.into_result();
    assert!(result.closest.is_empty());
    assert_eq!(result.contacted, 12);
    assert_eq!(result.failed, result.contacted);
    assert_eq!(result.succeeded, 0);
    assert_eq!(result.hops, 0);
    assert!(!result.deadline_hit);
}

#[test]
fn no_seeds_finishes_at_once() {
    let now = Instant::now();
    let id = Key::from_bytes([1; 32]);
    let mut lookup = Lookup::new(id, id, [contact(id)], LookupConfig::default(), now);
    assert_eq!(lookup.next(now), LookupState::Finished);
    assert_eq!(lookup.poll_timeout(), None);
    assert_eq!(lookup.into_result().contacted, 0);
}

#[test]
fn on_value_finishes_and_reports_the_peer() {
    let mut rng = StdRng::seed_from_u64(2);
    let seeds = random_contacts(&mut rng, 6);
    let now = Instant::now();
    let mut lookup = Lookup::new(
        Key::random(&mut rng),
        Key::random(&mut rng),
        seeds.clone(),
        config(4, 3),
        now,
    );
    let LookupState::Query(first) = lookup.next(now) else {
        panic!("expected a query");
    };
    // A peer that was not queried cannot deliver the value.
    let stranger = seeds.iter().find(|c| c.id != first.id).copied();
    assert!(stranger.is_some_and(|s| !lookup.on_value(&s.id, now)));
    assert!(lookup.on_value(&first.id, now));
    assert!(lookup.is_finished());
    assert_eq!(lookup.next(now), LookupState::Finished);
    assert_eq!(lookup.poll_timeout(), None);
    assert!(!lookup.on_success(&first.id, [], now));
    let result = lookup.into_result();
    assert_eq!(result.value_from, Some(first));
    assert_eq!(result.closest, vec![first]);
    assert_eq!((result.contacted, result.succeeded, result.hops), (1, 1, 1));
}

#[test]
fn answers_are_validated() {
    let mut rng = StdRng::seed_from_u64(3);
    let local = Key::random(&mut rng);
    let seeds = random_contacts(&mut rng, 3);
    let now = Instant::now();
    let mut lookup = Lookup::new(
        Key::random(&mut rng),
        local,
        seeds.clone(),
        config(3, 1),
        now,
    );
    let LookupState::Query(asked) = lookup.next(now) else {
        panic!("expected a query");
    };
    assert_eq!(lookup.next(now), LookupState::Waiting);
    let unknown = Key::random(&mut rng);
    assert!(!lookup.on_success(&unknown, [], now));
    assert!(!lookup.on_failure(&unknown, now));
    // Known but never queried.
    let other = seeds.iter().find(|c| c.id != asked.id).map(|c| c.id);
    assert!(other.is_some_and(|o| !lookup.on_success(&o, [], now)));
    // The local id and duplicates in an answer are ignored.
    assert!(lookup.on_success(&asked.id, [contact(local), seeds[0], seeds[0]], now));
    assert!(!lookup.on_success(&asked.id, [], now));
    assert!(!lookup.on_failure(&asked.id, now));
    let mut seen = HashSet::from([asked.id]);
    for _ in 0..10 {
        for peer in drain(&mut lookup, now, &mut seen) {
            assert_ne!(peer.id, local);
            lookup.on_success(&peer.id, [], now);
        }
    }
    assert!(lookup.is_finished());
    assert_eq!(lookup.into_result().contacted, 3);
}

#[test]
fn stall_widens_to_k_then_progress_narrows_to_alpha() {
    let mut rng = StdRng::seed_from_u64(4);
    let target = Key::random(&mut rng);
    let seeds = random_contacts(&mut rng, 10);
    let now = Instant::now();
    let mut lookup = Lookup::new(target, Key::random(&mut rng), seeds, config(10, 3), now);
    let mut asked = HashSet::new();
    let first = drain(&mut lookup, now, &mut asked);
    assert_eq!(first.len(), 3);
    assert!(!lookup.is_stalled());
    // Three answers in a row with nothing new: stalled.
    for peer in &first {
        lookup.on_success(&peer.id, [], now);
    }
    assert!(lookup.is_stalled());
    let widened = drain(&mut lookup, now, &mut asked);
    assert_eq!(widened.len(), 7);
    assert_eq!(lookup.in_flight(), 7);
    // An answer with a peer closer than every known one ends the stall.
    let closer = Contact::new(
        target.xor(&Distance::from_bytes([0; 32])),
        SocketAddr::from((Ipv4Addr::LOCALHOST, 1)),
    );
    lookup.on_success(&widened[0].id, [closer], now);
    assert!(!lookup.is_stalled());
    // Six still in flight, above α: nothing new is sent until they drop below α.
    assert_eq!(lookup.next(now), LookupState::Waiting);
    for peer in &widened[1..5] {
        lookup.on_success(&peer.id, [], now);
    }
    assert_eq!(lookup.in_flight(), 2);
    assert_eq!(lookup.next(now), LookupState::Query(closer));
    assert_eq!(lookup.in_flight(), 3);
}

#[test]
fn a_narrow_stall_asks_no_more_than_the_caller_needs() {
    let mut rng = StdRng::seed_from_u64(4);
    let target = Key::random(&mut rng);
    let seeds = random_contacts(&mut rng, 10);
    let now = Instant::now();
    let local = Key::random(&mut rng);
    let mut lookup = Lookup::new(target, local, seeds, config(10, 2), now).stall_width(3);
    let mut asked = HashSet::new();
    let first = drain(&mut lookup, now, &mut asked);
    assert_eq!(first.len(), 2);
    for peer in &first {
        lookup.on_success(&peer.id, [], now);
    }
    assert!(lookup.is_stalled());
    // Stalled: max(3, α = 2) in flight, not k = 10.
    assert_eq!(drain(&mut lookup, now, &mut asked).len(), 3);
    assert_eq!(lookup.in_flight(), 3);
    // The width never exceeds k, nor falls below 1.
    let wide = Lookup::new(
        target,
        local,
        random_contacts(&mut rng, 4),
        config(4, 1),
        now,
    )
    .stall_width(99);
    let mut wide = wide;
    let mut seen = HashSet::new();
    let one = drain(&mut wide, now, &mut seen);
    wide.on_success(&one[0].id, [], now);
    assert!(wide.is_stalled());
    assert_eq!(
        drain(&mut wide, now, &mut seen).len(),
        3,
        "the 3 left of k = 4"
    );
}

#[test]
fn timeouts_free_slots_and_late_answers_count() {
    let mut rng = StdRng::seed_from_u64(5);
    let seeds = random_contacts(&mut rng, 5);
    let t0 = Instant::now();
    let cfg = config(5, 2);
    let mut lookup = Lookup::new(
        Key::random(&mut rng),
        Key::random(&mut rng),
        seeds,
        cfg.clone(),
        t0,
    );
    let mut asked = HashSet::new();
    let first = drain(&mut lookup, t0, &mut asked);
    assert_eq!(first.len(), 2);
    assert_eq!(lookup.poll_timeout(), Some(t0 + cfg.peer_timeout));
    // Just before the timeout nothing changes.
    let before = t0 + cfg.peer_timeout - Duration::from_millis(1);
    assert!(drain(&mut lookup, before, &mut asked).is_empty());
    let t1 = t0 + cfg.peer_timeout;
    let second = drain(&mut lookup, t1, &mut asked);
    assert_eq!(second.len(), 2);
    assert_eq!(lookup.in_flight(), 2);
    // A late answer from an unresponsive peer is accepted and does not take a slot.
    assert!(lookup.on_success(&first[0].id, [], t1));
    assert_eq!(lookup.in_flight(), 2);
    // An unresponsive peer may still be reported as failed.
    assert!(lookup.on_failure(&first[1].id, t1));
    for peer in &second {
        lookup.on_success(&peer.id, [], t1);
    }
    let third = drain(&mut lookup, t1, &mut asked);
    assert_eq!(third.len(), 1);
    lookup.on_success(&third[0].id, [], t1);
    assert_eq!(lookup.next(t1), LookupState::Finished);
    let result = lookup.into_result();
    assert_eq!(
        (result.contacted, result.succeeded, result.failed),
        (5, 4, 1)
    );
    assert!(!result.deadline_hit);
}

#[test]
fn deadline_ends_the_lookup() {
    let mut rng = StdRng::seed_from_u64(6);
    let seeds = random_contacts(&mut rng, 4);
    let t0 = Instant::now();
    let cfg = LookupConfig {
        peer_timeout: Duration::from_secs(5),
        deadline: Duration::from_secs(2),
        ..LookupConfig::default()
    };
    let mut lookup = Lookup::new(Key::random(&mut rng), Key::random(&mut rng), seeds, cfg, t0);
    let mut asked = HashSet::new();
    assert_eq!(drain(&mut lookup, t0, &mut asked).len(), 3);
    let wake = lookup.poll_timeout();
    assert_eq!(wake, Some(t0 + Duration::from_secs(2)));
    assert_eq!(
        lookup.next(t0 + Duration::from_secs(2)),
        LookupState::Finished
    );
    let result = lookup.into_result();
    assert!(result.deadline_hit);
    assert!(result.closest.is_empty());
    assert_eq!(result.contacted, 3);
}

#[test]
fn settled_closest_waits_for_every_closer_peer() {
    let mut rng = StdRng::seed_from_u64(21);
    let target = Key::random(&mut rng);
    let mut seeds = random_contacts(&mut rng, 6);
    seeds.sort_by_key(|c| c.id.distance(&target));
    let now = Instant::now();
    let mut lookup = Lookup::new(
        target,
        Key::random(&mut rng),
        seeds.clone(),
        config(6, 3),
        now,
    );
    assert_eq!(lookup.settled_closest(2), None, "nobody has answered yet");
    let mut asked = HashSet::new();
    let first = drain(&mut lookup, now, &mut asked);
    assert_eq!(
        first,
        seeds[..3].to_vec(),
        "the three closest are asked first"
    );
    // The second closest answers first: the closest is still unanswered.
    assert!(lookup.on_success(&seeds[1].id, [], now));
    assert_eq!(lookup.settled_closest(1), None);
    assert_eq!(lookup.settled_closest(2), None);
    assert!(lookup.on_success(&seeds[0].id, [], now));
    assert_eq!(lookup.settled_closest(2), Some(seeds[..2].to_vec()));
    // The third is in flight: three are not settled.
    assert_eq!(lookup.settled_closest(3), None);
    // An answer naming a peer closer than all: nothing is settled until it answers.
    let mut bytes = target.to_bytes();
    bytes[31] ^= 1;
    let closer = contact(Key::from_bytes(bytes));
    assert!(lookup.on_success(&seeds[2].id, [closer], now));
    assert_eq!(lookup.settled_closest(1), None);
    let LookupState::Query(asked_closer) = lookup.next(now) else {
        panic!("the new closest peer is asked");
    };
    assert_eq!(asked_closer.id, closer.id);
    assert!(lookup.on_failure(&closer.id, now));
    // A failed peer is skipped, as in the result.
    assert_eq!(lookup.settled_closest(3), Some(seeds[..3].to_vec()));
    assert_eq!(lookup.settled_closest(7), None, "only six peers are known");
    assert_eq!(lookup.settled_closest(0), None);
}
