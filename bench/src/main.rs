//! `dht-bench run`: measure a network of N nodes and write the figures as JSON;
//! `dht-bench worker`: host nodes for a driver (started by `run`, not by hand).
//! `cargo xtask bench` builds this in release mode and runs it for each network size.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use dht_bench::driver::{self, Options};

/// The allocator of `dht-node` and `dht-bootstrap` (see their `main.rs`), so that the
/// nodes the workers host are measured as they run in production.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(name = "dht-bench", about = "Benchmark of the DHT on 127.0.0.1")]
struct Cli {
    #[command(subcommand)]
    command: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Start a network of worker processes, measure it, write the figures as JSON.
    Run {
        /// Nodes in the worker processes.
        #[arg(long, default_value_t = 20)]
        nodes: usize,
        /// Operations per latency series.
        #[arg(long, default_value_t = 200)]
        ops: usize,
        /// Where the JSON result goes.
        #[arg(long)]
        out: PathBuf,
        /// Where keys, databases and worker logs go.
        #[arg(long, default_value = "target/bench/work")]
        work_dir: PathBuf,
        /// Proof-of-work difficulty (default: the nodes' default).
        #[arg(long, default_value_t = dht_security::pow::DEFAULT_POW_DIFFICULTY)]
        pow: u32,
        /// Seconds of the idle window (CPU use).
        #[arg(long, default_value_t = 5.0)]
        idle_secs: f64,
        /// Seconds of each throughput measurement.
        #[arg(long, default_value_t = 3.0)]
        throughput_secs: f64,
        /// Concurrent API connections of the throughput measurements.
        #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
        concurrency: Vec<usize>,
        /// Replications of the latency series.
        #[arg(long, value_delimiter = ',', default_value = "3,20")]
        replications: Vec<u8>,
        /// Records per node of the loaded-memory network (0: skip it).
        #[arg(long, default_value_t = 10_000)]
        preload: usize,
    },
    /// Host nodes for a driver: JSON commands on stdin, replies on stdout.
    Worker,
    /// Answer every DHT_GET at once (the throughput ceiling), until stdin closes.
    Echo,
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("dht-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Mode::Worker => dht_bench::worker::run().await,
            Mode::Echo => dht_bench::echo::run().await,
            Mode::Run {
                nodes,
                ops,
                out,
                work_dir,
                pow,
                idle_secs,
                throughput_secs,
                concurrency,
                replications,
                preload,
            } => {
                let options = Options {
                    n: nodes,
                    ops: ops.max(1),
                    pow_difficulty: pow,
                    work_dir,
                    exe: std::env::current_exe().context("locating dht-bench itself")?,
                    idle_window: secs(idle_secs, "--idle-secs")?,
                    throughput_window: secs(throughput_secs, "--throughput-secs")?,
                    concurrency,
                    replications,
                    preload_records: preload,
                };
                run(&options, &out).await
            }
        }
    });
    // Nodes' leftover tasks must not keep the process alive.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dht-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn secs(value: f64, name: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| format!("{name} must be a positive number of seconds, got {value}"))
}

async fn run(options: &Options, out: &std::path::Path) -> anyhow::Result<()> {
    let result = driver::run(options).await?;
    for figure in &result.figures {
        let value = figure
            .value
            .map_or_else(|| "n/a".to_string(), |v| format!("{v:.3}"));
        eprintln!(
            "  {:<32} {value:>12} {:<5} {}",
            figure.key, figure.unit, figure.label
        );
    }
    for note in &result.notes {
        eprintln!("  note: {note}");
    }
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let json = serde_json::to_string_pretty(&result).context("encoding the result")?;
    std::fs::write(out, json).with_context(|| format!("writing {}", out.display()))
}
