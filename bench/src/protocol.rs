//! The line protocol between the driver and its worker processes: one JSON object per
//! line, commands on the worker's stdin, one reply per command on its stdout.
//!
//! Workers are separate processes so that a network of hundreds of nodes stays under
//! the per-process file-descriptor limit, and so that the API measurements go through
//! a real process boundary, as with a deployed network.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A command from the driver to a worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// Start nodes and join them through `bootstrap`.
    Start(StartNodes),
    /// Whether node `index` holds each of `keys` (hex) in its own store.
    Holds {
        /// The node, by its index in the network.
        index: usize,
        /// The keys, 64 hex digits each.
        keys: Vec<String>,
    },
    /// The lookup counters of node `index` (from its Prometheus metrics).
    Lookups {
        /// The node, by its index in the network.
        index: usize,
    },
    /// The process's memory and CPU use, and each node's connections and table.
    Status,
    /// Stop every node and exit.
    Stop,
}

/// Nodes for a worker to start.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StartNodes {
    /// Their indices in the network (they name the host key and data folder).
    pub indices: Vec<usize>,
    /// Entry nodes, `host:port`; empty for the first node of the network.
    pub bootstrap: Vec<String>,
    /// How every node is configured.
    pub settings: NodeSettings,
    /// Nodes started at once; the others wait.
    pub concurrency: usize,
}

/// dht-node's default `max_connections`.
pub const FULL_BOUND: usize = 1024;

/// The configuration every benchmark node shares.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeSettings {
    /// Proof-of-work difficulty minted and required.
    pub pow_difficulty: u32,
    /// Peer connections per node (the file-descriptor budget).
    pub max_connections: usize,
    /// The node whose API the throughput is measured on: it keeps dht-node's own bound
    /// ([`FULL_BOUND`]), as a node serving clients on its own host would.
    #[serde(default)]
    pub measured: Option<usize>,
    /// Folder of the host keys (`node-<i>.pem`, kept across networks of one run so
    /// that a restart does not mint again).
    pub hostkey_dir: PathBuf,
    /// Folder of the nodes' databases (`node-<i>/`).
    pub data_dir: PathBuf,
    /// Records of `value_len` bytes put straight into each node's store before it
    /// starts.
    pub preload_records: usize,
    /// Length of each preloaded value.
    pub value_len: usize,
}

/// A node as its worker reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Its index in the network.
    pub index: usize,
    /// Its node id, 64 hex digits.
    pub id: String,
    /// Where peers reach it.
    pub p2p: SocketAddr,
    /// Where VoidPhone API clients reach it.
    pub api: SocketAddr,
}

/// A worker's answer to one command.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    /// The nodes started (all of them joined, or the command failed).
    Started {
        /// The nodes, in the order asked.
        nodes: Vec<NodeInfo>,
        /// Time the worker spent starting them, ms.
        elapsed_ms: f64,
    },
    /// One answer per key asked.
    Holds {
        /// Whether the node holds each key.
        held: Vec<bool>,
    },
    /// A node's lookup counters.
    Lookups(LookupCounters),
    /// The process and its nodes.
    Status(ProcessStatus),
    /// Every node stopped; the worker exits next.
    Stopped,
    /// The command failed; one line saying why.
    Error {
        /// The reason.
        message: String,
    },
}

/// Cumulative sums and counts of a node's lookup histograms, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LookupCounters {
    /// FIND_VALUE lookups (GETs that went to the network).
    pub find_value: LookupSums,
    /// FIND_NODE lookups (PUTs, joins, refreshes).
    pub find_node: LookupSums,
    /// PUTs whose replication finished (`dht_put_duration_seconds_count`).
    #[serde(default)]
    pub puts: u64,
    /// Their durations, summed, seconds (`dht_put_duration_seconds_sum`).
    #[serde(default)]
    pub put_seconds: f64,
}

/// Sums over the lookups of one kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LookupSums {
    /// Lookups.
    pub count: u64,
    /// Rounds, summed.
    pub rounds: f64,
    /// Distinct peers asked, summed.
    pub contacted: f64,
}

impl LookupSums {
    /// What happened between `before` and `self`: `(lookups, mean rounds, mean peers
    /// contacted)`; the means are `None` without lookups.
    pub fn since(&self, before: &LookupSums) -> (u64, Option<f64>, Option<f64>) {
        let count = self.count.saturating_sub(before.count);
        if count == 0 {
            return (0, None, None);
        }
        let n = count as f64;
        (
            count,
            Some((self.rounds - before.rounds) / n),
            Some((self.contacted - before.contacted) / n),
        )
    }
}

/// A worker process's resource use and its nodes' connections.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProcessStatus {
    /// Peak resident set (VmHWM), kB.
    pub vm_hwm_kb: u64,
    /// Resident set now (VmRSS), kB.
    pub vm_rss_kb: u64,
    /// Threads of the process.
    pub threads: u64,
    /// CPU time used so far (user + system), ms.
    pub cpu_ms: f64,
    /// File descriptors open.
    pub open_fds: usize,
    /// Per node: peer connections open.
    pub connections: Vec<usize>,
    /// Per node: contacts in the routing table.
    pub routing: Vec<usize>,
    /// Per node: records held.
    pub records: Vec<usize>,
    /// Summed over the nodes: idle connections closed to make room at
    /// `max_connections`.
    #[serde(default)]
    pub evicted: u64,
    /// Summed over the nodes: inbound connections refused at `max_connections`.
    #[serde(default)]
    pub refused_full: u64,
    /// Summed over the nodes: requests answered "overloaded" by the rate limits.
    #[serde(default)]
    pub rate_limited: u64,
    /// Summed over the nodes: connections established (handshakes done).
    #[serde(default)]
    pub opened: u64,
    /// Summed over the nodes: requests sent to peers.
    #[serde(default)]
    pub requests_sent: u64,
}
