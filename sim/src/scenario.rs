//! The scenarios: a workload of PUTs and GETs from random nodes on random keys, and
//! what happens to the network meanwhile (nodes leave and join, half the network is cut
//! off, a quarter of it hangs).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use dht_core::{Key, PutOptions};
use rand::Rng;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::eclipse;
use crate::samples::{SAMPLES, Sample, Tracker, add_gets};
use crate::world::{Attacker, Fate, Member, World};
use crate::{Options, Scenario};
use dht_wire::WireContact;

/// Keys whose replicas are counted at every sample (the first ones written: they live
/// through the most).
const TRACKED_KEYS: usize = 500;
/// Share of the nodes replaced within [`CHURN_WINDOW`] (the `churn` scenario).
const CHURN_SHARE: f64 = 0.3;
/// The window in which [`CHURN_SHARE`] of the nodes leave.
const CHURN_WINDOW: Duration = Duration::from_secs(600);
/// Shape of the Weibull distribution of session lengths: Stutzbach and Rejaie
/// ("Understanding churn in peer-to-peer networks", IMC 2006) fit Kad's and
/// BitTorrent's sessions with shapes of 0.34 to 0.59: many short sessions, a long tail.
const SESSION_SHAPE: f64 = 0.5;
/// How long the `partition` scenario's halves stay apart, at most.
const SPLIT: Duration = Duration::from_secs(300);
/// Share of nodes that hang in the `silent` scenario.
const SILENT_SHARE: f64 = 0.25;

/// Where an operation stands relative to the scenario's fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Before the fault (all of a scenario without one).
    Before,
    /// While the fault lasts.
    During,
    /// After the heal.
    After,
}

/// One operation's outcome.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    /// Seconds into the workload when it started.
    pub(crate) at: f64,
    pub(crate) get: bool,
    pub(crate) ok: bool,
    pub(crate) ms: f64,
    pub(crate) hops: usize,
    pub(crate) contacted: usize,
    pub(crate) phase: Phase,
    /// A GET of a key written on the other side of the partition.
    pub(crate) across: bool,
    /// A GET that returned another value than the one written (the attacker's).
    pub(crate) forged: bool,
}

/// A key written by the workload.
#[derive(Debug, Clone, Copy)]
struct Written {
    key: Key,
    phase: Phase,
    /// The writer's side of the partition.
    side: bool,
}

/// What one run of a scenario saw.
pub(crate) struct Run {
    pub(crate) outcomes: Vec<Outcome>,
    pub(crate) samples: Vec<Sample>,
    /// Seconds the network took to form.
    pub(crate) startup_secs: f64,
    /// Seconds from the start to the end of the workload and its last operation.
    pub(crate) simulated_secs: f64,
    /// When the fault began and ended, in seconds into the workload.
    pub(crate) fault: Option<(f64, f64)>,
    pub(crate) nodes_replaced: usize,
    pub(crate) silent_nodes: usize,
    /// Tracked keys whose replicas fell below `r` and came back, and how long each took.
    pub(crate) repairs: Vec<f64>,
    /// Open connections per live node at the end.
    pub(crate) connections_per_node: f64,
    /// Requests and answers per node per minute of workload, over the whole workload.
    pub(crate) messages_per_node_per_min: f64,
    /// Peers asked per GET that went to the network.
    pub(crate) peers_contacted_per_get: Option<f64>,
    /// What the attacker of the `eclipse` scenario did.
    pub(crate) attack: Option<Attack>,
}

/// What the attacker of the `eclipse` scenario did.
#[derive(Debug, Clone)]
pub(crate) struct Attack {
    /// Ids it minted with the network's proof of work.
    pub(crate) valid_ids: u64,
    /// Bits its closest id shares with the key.
    pub(crate) best_shared_bits: u32,
    /// Its nodes that started.
    pub(crate) nodes: usize,
    /// Its nodes among the 20 running nodes nearest to the key, at the end.
    pub(crate) near_key_final: usize,
}

/// The side of the partition a member is on.
fn side(member: &Member) -> bool {
    match member.ip {
        std::net::IpAddr::V4(ip) => u32::from(ip) % 2 == 0,
        std::net::IpAddr::V6(ip) => u128::from(ip) % 2 == 0,
    }
}

/// Runs `scenario`'s fault and workload on `world`.
pub(crate) async fn run(
    world: &mut World,
    options: &Options,
    scenario: Scenario,
    startup: Duration,
) -> anyhow::Result<Run> {
    let began = Instant::now() - startup;
    let length = Duration::from_secs_f64(options.minutes * 60.0);
    let start = Instant::now();
    let ops = (options.minutes * 60.0 * options.rate).round() as usize;
    let gap = Duration::from_secs_f64(1.0 / options.rate.max(1e-3));
    let sample_every = length / SAMPLES;

    // The fault: from a fifth of the workload on, for the rest (or SPLIT at most).
    let fault_at = start + length / 5;
    let heal_at = match scenario {
        Scenario::Partition => Some(fault_at + SPLIT.min(length * 2 / 5)),
        _ => None,
    };
    let faulty = matches!(
        scenario,
        Scenario::Partition | Scenario::Silent | Scenario::Eclipse
    );
    let mut fault_done = !faulty;
    let mut healed = heal_at.is_none();

    // Churn: every node's session ends at a time drawn from the session model.
    let mut departures: BinaryHeap<Reverse<(Instant, usize)>> = BinaryHeap::new();
    let session_scale =
        CHURN_WINDOW.as_secs_f64() / (-(1.0 - CHURN_SHARE).ln()).powf(1.0 / SESSION_SHAPE);
    let session = |rng: &mut rand::rngs::StdRng| {
        let u: f64 = rng.gen_range(f64::EPSILON..1.0);
        Duration::from_secs_f64(session_scale * (-u.ln()).powf(1.0 / SESSION_SHAPE))
    };
    if scenario == Scenario::Churn {
        for i in 0..world.members.len() {
            let ends = start + session(&mut world.rng);
            departures.push(Reverse((ends, i)));
        }
    }
    let mut joining: Vec<JoinHandle<anyhow::Result<Member>>> = Vec::new();
    let mut nodes_replaced = 0;
    let mut silent_nodes = 0;

    // Eclipse: one key written before the attack, read by every GET.
    let mut target: Option<(Key, Bytes)> = None;
    let mut attack: Option<Attack> = None;
    let sybils: Arc<Mutex<Vec<WireContact>>> = Arc::default();
    if scenario == Scenario::Eclipse {
        let key = Key::from_bytes(world.rng.r#gen());
        let value = Bytes::from(world.rng.r#gen::<[u8; 16]>().to_vec());
        let writer = world.pick(|m| m.fate == Fate::Live);
        let report = world.members[writer]
            .node
            .put(key, value.clone(), PutOptions::default())
            .await?;
        anyhow::ensure!(
            report.replicas >= usize::from(report.replication),
            "the attacked key's PUT reached {} replicas",
            report.replicas
        );
        target = Some((key, value));
    }

    let written: Arc<Mutex<Vec<Written>>> = Arc::default();
    let mut tracker = Tracker::new(world);
    let mut next_sample = start + sample_every;
    let mut handles: Vec<JoinHandle<Outcome>> = Vec::with_capacity(ops);
    let phase_at = |t: Instant| match heal_at {
        _ if !faulty || t < fault_at => Phase::Before,
        Some(heal) if t >= heal => Phase::After,
        _ => Phase::During,
    };

    for op in 0..=ops {
        // Everything due before this operation, in time order (the last round only
        // finishes the samples).
        let due = if op == ops {
            start + length
        } else {
            start + gap * u32::try_from(op).unwrap_or(u32::MAX)
        };
        loop {
            let churn_next = departures.peek().map(|Reverse((at, _))| *at);
            let fault_next = (!fault_done).then_some(fault_at);
            let heal_next = (!healed).then_some(heal_at).flatten();
            let next = [Some(next_sample), churn_next, fault_next, heal_next]
                .into_iter()
                .flatten()
                .min()
                .filter(|&next| next <= due);
            let Some(next) = next else { break };
            tokio::time::sleep_until(next).await;
            // New nodes that have finished joining take part from now on.
            for handle in std::mem::take(&mut joining) {
                if handle.is_finished() {
                    let member = handle.await??;
                    let i = world.members.len();
                    if member.fate == Fate::Hostile {
                        let contact = WireContact {
                            id: member.node.id(),
                            addr: member.node.listen_addr(),
                        };
                        sybils
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(contact);
                    } else {
                        let ends = Instant::now() + session(&mut world.rng);
                        departures.push(Reverse((ends, i)));
                    }
                    world.members.push(member);
                    tracker.grow(world.members.len());
                } else {
                    joining.push(handle);
                }
            }
            if fault_next == Some(next) {
                fault_done = true;
                match scenario {
                    Scenario::Partition => {
                        let sides: Vec<(std::net::IpAddr, bool)> =
                            world.members.iter().map(|m| (m.ip, side(m))).collect();
                        let sides: std::collections::HashMap<_, _> = sides.into_iter().collect();
                        world
                            .net
                            .partition(move |ip| sides.get(&ip).copied().unwrap_or(false));
                    }
                    Scenario::Silent => {
                        let mut order: Vec<usize> = world.live().collect();
                        let n = (order.len() as f64 * SILENT_SHARE).round() as usize;
                        let mut hung = Vec::with_capacity(n);
                        for _ in 0..n {
                            let j = world.rng.gen_range(0..order.len());
                            hung.push(order.swap_remove(j));
                        }
                        silent_nodes = hung.len();
                        world.hang(&hung);
                    }
                    Scenario::Eclipse => {
                        if let Some((key, _)) = &target {
                            let (started, seen) = attack_key(world, options, *key, sybils.clone())?;
                            joining.extend(started.into_iter().map(tokio::spawn));
                            attack = Some(seen);
                        }
                    }
                    _ => {}
                }
            } else if heal_next == Some(next) {
                healed = true;
                world.net.heal();
            } else if churn_next == Some(next) {
                if let Some(Reverse((_, i))) = departures.pop() {
                    if world.members[i].fate == Fate::Live {
                        // Half leave by shutting down, half vanish (a host switched
                        // off or cut from the network).
                        let vanish = world.rng.gen_bool(0.5);
                        world.depart(i, vanish);
                        nodes_replaced += 1;
                        joining.push(tokio::spawn(world.starting()));
                    }
                }
            } else {
                next_sample += sample_every;
                let keys: Vec<Key> = written
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .iter()
                    .take(TRACKED_KEYS)
                    .map(|w| w.key)
                    .collect();
                let t = (Instant::now() - start).as_secs_f64();
                tracker.sample(world, &keys, t, options.replication());
            }
        }
        if op == ops {
            break;
        }
        tokio::time::sleep_until(due).await;
        let at = (due - start).as_secs_f64();
        let phase = phase_at(due);
        let reader = world.pick(|m| m.fate == Fate::Live);
        let reader_side = side(&world.members[reader]);
        let node = world.members[reader].node.clone();
        // Every other operation GETs a key written earlier (PUTs one while there is
        // none the scenario would read).
        let chosen = (op % 2 == 1)
            .then(|| {
                if let Some((key, _)) = &target {
                    let w = Written {
                        key: *key,
                        phase: Phase::Before,
                        side: reader_side,
                    };
                    return Some(w);
                }
                let written = written.lock().unwrap_or_else(|e| e.into_inner());
                let fits = |w: &&Written| match (scenario, phase) {
                    (Scenario::Partition, Phase::During) => {
                        w.phase == Phase::During && w.side == reader_side
                    }
                    (Scenario::Partition, Phase::After) => w.phase == Phase::During,
                    _ => true,
                };
                let candidates: Vec<&Written> = written.iter().filter(fits).collect();
                (!candidates.is_empty())
                    .then(|| *candidates[world.rng.gen_range(0..candidates.len())])
            })
            .flatten();
        if let Some(w) = chosen {
            let across = w.side != reader_side;
            let expected = target.as_ref().map(|(_, value)| value.clone());
            handles.push(tokio::spawn(async move {
                let started = Instant::now();
                let (found, stats) = node.get_with_stats(w.key).await;
                let found = found.ok().flatten();
                let forged = matches!((&found, &expected), (Some(got), Some(want)) if got != want);
                Outcome {
                    at,
                    get: true,
                    ok: found.is_some() && !forged,
                    forged,
                    ms: started.elapsed().as_secs_f64() * 1e3,
                    hops: stats.hops,
                    contacted: stats.contacted,
                    phase,
                    across,
                }
            }));
        } else {
            let key = Key::from_bytes(world.rng.r#gen());
            let value = Bytes::from(world.rng.r#gen::<[u8; 16]>().to_vec());
            let written = written.clone();
            handles.push(tokio::spawn(async move {
                let started = Instant::now();
                let report = node.put(key, value, PutOptions::default()).await;
                let ok = report.is_ok_and(|r| r.replicas >= usize::from(r.replication));
                if ok {
                    let w = Written {
                        key,
                        phase,
                        side: reader_side,
                    };
                    written.lock().unwrap_or_else(|e| e.into_inner()).push(w);
                }
                Outcome {
                    at,
                    get: false,
                    ok,
                    ms: started.elapsed().as_secs_f64() * 1e3,
                    hops: 0,
                    contacted: 0,
                    phase,
                    across: false,
                    forged: false,
                }
            }));
        }
    }
    let mut outcomes = Vec::with_capacity(handles.len());
    for handle in handles {
        outcomes.push(handle.await?);
    }
    let mut samples = tracker.samples.clone();
    add_gets(&mut samples, &outcomes);
    for handle in joining {
        let member = handle.await??;
        world.members.push(member);
    }
    let simulated = began.elapsed();

    let live: Vec<usize> = world.live().collect();
    let connections = live
        .iter()
        .map(|&i| world.members[i].node.open_connections())
        .sum::<usize>() as f64;
    let (lookups, contacted) = outcomes
        .iter()
        .filter(|o| o.get && o.contacted > 0)
        .fold((0usize, 0usize), |(n, c), o| (n + 1, c + o.contacted));
    let minutes = length.as_secs_f64() / 60.0;
    let fault = faulty.then(|| {
        let secs = |t: Instant| (t - start).as_secs_f64();
        (secs(fault_at), heal_at.map_or(length.as_secs_f64(), secs))
    });
    Ok(Run {
        outcomes,
        startup_secs: startup.as_secs_f64(),
        simulated_secs: simulated.as_secs_f64(),
        fault,
        nodes_replaced,
        silent_nodes,
        repairs: tracker.repairs.clone(),
        connections_per_node: connections / live.len().max(1) as f64,
        messages_per_node_per_min: tracker.total_messages(world) as f64
            / options.nodes as f64
            / minutes.max(1e-9),
        peers_contacted_per_get: (lookups > 0).then(|| contacted as f64 / lookups as f64),
        attack: attack.map(|a| Attack {
            near_key_final: target
                .as_ref()
                .map_or(0, |(key, _)| world.hostile_near(key)),
            ..a
        }),
        samples,
    })
}

/// The attacker of the `eclipse` scenario strikes: it spends its budget minting ids
/// near `key` and starts a node for each of the closest; the starts, and what it did.
#[allow(clippy::type_complexity)]
fn attack_key(
    world: &mut World,
    options: &Options,
    key: Key,
    sybils: Arc<Mutex<Vec<WireContact>>>,
) -> anyhow::Result<(
    Vec<impl std::future::Future<Output = anyhow::Result<Member>> + Send + 'static + use<>>,
    Attack,
)> {
    let key_seed: [u8; 32] = world.rng.r#gen();
    let budget = 1u64 << options.attacker_budget_log2.min(40);
    let minted = eclipse::mint_near(key_seed, &key, options.pow, budget)?;
    let forged = eclipse::forged(key, world.now_micros());
    let responder = eclipse::responder(key, forged, sybils);
    let starts = minted
        .ids
        .iter()
        .map(|&(nonce, _)| {
            world.starting_as(Some(Attacker {
                key_seed,
                nonce,
                responder: responder.clone(),
            }))
        })
        .collect();
    let attack = Attack {
        valid_ids: minted.valid,
        best_shared_bits: minted
            .ids
            .first()
            .map_or(0, |(_, id)| eclipse::shared_prefix(id, &key)),
        nodes: minted.ids.len(),
        near_key_final: 0,
    };
    Ok((starts, attack))
}
