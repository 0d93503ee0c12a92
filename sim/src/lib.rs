//! `cargo xtask sim`: many real nodes (`dht-core` as it is: TLS, proof of work, lookups,
//! upkeep, limits) in one process, on a simulated WAN ([`SimNetwork`] with the
//! [`WanModel`]'s round trips), on tokio's paused time: a single-threaded runtime whose
//! clock moves only when every task waits, so that an hour of network life costs what
//! its CPU work costs. Every node's wall clock follows that time and its random numbers
//! (its host key included) come from the run's seed.
//!
//! Scenario so far: `steady` (PUTs and GETs from random nodes on random keys at a fixed
//! rate, with the nodes' own upkeep at its default intervals).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use dht_bench::procfs;
use dht_bench::stats::{Summary as Latency, lookup_counters};
use dht_core::{
    BootstrapPeer, Clock, Environment, Key, MemoryStore, Node, NodeConfig, PutOptions, SimNetwork,
    TokioClock, WanModel,
};
use futures::future::join_all;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::time::Instant;

/// UNIX time at the start of every simulated run.
const EPOCH: u64 = 1_800_000_000;
/// Nodes started at once while the network forms.
const START_BATCH: usize = 100;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Options {
    /// Nodes in the network.
    pub nodes: usize,
    /// Seed of every random draw (placements, keys, ids, losses, the workload).
    pub seed: u64,
    /// Simulated minutes of workload after the network has formed.
    pub minutes: f64,
    /// Operations per simulated second, network-wide (half PUTs, half GETs).
    pub rate: f64,
    /// Proof-of-work difficulty of the nodes' ids (lowered: minting is real CPU work).
    pub pow: u32,
    /// Probability that a write is lost (and retransmitted a timeout later).
    pub loss: f64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            nodes: 1000,
            seed: 1,
            minutes: 5.0,
            rate: 20.0,
            pow: 8,
            loss: 0.005,
        }
    }
}

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
    fn of(samples: &[Duration]) -> Option<Percentiles> {
        Latency::of(samples).map(|s| Percentiles {
            p50: s.p50,
            p90: s.p90,
            p99: s.p99,
        })
    }
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
    /// Simulated seconds, start-up included.
    pub simulated_secs: f64,
    /// Simulated seconds until every node had started and joined.
    pub startup_secs: f64,
    /// Wall-clock seconds of the run.
    pub wall_secs: f64,
    /// Peak resident memory of the process (VmHWM).
    pub peak_rss_bytes: u64,
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
    /// Peers asked per GET lookup (FIND_VALUE), mean over all nodes.
    pub peers_contacted_per_get: Option<f64>,
    /// Open connections per node at the end, mean.
    pub connections_per_node: f64,
    /// Fewest nodes holding any key that was PUT, at the end.
    pub min_replicas_final: usize,
}

/// Runs `options` on a runtime of its own and reports.
pub fn run(options: &Options) -> anyhow::Result<Report> {
    let wall = std::time::Instant::now();
    let mut builder = tokio::runtime::Builder::new_current_thread();
    builder.enable_all().start_paused(true);
    // `tokio::select!` picks among ready branches at random; only tokio's unstable API
    // seeds that (the workspace builds with `--cfg tokio_unstable`, .cargo/config.toml;
    // a build without it runs, but two runs of one seed then differ in their details).
    #[cfg(tokio_unstable)]
    builder.rng_seed(tokio::runtime::RngSeed::from_bytes(
        &options.seed.to_le_bytes(),
    ));
    let runtime = builder.build()?;
    let mut report = runtime.block_on(steady(options))?;
    report.wall_secs = wall.elapsed().as_secs_f64();
    report.peak_rss_bytes = procfs::status_field("VmHWM") * 1024;
    Ok(report)
}

/// The address of host `i`: 10.0.0.1 and up.
fn host(i: usize) -> IpAddr {
    let i = u32::try_from(i).unwrap_or(u32::MAX - 1);
    IpAddr::V4(Ipv4Addr::from(0x0a00_0001_u32.saturating_add(i)))
}

fn config(options: &Options, i: usize, bootstrap: Option<SocketAddr>) -> NodeConfig {
    NodeConfig {
        p2p_address: SocketAddr::new(host(i), 0),
        bootstrap_peers: bootstrap
            .map(|addr| BootstrapPeer {
                id: None,
                address: addr.to_string(),
            })
            .into_iter()
            .collect(),
        pow_difficulty: options.pow,
        min_pow_difficulty: options.pow,
        ..NodeConfig::default()
    }
}

async fn start(
    net: &SimNetwork,
    clock: &Arc<dyn Clock>,
    options: &Options,
    i: usize,
    bootstrap: Option<SocketAddr>,
) -> anyhow::Result<Arc<Node>> {
    let config = config(options, i, bootstrap);
    let store = Box::new(MemoryStore::new(config.store_limits.clone()));
    // A seed per node, drawn from the run's: its key, its id, its upkeep jitter.
    let seed = options.seed.wrapping_mul(1_000_003).wrapping_add(i as u64);
    let env = Environment::simulated(clock.clone(), seed);
    let transport = Arc::new(net.transport(host(i)));
    Ok(Arc::new(
        Node::start_in(config, transport, store, env).await?,
    ))
}

/// The `steady` scenario.
async fn steady(options: &Options) -> anyhow::Result<Report> {
    anyhow::ensure!(options.nodes >= 2, "a network needs at least 2 nodes");
    let wan = WanModel::new(options.seed);
    let net = SimNetwork::new(options.seed, 1, options.loss, move |a, b| wan.rtt(a, b));
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::starting_at(EPOCH));
    let mut rng = StdRng::seed_from_u64(options.seed);
    let began = Instant::now();

    // The network forms: each node joins through one that started before it.
    let mut nodes = vec![start(&net, &clock, options, 0, None).await?];
    let mut next = 1;
    while next < options.nodes {
        let batch = next..(next + START_BATCH).min(options.nodes);
        let starts = batch.clone().map(|i| {
            let entry = nodes[rng.gen_range(0..nodes.len())].listen_addr();
            start(&net, &clock, options, i, Some(entry))
        });
        for node in join_all(starts).await {
            nodes.push(node?);
        }
        next = batch.end;
    }
    let startup = began.elapsed();

    // The workload: one operation every 1/rate s, PUTs and GETs in turn.
    let written: Arc<Mutex<Vec<Key>>> = Arc::default();
    let ops = (options.minutes * 60.0 * options.rate).round() as usize;
    let gap = Duration::from_secs_f64(1.0 / options.rate.max(1e-3));
    let workload = Instant::now();
    let mut puts = Vec::new();
    let mut gets = Vec::new();
    for op in 0..ops {
        tokio::time::sleep_until(workload + gap * u32::try_from(op).unwrap_or(u32::MAX)).await;
        let node = nodes[rng.gen_range(0..nodes.len())].clone();
        // Every other operation GETs a key PUT earlier (a PUT while there is none).
        let known = {
            let written = written.lock().unwrap_or_else(|e| e.into_inner());
            (op % 2 == 1 && !written.is_empty()).then(|| written[rng.gen_range(0..written.len())])
        };
        if let Some(key) = known {
            gets.push(tokio::spawn(async move {
                let started = Instant::now();
                let found = matches!(node.get(key).await, Ok(Some(_)));
                (found, started.elapsed())
            }));
        } else {
            let key = Key::from_bytes(rng.r#gen());
            let value = Bytes::from(rng.r#gen::<[u8; 16]>().to_vec());
            let written = written.clone();
            puts.push(tokio::spawn(async move {
                let started = Instant::now();
                let report = node.put(key, value, PutOptions::default()).await;
                let ok = report.is_ok_and(|r| r.replicas >= usize::from(r.replication));
                if ok {
                    written.lock().unwrap_or_else(|e| e.into_inner()).push(key);
                }
                (ok, started.elapsed())
            }));
        }
    }
    let outcomes = |results: Vec<Result<(bool, Duration), tokio::task::JoinError>>| {
        let total = results.len();
        let ok: Vec<Duration> = results
            .into_iter()
            .filter_map(Result::ok)
            .filter_map(|(ok, took)| ok.then_some(took))
            .collect();
        let share = if total == 0 {
            0.0
        } else {
            ok.len() as f64 / total as f64
        };
        (total, share, Percentiles::of(&ok))
    };
    let (put_count, put_success, put_latency) = outcomes(join_all(puts).await);
    let (get_count, get_success, get_latency) = outcomes(join_all(gets).await);

    let keys = written.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let min_replicas_final = keys
        .iter()
        .map(|key| nodes.iter().filter(|node| node.holds(key)).count())
        .min()
        .unwrap_or(0);
    let (mut lookups, mut contacted) = (0, 0.0);
    for node in &nodes {
        let counters = lookup_counters(node).find_value;
        lookups += counters.count;
        contacted += counters.contacted;
    }
    let connections = nodes.iter().map(|n| n.open_connections()).sum::<usize>() as f64;
    let simulated = began.elapsed();
    for node in &nodes {
        node.shutdown().await;
    }
    Ok(Report {
        scenario: "steady",
        nodes: nodes.len(),
        seed: options.seed,
        simulated_secs: simulated.as_secs_f64(),
        startup_secs: startup.as_secs_f64(),
        wall_secs: 0.0,
        peak_rss_bytes: 0,
        gets: get_count,
        get_success,
        get_latency_ms: get_latency,
        puts: put_count,
        put_success,
        put_latency_ms: put_latency,
        peers_contacted_per_get: (lookups > 0).then(|| contacted / lookups as f64),
        connections_per_node: connections / nodes.len() as f64,
        min_replicas_final,
    })
}
