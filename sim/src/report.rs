//! The figures of a run: the JSON summary, and `report.md` with its plots.

use std::path::Path;

use anyhow::Context;
use dht_bench::stats::Summary as Latency;
use serde::Serialize;

use crate::samples::Sample;
use crate::scenario::{Outcome, Phase, Run};
use crate::{Options, Scenario, TransportKind};

/// Percentiles of latencies, in simulated milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
}

impl Percentiles {
    fn of(ms: &[f64]) -> Option<Percentiles> {
        Latency::of_ms(ms).map(|s| Percentiles {
            p50: s.p50,
            p90: s.p90,
            p99: s.p99,
        })
    }
}

/// The `churn` scenario's own figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChurnFigures {
    /// Nodes that left (each replaced by a new one).
    pub nodes_replaced: usize,
    /// Tracked keys with no replica on the live nodes nearest to them, at the end.
    pub keys_lost_final: usize,
    /// Tracked keys with fewer than `r` replicas there, at the end.
    pub keys_below_r_final: usize,
    /// Times a tracked key fell below `r` replicas and came back.
    pub replica_repairs: usize,
    /// The longest of those, in seconds (to the sample that saw it back).
    pub replica_repair_secs_max: Option<f64>,
}

/// The `partition` scenario's own figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PartitionFigures {
    /// Seconds the halves were apart.
    pub split_secs: f64,
    /// GETs during the split of keys written on the reader's side during the split.
    pub split_gets: usize,
    /// Share of them that found their value.
    pub split_get_success: f64,
    /// GETs after the heal of keys written (on either side) during the split.
    pub after_heal_gets: usize,
    /// Share of them that found their value.
    pub after_heal_get_success: f64,
    /// Share of those of keys written on the other side.
    pub after_heal_across_get_success: f64,
    /// Seconds after the heal when the last of them that failed started (0: none
    /// failed); `None` when the last one failed, so the run ended unhealed.
    pub heal_secs: Option<f64>,
}

/// The `silent` scenario's own figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SilentFigures {
    /// Nodes that hung.
    pub silent_nodes: usize,
    /// GETs while they were silent.
    pub gets: usize,
    /// Share of them that found their value.
    pub get_success: f64,
    /// Their latency.
    pub get_latency_ms: Option<Percentiles>,
}

/// One run of the `eclipse` scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EclipseRun {
    /// The network's proof-of-work difficulty (bits).
    pub pow_difficulty: u32,
    /// Ids with that proof of work the attacker's budget bought.
    pub attacker_valid_ids: u64,
    /// Bits the attacker's closest id shares with the key.
    pub attacker_best_shared_bits: u32,
    /// The attacker's nodes that ran.
    pub attacker_nodes: usize,
    /// The attacker's nodes among the 20 running nodes nearest to the key, at the end.
    pub attacker_near_key_final: usize,
    /// GETs of the key after the attack began.
    pub gets: usize,
    /// Share of them that returned the honest value.
    pub honest_fraction: f64,
    /// Share of them that returned the attacker's value.
    pub forged_fraction: f64,
    /// Share of them that found nothing.
    pub failed_fraction: f64,
}

/// The `eclipse` scenario's own figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EclipseFigures {
    /// The attacker's budget: 2^this many hashes.
    pub attacker_budget_log2: u32,
    /// The attack on a network with proof of work.
    pub pow_on: EclipseRun,
    /// The same attack on a network without.
    pub pow_off: EclipseRun,
}

/// One kind of connection in the `transports` scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TransportFigures {
    /// Its name.
    pub transport: &'static str,
    /// Round trips a dial costs before TLS starts.
    pub connect_rtts: u32,
    /// Round trips TLS's handshake costs before the first request.
    pub tls_rtts: u32,
    /// Whether a peer met within the hour was dialled with a session ticket.
    pub resume: bool,
    /// Share of GETs that found their value.
    pub get_success: f64,
    /// Latency of the GETs that succeeded.
    pub get_latency_ms: Option<Percentiles>,
    /// Latency of the PUTs that succeeded.
    pub put_latency_ms: Option<Percentiles>,
    /// Peers asked per GET lookup.
    pub peers_contacted_per_get: Option<f64>,
    /// Open connections per node at the end.
    pub connections_per_node: f64,
    /// Requests and answers per node per minute.
    pub messages_per_node_per_min: f64,
}

/// The figures of one run (`--json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The scenario run.
    pub scenario: &'static str,
    /// Nodes in the network.
    pub nodes: usize,
    /// The run's seed.
    pub seed: u64,
    /// Simulated minutes of workload.
    pub minutes: f64,
    /// Operations per simulated second.
    pub rate: f64,
    /// "real": TLS 1.3 ran on every connection; "simulated": the network proved the
    /// peers' keys at the same cost in round trips.
    pub tls: &'static str,
    /// Simulated seconds, start-up included (of every run, for `transports`).
    pub simulated_secs: f64,
    /// Simulated seconds until every node had started and joined.
    pub startup_secs: f64,
    /// Wall-clock seconds of the run.
    pub wall_secs: f64,
    /// Simulated seconds per wall-clock second.
    pub sim_secs_per_wall_sec: f64,
    /// Peak resident memory of the process (VmHWM).
    pub peak_rss_bytes: u64,
    /// Peak resident memory per simulated node.
    pub bytes_per_node: u64,
    /// GETs made.
    pub gets: usize,
    /// Share of GETs that found their value.
    pub get_success: f64,
    /// Latency of the GETs that succeeded.
    pub get_latency_ms: Option<Percentiles>,
    /// PUTs made.
    pub puts: usize,
    /// Share of PUTs that reached their `r` replicas.
    pub put_success: f64,
    /// Latency of the PUTs that succeeded (until `r` replicas acknowledged).
    pub put_latency_ms: Option<Percentiles>,
    /// Peers asked per GET that went to the network (FIND_VALUE lookup), mean.
    pub peers_contacted_per_get: Option<f64>,
    /// Requests to peers and their answers, per node per simulated minute of workload
    /// (every message of the network: the workload's and the nodes' upkeep).
    pub messages_per_node_per_min: f64,
    /// Open connections per live node at the end, mean.
    pub connections_per_node: f64,
    /// Fewest replicas of a tracked key at the end (live nodes among its 20 nearest
    /// holding it; the first 500 keys written are tracked).
    pub min_replicas_final: usize,
    /// The `churn` scenario's figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub churn: Option<ChurnFigures>,
    /// The `partition` scenario's figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<PartitionFigures>,
    /// The `silent` scenario's figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub silent: Option<SilentFigures>,
    /// The `eclipse` scenario's figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eclipse: Option<EclipseFigures>,
    /// Share of GETs of the attacked key that returned the honest value, with proof of
    /// work (`eclipse`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eclipse_honest_fraction: Option<f64>,
    /// The `transports` scenario's figures, one per kind of connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transports: Option<Vec<TransportFigures>>,
    /// The network over time.
    pub series: Vec<Sample>,
    /// The GET latencies of each run, for the plots.
    #[serde(skip)]
    pub(crate) get_ms: Vec<(String, Vec<f64>)>,
}

/// Share of `outcomes` that succeeded, and the latencies of those.
fn outcomes<'a>(outcomes: impl Iterator<Item = &'a Outcome>) -> (usize, f64, Vec<f64>) {
    let (mut total, mut ok) = (0, Vec::new());
    for o in outcomes {
        total += 1;
        if o.ok {
            ok.push(o.ms);
        }
    }
    let share = if total == 0 {
        0.0
    } else {
        ok.len() as f64 / total as f64
    };
    (total, share, ok)
}

impl Report {
    /// The report of one run of `scenario`.
    pub(crate) fn of(options: &Options, scenario: Scenario, run: &Run) -> Report {
        let (gets, get_success, get_ms) = outcomes(run.outcomes.iter().filter(|o| o.get));
        let (puts, put_success, put_ms) = outcomes(run.outcomes.iter().filter(|o| !o.get));
        let last = run.samples.last();
        let mut report = Report {
            scenario: scenario.name(),
            nodes: options.nodes,
            seed: options.seed,
            minutes: options.minutes,
            rate: options.rate,
            tls: if options.real_tls {
                "real"
            } else {
                "simulated"
            },
            simulated_secs: run.simulated_secs,
            startup_secs: run.startup_secs,
            wall_secs: 0.0,
            sim_secs_per_wall_sec: 0.0,
            peak_rss_bytes: 0,
            bytes_per_node: 0,
            gets,
            get_success,
            get_latency_ms: Percentiles::of(&get_ms),
            puts,
            put_success,
            put_latency_ms: Percentiles::of(&put_ms),
            peers_contacted_per_get: run.peers_contacted_per_get,
            messages_per_node_per_min: run.messages_per_node_per_min,
            connections_per_node: run.connections_per_node,
            min_replicas_final: last.map_or(0, |s| s.replicas_min),
            churn: None,
            partition: None,
            silent: None,
            eclipse: None,
            eclipse_honest_fraction: None,
            transports: None,
            series: run.samples.clone(),
            get_ms: vec![(scenario.name().to_owned(), get_ms)],
        };
        match scenario {
            Scenario::Churn => {
                report.churn = Some(ChurnFigures {
                    nodes_replaced: run.nodes_replaced,
                    keys_lost_final: last.map_or(0, |s| s.keys_without_replica),
                    keys_below_r_final: last.map_or(0, |s| s.keys_below_r),
                    replica_repairs: run.repairs.len(),
                    replica_repair_secs_max: run.repairs.iter().copied().reduce(f64::max),
                });
            }
            Scenario::Partition => report.partition = run.fault.map(|f| partition(run, f)),
            Scenario::Silent => {
                let during = run
                    .outcomes
                    .iter()
                    .filter(|o| o.get && o.phase == Phase::During);
                let (gets, get_success, ms) = outcomes(during);
                report.silent = Some(SilentFigures {
                    silent_nodes: run.silent_nodes,
                    gets,
                    get_success,
                    get_latency_ms: Percentiles::of(&ms),
                });
            }
            Scenario::Steady | Scenario::Transports | Scenario::Eclipse => {}
        }
        report
    }
}

fn partition(run: &Run, (split, heal): (f64, f64)) -> PartitionFigures {
    let gets = |phase: Phase| {
        run.outcomes
            .iter()
            .filter(move |o| o.get && o.phase == phase)
    };
    let (split_gets, split_get_success, _) = outcomes(gets(Phase::During));
    let (after_heal_gets, after_heal_get_success, _) = outcomes(gets(Phase::After));
    let (_, after_heal_across_get_success, _) = outcomes(gets(Phase::After).filter(|o| o.across));
    let mut after: Vec<&Outcome> = gets(Phase::After).collect();
    after.sort_by(|a, b| a.at.total_cmp(&b.at));
    let heal_secs = match after.iter().rposition(|o| !o.ok) {
        None => Some(0.0),
        Some(i) if i + 1 == after.len() => None,
        Some(i) => Some(after[i].at - heal),
    };
    PartitionFigures {
        split_secs: heal - split,
        split_gets,
        split_get_success,
        after_heal_gets,
        after_heal_get_success,
        after_heal_across_get_success,
        heal_secs,
    }
}

fn eclipse_run(options: &Options, run: &Run) -> EclipseRun {
    let gets: Vec<&Outcome> = run
        .outcomes
        .iter()
        .filter(|o| o.get && o.phase == Phase::During)
        .collect();
    let share = |f: &dyn Fn(&Outcome) -> bool| {
        if gets.is_empty() {
            0.0
        } else {
            gets.iter().filter(|o| f(o)).count() as f64 / gets.len() as f64
        }
    };
    let attack = run.attack.clone();
    EclipseRun {
        pow_difficulty: options.pow,
        attacker_valid_ids: attack.as_ref().map_or(0, |a| a.valid_ids),
        attacker_best_shared_bits: attack.as_ref().map_or(0, |a| a.best_shared_bits),
        attacker_nodes: attack.as_ref().map_or(0, |a| a.nodes),
        attacker_near_key_final: attack.as_ref().map_or(0, |a| a.near_key_final),
        gets: gets.len(),
        honest_fraction: share(&|o| o.ok),
        forged_fraction: share(&|o| o.forged),
        failed_fraction: share(&|o| !o.ok && !o.forged),
    }
}

/// The report of the `eclipse` scenario: the run with proof of work as the main
/// figures, both runs in `eclipse`.
pub(crate) fn eclipse(options: &Options, on: (&Options, &Run), off: (&Options, &Run)) -> Report {
    let mut report = Report::of(on.0, Scenario::Eclipse, on.1);
    let pow_on = eclipse_run(on.0, on.1);
    let pow_off = eclipse_run(off.0, off.1);
    report.simulated_secs += off.1.simulated_secs;
    report.eclipse_honest_fraction = Some(pow_on.honest_fraction);
    report.get_ms = vec![
        (format!("PoW {} bits", on.0.pow), report.get_ms[0].1.clone()),
        (
            "no PoW".to_owned(),
            Report::of(off.0, Scenario::Eclipse, off.1).get_ms[0]
                .1
                .clone(),
        ),
    ];
    report.eclipse = Some(EclipseFigures {
        attacker_budget_log2: options.attacker_budget_log2,
        pow_on,
        pow_off,
    });
    report
}

/// The report of the `transports` scenario: the first kind's run as the main figures,
/// every kind's in `transports`.
pub(crate) fn transports(
    options: &Options,
    runs: Vec<(TransportKind, Run)>,
) -> anyhow::Result<Report> {
    let mut rows = Vec::new();
    let mut curves = Vec::new();
    let mut main: Option<Report> = None;
    let mut simulated = 0.0;
    for (kind, run) in &runs {
        let report = Report::of(options, Scenario::Transports, run);
        simulated += report.simulated_secs;
        let name = kind.name;
        rows.push(TransportFigures {
            transport: name,
            connect_rtts: kind.connect_rtts,
            tls_rtts: kind.tls_rtts,
            resume: kind.resume,
            get_success: report.get_success,
            get_latency_ms: report.get_latency_ms,
            put_latency_ms: report.put_latency_ms,
            peers_contacted_per_get: report.peers_contacted_per_get,
            connections_per_node: report.connections_per_node,
            messages_per_node_per_min: report.messages_per_node_per_min,
        });
        curves.extend(
            report
                .get_ms
                .iter()
                .map(|(_, ms)| ((*name).to_owned(), ms.clone())),
        );
        main.get_or_insert(report);
    }
    let mut report = main.context("no transport ran")?;
    report.simulated_secs = simulated;
    report.transports = Some(rows);
    report.get_ms = curves;
    Ok(report)
}

/// Writes `report.md` and its plots into `dir`.
pub(crate) fn write(report: &Report, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    crate::plot::latency_cdf(&dir.join("get_latency.svg"), &report.get_ms)?;
    crate::plot::over_time(&dir.join("over_time.svg"), report)?;
    let md = crate::markdown::markdown(report);
    let path = dir.join("report.md");
    std::fs::write(&path, md).with_context(|| format!("writing {}", path.display()))
}
