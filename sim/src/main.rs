//! `dht-sim`: run a simulated network and print its figures as JSON (`cargo xtask sim`
//! builds and runs it).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use dht_sim::{Options, Scenario};

/// The allocator of `dht-node`, so that the memory figures are the nodes' as they run.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Real DHT nodes on a simulated WAN, on simulated time.
#[derive(Parser)]
#[command(name = "dht-sim")]
struct Cli {
    /// Nodes in the network.
    #[arg(long, default_value_t = Options::default().nodes)]
    nodes: usize,
    /// Seed of every random draw.
    #[arg(long, default_value_t = Options::default().seed)]
    seed: u64,
    /// Simulated minutes of workload after the network has formed.
    #[arg(long, default_value_t = Options::default().minutes)]
    minutes: f64,
    /// Operations per simulated second, network-wide (half PUTs, half GETs).
    #[arg(long, default_value_t = Options::default().rate)]
    rate: f64,
    /// Proof-of-work difficulty of the nodes' ids.
    #[arg(long, default_value_t = Options::default().pow)]
    pow: u32,
    /// Probability that a write is lost.
    #[arg(long, default_value_t = Options::default().loss)]
    loss: f64,
    /// Round trips a dial costs before TLS (1: TCP; 0: QUIC-like).
    #[arg(long, default_value_t = Options::default().connect_rtts)]
    connect_rtts: u32,
    /// Round trips TLS's handshake costs before the first request (1: TLS 1.3; 0: a
    /// resumed session's 0-RTT request). Simulated TLS only.
    #[arg(long, default_value_t = Options::default().tls_rtts)]
    tls_rtts: u32,
    /// Session tickets: a dial to a peer met within the hour costs no TLS round trip
    /// (0-RTT resumption). Simulated TLS only.
    #[arg(long)]
    resume: bool,
    /// The `eclipse` attacker's budget: 2^this many hashes.
    #[arg(long, default_value_t = Options::default().attacker_budget_log2)]
    attacker_budget_log2: u32,
    /// Run TLS 1.3 for real (twice the CPU); by default the simulated network proves
    /// peers' keys itself, at the same cost in round trips.
    #[arg(long)]
    real_tls: bool,
    /// The scenario.
    #[arg(long, value_enum, default_value_t = Scenario::Steady)]
    scenario: Scenario,
    /// Where the JSON figures go (they are printed too).
    #[arg(long)]
    json: Option<PathBuf>,
    /// A directory for `report.md` and its SVG plots.
    #[arg(long)]
    report: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let options = Options {
        scenario: cli.scenario,
        connect_rtts: cli.connect_rtts,
        tls_rtts: cli.tls_rtts,
        resume: cli.resume,
        attacker_budget_log2: cli.attacker_budget_log2,
        real_tls: cli.real_tls,
        nodes: cli.nodes,
        seed: cli.seed,
        minutes: cli.minutes,
        rate: cli.rate,
        pow: cli.pow,
        loss: cli.loss,
    };
    let report = match dht_sim::run(&options) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("dht-sim: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let json = match serde_json::to_string_pretty(&report) {
        Ok(json) => json,
        Err(e) => {
            eprintln!("dht-sim: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{json}");
    if let Some(dir) = &cli.report {
        if let Err(e) = dht_sim::write_report(&report, dir) {
            eprintln!("dht-sim: {e:#}");
            return ExitCode::FAILURE;
        }
        eprintln!("dht-sim: report in {}", dir.join("report.md").display());
    }
    if let Some(path) = &cli.json {
        if let Err(e) = std::fs::write(path, format!("{json}\n")) {
            eprintln!("dht-sim: writing {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
