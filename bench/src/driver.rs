//! Driver mode (`dht-bench run`): starts a network of worker processes, joins an
//! embedded writer and reader to it, measures every phase in turn and returns the
//! figures. Progress goes to stderr.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use dht_core::{Key, NodeConfig, NodeId, PutOptions};
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::keys::{keys_closest_to, keys_outside};
use crate::network::{self, Network};
use crate::nodes::{BenchNode, start_node};
use crate::protocol::ProcessStatus;
use crate::results::NetworkResult;
use crate::stats::{Summary, median, percentile};
use crate::{measure, throughput};

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Nodes in the worker processes.
    pub n: usize,
    /// Operations per latency series.
    pub ops: usize,
    /// Proof-of-work difficulty of every node.
    pub pow_difficulty: u32,
    /// Where keys, databases and worker logs go (a folder per network size).
    pub work_dir: PathBuf,
    /// The `dht-bench` executable the workers run.
    pub exe: PathBuf,
    /// The idle window over which CPU use is measured.
    pub idle_window: Duration,
    /// How long each throughput measurement runs.
    pub throughput_window: Duration,
    /// Concurrent API connections of the throughput measurements.
    pub concurrency: Vec<usize>,
    /// The replications of the latency series (3: our default; 20: the anchors').
    pub replications: Vec<u8>,
    /// Records put straight into each node's store for the loaded-memory network;
    /// 0 skips it.
    pub preload_records: usize,
}

/// The state the phases share.
pub struct Run {
    /// The worker processes.
    pub net: Network,
    /// The embedded node that PUTs.
    pub writer: BenchNode,
    /// The embedded node that GETs (never a replica of the keys it reads).
    pub reader: BenchNode,
    /// The worker node whose API is measured (never a replica of the keys it reads).
    pub api_index: usize,
    /// The worker node whose API confirms PUTs made through `api_index`.
    pub other_index: usize,
    /// The value PUT under each key.
    pub values: HashMap<Key, Bytes>,
    /// What has been measured.
    pub result: NetworkResult,
}

fn progress(n: usize, text: &str) {
    eprintln!("[dht-bench n={n}] {text}");
}

/// Runs every measurement on a network of `options.n` nodes.
pub async fn run(options: &Options) -> anyhow::Result<NetworkResult> {
    let n = options.n;
    anyhow::ensure!(n >= 4, "the benchmark needs at least 4 nodes, got {n}");
    let dir = network::fresh_dir(&options.work_dir, n)?;
    let settings = network::settings(&dir, "data", options.pow_difficulty, n, 0);
    let net = Network::start(&options.exe, n, settings.clone(), &dir).await?;
    let startup = net.startup;
    progress(
        n,
        &format!(
            "{n} nodes in {} workers started in {startup:.2?}",
            net.worker_count()
        ),
    );
    let entry = vec![net.nodes[0].p2p.to_string()];
    let driver_settings = crate::protocol::NodeSettings {
        data_dir: dir.join("driver"),
        ..settings.clone()
    };
    let writer = start_node(n, &driver_settings, &entry).await?;
    let reader = start_node(n + 1, &driver_settings, &entry).await?;
    let mut run = Run {
        net,
        writer,
        reader,
        api_index: network::measured_index(n),
        other_index: n / 4,
        values: HashMap::new(),
        result: NetworkResult {
            n,
            ops: options.ops,
            ..NetworkResult::default()
        },
    };
    run.result.note(format!(
        "{n} nodes in {} worker processes (`dht-bench worker`, at most {} nodes each), each node \
         with its VoidPhone API on 127.0.0.1; the driver process embeds the writer and the reader \
         (dht-core, joined like the others) and runs the API clients. Every node: TCP + mutual TLS \
         1.3, proof of work {} bits, the durable store (encrypted SQLite, as dht-node), \
         max_connections {} (the measured node {}: dht-node's own, {}), other settings \
         dht-node's defaults. Node 0 is the entry node.",
        run.net.worker_count(),
        network::nodes_per_worker(n),
        settings.pow_difficulty,
        settings.max_connections,
        network::measured_index(n),
        crate::protocol::FULL_BOUND,
    ));
    run.result.figure(
        "startup.network_ms",
        "start-up of the whole network (workers spawned, ids minted, all joined)",
        Some(ms(startup)),
        "ms",
    );
    let outcome = measure_all(&mut run, options, &entry).await;
    if let Err(e) = outcome {
        run.result.note(format!("the run stopped early: {e:#}"));
        progress(n, &format!("stopped early: {e:#}"));
    }
    let Run {
        net,
        writer,
        reader,
        mut result,
        ..
    } = run;
    writer.stop().await;
    reader.stop().await;
    net.stop().await;
    if options.preload_records > 0 {
        if let Err(e) = loaded_memory(options, &dir, &mut result).await {
            result.note(format!("the loaded-memory network failed: {e:#}"));
        }
    }
    // The databases take gigabytes at 500 nodes; the keys and worker logs stay.
    for data in ["data", "data-loaded", "driver"] {
        let _ = std::fs::remove_dir_all(dir.join(data));
    }
    Ok(result)
}

async fn measure_all(run: &mut Run, options: &Options, entry: &[String]) -> anyhow::Result<()> {
    let n = options.n;
    // The idle window opens once the start-up has settled: the joins' lookups met peers
    // the tables do not keep, and those connections close `transient_idle` later (a
    // cost of the start-up, which a window right after it measured instead of the idle
    // node's).
    tokio::time::sleep(NodeConfig::default().transient_idle + Duration::from_secs(1)).await;
    idle(run, options.idle_window).await?;
    progress(n, "idle figures taken");
    // While the network is quiet (after the throughput phase it is still replicating).
    connection_cost(run, n).await?;

    let mut rng = StdRng::from_entropy();
    let worker_ids = run.net.ids()?;
    // Replicas go to the closest of the worker nodes and the reader; the writer keeps
    // its own copy of everything it puts, whatever its rank.
    let mut ids: Vec<NodeId> = worker_ids.clone();
    ids.push(run.reader.node.id());
    let api_id = worker_ids[run.api_index];
    let other_id = worker_ids[run.other_index];
    let choose = |rng: &mut StdRng, r: u8, outside: NodeId| {
        keys_outside(rng, options.ops, usize::from(r), &[outside], &ids)
            .with_context(|| format!("no keys found outside the {r} closest of a node"))
    };
    for &r in &options.replications {
        let core = choose(&mut rng, r, run.reader.node.id())?;
        let api = choose(&mut rng, r, api_id)?;
        let mut all = core.clone();
        all.extend(&api);
        measure::puts(run, r, &all).await?;
        progress(n, &format!("PUT r={r} done"));
        measure::core_gets(run, r, &core).await?;
        measure::api_gets(run, r, &api).await?;
        progress(n, &format!("GET r={r} done"));
        let fresh = choose(&mut rng, r, other_id)?;
        let count = (options.ops / 2).max(1);
        measure::api_put_until_found(run, r, &fresh[..count]).await?;
        progress(n, &format!("PUT via API r={r} done"));
    }
    // What the anchors do before they read their memory: PUTs and GETs, nothing more.
    let status = run.net.status().await?;
    memory(
        run,
        &status,
        "mem.after_latency_kb",
        "after the PUT and GET series (the anchors' workload)",
    );
    let local = keys_closest_to(&mut rng, options.ops.min(200), &api_id, &ids);
    api_throughput(run, options, &local).await?;
    progress(n, "throughput done");
    new_node(run, n, entry).await?;
    let after = run.net.status().await?;
    memory(run, &after, "mem.after_ops_kb", "after the measurements");
    churn(run, &after);
    progress(n, "done");
    Ok(())
}

/// Idle CPU, connections and memory, over `window` without requests.
async fn idle(run: &mut Run, window: Duration) -> anyhow::Result<()> {
    let before = run.net.status().await?;
    let started = Instant::now();
    tokio::time::sleep(window).await;
    let after = run.net.status().await?;
    let secs = started.elapsed().as_secs_f64();
    let n = run.result.n as f64;
    let cpu = grown(&before, &after, |s| s.cpu_ms);
    run.result.figure(
        "cpu.idle_ms_per_s",
        "idle CPU per node (ms of CPU per second)",
        Some(cpu / n / secs),
        "ms/s",
    );
    memory(run, &after, "mem.idle_kb", "idle, after start-up");
    let opened = grown(&before, &after, |s| s.opened as f64);
    run.result.figure(
        "conns.opened_idle_per_min",
        "connections established per node per minute, idle",
        Some(opened / n / secs * 60.0),
        "/min",
    );
    let conns: Vec<usize> = after.iter().flat_map(|s| s.connections.clone()).collect();
    let routing: Vec<usize> = after.iter().flat_map(|s| s.routing.clone()).collect();
    let mean = conns.iter().sum::<usize>() as f64 / conns.len().max(1) as f64;
    let r = &mut run.result;
    r.figure(
        "conns.mean",
        "open peer connections per node (mean)",
        Some(mean),
        "count",
    );
    r.figure(
        "conns.median",
        "open peer connections per node (median)",
        Some(median(&conns) as f64),
        "count",
    );
    let mut sorted: Vec<f64> = conns.iter().map(|&c| c as f64).collect();
    sorted.sort_by(f64::total_cmp);
    r.figure(
        "conns.p99",
        "open peer connections per node (p99)",
        (!sorted.is_empty()).then(|| percentile(&sorted, 0.99)),
        "count",
    );
    r.figure(
        "conns.max",
        "open peer connections per node (max)",
        conns.iter().max().map(|&m| m as f64),
        "count",
    );
    r.figure(
        "routing.median",
        "routing-table contacts per node (median)",
        Some(median(&routing) as f64),
        "count",
    );
    r.figure(
        "fds.max_per_worker",
        "file descriptors of the busiest worker process",
        after.iter().map(|s| s.open_fds as f64).reduce(f64::max),
        "count",
    );
    r.figure(
        "threads.per_worker",
        "threads per worker process (max)",
        after.iter().map(|s| s.threads as f64).reduce(f64::max),
        "count",
    );
    Ok(())
}

/// How much `field` grew from `before` to `after`, summed over the worker processes.
fn grown(
    before: &[ProcessStatus],
    after: &[ProcessStatus],
    field: fn(&ProcessStatus) -> f64,
) -> f64 {
    after
        .iter()
        .zip(before)
        .map(|(a, b)| field(a) - field(b))
        .sum()
}

/// How often the connection bound and the rate limits bit, over the whole run.
fn churn(run: &mut Run, status: &[ProcessStatus]) {
    let n = run.result.n as f64;
    let sum = |f: fn(&ProcessStatus) -> u64| status.iter().map(f).sum::<u64>() as f64;
    let r = &mut run.result;
    r.figure(
        "conns.evicted_per_node",
        "idle connections closed at max_connections per node, whole run",
        Some(sum(|s| s.evicted) / n),
        "count",
    );
    r.figure(
        "conns.refused_full",
        "inbound connections refused at max_connections, all nodes, whole run",
        Some(sum(|s| s.refused_full)),
        "count",
    );
    r.figure(
        "requests.rate_limited",
        "requests answered \"overloaded\" by the rate limits, all nodes, whole run",
        Some(sum(|s| s.rate_limited)),
        "count",
    );
}

/// Memory per node as the anchors measure it: the processes' peak resident sets
/// (VmHWM), summed, divided by the nodes.
fn memory(run: &mut Run, status: &[ProcessStatus], key: &str, when: &str) {
    let total: u64 = status.iter().map(|s| s.vm_hwm_kb).sum();
    let n = run.result.n as f64;
    run.result.figure(
        key,
        &format!("memory per node, VmHWM of the workers / N, {when}"),
        Some(total as f64 / n),
        "kB",
    );
}

/// The API throughput of worker node `run.api_index`.
async fn api_throughput(run: &mut Run, options: &Options, local: &[Key]) -> anyhow::Result<()> {
    // The local keys: stored with replication 3, the measured node is their closest.
    for key in local {
        let options = PutOptions {
            ttl: Duration::from_secs(3600),
            replication: 3,
        };
        run.writer.node.put(*key, measure::value(), options).await?;
    }
    let held = run.net.holds(run.api_index, local).await?;
    let local: Vec<Key> = local
        .iter()
        .zip(held)
        .filter_map(|(k, held)| held.then_some(*k))
        .collect();
    let barrier = *local
        .first()
        .context("the measured node holds none of the keys it is the closest to")?;
    // Keys the measured node does not hold: a GET of them is a lookup.
    let lookup: Vec<Key> = run.values.keys().copied().collect();
    let held = run.net.holds(run.api_index, &lookup).await?;
    let lookup: Vec<Key> = lookup
        .iter()
        .zip(held)
        .filter_map(|(k, held)| (!held).then_some(*k))
        .collect();
    let api = run.net.nodes[run.api_index].api;
    let window = options.throughput_window;
    let workloads = [
        (
            "get_local",
            "GET/s, keys the node holds",
            throughput::Workload::Get(local),
        ),
        (
            "get_lookup",
            "GET/s, keys that need a lookup",
            throughput::Workload::Get(lookup),
        ),
        (
            "put",
            "PUT/s accepted",
            throughput::Workload::Put { barrier },
        ),
    ];
    // The ceiling first, while the network is as quiet as for the local GETs after it
    // (after the PUTs it is still replicating them).
    let most = options.concurrency.iter().copied().max().unwrap_or(1);
    let ceiling = echo_ceiling(options, most).await?;
    run.result.figure(
        &format!("tput.echo.c{most}"),
        &format!(
            "the same client against a server that only answers (no DHT): GET/s, {most} \
             connections, the ceiling here"
        ),
        Some(ceiling),
        "/s",
    );
    let mut put_keys = Vec::new();
    for (name, label, workload) in &workloads {
        for &c in &options.concurrency {
            let (status, counters) = (
                run.net.status().await?,
                run.net.lookups(run.api_index).await?,
            );
            let outcome = throughput::run(api, c, window, workload).await?;
            run.result.figure(
                &format!("tput.{name}.c{c}"),
                &format!("API throughput of one node, {label}, {c} connections"),
                Some(outcome.rate()),
                "/s",
            );
            let after = run.net.status().await?;
            run.result.figure(
                &format!("tput.{name}.c{c}.rate_limited"),
                &format!(
                    "requests answered \"overloaded\", all nodes, during {label}, {c} connections"
                ),
                Some(grown(&status, &after, |s| s.rate_limited as f64)),
                "count",
            );
            // Where the throughput goes: new connections cost a TLS handshake each, and
            // the workers' CPU per request answered is what bounds the rate on a
            // saturated host (the driver's own CPU, clients and the embedded writer and
            // reader, is not counted).
            run.result.figure(
                &format!("tput.{name}.c{c}.conns_opened"),
                &format!("connections established, all nodes, during {label}, {c} connections"),
                Some(grown(&status, &after, |s| s.opened as f64)),
                "count",
            );
            run.result.figure(
                &format!("tput.{name}.c{c}.peer_requests"),
                &format!(
                    "requests sent to peers, all nodes, per request answered, during {label}, \
                     {c} connections"
                ),
                (outcome.done > 0).then(|| {
                    grown(&status, &after, |s| s.requests_sent as f64) / outcome.done as f64
                }),
                "count",
            );
            run.result.figure(
                &format!("tput.{name}.c{c}.worker_cpu_ms"),
                &format!(
                    "CPU of the worker processes per request answered, during {label}, {c} \
                     connections"
                ),
                (outcome.done > 0)
                    .then(|| grown(&status, &after, |s| s.cpu_ms) / outcome.done as f64),
                "ms",
            );
            if matches!(workload, throughput::Workload::Put { .. }) {
                // The PUTs that finished their replication in the window (or soon after:
                // read once the clients stopped), and how long they took on average.
                let later = run.net.lookups(run.api_index).await?;
                let finished = later.puts.saturating_sub(counters.puts);
                run.result.figure(
                    &format!("tput.put.c{c}.mean_ms"),
                    &format!("mean time of a PUT's replication on the measured node, during PUT/s accepted, {c} connections"),
                    (finished > 0).then(|| (later.put_seconds - counters.put_seconds) / finished as f64 * 1000.0),
                    "ms",
                );
            }
            if outcome.failed > 0 || outcome.error.is_some() {
                run.result.note(format!(
                    "throughput {name} with {c} connections: {} answered DHT_FAILURE{}",
                    outcome.failed,
                    outcome
                        .error
                        .as_deref()
                        .map(|e| format!("; a connection broke: {e}"))
                        .unwrap_or_default()
                ));
            }
            put_keys.extend(outcome.put_keys);
        }
    }
    confirm_puts(run, &put_keys).await;
    Ok(())
}

/// GET/s of the throughput client on `most` connections against the echo server.
async fn echo_ceiling(options: &Options, most: usize) -> anyhow::Result<f64> {
    let echo = crate::echo::EchoServer::start(&options.exe).await?;
    let keys = throughput::Workload::Get(vec![Key::from_bytes([0x5a; 32])]);
    let outcome = throughput::run(echo.addr, most, options.throughput_window, &keys).await?;
    Ok(outcome.rate())
}

/// GETs through the embedded reader of up to 200 of the PUTs the throughput run made,
/// each retried until found or 20 s have passed in all.
async fn confirm_puts(run: &mut Run, keys: &[Key]) {
    let step = (keys.len() / 200).max(1);
    let sample: Vec<Key> = keys.iter().step_by(step).copied().collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut confirmed = 0;
    for key in &sample {
        loop {
            if matches!(run.reader.node.get(*key).await, Ok(Some(_))) {
                confirmed += 1;
                break;
            }
            if Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    run.result.figure(
        "tput.put.confirmed",
        "throughput PUTs found by GETs from another node (share of a sample of up to 200)",
        (!sample.is_empty()).then(|| confirmed as f64 / sample.len() as f64),
        "ratio",
    );
}

/// A new node: from its start (minting its id included) to its first successful GET.
async fn new_node(run: &mut Run, n: usize, entry: &[String]) -> anyhow::Result<()> {
    let key = *run
        .values
        .keys()
        .next()
        .context("no key stored for the new node to read")?;
    let settings = crate::protocol::NodeSettings {
        data_dir: run.net.settings.data_dir.join("new-node"),
        ..run.net.settings.clone()
    };
    let started = Instant::now();
    let node = start_node(n + 2, &settings, entry).await?;
    let joined = started.elapsed();
    let deadline = started + Duration::from_secs(30);
    let first_get = loop {
        if matches!(node.node.get(key).await, Ok(Some(_))) {
            break Some(started.elapsed());
        }
        if Instant::now() > deadline {
            break None;
        }
    };
    node.stop().await;
    let r = &mut run.result;
    r.figure(
        "startup.new_node_join_ms",
        "a new node: start (id minted) until joined",
        Some(ms(joined)),
        "ms",
    );
    r.figure(
        "startup.new_node_first_get_ms",
        "a new node: start until its first successful GET",
        first_get.map(ms),
        "ms",
    );
    Ok(())
}

/// Peers a node that knows nobody pings in [`connection_cost`].
const COST_PEERS: usize = 50;

/// What a new peer connection costs here: a node that knows nobody (so that every
/// first request dials) pings up to [`COST_PEERS`] worker nodes twice, first over a new
/// connection (TCP connect, mutual TLS 1.3, HELLO, the PING right behind it), then over
/// the open one. The anchor tls-pingpong gives the floor of the same in the same run.
async fn connection_cost(run: &mut Run, n: usize) -> anyhow::Result<()> {
    let settings = crate::protocol::NodeSettings {
        data_dir: run.net.settings.data_dir.join("lone-node"),
        ..run.net.settings.clone()
    };
    let lone = start_node(n + 3, &settings, &[]).await?;
    let peers: Vec<dht_core::Contact> = run
        .net
        .ids()?
        .into_iter()
        .zip(&run.net.nodes)
        .take(COST_PEERS)
        .map(|(id, node)| dht_core::Contact { id, addr: node.p2p })
        .collect();
    let (mut first, mut again) = (Vec::new(), Vec::new());
    for contact in peers {
        for times in [&mut first, &mut again] {
            let started = Instant::now();
            lone.node
                .ping(contact)
                .await
                .with_context(|| format!("pinging {}", contact.id.short()))?;
            times.push(started.elapsed());
        }
    }
    lone.stop().await;
    run.result.latency(
        "conn.new",
        "a first request over a new connection (TCP, mutual TLS 1.3, HELLO, PING)",
        Summary::of(&first),
    );
    run.result.latency(
        "conn.open",
        "a request over an open connection (PING)",
        Summary::of(&again),
    );
    Ok(())
}

/// The same nodes restarted (same keys: no minting) over fresh stores holding
/// `preload_records` records each, put straight into the store before the start.
async fn loaded_memory(
    options: &Options,
    dir: &std::path::Path,
    result: &mut NetworkResult,
) -> anyhow::Result<()> {
    let n = options.n;
    let settings = network::settings(
        dir,
        "data-loaded",
        options.pow_difficulty,
        n,
        options.preload_records,
    );
    let mut net = Network::start(&options.exe, n, settings, dir).await?;
    let startup = net.startup;
    progress(n, &format!("loaded network started in {startup:.2?}"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let status = net.status().await;
    net.stop().await;
    let status = status?;
    let total: u64 = status.iter().map(|s| s.vm_hwm_kb).sum();
    let records: usize = status.iter().flat_map(|s| s.records.iter()).sum();
    result.note(format!(
        "loaded network: the same {n} nodes restarted (same keys) over fresh stores, each \
         given {} records of 100 bytes with put_many before the start; the records carry \
         replication 0 so that the hand-off to newly seen neighbours does not copy them \
         around (see bench/src/nodes.rs)",
        options.preload_records
    ));
    result.figure(
        "mem.loaded_kb",
        &format!(
            "memory per node, VmHWM / N, with {} records of 100 bytes per node",
            options.preload_records
        ),
        Some(total as f64 / n as f64),
        "kB",
    );
    result.figure(
        "startup.loaded_ms",
        "start-up of the whole network over the loaded stores",
        Some(ms(startup)),
        "ms",
    );
    result.figure(
        "mem.loaded_records",
        "records held per node in the loaded network (mean)",
        Some(records as f64 / n as f64),
        "count",
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
