//! Lookups over a simulated network of 1,000 nodes: every node has its own routing table
//! filled with all other ids and answers a request with its `closest(target, k)`.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Instant;

use dht_id::{Key, NodeId};
use dht_routing::{
    Contact, Lookup, LookupConfig, LookupResult, LookupState, RoutingConfig, RoutingTable,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const NODES: usize = 1000;

struct Network {
    ids: Vec<NodeId>,
    tables: HashMap<NodeId, RoutingTable>,
    silent: HashSet<NodeId>,
}

impl Network {
    fn new(rng: &mut StdRng, now: Instant) -> Self {
        let ids: Vec<NodeId> = (0..NODES).map(|_| Key::random(rng)).collect();
        let contacts: Vec<Contact> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| Contact::new(*id, SocketAddr::from((Ipv4Addr::LOCALHOST, i as u16))))
            .collect();
        let mut tables = HashMap::new();
        for id in &ids {
            let mut table = RoutingTable::new(*id, RoutingConfig::default());
            for contact in &contacts {
                table.insert(*contact, now);
            }
            tables.insert(*id, table);
        }
        Network {
            ids,
            tables,
            silent: HashSet::new(),
        }
    }

    /// The true k closest to `target` among the answering nodes other than `local`.
    fn truth(&self, local: &NodeId, target: &Key, k: usize) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = self
            .ids
            .iter()
            .filter(|id| *id != local && !self.silent.contains(id))
            .copied()
            .collect();
        ids.sort_by_key(|id| id.distance(target));
        ids.truncate(k);
        ids
    }

    /// The true k closest to `target` among all nodes other than `local`.
    fn truth_all(&self, local: &NodeId, target: &Key, k: usize) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = self.ids.iter().filter(|id| *id != local).copied().collect();
        ids.sort_by_key(|id| id.distance(target));
        ids.truncate(k);
        ids
    }

    /// Runs a lookup from `local`'s table; answers are delivered one at a time in random
    /// order, silent nodes never answer and time jumps to `poll_timeout` when nothing else
    /// can happen.
    fn lookup(
        &self,
        rng: &mut StdRng,
        local: NodeId,
        target: Key,
        config: &LookupConfig,
        t0: Instant,
    ) -> LookupResult {
        let seeds = self.tables[&local].closest(&target, config.k);
        let mut lookup = Lookup::new(target, local, seeds, config.clone(), t0);
        let mut now = t0;
        let mut asked = HashSet::new();
        let mut pending: Vec<NodeId> = Vec::new();
        loop {
            match lookup.next(now) {
                LookupState::Query(peer) => {
                    assert!(asked.insert(peer.id), "queried twice");
                    assert_ne!(peer.id, local);
                    if !lookup.is_stalled() {
                        assert!(lookup.in_flight() <= config.alpha, "more than α in flight");
                    }
                    assert!(lookup.in_flight() <= config.k.max(config.alpha));
                    if !self.silent.contains(&peer.id) {
                        pending.push(peer.id);
                    }
                }
                LookupState::Waiting => {
                    assert!(lookup.in_flight() <= config.k.max(config.alpha));
                    if pending.is_empty() {
                        now = lookup
                            .poll_timeout()
                            .expect("a waiting lookup has a timeout");
                    } else {
                        let peer = pending.swap_remove(rng.gen_range(0..pending.len()));
                        let answer = self.tables[&peer].closest(&target, config.k);
                        assert!(lookup.on_success(&peer, answer, now));
                    }
                }
                LookupState::Finished => break,
            }
        }
        assert_eq!(lookup.poll_timeout(), None);
        lookup.into_result()
    }
}

fn ids(result: &LookupResult) -> Vec<NodeId> {
    result.closest.iter().map(|c| c.id).collect()
}

#[test]
fn lookup_finds_the_true_k_closest() {
    let mut rng = StdRng::seed_from_u64(42);
    let t0 = Instant::now();
    let net = Network::new(&mut rng, t0);
    let config = LookupConfig::default();
    for round in 0..20 {
        let local = net.ids[rng.gen_range(0..NODES)];
        // Half of the targets are node ids (FIND_NODE of an existing node).
        let target = if round % 2 == 0 {
            Key::random(&mut rng)
        } else {
            net.ids[rng.gen_range(0..NODES)]
        };
        let result = net.lookup(&mut rng, local, target, &config, t0);
        println!(
            "lookup {round}: contacted {}, succeeded {}, hops {}",
            result.contacted, result.succeeded, result.hops
        );
        assert_eq!(ids(&result), net.truth(&local, &target, config.k));
        assert_eq!(result.target, target);
        assert!(result.contacted <= 60, "contacted {}", result.contacted);
        assert_eq!(result.succeeded, result.contacted);
        assert_eq!(result.failed, 0);
        assert!(result.hops >= 1);
        assert!(!result.deadline_hit);
        assert_eq!(result.value_from, None);
    }
}

#[test]
fn lookup_with_half_the_nodes_silent() {
    let mut rng = StdRng::seed_from_u64(43);
    let t0 = Instant::now();
    let mut net = Network::new(&mut rng, t0);
    let silent: Vec<NodeId> = net
        .ids
        .iter()
        .filter(|_| rng.gen_bool(0.5))
        .copied()
        .collect();
    net.silent.extend(silent);
    let config = LookupConfig::default();
    for round in 0..10 {
        // The local node itself answers (it runs the lookup).
        let local = loop {
            let id = net.ids[rng.gen_range(0..NODES)];
            if !net.silent.contains(&id) {
                break id;
            }
        };
        let target = Key::random(&mut rng);
        let result = net.lookup(&mut rng, local, target, &config, t0);
        println!(
            "silent lookup {round}: contacted {}, succeeded {}, hops {}, deadline hit {}",
            result.contacted, result.succeeded, result.hops, result.deadline_hit
        );
        // Answers include silent nodes, so responsive nodes ranked beyond k overall may never
        // be reported by anyone; those within the overall k closest always are, and must be
        // exactly the head of the result.
        let reachable: Vec<NodeId> = net
            .truth_all(&local, &target, config.k)
            .into_iter()
            .filter(|id| !net.silent.contains(id))
            .collect();
        let found = ids(&result);
        assert!(reachable.len() >= config.k / 4);
        assert_eq!(found[..reachable.len()], reachable[..]);
        assert!(found.len() <= config.k);
        assert!(found.iter().all(|id| !net.silent.contains(id)));
        let truth = net.truth(&local, &target, config.k);
        println!(
            "  found {} of the true {} closest responsive",
            found.iter().filter(|id| truth.contains(id)).count(),
            config.k
        );
        assert_eq!(result.failed, 0);
        assert!(result.succeeded < result.contacted);
    }
}

#[test]
fn lookup_with_every_node_silent_ends_by_timeouts() {
    let mut rng = StdRng::seed_from_u64(44);
    let t0 = Instant::now();
    let mut net = Network::new(&mut rng, t0);
    let local = net.ids[0];
    net.silent.extend(net.ids[1..].iter().copied());
    let config = LookupConfig::default();
    let target = Key::random(&mut rng);
    let result = net.lookup(&mut rng, local, target, &config, t0);
    assert!(result.closest.is_empty());
    assert_eq!(result.contacted, config.k);
    assert_eq!((result.succeeded, result.failed), (0, 0));
}
