//! The samples of a run: every 1/[`SAMPLES`] of the workload, the network's state
//! (live nodes, connections, messages since the previous sample, replicas of the
//! tracked keys), and afterwards the GETs started in each window.

use dht_bench::stats::Summary as Latency;
use dht_core::Key;

use crate::scenario::Outcome;
use crate::world::{Fate, Member, World};

/// Samples taken over the workload.
pub(crate) const SAMPLES: u32 = 40;

/// A state of the network, taken every 1/[`SAMPLES`] of the workload.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Sample {
    /// Seconds into the workload.
    pub t: f64,
    /// Nodes running and answering.
    pub live_nodes: usize,
    /// Open connections per live node, mean.
    pub connections_per_node: f64,
    /// Requests and answers per live node per minute since the previous sample.
    pub messages_per_node_per_min: f64,
    /// Fewest replicas of a tracked key (live nodes among its 20 nearest holding it).
    pub replicas_min: usize,
    /// Mean replicas of a tracked key.
    pub replicas_mean: f64,
    /// Tracked keys with fewer than `r` replicas.
    pub keys_below_r: usize,
    /// Tracked keys with no replica at all.
    pub keys_without_replica: usize,
    /// GETs started since the previous sample.
    pub gets: usize,
    /// Share of them that found their value.
    pub get_success: Option<f64>,
    /// Their median latency, ms.
    pub get_p50_ms: Option<f64>,
    /// Rounds of their lookups, mean (those that went to the network).
    pub hops_per_get: Option<f64>,
    /// Peers their lookups asked, mean (those that went to the network).
    pub peers_per_get: Option<f64>,
}

/// Fills each sample's GET figures from the GETs started in its window.
pub(crate) fn add_gets(samples: &mut [Sample], outcomes: &[Outcome]) {
    let mut from = 0.0;
    for sample in samples {
        let gets: Vec<&Outcome> = outcomes
            .iter()
            .filter(|o| o.get && o.at >= from && o.at < sample.t)
            .collect();
        from = sample.t;
        sample.gets = gets.len();
        if gets.is_empty() {
            continue;
        }
        let ok: Vec<f64> = gets.iter().filter(|o| o.ok).map(|o| o.ms).collect();
        sample.get_success = Some(ok.len() as f64 / gets.len() as f64);
        sample.get_p50_ms = Latency::of_ms(&ok).map(|s| s.p50);
        let lookups: Vec<&&Outcome> = gets.iter().filter(|o| o.contacted > 0).collect();
        if !lookups.is_empty() {
            let n = lookups.len() as f64;
            sample.hops_per_get = Some(lookups.iter().map(|o| o.hops as f64).sum::<f64>() / n);
            sample.peers_per_get =
                Some(lookups.iter().map(|o| o.contacted as f64).sum::<f64>() / n);
        }
    }
}

/// Takes the samples: messages since the last one, replicas of the tracked keys.
pub(crate) struct Tracker {
    /// Requests and answers of each member when last sampled.
    messages: Vec<u64>,
    /// Messages at the start of the workload, per member.
    initial: Vec<u64>,
    last_t: f64,
    /// When each tracked key fell below `r`, if it is below.
    below_since: Vec<Option<f64>>,
    pub(crate) repairs: Vec<f64>,
    pub(crate) samples: Vec<Sample>,
}

fn messages(member: &Member) -> u64 {
    let stats = member.node.stats();
    stats.requests_sent + stats.answers_received
}

impl Tracker {
    /// Counts from now on.
    pub(crate) fn new(world: &World) -> Self {
        let initial: Vec<u64> = world.members.iter().map(messages).collect();
        Tracker {
            messages: initial.clone(),
            initial,
            last_t: 0.0,
            below_since: Vec::new(),
            repairs: Vec::new(),
            samples: Vec::new(),
        }
    }

    /// Makes room for members that joined (they start from zero).
    pub(crate) fn grow(&mut self, members: usize) {
        self.messages.resize(members, 0);
        self.initial.resize(members, 0);
    }

    pub(crate) fn sample(&mut self, world: &World, keys: &[Key], t: f64, r: usize) {
        let mut delta = 0;
        for (i, member) in world.members.iter().enumerate() {
            if member.fate != Fate::Gone {
                let now = messages(member);
                delta += now.saturating_sub(self.messages[i]);
                self.messages[i] = now;
            }
        }
        let live: Vec<usize> = world.live().collect();
        let n = live.len().max(1) as f64;
        let connections = live
            .iter()
            .map(|&i| world.members[i].node.open_connections())
            .sum::<usize>();
        let counts: Vec<usize> = keys.iter().map(|key| world.replicas(key)).collect();
        self.below_since.resize(counts.len(), None);
        for (since, &count) in self.below_since.iter_mut().zip(&counts) {
            match (*since, count < r) {
                (None, true) => *since = Some(t),
                (Some(from), false) => {
                    self.repairs.push(t - from);
                    *since = None;
                }
                _ => {}
            }
        }
        let minutes = (t - self.last_t).max(1e-9) / 60.0;
        self.last_t = t;
        self.samples.push(Sample {
            t,
            live_nodes: live.len(),
            connections_per_node: connections as f64 / n,
            messages_per_node_per_min: delta as f64 / n / minutes,
            replicas_min: counts.iter().copied().min().unwrap_or(0),
            replicas_mean: if counts.is_empty() {
                0.0
            } else {
                counts.iter().sum::<usize>() as f64 / counts.len() as f64
            },
            keys_below_r: counts.iter().filter(|&&c| c < r).count(),
            keys_without_replica: counts.iter().filter(|&&c| c == 0).count(),
            gets: 0,
            get_success: None,
            get_p50_ms: None,
            hops_per_get: None,
            peers_per_get: None,
        });
    }

    /// Requests and answers over the workload, every member's.
    pub(crate) fn total_messages(&self, world: &World) -> u64 {
        world
            .members
            .iter()
            .enumerate()
            .map(|(i, member)| {
                let last = if member.fate == Fate::Gone {
                    self.messages.get(i).copied().unwrap_or(0)
                } else {
                    messages(member)
                };
                last.saturating_sub(self.initial.get(i).copied().unwrap_or(0))
            })
            .sum()
    }
}
