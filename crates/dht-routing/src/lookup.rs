//! The iterative Kademlia lookup as a state machine, in the style of rust-libp2p's
//! `ClosestPeersIter`.
//!
//! The caller drives it: [`Lookup::next`] says whom to ask; answers come back through
//! [`Lookup::on_success`], [`Lookup::on_failure`] or [`Lookup::on_value`]; when
//! [`Lookup::next`] says [`LookupState::Waiting`] the caller waits for an answer or until
//! [`Lookup::poll_timeout`]. Known peers live in a `BTreeMap` keyed by their distance to the
//! target, so "the k closest" is a walk from the front of the map.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use dht_id::{Distance, Key, NodeId};

use crate::{Contact, DEFAULT_K};

/// Not-yet-contacted candidates kept per unit of `k`; beyond `k * CANDIDATES_PER_K` the
/// farthest candidates are dropped, so a peer answering with many ids cannot grow a lookup
/// without bound.
const CANDIDATES_PER_K: usize = 8;

/// Parameters of a [`Lookup`].
#[derive(Debug, Clone)]
pub struct LookupConfig {
    /// Number of results wanted, "k" in the Kademlia paper (default 20). 0 is treated as 1.
    pub k: usize,
    /// Requests in flight while the lookup makes progress, "α" in the paper (default 3).
    /// 0 is treated as 1.
    pub alpha: usize,
    /// After this an in-flight peer is "unresponsive" and no longer takes a slot (default
    /// 1 s). Its answer is still accepted if it arrives later.
    pub peer_timeout: Duration,
    /// Overall time limit; the lookup finishes when it passes (default 10 s).
    pub deadline: Duration,
}

impl Default for LookupConfig {
    fn default() -> Self {
        LookupConfig {
            k: DEFAULT_K,
            alpha: 3,
            peer_timeout: Duration::from_secs(1),
            deadline: Duration::from_secs(10),
        }
    }
}

/// What the caller should do next (see [`Lookup::next`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupState {
    /// Send a request to this peer now, then report `on_success`/`on_failure` for it.
    Query(Contact),
    /// Nothing to send now: wait for a response or until [`Lookup::poll_timeout`].
    Waiting,
    /// Done: call [`Lookup::into_result`].
    Finished,
}

/// The outcome of a finished (or abandoned) [`Lookup`].
#[derive(Debug, Clone)]
pub struct LookupResult {
    /// The key that was looked up.
    pub target: Key,
    /// Up to k peers that answered, closest first.
    pub closest: Vec<Contact>,
    /// The peer that returned the value (FIND_VALUE), if any.
    pub value_from: Option<Contact>,
    /// Number of distinct peers queried.
    pub contacted: usize,
    /// Number of peers that answered (late answers included).
    pub succeeded: usize,
    /// Number of peers reported as failed.
    pub failed: usize,
    /// Hops: the seeds are hop 1; a peer learned from an answer of a hop-h peer is hop h+1;
    /// the largest hop of any peer that answered (0 if none did).
    pub hops: usize,
    /// True if the overall deadline ended it.
    pub deadline_hit: bool,
    /// Peers asked that never answered within their time (unresponsive at the end).
    pub unresponsive: Vec<Contact>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerState {
    /// Known, not asked yet.
    NotContacted,
    /// Asked, no answer yet; `None` if the timeout instant is not representable.
    Waiting(Option<Instant>),
    /// Asked, no answer within `peer_timeout`; no longer takes a slot.
    Unresponsive,
    /// Answered.
    Succeeded,
    /// Reported as failed.
    Failed,
}

#[derive(Debug, Clone)]
struct PeerEntry {
    contact: Contact,
    state: PeerState,
    hop: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// At most α requests in flight; `no_progress` answers in a row brought nothing closer.
    Iterating {
        no_progress: usize,
    },
    /// α answers in a row brought nothing closer: up to k requests in flight.
    Stalled,
    Finished,
}

/// An iterative lookup of the k peers closest to a target.
///
/// Semantics follow rust-libp2p's `ClosestPeersIter`:
/// - at most α requests are in flight while the lookup makes progress; when α answers in a
///   row bring no peer closer than the closest known (and at least k peers are known) it is
///   "stalled" and up to max(k, α) requests may be in flight, so that all of the k closest
///   are asked; an answer bringing a closer peer switches back to α;
/// - a peer whose request exceeded `peer_timeout` is unresponsive: it frees its slot and is
///   skipped when counting the k closest, like a failed peer, but its late answer is still
///   accepted (it then counts as succeeded again);
/// - it finishes when the k closest peers that neither failed nor are unresponsive have all
///   answered; or when nothing is in flight and no candidate is left; or when the deadline
///   passes; or on [`Lookup::on_value`].
///
/// Only a not-yet-asked peer among those k closest is ever queried (libp2p may also query
/// farther peers speculatively while a closer request is in flight); no peer is queried twice.
#[derive(Debug, Clone)]
pub struct Lookup {
    target: Key,
    local_id: NodeId,
    config: LookupConfig,
    peers: BTreeMap<Distance, PeerEntry>,
    phase: Phase,
    /// `None` if `now + deadline` is not representable (no deadline).
    deadline: Option<Instant>,
    deadline_hit: bool,
    in_flight: usize,
    /// Requests in flight at most while stalled (with α, and never more than k): k,
    /// unless the caller needs fewer of the closest ([`Lookup::stall_width`]).
    stall_width: usize,
    /// Entries in state `NotContacted`.
    candidates: usize,
    contacted: usize,
    value_from: Option<Contact>,
}

impl Lookup {
    /// Starts a lookup of `target` from `seeds` (contacts from the routing table). `local_id`
    /// is never queried nor returned (it is ignored in seeds and answers).
    pub fn new(
        target: Key,
        local_id: NodeId,
        seeds: impl IntoIterator<Item = Contact>,
        config: LookupConfig,
        now: Instant,
    ) -> Self {
        let config = LookupConfig {
            k: config.k.max(1),
            alpha: config.alpha.max(1),
            ..config
        };
        let mut lookup = Lookup {
            target,
            local_id,
            deadline: now.checked_add(config.deadline),
            config,
            peers: BTreeMap::new(),
            phase: Phase::Iterating { no_progress: 0 },
            deadline_hit: false,
            in_flight: 0,
            stall_width: usize::MAX,
            candidates: 0,
            contacted: 0,
            value_from: None,
        };
        for seed in seeds {
            lookup.add_candidate(seed, 1);
        }
        lookup
    }

    /// For a caller that needs only the `n` closest peers (a PUT of replication `n`): a
    /// stalled lookup then asks at most max(`n`, α) peers at once instead of max(k, α).
    /// Asking all k closest at once, when `n` of them are what counts, sends requests
    /// that cannot change the answer (the caller ends the lookup once its `n` closest
    /// have answered, see [`Lookup::settled_closest`]).
    pub fn stall_width(mut self, n: usize) -> Self {
        self.stall_width = n.max(1);
        self
    }

    /// The key being looked up.
    pub fn target(&self) -> Key {
        self.target
    }

    /// Advances timeouts to `now` and says what to do. Call repeatedly until it returns
    /// [`LookupState::Waiting`] or [`LookupState::Finished`].
    pub fn next(&mut self, now: Instant) -> LookupState {
        self.advance(now);
        if self.phase == Phase::Finished {
            return LookupState::Finished;
        }
        // Walk the k closest peers that neither failed nor are unresponsive.
        let k = self.config.k;
        let (mut live, mut succeeded) = (0, 0);
        let mut candidate = None;
        for (distance, peer) in &self.peers {
            match peer.state {
                PeerState::Failed | PeerState::Unresponsive => continue,
                PeerState::Succeeded => succeeded += 1,
                PeerState::NotContacted if candidate.is_none() => candidate = Some(*distance),
                PeerState::NotContacted | PeerState::Waiting(_) => {}
            }
            live += 1;
            if live == k {
                break;
            }
        }
        // Also covers "nothing in flight, no candidate left": every live peer among the
        // closest has then answered (or there is none).
        if succeeded == live {
            self.phase = Phase::Finished;
            return LookupState::Finished;
        }
        let capacity = match self.phase {
            Phase::Stalled => self.stall_width.min(self.config.k).max(self.config.alpha),
            _ => self.config.alpha,
        };
        if self.in_flight < capacity {
            if let Some(peer) = candidate.and_then(|d| self.peers.get_mut(&d)) {
                peer.state = PeerState::Waiting(now.checked_add(self.config.peer_timeout));
                self.in_flight += 1;
                self.candidates -= 1;
                self.contacted += 1;
                return LookupState::Query(peer.contact);
            }
        }
        LookupState::Waiting
    }

    /// `peer` answered with these contacts (closer peers). Unknown ids are added as
    /// candidates (dedupe by id; the local id is ignored; at most `8 * k` ids of one answer
    /// are read). A late answer from a peer that timed out is still accepted. Returns false
    /// if `peer` was not queried by this lookup, already answered or failed, or if the lookup
    /// has finished (the answer is then ignored).
    pub fn on_success(
        &mut self,
        peer: &NodeId,
        closer: impl IntoIterator<Item = Contact>,
        now: Instant,
    ) -> bool {
        let Some(hop) = self.mark_answered(peer) else {
            return false;
        };
        let closest_before = self.peers.keys().next().copied();
        // As in libp2p: knowing fewer than k peers also counts as progress.
        let mut progress = self.peers.len() < self.config.k;
        for contact in closer.into_iter().take(self.max_candidates()) {
            if let Some(distance) = self.add_candidate(contact, hop + 1) {
                progress |= closest_before.is_none_or(|closest| distance < closest);
            }
        }
        self.phase = match self.phase {
            Phase::Iterating { .. } | Phase::Stalled if progress => {
                Phase::Iterating { no_progress: 0 }
            }
            Phase::Iterating { no_progress } if no_progress + 1 < self.config.alpha => {
                Phase::Iterating {
                    no_progress: no_progress + 1,
                }
            }
            Phase::Iterating { .. } | Phase::Stalled => Phase::Stalled,
            Phase::Finished => Phase::Finished,
        };
        self.advance(now);
        true
    }

    /// `peer` failed (error or transport timeout). Failed peers never count as results.
    /// Returns false if `peer` was not queried by this lookup, already answered or failed,
    /// or if the lookup has finished.
    pub fn on_failure(&mut self, peer: &NodeId, now: Instant) -> bool {
        if self.phase == Phase::Finished {
            return false;
        }
        let distance = self.target.distance(peer);
        let Some(entry) = self.peers.get_mut(&distance) else {
            return false;
        };
        match entry.state {
            PeerState::Waiting(_) => self.in_flight -= 1,
            PeerState::Unresponsive => {}
            _ => return false,
        }
        entry.state = PeerState::Failed;
        self.advance(now);
        true
    }

    /// FIND_VALUE variant: `peer` returned the value. The peer counts as succeeded and the
    /// lookup finishes at once. Returns false (and changes nothing) if `peer` was not queried
    /// by this lookup, already answered or failed, or if the lookup has finished.
    pub fn on_value(&mut self, peer: &NodeId, _now: Instant) -> bool {
        if self.mark_answered(peer).is_none() {
            return false;
        }
        self.value_from = self
            .peers
            .get(&self.target.distance(peer))
            .map(|entry| entry.contact);
        self.phase = Phase::Finished;
        true
    }

    /// Sets when `peer`, queried and not answered yet, counts as unresponsive (instead of
    /// after the configured `peer_timeout`), for a caller that knows how long this peer's
    /// answer should take. Returns false if `peer` is not waiting for an answer.
    pub fn answer_due(&mut self, peer: &NodeId, due: Instant) -> bool {
        match self.peers.get_mut(&self.target.distance(peer)) {
            Some(entry) if matches!(entry.state, PeerState::Waiting(_)) => {
                entry.state = PeerState::Waiting(Some(due));
                true
            }
            _ => false,
        }
    }

    /// Live peers the lookup knows (asked or not; failed and unresponsive ones aside)
    /// that are closer to the target than `peer`.
    pub fn closer_known(&self, peer: &NodeId) -> usize {
        self.peers
            .range(..self.target.distance(peer))
            .filter(|(_, entry)| {
                !matches!(entry.state, PeerState::Failed | PeerState::Unresponsive)
            })
            .count()
    }

    /// Earliest instant at which [`Lookup::next`] could change state by itself (a per-peer
    /// timeout of an in-flight peer or the overall deadline); `None` if finished.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase == Phase::Finished {
            return None;
        }
        let peer_timeouts = self.peers.values().filter_map(|peer| match peer.state {
            PeerState::Waiting(timeout) => timeout,
            _ => None,
        });
        peer_timeouts.chain(self.deadline).min()
    }

    /// The `n` closest peers the lookup knows, once all of them have answered: no peer
    /// known to it (asked or not) is closer, so only a peer it has not learned yet can
    /// still displace them. `None` while one of them is unanswered, or while fewer than
    /// `n` live peers are known. Failed and unresponsive peers are skipped, as in the
    /// result. A PUT starts its STOREs on these before the lookup has finished.
    pub fn settled_closest(&self, n: usize) -> Option<Vec<Contact>> {
        let mut closest = Vec::with_capacity(n);
        for peer in self.peers.values() {
            if closest.len() == n {
                break;
            }
            match peer.state {
                PeerState::Failed | PeerState::Unresponsive => {}
                PeerState::Succeeded => closest.push(peer.contact),
                PeerState::NotContacted | PeerState::Waiting(_) => return None,
            }
        }
        (n > 0 && closest.len() == n).then_some(closest)
    }

    /// Whether the lookup has finished.
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Finished
    }

    /// Whether the lookup is stalled, i.e. allows up to max(k, α) requests in flight.
    pub fn is_stalled(&self) -> bool {
        self.phase == Phase::Stalled
    }

    /// Peers currently in flight (queried, not answered, not failed, not timed out).
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Number of distinct peers queried so far.
    pub fn contacted(&self) -> usize {
        self.contacted
    }

    /// Collects the result. May be called before the lookup has finished; it then reports
    /// the answers received so far.
    pub fn into_result(self) -> LookupResult {
        let succeeded = || {
            self.peers
                .values()
                .filter(|peer| peer.state == PeerState::Succeeded)
        };
        LookupResult {
            target: self.target,
            closest: succeeded()
                .take(self.config.k)
                .map(|peer| peer.contact)
                .collect(),
            value_from: self.value_from,
            contacted: self.contacted,
            succeeded: succeeded().count(),
            failed: self
                .peers
                .values()
                .filter(|peer| peer.state == PeerState::Failed)
                .count(),
            hops: succeeded().map(|peer| peer.hop).max().unwrap_or(0),
            deadline_hit: self.deadline_hit,
            unresponsive: self
                .peers
                .values()
                .filter(|peer| peer.state == PeerState::Unresponsive)
                .map(|peer| peer.contact)
                .collect(),
        }
    }

    fn max_candidates(&self) -> usize {
        self.config.k.saturating_mul(CANDIDATES_PER_K)
    }

    /// Marks a queried peer as answered; returns its hop, or `None` if it was not waiting
    /// for an answer (or the lookup is finished).
    fn mark_answered(&mut self, peer: &NodeId) -> Option<usize> {
        if self.phase == Phase::Finished {
            return None;
        }
        let entry = self.peers.get_mut(&self.target.distance(peer))?;
        match entry.state {
            PeerState::Waiting(_) => self.in_flight -= 1,
            PeerState::Unresponsive => {}
            _ => return None,
        }
        entry.state = PeerState::Succeeded;
        Some(entry.hop)
    }

    /// Adds a new candidate; returns its distance if it was not known before.
    fn add_candidate(&mut self, contact: Contact, hop: usize) -> Option<Distance> {
        if contact.id == self.local_id {
            return None;
        }
        let distance = self.target.distance(&contact.id);
        if self.peers.contains_key(&distance) {
            return None;
        }
        self.peers.insert(
            distance,
            PeerEntry {
                contact,
                state: PeerState::NotContacted,
                hop,
            },
        );
        self.candidates += 1;
        if self.candidates > self.max_candidates() {
            let farthest = self
                .peers
                .iter()
                .rev()
                .find(|(_, peer)| peer.state == PeerState::NotContacted)
                .map(|(d, _)| *d);
            if let Some(farthest) = farthest {
                self.peers.remove(&farthest);
                self.candidates -= 1;
                if farthest == distance {
                    return None;
                }
            }
        }
        Some(distance)
    }

    /// Applies the deadline and the per-peer timeouts up to `now`.
    fn advance(&mut self, now: Instant) {
        if self.phase == Phase::Finished {
            return;
        }
        if self.deadline.is_some_and(|deadline| now >= deadline) {
            self.phase = Phase::Finished;
            self.deadline_hit = true;
            return;
        }
        if self.in_flight == 0 {
            return;
        }
        for peer in self.peers.values_mut() {
            if let PeerState::Waiting(Some(timeout)) = peer.state {
                if now >= timeout {
                    peer.state = PeerState::Unresponsive;
                    self.in_flight -= 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
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

    #[test]
    fn huge_answers_are_bounded() {
        let mut rng = StdRng::seed_from_u64(7);
        let seeds = random_contacts(&mut rng, 1);
        let now = Instant::now();
        let target = Key::random(&mut rng);
        let mut lookup = Lookup::new(target, Key::random(&mut rng), seeds, config(4, 3), now);
        let LookupState::Query(peer) = lookup.next(now) else {
            panic!("expected a query");
        };
        let flood = random_contacts(&mut rng, 1000);
        let mut best: Vec<Contact> = flood.clone();
        best.truncate(32);
        best.sort_by_key(|c| c.id.distance(&target));
        assert!(lookup.on_success(&peer.id, flood, now));
        assert_eq!(lookup.candidates, 32);
        assert_eq!(lookup.peers.len(), 33);
        // The candidates kept are the closest of what was read.
        let kept: Vec<Contact> = lookup
            .peers
            .values()
            .filter(|p| p.state == PeerState::NotContacted)
            .map(|p| p.contact)
            .collect();
        assert_eq!(kept, best);

        // A second flood from the closest candidate: only the 32 closest candidates stay.
        let LookupState::Query(second) = lookup.next(now) else {
            panic!("expected a query");
        };
        assert_eq!(second, best[0]);
        let flood = random_contacts(&mut rng, 32);
        let mut union: Vec<Contact> = best[1..].iter().chain(&flood).copied().collect();
        union.sort_by_key(|c| c.id.distance(&target));
        union.truncate(32);
        assert!(lookup.on_success(&second.id, flood, now));
        assert_eq!(lookup.candidates, 32);
        let kept: Vec<Contact> = lookup
            .peers
            .values()
            .filter(|p| p.state == PeerState::NotContacted)
            .map(|p| p.contact)
            .collect();
        assert_eq!(kept, union);
    }

    #[test]
    fn closer_known_counts_live_peers_before_the_one_asked_about() {
        let mut rng = StdRng::seed_from_u64(9);
        let now = Instant::now();
        let target = Key::random(&mut rng);
        let mut seeds = random_contacts(&mut rng, 5);
        seeds.sort_by_key(|c| c.id.distance(&target));
        let mut lookup = Lookup::new(
            target,
            Key::random(&mut rng),
            seeds.clone(),
            config(5, 1),
            now,
        );
        assert_eq!(lookup.closer_known(&seeds[0].id), 0);
        assert_eq!(lookup.closer_known(&seeds[4].id), 4);
        // Asked and failed: it no longer counts.
        let LookupState::Query(first) = lookup.next(now) else {
            panic!("expected a query");
        };
        assert_eq!(first, seeds[0]);
        assert!(lookup.on_failure(&first.id, now));
        assert_eq!(lookup.closer_known(&seeds[4].id), 3);
    }

    #[test]
    fn an_answer_due_sooner_frees_the_slot_sooner() {
        let mut rng = StdRng::seed_from_u64(10);
        let now = Instant::now();
        let seeds = random_contacts(&mut rng, 3);
        let cfg = LookupConfig {
            k: 3,
            alpha: 1,
            peer_timeout: Duration::from_secs(1),
            ..LookupConfig::default()
        };
        let mut lookup = Lookup::new(
            Key::random(&mut rng),
            Key::random(&mut rng),
            seeds,
            cfg,
            now,
        );
        let LookupState::Query(first) = lookup.next(now) else {
            panic!("expected a query");
        };
        assert!(lookup.answer_due(&first.id, now + Duration::from_millis(200)));
        assert_eq!(
            lookup.poll_timeout(),
            Some(now + Duration::from_millis(200))
        );
        assert!(matches!(
            lookup.next(now + Duration::from_millis(199)),
            LookupState::Waiting
        ));
        // Due: the first peer is unresponsive and the next one is asked.
        let LookupState::Query(second) = lookup.next(now + Duration::from_millis(200)) else {
            panic!("expected a second query");
        };
        assert_ne!(second, first);
        assert_eq!(lookup.clone().into_result().unresponsive, vec![first]);
        // Its late answer still counts.
        assert!(lookup.on_success(&first.id, [], now + Duration::from_millis(300)));
        assert!(!lookup.answer_due(&first.id, now), "it has answered");
        assert!(lookup.into_result().unresponsive.is_empty());
    }

    #[test]
    fn huge_deadline_does_not_overflow() {
        let mut rng = StdRng::seed_from_u64(8);
        let now = Instant::now();
        let cfg = LookupConfig {
            peer_timeout: Duration::MAX,
            deadline: Duration::MAX,
            ..LookupConfig::default()
        };
        let seeds = random_contacts(&mut rng, 2);
        let mut lookup = Lookup::new(
            Key::random(&mut rng),
            Key::random(&mut rng),
            seeds,
            cfg,
            now,
        );
        assert!(matches!(lookup.next(now), LookupState::Query(_)));
        assert_eq!(lookup.poll_timeout(), None);
        assert!(!lookup.is_finished());
    }
}
