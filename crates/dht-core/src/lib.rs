//! The DHT node: a Kademlia peer on tokio that other programs embed.
//!
//! [`Node::start`] binds the peer port, joins the network through the configured
//! bootstrap peers (connect, look up its own id, refresh the buckets farther than its
//! closest neighbour) and then answers peers until [`Node::shutdown`]. [`Node::put`]
//! stores a value locally at once and on the `r` nodes closest to its key;
//! [`Node::get`] finds it again from any node.
//!
//! ```no_run
//! # async fn demo() -> Result<(), dht_core::Error> {
//! use dht_core::{Node, NodeConfig, PutOptions};
//! let node = Node::start(NodeConfig::default()).await?;
//! let key = dht_core::Key::sha256(b"hello");
//! node.put(key, bytes::Bytes::from_static(b"world"), PutOptions::default()).await?;
//! assert_eq!(node.get(key).await?.as_deref(), Some(&b"world"[..]));
//! node.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! The protocol logic lives below this crate (routing table and lookup state machine in
//! `dht-routing`, codecs in `dht-wire`, record stores in `dht-storage`); this crate owns
//! the runtime, the sockets (through a [`Transport`]) and the clocks.
#![deny(missing_docs, rustdoc::broken_intra_doc_links, unreachable_pub)]

mod activity;
mod admission;
mod answer_times;
mod config;
mod conn;
mod contacts;
pub mod deadline;
mod env;
mod error;
mod handoff;
mod handshake;
mod identity;
mod join;
mod maintenance;
mod metrics;
mod node;
mod ops;
mod peers;
mod policy;
mod put;
mod received;
mod rejoin;
mod repair;
mod replicate;
mod rpc;
mod serve;
mod simnet;
mod stats;
mod status;
mod store;
mod stream;
mod tls;
mod transport;
mod wan;
mod writers;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dht_storage::RecordStore;
use tracing::{Instrument, debug};

pub use activity::{LookupCounts, LookupKind, RecentLookup, UpkeepKind, UpkeepRound};
pub use config::{
    BootstrapPeer, DEFAULT_NETWORK_ID, DEFAULT_SYNC_INTERVAL, DiskSync, MAX_LIMIT,
    MAX_POW_DIFFICULTY, NodeConfig, StorageBackend,
};
pub use dht_id::{Key, NodeId};
pub use dht_routing::Contact;
pub use dht_storage::{MemoryStore, Record, StoreLimits};
pub use env::{Clock, Environment, Responder, SystemClock, TokioClock};
pub use error::{Error, RpcError};
pub use node::{PUTS_IN_FLIGHT, storage_key_of};
pub use ops::LookupStats;
pub use policy::TRANSIENT_WARM;
pub use put::{PutOptions, PutReport};
pub use simnet::{SimNetwork, SimTransport};
pub use stats::NodeStats;
pub use status::{BucketStatus, NodeStatus, NotReady};
pub use tls::TlsTransport;
pub use transport::{
    Connection, Incoming, Listener, MemoryNetwork, MemoryTransport, PeerIdentity, PeerIo,
    TcpTransport, Transport,
};
pub use wan::{Placement, WanModel};

use node::Inner;

/// Whether [`Node::start`] returns after the join or before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Join {
    /// Join first (one attempt), then return; retries go on in the background.
    Await,
    /// Return at once; the join and its retries run in the background.
    Background,
}

/// How long [`Node::shutdown`] waits for PUTs in flight before closing anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A running DHT node. Dropping it stops its tasks; [`Node::shutdown`] also lets the
/// PUTs in flight finish first.
pub struct Node {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.inner.id)
            .field("listen_addr", &self.inner.listen_addr())
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Starts a node over TCP with the store `config.storage` names (in memory by
    /// default; `dht-node` uses the durable store) and joins the network. Returns
    /// once the join is done, or at once when no bootstrap peer answers (it then keeps
    /// retrying in the background, with backoff).
    pub async fn start(config: NodeConfig) -> Result<Node, Error> {
        Self::start_inner(
            config,
            node::default_transport(),
            None,
            Join::Await,
            Environment::system(),
        )
        .await
    }

    /// Starts a node like [`Node::start`], but returns as soon as it listens: the join
    /// runs in the background (retrying with backoff while no bootstrap peer answers),
    /// and [`Node::readiness`] says when it is done. For servers whose health endpoint
    /// and API must answer while the node joins.
    pub async fn start_joining(config: NodeConfig) -> Result<Node, Error> {
        Self::start_inner(
            config,
            node::default_transport(),
            None,
            Join::Background,
            Environment::system(),
        )
        .await
    }

    /// Starts a node over the given transport and record store. The node runs mutual
    /// TLS over `transport` (plain TCP, or the in-memory transport in tests).
    pub async fn start_with(
        config: NodeConfig,
        transport: Arc<dyn Transport>,
        store: Box<dyn RecordStore>,
    ) -> Result<Node, Error> {
        Self::start_inner(
            config,
            transport,
            Some(store),
            Join::Await,
            Environment::system(),
        )
        .await
    }

    /// Starts a node like [`Node::start_with`], with its wall clock and random numbers
    /// from `env`: a simulation gives each node a clock on tokio's paused time and a
    /// seed of its own, so that a run is repeated exactly by its seed. The node reads no
    /// other clock than `env`'s and tokio's.
    pub async fn start_in(
        config: NodeConfig,
        transport: Arc<dyn Transport>,
        store: Box<dyn RecordStore>,
        env: Environment,
    ) -> Result<Node, Error> {
        Self::start_inner(config, transport, Some(store), Join::Await, env).await
    }

    async fn start_inner(
        config: NodeConfig,
        transport: Arc<dyn Transport>,
        store: Option<Box<dyn RecordStore>>,
        join: Join,
        env: Environment,
    ) -> Result<Node, Error> {
        let (inner, listener) = Inner::start(config, transport, store, env).await?;
        inner.spawn_accept_loop(listener);
        inner.spawn_maintenance();
        inner.spawn_replication();
        inner.spawn_disk_sync();
        tracing::info!(
            parent: &inner.span,
            id = %inner.id,
            listen = %inner.listen_addr(),
            advertise = %inner.advertised_addr(),
            "node started"
        );
        let has_saved = !node::lock(&inner.saved_contacts).is_empty();
        if inner.config.bootstrap_peers.is_empty() && !has_saved {
            // The first node of a network: there is nothing to join.
            inner.activity.set_joined();
        } else if join == Join::Background || !inner.join().await {
            let retry = inner.clone();
            let span = inner.span.clone();
            inner
                .tasks
                .spawn(async move { retry.join_with_retry().await }.instrument(span));
        }
        Ok(Node { inner })
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    /// The address the peer port is bound to.
    pub fn listen_addr(&self) -> SocketAddr {
        self.inner.listen_addr()
    }

    /// This node as a contact other nodes can bootstrap from.
    pub fn contact(&self) -> Contact {
        Contact {
            id: self.inner.id,
            addr: self.inner.advertised_addr(),
        }
    }

    /// The configuration the node runs with.
    pub fn config(&self) -> &NodeConfig {
        &self.inner.config
    }

    /// Stores `value` under `key`: here at once (so a GET on this node sees it even
    /// before the network does, and a node without peers keeps it), then on the
    /// `replication` nodes closest to the key. Reports how many acknowledged. The work
    /// goes on to the end even if the returned future is dropped.
    pub async fn put(
        &self,
        key: Key,
        value: Bytes,
        options: PutOptions,
    ) -> Result<PutReport, Error> {
        self.spawn_put(key, value, options)
            .await?
            .await
            .map_err(|_| Error::ShuttingDown)
    }

    /// Starts a PUT: returns once the value is in the local store (committed, for a
    /// durable store), so that a GET on this node sees it; the replication to the closest
    /// nodes runs as a task of the node, which [`Node::shutdown`] waits for. Await the
    /// handle for the report. While [`PUTS_IN_FLIGHT`] PUTs replicate, a new one waits for
    /// one of them to finish before it starts (back-pressure on whoever sends the PUTs).
    pub async fn spawn_put(
        &self,
        key: Key,
        value: Bytes,
        options: PutOptions,
    ) -> Result<tokio::task::JoinHandle<PutReport>, Error> {
        if self.inner.shutdown.is_cancelled() || self.inner.puts.is_closed() {
            return Err(Error::ShuttingDown);
        }
        let started = tokio::time::Instant::now();
        let (record, ttl) = match self.inner.prepare_put(key, value, options) {
            Ok(prepared) => prepared,
            Err(e) => {
                self.inner.metrics.put("error", 0, started.elapsed());
                return Err(e);
            }
        };
        // Back-pressure: at most PUTS_IN_FLIGHT network parts at once.
        let slot = tokio::select! {
            slot = self.inner.put_slots.clone().acquire_owned() => {
                slot.map_err(|_| Error::ShuttingDown)?
            }
            () = self.inner.shutdown.cancelled() => return Err(Error::ShuttingDown),
        };
        // The wait may have outlasted the start of a shutdown.
        if self.inner.puts.is_closed() {
            return Err(Error::ShuttingDown);
        }
        // The STOREs on the key's closest nodes (and the lookup that finds them) run
        // while the record is committed here: a PUT costs the longer of the two, not
        // their sum.
        let inner = self.inner.clone();
        let remote_record = record.clone();
        let remote = self.inner.puts.spawn(
            async move {
                inner
                    .store_on_closest(&remote_record, false, Some(slot))
                    .await
            }
            .instrument(self.inner.span.clone()),
        );
        let stored_locally = self.inner.store_locally(&record).await;
        let inner = self.inner.clone();
        Ok(self.inner.puts.spawn(
            async move {
                // The task only fails when the node stops: stored on nobody then.
                let replicas = remote.await.unwrap_or(0);
                let report = PutReport {
                    replicas,
                    replication: record.replication,
                    ttl,
                    stored_locally,
                };
                debug!(key = %key.short(), replicas, wanted = record.replication, "PUT done");
                let outcome = if report.replicas >= usize::from(report.replication) {
                    "replicated"
                } else if report.replicas > 0 {
                    "partly_replicated"
                } else {
                    "local_only"
                };
                inner
                    .metrics
                    .put(outcome, report.replicas, started.elapsed());
                report
            }
            .instrument(self.inner.span.clone()),
        ))
    }

    /// The value stored under `key`: `Ok(None)` when the network does not have it,
    /// `Err` when no peer could be asked.
    pub async fn get(&self, key: Key) -> Result<Option<Bytes>, Error> {
        self.get_with_stats(key).await.0
    }

    /// [`Node::get`], with what its lookup cost (all zero when this node answered from
    /// its own store).
    pub async fn get_with_stats(&self, key: Key) -> (Result<Option<Bytes>, Error>, LookupStats) {
        if self.inner.shutdown.is_cancelled() {
            return (Err(Error::ShuttingDown), LookupStats::default());
        }
        let started = tokio::time::Instant::now();
        let (result, stats) = self
            .inner
            .get(key)
            .instrument(self.inner.span.clone())
            .await;
        let outcome = match &result {
            Ok(Some(_)) => "found",
            Ok(None) => "not_found",
            Err(_) => "error",
        };
        self.inner.metrics.get(outcome, started.elapsed());
        (result, stats)
    }

    /// The value of `key` when this node can answer a GET from its own store, at once:
    /// it holds an unexpired record and is among the record's `replication` closest
    /// known nodes (what [`Node::get`] would answer without a lookup). `None` means a
    /// GET must ask the network. Counted in the GET metrics when found; for servers
    /// that answer such GETs inline instead of spawning a task.
    pub fn get_local(&self, key: &Key) -> Option<Bytes> {
        let started = tokio::time::Instant::now();
        let value = self.inner.get_local(key)?;
        self.inner.metrics.get("found", started.elapsed());
        Some(value)
    }

    /// The `k` closest nodes to `target` the network knows, by an iterative lookup.
    pub async fn find_closest(&self, target: Key) -> (Vec<Contact>, LookupStats) {
        let found = self
            .inner
            .lookup(target, false)
            .instrument(self.inner.span.clone())
            .await;
        let stats = LookupStats::of(&found.result);
        (found.result.closest, stats)
    }

    /// Asks `contact` whether it is alive (PING), connecting first when needed.
    pub async fn ping(&self, contact: Contact) -> Result<(), RpcError> {
        self.inner
            .ping(contact)
            .instrument(self.inner.span.clone())
            .await
    }

    /// Contacts in the routing table.
    pub fn routing_table_len(&self) -> usize {
        self.inner.routing().len()
    }

    /// All contacts in the routing table.
    pub fn routing_contacts(&self) -> Vec<Contact> {
        self.inner.routing().iter().collect()
    }

    /// Peers with a connection in use.
    pub fn connected_peers(&self) -> usize {
        self.inner.connected_peers()
    }

    /// Peer connections open, counting duplicates that are closing.
    pub fn open_connections(&self) -> usize {
        self.inner.open_connections()
    }

    /// Registers the node's Prometheus metrics in `registry`: requests to peers by kind
    /// and outcome with their latency, lookup hops and peers contacted, GET and PUT
    /// outcomes and latency, and, read on each scrape, open connections, the routing
    /// table by bucket range, stored records and bytes, and what every defence refused.
    /// Names start with `dht_`. The registry keeps no strong reference to the node.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.inner
            .metrics
            .register(registry, Arc::downgrade(&self.inner));
    }

    /// The node's counters and the sizes of its bounded structures.
    pub fn stats(&self) -> NodeStats {
        self.inner.stats()
    }

    /// What the node is and did recently: its routing table by bucket, its store
    /// against its limits, its recent lookups and upkeep rounds. Never a stored value.
    pub fn status(&self) -> NodeStatus {
        self.inner.status()
    }

    /// `Ok` when the node is ready to serve: it runs, its store is open, it has joined
    /// the network (or had none to join) and knows at least one live peer.
    pub fn readiness(&self) -> Result<(), NotReady> {
        self.inner.not_ready().map_or(Ok(()), Err)
    }

    /// Records in the local store.
    pub fn stored_records(&self) -> usize {
        self.inner.store().len()
    }

    /// Whether this node holds an unexpired record of `key` in its own store.
    pub fn holds(&self, key: &Key) -> bool {
        matches!(
            self.inner.store().get(key, self.inner.unix_now()),
            Ok(Some(_))
        )
    }

    /// Stops accepting PUTs, lets those in flight finish (up to 10 s), then closes every
    /// connection and task.
    pub async fn shutdown(&self) {
        self.inner.puts.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, self.inner.puts.wait())
            .await
            .is_err()
        {
            tracing::warn!(parent: &self.inner.span, "PUTs still in flight at shutdown");
        }
        self.inner.close().await;
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.inner.shutdown.cancel();
    }
}
