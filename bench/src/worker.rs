//! Worker mode (`dht-bench worker`): a process hosting a share of the network's nodes,
//! driven by JSON commands on stdin, one JSON reply per command on stdout.
//!
//! Nothing else is written to stdout (logs go to stderr). When stdin closes (the driver
//! died) the worker stops its nodes and exits, so that no node outlives the benchmark.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Context;
use dht_core::Key;
use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::nodes::{BenchNode, start_node};
use crate::procfs;
use crate::protocol::{Command, NodeInfo, ProcessStatus, Reply, StartNodes};
use crate::stats::lookup_counters;

/// Runs the worker until `Stop` or the end of stdin.
pub async fn run() -> anyhow::Result<()> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut stdout = tokio::io::stdout();
    let mut nodes: BTreeMap<usize, BenchNode> = BTreeMap::new();
    while let Some(line) = lines.next_line().await.context("reading stdin")? {
        if line.trim().is_empty() {
            continue;
        }
        let (reply, stop) = match serde_json::from_str::<Command>(&line) {
            Ok(Command::Stop) => (Reply::Stopped, true),
            Ok(command) => (answer(command, &mut nodes).await, false),
            Err(e) => (
                Reply::Error {
                    message: format!("unreadable command: {e}"),
                },
                false,
            ),
        };
        if stop {
            stop_all(&nodes).await;
            nodes.clear();
        }
        let mut text = serde_json::to_string(&reply).context("encoding a reply")?;
        text.push('\n');
        stdout
            .write_all(text.as_bytes())
            .await
            .context("writing stdout")?;
        stdout.flush().await.context("writing stdout")?;
        if stop {
            return Ok(());
        }
    }
    stop_all(&nodes).await;
    Ok(())
}

async fn stop_all(nodes: &BTreeMap<usize, BenchNode>) {
    futures::future::join_all(nodes.values().map(BenchNode::stop)).await;
}

async fn answer(command: Command, nodes: &mut BTreeMap<usize, BenchNode>) -> Reply {
    let result = match command {
        Command::Start(start) => start_nodes(start, nodes).await,
        Command::Holds { index, keys } => holds(nodes, index, &keys),
        Command::Lookups { index } => match nodes.get(&index) {
            Some(n) => Ok(Reply::Lookups(lookup_counters(&n.node))),
            None => Err(anyhow::anyhow!("no node {index} in this worker")),
        },
        Command::Status => Ok(Reply::Status(status(nodes))),
        Command::Stop => Ok(Reply::Stopped),
    };
    result.unwrap_or_else(|e| Reply::Error {
        message: format!("{e:#}"),
    })
}

async fn start_nodes(
    start: StartNodes,
    nodes: &mut BTreeMap<usize, BenchNode>,
) -> anyhow::Result<Reply> {
    let started_at = Instant::now();
    let StartNodes {
        indices,
        bootstrap,
        settings,
        concurrency,
    } = start;
    let mut starting = futures::stream::iter(indices.iter().map(|&index| {
        let (settings, bootstrap) = (&settings, &bootstrap);
        async move { start_node(index, settings, bootstrap).await }
    }))
    .buffer_unordered(concurrency.max(1));
    let mut first_error = None;
    while let Some(started) = starting.next().await {
        match started {
            Ok(node) => {
                nodes.insert(node.index, node);
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let infos = indices
        .iter()
        .filter_map(|index| nodes.get(index))
        .map(|n| NodeInfo {
            index: n.index,
            id: n.node.id().to_string(),
            p2p: n.node.listen_addr(),
            api: n.api.local_addr(),
        })
        .collect();
    Ok(Reply::Started {
        nodes: infos,
        elapsed_ms: started_at.elapsed().as_secs_f64() * 1e3,
    })
}

fn holds(
    nodes: &BTreeMap<usize, BenchNode>,
    index: usize,
    keys: &[String],
) -> anyhow::Result<Reply> {
    let node = nodes
        .get(&index)
        .with_context(|| format!("no node {index} in this worker"))?;
    let held = keys
        .iter()
        .map(|hex| {
            let key: Key = hex.parse().with_context(|| format!("bad key {hex:?}"))?;
            Ok(node.node.holds(&key))
        })
        .collect::<anyhow::Result<Vec<bool>>>()?;
    Ok(Reply::Holds { held })
}

fn status(nodes: &BTreeMap<usize, BenchNode>) -> ProcessStatus {
    let stats: Vec<_> = nodes.values().map(|n| n.node.stats()).collect();
    ProcessStatus {
        vm_hwm_kb: procfs::status_field("VmHWM"),
        vm_rss_kb: procfs::status_field("VmRSS"),
        threads: procfs::status_field("Threads"),
        cpu_ms: procfs::cpu_time().as_secs_f64() * 1e3,
        open_fds: procfs::open_fds(),
        connections: nodes.values().map(|n| n.node.open_connections()).collect(),
        routing: nodes.values().map(|n| n.node.routing_table_len()).collect(),
        records: nodes.values().map(|n| n.node.stored_records()).collect(),
        evicted: stats.iter().map(|s| s.connections_evicted).sum(),
        refused_full: stats.iter().map(|s| s.connections_refused_full).sum(),
        rate_limited: stats.iter().map(|s| s.requests_rate_limited).sum(),
        opened: stats.iter().map(|s| s.connections_opened).sum(),
        requests_sent: stats.iter().map(|s| s.requests_sent).sum(),
    }
}
