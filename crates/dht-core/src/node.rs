//! The node: shared state, start-up and the answers to peers' requests. Connections
//! live in [`crate::peers`], requests to peers in [`crate::rpc`], lookups, PUT and GET
//! in [`crate::ops`], the routing table's bookkeeping in [`crate::contacts`].

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use dht_id::{Key, NodeId};
use dht_routing::{Contact, Diversity, RoutingConfig, RoutingTable};
use dht_security::HostKey;
use dht_security::limits::{self, IpGroup};
use dht_storage::{
    DurableStore, MemoryStore, Origin, PutOutcome, Record, RecordStore, StorageKey, StoreError,
};
use dht_wire::{
    ErrorCode, Hello, PROTOCOL_VERSION, PeerMessage, StoreStatus, WireContact, WireRecord,
};
use rand::Rng;
use rand::rngs::StdRng;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::activity::Activity;
use crate::config::{NodeConfig, StorageBackend};
use crate::conn::PeerConn;
use crate::env::{Clock, Environment};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::serve::Limiters;
use crate::stats::{Counters, NodeStats};
use crate::store::Store;
use crate::tls::TlsTransport;
use crate::transport::{Listener, TcpTransport, Transport};

/// The state shared by a node's handle and all its tasks.
pub(crate) struct Inner {
    pub(crate) id: NodeId,
    pub(crate) config: NodeConfig,
    pub(crate) transport: Arc<dyn Transport>,
    listen_addr: SocketAddr,
    routing: Mutex<RoutingTable>,
    /// The records, with their writer thread.
    pub(crate) store: Store,
    /// The connection in use for each peer.
    pub(crate) peers: Mutex<HashMap<NodeId, Arc<PeerConn>>>,
    /// One dial per address at a time.
    pub(crate) dial_locks: Mutex<HashMap<SocketAddr, Arc<tokio::sync::Mutex<()>>>>,
    /// One permit per open connection (including handshakes): `max_connections`.
    pub(crate) conn_slots: Arc<Semaphore>,
    /// Handshakes admitted while every slot is taken (see `admit_inbound`).
    pub(crate) handshake_reserve: Arc<Semaphore>,
    pub(crate) hello: Hello,
    /// Inbound connections per source IP (for `max_connections_per_ip`).
    pub(crate) ip_conns: Arc<Mutex<HashMap<IpAddr, usize>>>,
    /// Unfinished inbound handshakes (`admission.rs`).
    pub(crate) handshakes: Arc<Mutex<crate::admission::Handshakes>>,
    /// Request rates per peer and per IP.
    pub(crate) limiters: Mutex<Limiters>,
    /// How often each defence acted.
    pub(crate) counters: Counters,
    /// Prometheus metrics updated as requests, lookups, GETs and PUTs finish.
    pub(crate) metrics: Metrics,
    /// Recent lookups and upkeep rounds, and whether the node has joined.
    pub(crate) activity: Activity,
    pub(crate) pinging: Mutex<HashSet<NodeId>>,
    /// Places for newer copies sent back to senders of older ones (`repair.rs`).
    pub(crate) sending_back: Arc<tokio::sync::Semaphore>,
    /// Places for read repairs running at once (`repair.rs`).
    pub(crate) repairing: Arc<tokio::sync::Semaphore>,
    /// Places for hand-offs sending at once, and how many wait for one (`handoff.rs`).
    pub(crate) handoffs: Arc<tokio::sync::Semaphore>,
    pub(crate) handoffs_waiting: AtomicUsize,
    /// Contacts saved before the last stop, for rejoining when no bootstrap peer answers.
    pub(crate) saved_contacts: Mutex<Vec<Contact>>,
    /// Contacts removed for not answering, pinged with backoff (`rejoin.rs`).
    pub(crate) maybe_back: Mutex<crate::rejoin::MaybeBack>,
    /// When each record was last stored here by a peer: replication skips records
    /// received within the replicate interval (the Kademlia paper's optimisation: the
    /// sender replicates them). At most twice the records held (see `Received`).
    pub(crate) received: Mutex<crate::received::Received>,
    /// Failed pings in a row of routing-table contacts (see `record_ping`).
    pub(crate) ping_failures: Mutex<HashMap<NodeId, u32>>,
    /// How long peers take to answer (a GET's per-peer timeout).
    pub(crate) answer_times: crate::answer_times::AnswerTimes,
    next_conn_seq: AtomicU64,
    last_version: AtomicU64,
    pub(crate) shutdown: CancellationToken,
    /// Wall-clock time (record versions and expiry), from the node's [`Environment`].
    clock: Arc<dyn Clock>,
    /// Answers given instead of the node's own (simulations of hostile nodes).
    responder: Option<Arc<crate::env::Responder>>,
    /// The node's random numbers (refresh targets, jitter), from its [`Environment`].
    rng: Mutex<StdRng>,
    /// Connection, accept and maintenance tasks.
    pub(crate) tasks: TaskTracker,
    /// PUTs in flight: shutdown waits for them.
    pub(crate) puts: TaskTracker,
    /// One per PUT whose network part (its lookup and STOREs) runs: [`PUTS_IN_FLIGHT`].
    pub(crate) put_slots: Arc<Semaphore>,
    pub(crate) span: tracing::Span,
}

/// PUTs whose network part runs at once. A PUT beyond waits for a slot before it
/// starts (and the API server then stops reading its client): the lookups and STOREs of
/// PUTs accepted faster than the network takes them would otherwise pile up without
/// bound, and push the peers past their rate limits.
pub const PUTS_IN_FLIGHT: usize = 256;

/// Handshakes that may run while every connection slot is taken.
pub(crate) const HANDSHAKE_RESERVE: usize = 64;

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves consistent data behind (every
    // critical section is a single map or table operation), so poisoning is ignored.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// How far ahead of our clock a record's version may be (nodes' clocks differ).
pub(crate) const MAX_VERSION_SKEW: std::time::Duration = std::time::Duration::from_secs(600);

/// The monotonic clock the lookups run on (tokio's, so paused time drives it).
pub(crate) fn mono_now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

impl Inner {
    /// `store: None` opens the store the configuration names (`NodeConfig::storage`).
    pub(crate) async fn start(
        config: NodeConfig,
        transport: Arc<dyn Transport>,
        store: Option<Box<dyn RecordStore>>,
        env: Environment,
    ) -> Result<(Arc<Inner>, Box<dyn Listener>), Error> {
        config.validate()?;
        let mut rng = env.rng();
        let mut draws = crate::identity::Draws {
            key_seed: env.is_seeded().then(|| rng.r#gen()),
            pow_start: rng.r#gen(),
        };
        if let Some((key_seed, nonce)) = env.identity {
            draws.key_seed = Some(key_seed);
            draws.pow_start = nonce;
        }
        let identity = crate::identity::load(&config, draws).await?;
        let id = identity.id;
        let store = match store {
            Some(store) => store,
            None => {
                open_store(
                    &config,
                    &identity.host,
                    crate::env::secs(env.clock.unix_micros()),
                )
                .await?
            }
        };
        let every_commit = config.storage.sync_interval().is_none();
        // Reading the saved contacts is file IO: off the async workers (a store without
        // files answers at once, and on simulated time must not wait for a thread).
        let prepare = move |mut store: Box<dyn RecordStore>| {
            let synced = store.set_sync_every_commit(every_commit);
            let saved = store.load_contacts();
            (store, synced, saved)
        };
        let (store, synced, saved) = if store.does_io() {
            tokio::task::spawn_blocking(move || prepare(store))
                .await
                .map_err(|e| Error::Store(StoreError::Backend(format!("store task failed: {e}"))))?
        } else {
            prepare(store)
        };
        synced.map_err(Error::Store)?;
        let saved_contacts = match saved {
            Ok(Some(blob)) => crate::contacts::decode_contacts(&blob, id),
            Ok(None) => Vec::new(),
            Err(e) => {
                warn!(error = %e, "saved contacts unreadable");
                Vec::new()
            }
        };
        // Every peer connection is mutual TLS, whatever carries the bytes, unless the
        // transport is a simulated network that proves the peers' keys itself.
        let transport: Arc<dyn Transport> = if transport.authenticates(&identity.host) {
            transport
        } else {
            Arc::new(TlsTransport::new(transport, &identity.host)?)
        };
        let listener = transport
            .listen(config.p2p_address)
            .await
            .map_err(|source| Error::Io {
                what: format!("binding p2p_address {}", config.p2p_address),
                source,
            })?;
        let listen_addr = listener.local_addr();
        let advertise = config.advertise_address.unwrap_or(listen_addr);
        let hello = Hello {
            version: PROTOCOL_VERSION,
            network_id: config.network_id,
            node_id: id,
            listen_addr: advertise,
            pow_nonce: identity.nonce,
        };
        let routing = RoutingTable::new(
            id,
            RoutingConfig {
                k: config.k,
                wide_buckets: config.wide_buckets,
                replacement_cache: config.k,
                diversity: Some(Diversity {
                    per_bucket: config.diversity.0,
                    per_table: config.diversity.1,
                    group: if config.limit_local_addresses {
                        group_of_any
                    } else {
                        group_of_public
                    },
                }),
            },
        );
        let span = tracing::info_span!("node", node = %id.short());
        let inner = Arc::new(Inner {
            id,
            transport,
            listen_addr,
            hello,
            routing: Mutex::new(routing),
            store: Store::with_clock(store, env.clock.clone()).map_err(|source| Error::Io {
                what: "starting the store writer thread".into(),
                source,
            })?,
            peers: Mutex::new(HashMap::new()),
            dial_locks: Mutex::new(HashMap::new()),
            pinging: Mutex::new(HashSet::new()),
            sending_back: Arc::new(tokio::sync::Semaphore::new(
                crate::repair::SENT_BACK_AT_ONCE,
            )),
            repairing: Arc::new(tokio::sync::Semaphore::new(crate::repair::REPAIRS_AT_ONCE)),
            handoffs: Arc::new(tokio::sync::Semaphore::new(
                crate::handoff::HANDOFFS_AT_ONCE,
            )),
            handoffs_waiting: AtomicUsize::new(0),
            saved_contacts: Mutex::new(saved_contacts),
            maybe_back: Mutex::new(crate::rejoin::MaybeBack::default()),
            received: Mutex::new(crate::received::Received::default()),
            ping_failures: Mutex::new(HashMap::new()),
            answer_times: Default::default(),
            conn_slots: Arc::new(Semaphore::new(config.max_connections)),
            handshake_reserve: Arc::new(Semaphore::new(HANDSHAKE_RESERVE)),
            ip_conns: Arc::new(Mutex::new(HashMap::new())),
            handshakes: Arc::new(Mutex::new(crate::admission::Handshakes::default())),
            limiters: Mutex::new(Limiters::new(config.peer_rate, config.ip_rate)),
            counters: Counters::default(),
            metrics: Metrics::default(),
            activity: Activity::new(mono_now()),
            next_conn_seq: AtomicU64::new(1),
            last_version: AtomicU64::new(0),
            shutdown: CancellationToken::new(),
            clock: env.clock.clone(),
            responder: env.responder.clone(),
            rng: Mutex::new(rng),
            tasks: TaskTracker::new(),
            puts: TaskTracker::new(),
            put_slots: Arc::new(Semaphore::new(PUTS_IN_FLIGHT)),
            span,
            config,
        });
        Ok((inner, listener))
    }

    pub(crate) fn listen_addr(&self) -> SocketAddr {
        self.listen_addr
    }

    pub(crate) fn advertised_addr(&self) -> SocketAddr {
        self.hello.listen_addr
    }

    pub(crate) fn routing(&self) -> MutexGuard<'_, RoutingTable> {
        lock(&self.routing)
    }

    pub(crate) fn store(&self) -> MutexGuard<'_, Box<dyn RecordStore>> {
        self.store.lock()
    }

    pub(crate) fn open_connections(&self) -> usize {
        self.config
            .max_connections
            .saturating_sub(self.conn_slots.available_permits())
    }

    pub(crate) fn next_conn_seq(&self) -> u64 {
        self.next_conn_seq.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn connected_peers(&self) -> usize {
        lock(&self.peers).len()
    }

    pub(crate) fn stats(&self) -> NodeStats {
        let (stored_records, stored_bytes) = {
            let store = self.store();
            (store.len(), store.bytes())
        };
        NodeStats {
            open_connections: self.open_connections(),
            connected_peers: self.connected_peers(),
            routing_table_len: self.routing().len(),
            stored_records,
            stored_bytes,
            ..NodeStats::from_counters(&self.counters)
        }
    }

    /// Wall-clock UNIX time in seconds, for record expiry.
    pub(crate) fn unix_now(&self) -> u64 {
        crate::env::secs(self.clock.unix_micros())
    }

    /// Wall-clock UNIX time in microseconds, for record versions.
    pub(crate) fn unix_micros(&self) -> u64 {
        self.clock.unix_micros()
    }

    /// Runs `draw` with the node's random number generator.
    pub(crate) fn with_rng<T>(&self, draw: impl FnOnce(&mut StdRng) -> T) -> T {
        draw(&mut lock(&self.rng))
    }

    /// A version for a new record: the publisher's clock in microseconds, strictly
    /// increasing on this node.
    pub(crate) fn next_version(&self) -> u64 {
        let now = self.unix_micros();
        let mut last = self.last_version.load(Ordering::Relaxed);
        loop {
            let next = now.max(last.saturating_add(1));
            match self.last_version.compare_exchange_weak(
                last,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return next,
                Err(actual) => last = actual,
            }
        }
    }

    /// The answer to one request of a peer.
    pub(crate) fn answer(&self, from: &Contact, request: PeerMessage) -> PeerMessage {
        if let Some(answer) = self.responder.as_ref().and_then(|r| r(&request)) {
            return answer;
        }
        match request {
            PeerMessage::Ping => PeerMessage::Pong,
            PeerMessage::FindNode { target } => PeerMessage::Nodes {
                contacts: self.closest_for(&target, from),
            },
            PeerMessage::FindValue { key } => {
                let now = self.unix_now();
                match self.store().get(&key, now) {
                    Ok(Some(record)) => PeerMessage::Value {
                        record: to_wire(&record, now),
                    },
                    Ok(None) => PeerMessage::Nodes {
                        contacts: self.closest_for(&key, from),
                    },
                    Err(e) => {
                        warn!(error = %e, "store read failed");
                        PeerMessage::Error {
                            code: ErrorCode::Internal,
                        }
                    }
                }
            }
            // STOREs and REPLICATEs are answered once committed, by `store_from_peer`
            // (see read_loop).
            other => {
                debug!(message = other.name(), "unexpected request");
                PeerMessage::Error {
                    code: ErrorCode::UnexpectedMessage,
                }
            }
        }
    }

    /// Up to k contacts closest to `target`, leaving out the peer that asks.
    fn closest_for(&self, target: &Key, asker: &Contact) -> Vec<WireContact> {
        let k = self.config.k;
        self.routing()
            .closest(target, k + 1)
            .into_iter()
            .filter(|c| c.id != asker.id)
            .take(k)
            .map(|c| WireContact {
                id: c.id,
                addr: c.addr,
            })
            .collect()
    }

    /// A record that came from a peer at `now`, made safe to keep: it lives what its
    /// lifetime on the wire says from now, never longer than our own max_ttl, and its
    /// replication is clamped as for PUTs. No clock but ours enters its expiry.
    ///
    /// A version (its publisher's clock in microseconds) more than
    /// [`MAX_VERSION_SKEW`] ahead of our clock is refused: a peer could otherwise pin a
    /// key for ever with a version no later PUT can beat.
    pub(crate) fn accept_remote(&self, record: WireRecord, now: u64) -> Option<Record> {
        let latest_version = self
            .unix_micros()
            .saturating_add(MAX_VERSION_SKEW.as_micros() as u64);
        if record.version > latest_version {
            return None;
        }
        let mut record = from_wire(record, now);
        record.expires_at = record
            .expires_at
            .min(now.saturating_add(self.config.max_ttl.as_secs()));
        record.replication = self.config.clamp_replication(record.replication);
        Some(record)
    }

    /// Whether this node would choose `from` as a replica of `record` beside itself:
    /// this node is among the record's `r` closest nodes it knows (it should hold the
    /// record), and so is `from`. A REPLICATE is accounted as replication only then; the
    /// sender picks the key, and one that picks keys next to its own id is among their
    /// closest nodes, but this node is not, unless it is a neighbour of that id too.
    fn would_replicate_with(&self, record: &WireRecord, from: &Contact) -> bool {
        let r = usize::from(self.config.clamp_replication(record.replication));
        let routing = self.routing();
        // This node and the r - 1 closest contacts are the r replicas it would choose.
        routing.count_closer_than_local(&record.key) < r
            && routing
                .closest(&record.key, r.saturating_sub(1))
                .iter()
                .any(|c| c.id == from.id)
    }

    /// Stores a record a peer sent (see [`Inner::accept_remote`]), charged to that
    /// peer's storage quota; a REPLICATE (`replication`) from a peer this node would
    /// choose as a replica of the record beside itself ([`Inner::would_replicate_with`])
    /// is accounted as replication, whose share of the store is larger. Anyone else's
    /// REPLICATE counts as a STORE.
    pub(crate) async fn store_from_peer(
        self: &Arc<Self>,
        from: &Contact,
        record: WireRecord,
        replication: bool,
    ) -> StoreStatus {
        let now = self.unix_now();
        let origin = if replication && self.would_replicate_with(&record, from) {
            Origin::Replication(from.id)
        } else {
            Origin::Peer(from.id)
        };
        let Some(record) = self.accept_remote(record, now) else {
            debug!(peer = %from.id.short(), "refusing STORE with a version from the future");
            return StoreStatus::Refused;
        };
        let key = record.key;
        match self.store.put(record, origin).await {
            Ok(PutOutcome::Inserted | PutOutcome::Replaced | PutOutcome::Unchanged) => {
                let held = |key: &Key| self.store().get(key, now).is_ok_and(|r| r.is_some());
                lock(&self.received).note(key, mono_now(), self.config.replicate_interval, held);
                StoreStatus::Stored
            }
            Ok(PutOutcome::KeptNewer) => {
                if let Ok(Some(newer)) = self.store().get(&key, now) {
                    self.send_newer_back(*from, newer);
                }
                StoreStatus::KeptNewer
            }
            Err(StoreError::Full { .. }) => StoreStatus::Full,
            Err(StoreError::ValueTooLarge { .. }) => StoreStatus::TooLarge,
            Err(StoreError::Expired) => StoreStatus::Expired,
            Err(StoreError::QuotaExceeded { .. }) => {
                Counters::bump(&self.counters.stores_refused_quota);
                StoreStatus::Refused
            }
            Err(e) => {
                warn!(error = %e, "refusing STORE");
                StoreStatus::Refused
            }
        }
    }

    /// Stops every task of the node.
    pub(crate) async fn close(&self) {
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        self.save_contacts().await;
        self.store.close().await;
        info!(parent: &self.span, "node stopped");
    }
}

/// A record received at `now` (UNIX seconds, this node's clock): its lifetime on the
/// wire counts from now. Callers cap it ([`Inner::accept_remote`]).
fn from_wire(record: WireRecord, now: u64) -> Record {
    Record {
        key: record.key,
        value: record.value,
        expires_at: now.saturating_add(record.lifetime),
        replication: record.replication,
        version: record.version,
    }
}

/// A record as sent at `now` (UNIX seconds, this node's clock): with what is left of
/// its lifetime, so that the receiver's clock, however far from ours, gives it the same
/// time to live.
pub(crate) fn to_wire(record: &Record, now: u64) -> WireRecord {
    WireRecord {
        key: record.key,
        value: record.value.clone(),
        lifetime: record.expires_at.saturating_sub(now),
        version: record.version,
        replication: record.replication,
    }
}

/// The diversity group of any address: its IPv4 /24 or IPv6 /48.
fn group_of_any(ip: IpAddr) -> Option<u64> {
    let mut bytes = [0u8; 8];
    match limits::ip_group(ip) {
        IpGroup::V4(prefix) => bytes[1..4].copy_from_slice(&prefix),
        IpGroup::V6(prefix) => {
            bytes[0] = 6;
            bytes[2..8].copy_from_slice(&prefix);
        }
    }
    Some(u64::from_be_bytes(bytes))
}

/// As [`group_of_any`], with loopback and private addresses exempt.
fn group_of_public(ip: IpAddr) -> Option<u64> {
    if limits::is_local(ip) {
        None
    } else {
        group_of_any(ip)
    }
}

/// The default transport (TCP) and store (in memory, bounded by the config).
/// The store `config.storage` names: in memory, or the durable store in its data
/// folder (opened off the async workers; a file that cannot be opened is moved aside
/// and reported).
async fn open_store(
    config: &NodeConfig,
    host: &HostKey,
    now: u64,
) -> Result<Box<dyn RecordStore>, Error> {
    let limits = config.store_limits.clone();
    let StorageBackend::Durable { data_dir, key, .. } = &config.storage else {
        return Ok(Box::new(MemoryStore::new(limits)));
    };
    let (key, former) = match key {
        Some(bytes) => (StorageKey::from_bytes(*bytes), None),
        None if config.hostkey.is_none() => {
            return Err(Error::Config {
                key: "storage.storage_key",
                reason: NO_KEY_MATERIAL.into(),
            });
        }
        // Secret, stable and per node: the host key's private key material.
        None => (storage_key_of(host), Some(former_storage_key_of(host))),
    };
    let dir = data_dir.clone();
    let opened = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir)
            .map_err(|e| StoreError::Backend(format!("creating {}: {e}", dir.display())))?;
        match former {
            Some(former) => DurableStore::open_rekeying(&dir, key, former, limits, now),
            None => DurableStore::open_at(&dir, key, limits, now),
        }
    })
    .await
    .map_err(|e| Error::Store(StoreError::Backend(format!("store task failed: {e}"))))?;
    let (store, report) = opened.map_err(Error::Store)?;
    if let Some(moved) = &report.moved_aside {
        warn!(
            moved_to = %moved.display(),
            reason = report.moved_aside_reason.as_deref().unwrap_or("unknown"),
            "the record database could not be used: moved aside, starting empty"
        );
    }
    if report.rekeyed > 0 {
        info!(
            entries = report.rekeyed,
            "record database re-sealed under the storage key derived from the host key's DER"
        );
    }
    if report.corrupt_skipped > 0 {
        warn!(
            entries = report.corrupt_skipped,
            "damaged record entries skipped"
        );
    }
    info!(
        data_dir = %data_dir.display(),
        records = report.records,
        expired_purged = report.expired_purged,
        migrated_from_redb = report.migrated,
        "record store opened"
    );
    Ok(Box::new(store))
}

/// Why a durable store cannot open without `[storage] storage_key` or a `hostkey`.
const NO_KEY_MATERIAL: &str = "a durable store needs a stable storage key, and this node \
     has neither `[storage] storage_key` nor a `hostkey` file to derive one from \
     (without a host key file the node makes a new identity at every start, so its \
     records could never be read again): set `hostkey` or `storage_key`";

/// The storage key of a durable store whose configuration gives none: HKDF-SHA256 of the
/// host key's private key as PKCS#8 DER (docs/STORAGE.md).
pub fn storage_key_of(host: &HostKey) -> StorageKey {
    StorageKey::derive(host.pkcs8_der())
}

/// The storage key earlier versions derived, from the PEM text of the host key rather
/// than its DER: a store sealed under it is re-sealed at open.
fn former_storage_key_of(host: &HostKey) -> StorageKey {
    StorageKey::derive(host.to_pem().as_bytes())
}

/// The default transport: TCP.
pub(crate) fn default_transport() -> Arc<dyn Transport> {
    Arc::new(TcpTransport)
}
