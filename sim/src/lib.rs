//! `cargo xtask sim`: many real nodes (`dht-core` as it is: TLS, proof of work, lookups,
//! upkeep, limits) in one process, on a simulated WAN ([`dht_core::SimNetwork`] with the
//! [`dht_core::WanModel`]'s round trips), on tokio's paused time: a single-threaded
//! runtime whose clock moves only when every task waits, so that an hour of network life
//! costs what its CPU work costs. Every node's wall clock follows that time and its
//! random numbers (its host key included) come from the run's seed.
//!
//! Scenarios ([`Scenario`]): a workload of PUTs and GETs from random nodes on random
//! keys at a fixed rate, with the nodes' own upkeep at its default intervals, while the
//! network is left alone (`steady`), loses and gains nodes (`churn`), is cut in two
//! (`partition`), has a quarter of its nodes hang (`silent`), is attacked near one key
//! (`eclipse`), or runs over each kind of connection (`transports`).

mod eclipse;
mod markdown;
mod plot;
mod report;
mod samples;
mod scenario;
mod world;

use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;

pub use report::{
    ChurnFigures, EclipseFigures, EclipseRun, PartitionFigures, Percentiles, Report, SilentFigures,
    TransportFigures,
};
pub use samples::Sample;

/// What happens to the network while the workload runs (`--scenario`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Nothing: the network as it formed.
    Steady,
    /// 30 % of the nodes replaced within 10 minutes, sessions drawn from measured
    /// session lengths (half the leavers shut down, half vanish).
    Churn,
    /// The network cut in two halves for 5 minutes (at most 2/5 of the run), then
    /// healed.
    Partition,
    /// 25 % of the nodes stop answering without closing their connections.
    Silent,
    /// The steady workload once per kind of connection: TCP + TLS, and QUIC-like.
    Transports,
    /// An attacker with a budget of hashes mints ids near one key and answers every
    /// lookup of it with its own nodes and a forged value; run with proof of work at
    /// its default difficulty, then without.
    Eclipse,
}

impl Scenario {
    /// Every scenario.
    pub const ALL: [Scenario; 6] = [
        Scenario::Steady,
        Scenario::Churn,
        Scenario::Partition,
        Scenario::Silent,
        Scenario::Transports,
        Scenario::Eclipse,
    ];

    /// The scenario's name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Steady => "steady",
            Scenario::Churn => "churn",
            Scenario::Partition => "partition",
            Scenario::Silent => "silent",
            Scenario::Transports => "transports",
            Scenario::Eclipse => "eclipse",
        }
    }
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Options {
    /// What happens to the network.
    pub scenario: Scenario,
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
    /// Round trips a dial costs before TLS starts: 1 for TCP's handshake, 0 for a
    /// QUIC-like transport whose handshake is TLS's own.
    pub connect_rtts: u32,
    /// Round trips TLS's handshake costs before the first request, with TLS simulated:
    /// 1 for a full TLS 1.3 handshake, 0 for a resumed session (0-RTT early data).
    pub tls_rtts: u32,
    /// Session tickets, with TLS simulated: a dial to a peer this host connected to
    /// within the last hour costs no TLS round trip (0-RTT resumption); a first contact
    /// costs `tls_rtts` ([`dht_core::SimNetwork::resume_sessions`]).
    pub resume: bool,
    /// The `eclipse` attacker's budget: 2^this many hashes (nonces tried).
    pub attacker_budget_log2: u32,
    /// Run TLS 1.3 for real on every connection (`tls_rtts` must then be 1); otherwise
    /// the simulated network proves the peers' keys itself at the same cost in round
    /// trips ([`dht_core::SimNetwork::authenticate_peers`]), and the run needs half the
    /// CPU.
    pub real_tls: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            scenario: Scenario::Steady,
            nodes: 1000,
            seed: 1,
            minutes: 5.0,
            rate: 20.0,
            pow: 8,
            loss: 0.005,
            connect_rtts: 1,
            tls_rtts: 1,
            resume: false,
            attacker_budget_log2: 26,
            real_tls: false,
        }
    }
}

impl Options {
    /// Replicas a PUT asks for (the node's default).
    pub(crate) fn replication(&self) -> usize {
        usize::from(dht_core::PutOptions::default().replication)
    }
}

/// A kind of connection the `transports` scenario compares.
#[derive(Debug, Clone, Copy)]
pub struct TransportKind {
    /// Its name in the report.
    pub name: &'static str,
    /// Round trips a dial costs before TLS.
    pub connect_rtts: u32,
    /// Round trips TLS's handshake costs before the first request.
    pub tls_rtts: u32,
    /// Whether a peer met within the hour is dialled with a session ticket (no TLS
    /// round trip).
    pub resume: bool,
}

/// The kinds of connection the `transports` scenario compares: a new TCP + TLS 1.3
/// connection (2 round trips before the first request), a QUIC-like one (1), a
/// resumed one whose first request goes out at once (0, QUIC's 0-RTT resumption: what
/// a warm connection costs), and QUIC with session tickets (1 round trip to a peer
/// first met, 0 to one met within the hour: what a QUIC transport would give). The
/// last two need simulated TLS.
pub const TRANSPORTS: [TransportKind; 4] = [
    TransportKind {
        name: "tcp+tls",
        connect_rtts: 1,
        tls_rtts: 1,
        resume: false,
    },
    TransportKind {
        name: "quic-like",
        connect_rtts: 0,
        tls_rtts: 1,
        resume: false,
    },
    TransportKind {
        name: "resumed (0-RTT)",
        connect_rtts: 0,
        tls_rtts: 0,
        resume: false,
    },
    TransportKind {
        name: "quic, tickets",
        connect_rtts: 0,
        tls_rtts: 1,
        resume: true,
    },
];

/// Runs `options` on a runtime of its own and reports.
pub fn run(options: &Options) -> anyhow::Result<Report> {
    anyhow::ensure!(
        !options.real_tls || (options.tls_rtts == 1 && !options.resume),
        "real TLS runs its full handshake (--tls-rtts 1); a resumed session needs simulated TLS"
    );
    let wall = std::time::Instant::now();
    let mut report = if options.scenario == Scenario::Eclipse {
        // The same attack on a network with proof of work (at least the default
        // difficulty: the defence is what is measured) and on one without.
        let on = Options {
            pow: options.pow.max(dht_security::pow::DEFAULT_POW_DIFFICULTY),
            ..options.clone()
        };
        let off = Options {
            pow: 0,
            ..options.clone()
        };
        let with = one(&on, Scenario::Eclipse)?;
        let without = one(&off, Scenario::Eclipse)?;
        report::eclipse(options, (&on, &with), (&off, &without))
    } else if options.scenario == Scenario::Transports {
        let mut runs = Vec::new();
        // Real TLS runs its full handshake: it cannot model a resumed session.
        let kinds = TRANSPORTS
            .iter()
            .filter(|kind| !options.real_tls || (kind.tls_rtts == 1 && !kind.resume));
        for kind in kinds {
            let options = Options {
                connect_rtts: kind.connect_rtts,
                tls_rtts: kind.tls_rtts,
                resume: kind.resume,
                ..options.clone()
            };
            runs.push((*kind, one(&options, Scenario::Steady)?));
        }
        report::transports(options, runs)?
    } else {
        let run = one(options, options.scenario)?;
        report::Report::of(options, options.scenario, &run)
    };
    report.wall_secs = wall.elapsed().as_secs_f64();
    report.sim_secs_per_wall_sec = report.simulated_secs / report.wall_secs.max(1e-9);
    report.peak_rss_bytes = dht_bench::procfs::status_field("VmHWM") * 1024;
    report.bytes_per_node = report.peak_rss_bytes / report.nodes.max(1) as u64;
    Ok(report)
}

/// One run of `scenario` on a fresh network and runtime.
fn one(options: &Options, scenario: Scenario) -> anyhow::Result<scenario::Run> {
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
    runtime.block_on(async {
        let began = tokio::time::Instant::now();
        let mut world = world::World::form(options, StdRng::seed_from_u64(options.seed)).await?;
        let startup: Duration = began.elapsed();
        let run = scenario::run(&mut world, options, scenario, startup).await;
        world.shutdown().await;
        run
    })
}

/// Writes `report` as `dir/report.md` with its plots beside it.
pub fn write_report(report: &Report, dir: &std::path::Path) -> anyhow::Result<()> {
    report::write(report, dir)
}
