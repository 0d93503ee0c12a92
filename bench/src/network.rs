//! A network of benchmark nodes spread over worker processes: started node 0 first (the
//! entry node everybody else joins through), then all the others at once, each worker
//! starting its share with bounded concurrency.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use dht_core::{Key, NodeId};

use crate::protocol::{
    Command, LookupCounters, NodeInfo, NodeSettings, ProcessStatus, Reply, StartNodes,
};
use crate::workers::{Worker, log_path};

/// Nodes one worker process hosts at most. A worker's fixed cost (the executable's code
/// pages, the runtime) is shared by its nodes, as the anchors share one process among all
/// of theirs; beyond 100 the descriptor budget would bound a node below a 100-node
/// network's full mesh.
pub const MAX_NODES_PER_WORKER: usize = 100;
/// Nodes per worker when the budget cannot give every node a connection to every other:
/// at 100, the bound was 177 connections, below what a node of a 500-node network keeps
/// open (about 160, with peaks above), so lookups kept paying new TLS handshakes for
/// evicted connections; at 50 the bound is 357.
pub const NODES_PER_WORKER: usize = 50;
/// File descriptors a worker may use for its nodes' peer connections: the limit
/// (20,000 per process here, not raisable) less room for listeners, database files,
/// API clients and the runtime.
pub const FD_BUDGET: usize = 18_000;
/// Nodes a worker starts at once.
const START_CONCURRENCY: usize = 8;

/// The connection bound that keeps a worker of `nodes` nodes within [`FD_BUDGET`]:
/// each connection is one descriptor at each end, and a worker's nodes may all be at
/// their bound at once. Never above `dht-node`'s default (1024).
pub fn max_connections_for(nodes_per_worker: usize) -> usize {
    // Each node also holds its listener, its API listener and its database file.
    (FD_BUDGET / nodes_per_worker.max(1))
        .saturating_sub(3)
        .clamp(16, 1024)
}

/// Nodes per worker for a network of `n`: as many as [`MAX_NODES_PER_WORKER`] while each
/// node may still hold a connection to every other one and to the driver's two nodes,
/// else [`NODES_PER_WORKER`].
pub fn nodes_per_worker(n: usize) -> usize {
    (NODES_PER_WORKER..=MAX_NODES_PER_WORKER)
        .rev()
        .find(|&per| max_connections_for(per) >= n + 2)
        .unwrap_or(NODES_PER_WORKER)
}

/// How `n` nodes are spread: the number of workers and each one's node indices.
pub fn layout(n: usize) -> Vec<Vec<usize>> {
    let workers = n.div_ceil(nodes_per_worker(n)).max(1);
    (0..workers)
        .map(|w| (0..n).filter(|i| i % workers == w).collect())
        .collect()
}

/// The running worker processes and their nodes.
pub struct Network {
    workers: Vec<Worker>,
    /// Every node, by index.
    pub nodes: Vec<NodeInfo>,
    /// The worker of each node, by index.
    owner: Vec<usize>,
    /// The settings the nodes run with.
    pub settings: NodeSettings,
    /// From spawning the first worker to the last node joined.
    pub startup: Duration,
}

impl Network {
    /// Starts `n` nodes with `settings` in worker processes of `exe`, logs under
    /// `log_dir`.
    pub async fn start(
        exe: &Path,
        n: usize,
        settings: NodeSettings,
        log_dir: &Path,
    ) -> anyhow::Result<Network> {
        if n == 0 {
            bail!("a network needs at least one node");
        }
        let began = Instant::now();
        let shares = layout(n);
        let mut workers = Vec::with_capacity(shares.len());
        for number in 0..shares.len() {
            workers.push(Worker::spawn(exe, number, &log_path(log_dir, number))?);
        }
        let mut owner = vec![0; n];
        for (w, share) in shares.iter().enumerate() {
            for &i in share {
                owner[i] = w;
            }
        }
        let start = |indices: Vec<usize>, bootstrap: Vec<String>| {
            Command::Start(StartNodes {
                indices,
                bootstrap,
                settings: settings.clone(),
                concurrency: START_CONCURRENCY,
            })
        };
        let mut nodes: Vec<Option<NodeInfo>> = vec![None; n];
        let first = started(workers[0].call(&start(vec![0], Vec::new())).await?)?;
        let entry = first
            .first()
            .context("the first node did not start")?
            .p2p
            .to_string();
        nodes[0] = first.into_iter().next();
        let calls = workers.iter_mut().zip(&shares).map(|(worker, share)| {
            let rest: Vec<usize> = share.iter().copied().filter(|&i| i != 0).collect();
            let command = start(rest, vec![entry.clone()]);
            async move { worker.call(&command).await }
        });
        for reply in futures::future::join_all(calls).await {
            for info in started(reply?)? {
                let index = info.index;
                nodes[index] = Some(info);
            }
        }
        let nodes = nodes
            .into_iter()
            .enumerate()
            .map(|(i, info)| info.with_context(|| format!("node {i} was not reported")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Network {
            workers,
            nodes,
            owner,
            settings,
            startup: began.elapsed(),
        })
    }

    /// Worker processes.
    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }

    /// The node ids, by index.
    pub fn ids(&self) -> anyhow::Result<Vec<NodeId>> {
        self.nodes
            .iter()
            .map(|n| {
                n.id.parse()
                    .with_context(|| format!("node {}: bad id {:?}", n.index, n.id))
            })
            .collect()
    }

    /// Every worker's status, in worker order.
    pub async fn status(&mut self) -> anyhow::Result<Vec<ProcessStatus>> {
        let calls = self.workers.iter_mut().map(|w| w.call(&Command::Status));
        futures::future::join_all(calls)
            .await
            .into_iter()
            .map(|reply| match reply? {
                Reply::Status(status) => Ok(status),
                other => bail!("unexpected reply {other:?} to status"),
            })
            .collect()
    }

    /// The lookup counters of node `index`.
    pub async fn lookups(&mut self, index: usize) -> anyhow::Result<LookupCounters> {
        match self
            .worker_of(index)?
            .call(&Command::Lookups { index })
            .await?
        {
            Reply::Lookups(counters) => Ok(counters),
            other => bail!("unexpected reply {other:?} to lookups"),
        }
    }

    /// Whether node `index` holds each of `keys`.
    pub async fn holds(&mut self, index: usize, keys: &[Key]) -> anyhow::Result<Vec<bool>> {
        let keys = keys.iter().map(ToString::to_string).collect();
        match self
            .worker_of(index)?
            .call(&Command::Holds { index, keys })
            .await?
        {
            Reply::Holds { held } => Ok(held),
            other => bail!("unexpected reply {other:?} to holds"),
        }
    }

    fn worker_of(&mut self, index: usize) -> anyhow::Result<&mut Worker> {
        let w = *self
            .owner
            .get(index)
            .with_context(|| format!("no node {index}"))?;
        Ok(&mut self.workers[w])
    }

    /// Stops every worker (and its nodes).
    pub async fn stop(self) {
        futures::future::join_all(self.workers.into_iter().map(Worker::stop)).await;
    }
}

fn started(reply: Reply) -> anyhow::Result<Vec<NodeInfo>> {
    match reply {
        Reply::Started { nodes, .. } => Ok(nodes),
        other => bail!("unexpected reply {other:?} to start"),
    }
}

/// The node of a network of `n` whose API throughput is measured. Its worker's
/// descriptors may then exceed [`FD_BUDGET`] by `FULL_BOUND - max_connections`, within
/// the process limit (20,000) that the budget leaves room below.
pub fn measured_index(n: usize) -> usize {
    n / 2
}

/// The settings of a network's nodes under `dir`.
pub fn settings(
    dir: &Path,
    data: &str,
    pow_difficulty: u32,
    n: usize,
    preload_records: usize,
) -> NodeSettings {
    let per_worker = layout(n).iter().map(Vec::len).max().unwrap_or(1);
    NodeSettings {
        pow_difficulty,
        max_connections: max_connections_for(per_worker),
        measured: Some(measured_index(n)),
        hostkey_dir: dir.join("keys"),
        data_dir: dir.join(data),
        preload_records,
        value_len: 100,
    }
}

/// The folder of one run's files for network size `n`, emptied.
pub fn fresh_dir(root: &Path, n: usize) -> anyhow::Result<PathBuf> {
    let dir = root.join(format!("n{n}"));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("emptying {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_and_bounds() {
        assert_eq!(layout(20), vec![(0..20).collect::<Vec<_>>()]);
        let ten = layout(500);
        assert_eq!(ten.len(), 10);
        assert!(ten.iter().all(|s| s.len() == 50));
        assert_eq!(layout(51).len(), 1);
        assert_eq!(layout(100).len(), 1);
        assert_eq!(nodes_per_worker(100), 100);
        assert_eq!(nodes_per_worker(175), 100);
        assert_eq!(nodes_per_worker(300), 59);
        assert_eq!(layout(300).len(), 6);
        assert_eq!(nodes_per_worker(500), 50);
        assert_eq!(max_connections_for(50), 357);
        assert_eq!(max_connections_for(100), 177);
        assert_eq!(max_connections_for(20), 897);
        assert_eq!(max_connections_for(1), 1024);
        // The bound keeps a full worker within the budget.
        assert!(50 * (max_connections_for(50) + 3) <= FD_BUDGET);
    }
}
