//! The node: shared state, start-up, connection management and the answers to
//! peers' requests. Lookups, PUT and GET live in [`crate::ops`].

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use dht_id::{Key, NodeId};
use dht_routing::{Contact, InsertOutcome, RoutingConfig, RoutingTable};
use dht_storage::{MemoryStore, PutOutcome, Record, RecordStore, StoreError};
use dht_wire::{
    ErrorCode, Hello, PROTOCOL_VERSION, PeerFrame, PeerMessage, StoreStatus, WireContact,
    WireRecord,
};
use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, warn};

use crate::config::NodeConfig;
use crate::conn::{PeerConn, RETIRE_IDLE, WRITE_QUEUE};
use crate::error::{Error, RpcError};
use crate::handshake::{LocalHello, PeerFramed, Role, handshake};
use crate::transport::{Connection, Listener, TcpTransport, Transport};

/// The state shared by a node's handle and all its tasks.
pub(crate) struct Inner {
    pub(crate) id: NodeId,
    pub(crate) config: NodeConfig,
    transport: Arc<dyn Transport>,
    listen_addr: SocketAddr,
    hello: Hello,
    routing: Mutex<RoutingTable>,
    store: Mutex<Box<dyn RecordStore>>,
    peers: Mutex<HashMap<NodeId, Arc<PeerConn>>>,
    dial_locks: Mutex<HashMap<SocketAddr, Arc<tokio::sync::Mutex<()>>>>,
    pinging: Mutex<HashSet<NodeId>>,
    open_connections: AtomicUsize,
    next_conn_seq: AtomicU64,
    last_version: AtomicU64,
    pub(crate) shutdown: CancellationToken,
    /// Connection, accept and maintenance tasks.
    pub(crate) tasks: TaskTracker,
    /// PUTs in flight: shutdown waits for them.
    pub(crate) puts: TaskTracker,
    pub(crate) span: tracing::Span,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves consistent data behind (every
    // critical section is a single map or table operation), so poisoning is ignored.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Wall-clock UNIX time in seconds, for record expiry.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The monotonic clock the lookups run on (tokio's, so paused time drives it).
pub(crate) fn mono_now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

impl Inner {
    pub(crate) async fn start(
        config: NodeConfig,
        transport: Arc<dyn Transport>,
        store: Box<dyn RecordStore>,
    ) -> Result<(Arc<Inner>, Box<dyn Listener>), Error> {
        config.validate()?;
        let id = match config.node_id {
            Some(id) => id,
            None => node_id_from_hostkey(&config)?,
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
            pow_nonce: 0,
        };
        let routing = RoutingTable::new(
            id,
            RoutingConfig {
                k: config.k,
                replacement_cache: config.k,
            },
        );
        let span = tracing::info_span!("node", node = %id.short());
        let inner = Arc::new(Inner {
            id,
            transport,
            listen_addr,
            hello,
            routing: Mutex::new(routing),
            store: Mutex::new(store),
            peers: Mutex::new(HashMap::new()),
            dial_locks: Mutex::new(HashMap::new()),
            pinging: Mutex::new(HashSet::new()),
            open_connections: AtomicUsize::new(0),
            next_conn_seq: AtomicU64::new(1),
            last_version: AtomicU64::new(0),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            puts: TaskTracker::new(),
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
        lock(&self.store)
    }

    pub(crate) fn open_connections(&self) -> usize {
        self.open_connections.load(Ordering::Relaxed)
    }

    pub(crate) fn connected_peers(&self) -> usize {
        lock(&self.peers).len()
    }

    /// A version for a new record: the publisher's clock in microseconds, strictly
    /// increasing on this node.
    pub(crate) fn next_version(&self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
            .unwrap_or(0);
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

    /// Accepts inbound connections until shutdown.
    pub(crate) fn spawn_accept_loop(self: &Arc<Self>, mut listener: Box<dyn Listener>) {
        let inner = self.clone();
        self.tasks.spawn(
            async move {
                loop {
                    let accepted = tokio::select! {
                        accepted = listener.accept() => accepted,
                        () = inner.shutdown.cancelled() => break,
                    };
                    match accepted {
                        Ok(conn) => {
                            if inner.open_connections.load(Ordering::Relaxed)
                                >= inner.config.max_connections
                            {
                                debug!(remote = %conn.remote_addr, "refusing connection: at max_connections");
                                continue;
                            }
                            let inner2 = inner.clone();
                            inner.tasks.spawn(
                                async move { inner2.accept_one(conn).await }
                                    .instrument(inner.span.clone()),
                            );
                        }
                        Err(e) => {
                            warn!(error = %e, "accept failed");
                            // Usually out of file descriptors: give the node a moment.
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        }
                    }
                }
            }
            .instrument(self.span.clone()),
        );
    }

    async fn accept_one(self: Arc<Self>, conn: Connection) {
        let remote = conn.remote_addr;
        let local = LocalHello { hello: self.hello };
        match handshake(conn, Role::Acceptor, local, self.config.connect_timeout).await {
            Ok((framed, contact)) => {
                self.establish(framed, contact, contact.id);
            }
            Err(reason) => debug!(%remote, %reason, "inbound handshake refused"),
        }
    }

    /// The usable connection to `contact`, dialling it when there is none.
    pub(crate) async fn connection(
        self: &Arc<Self>,
        id: Option<NodeId>,
        addr: SocketAddr,
    ) -> Result<Arc<PeerConn>, RpcError> {
        if let Some(conn) = id.and_then(|id| self.usable_conn(&id)) {
            return Ok(conn);
        }
        if self.shutdown.is_cancelled() {
            return Err(RpcError::Closed);
        }
        // One dial per address at a time; the others wait and reuse its result.
        let dial_lock = lock(&self.dial_locks).entry(addr).or_default().clone();
        let result = {
            let _dialling = dial_lock.lock().await;
            match id.and_then(|id| self.usable_conn(&id)) {
                Some(conn) => Ok(conn),
                None => self.dial(id, addr).await,
            }
        };
        {
            let mut locks = lock(&self.dial_locks);
            // The map's reference and ours: nobody else waits on this lock.
            if Arc::strong_count(&dial_lock) <= 2 {
                locks.remove(&addr);
            }
        }
        result
    }

    fn usable_conn(&self, id: &NodeId) -> Option<Arc<PeerConn>> {
        lock(&self.peers).get(id).filter(|c| c.is_usable()).cloned()
    }

    async fn dial(
        self: &Arc<Self>,
        expected: Option<NodeId>,
        addr: SocketAddr,
    ) -> Result<Arc<PeerConn>, RpcError> {
        if expected == Some(self.id) || addr == self.listen_addr || addr == self.advertised_addr() {
            return Err(RpcError::Connect("that is this node".into()));
        }
        if self.open_connections.load(Ordering::Relaxed) >= self.config.max_connections {
            return Err(RpcError::Connect("at max_connections".into()));
        }
        let timeout = self.config.connect_timeout;
        let conn = tokio::time::timeout(timeout, self.transport.dial(addr, expected))
            .await
            .map_err(|_| RpcError::Connect("connect timed out".into()))?
            .map_err(|e| RpcError::Connect(e.to_string()))?;
        let local = LocalHello { hello: self.hello };
        let (framed, contact) = handshake(conn, Role::Dialer { addr, expected }, local, timeout)
            .await
            .map_err(RpcError::Connect)?;
        let ours = self.establish(framed, contact, self.id);
        // When the peer's simultaneous dial won the tie-break, use that one.
        Ok(self.usable_conn(&contact.id).unwrap_or(ours))
    }

    /// Registers an authenticated connection, starts its tasks and records the peer in
    /// the routing table.
    fn establish(
        self: &Arc<Self>,
        framed: PeerFramed,
        contact: Contact,
        dialer: NodeId,
    ) -> Arc<PeerConn> {
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let closed = self.shutdown.child_token();
        let seq = self.next_conn_seq.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(PeerConn::new(
            contact,
            dialer,
            seq,
            tx,
            self.config.max_pending_requests,
            closed,
        ));
        self.register(&conn);
        self.open_connections.fetch_add(1, Ordering::Relaxed);
        let (sink, stream) = framed.split();
        let span = tracing::debug_span!(parent: &self.span, "conn", peer = %contact.id.short(), addr = %contact.addr);
        self.tasks
            .spawn(write_loop(sink, rx, conn.closed.clone()).instrument(span.clone()));
        let inner = self.clone();
        let reader_conn = conn.clone();
        self.tasks.spawn(
            async move {
                inner.read_loop(stream, &reader_conn).await;
                reader_conn.closed.cancel();
                inner.open_connections.fetch_sub(1, Ordering::Relaxed);
                let mut peers = lock(&inner.peers);
                if peers
                    .get(&contact.id)
                    .is_some_and(|c| c.seq == reader_conn.seq)
                {
                    peers.remove(&contact.id);
                }
            }
            .instrument(span),
        );
        self.observe(contact);
        conn
    }

    /// Keeps one connection per peer. When both peers dialled each other at once, both
    /// keep the connection dialled by the smaller node id; a newer connection from the
    /// same dialler replaces the older one (the peer restarted or reconnected).
    fn register(&self, conn: &Arc<PeerConn>) {
        let id = conn.contact.id;
        let mut peers = lock(&self.peers);
        if let Some(existing) = peers.get(&id).filter(|c| !c.closed.is_cancelled()) {
            let keep_new = existing.dialer == conn.dialer || conn.dialer == self.id.min(id);
            if keep_new {
                existing.retire();
            } else {
                conn.retire();
                return;
            }
        }
        peers.insert(id, conn.clone());
    }

    async fn read_loop(
        self: &Arc<Self>,
        mut stream: futures::stream::SplitStream<PeerFramed>,
        conn: &Arc<PeerConn>,
    ) {
        loop {
            let idle_limit = conn.is_retired() && !conn.has_pending();
            let next = tokio::select! {
                next = stream.next() => next,
                () = conn.closed.cancelled() => return,
                () = conn.retire_notify.notified(), if !conn.is_retired() => continue,
                () = tokio::time::sleep(RETIRE_IDLE), if idle_limit => {
                    debug!("closing retired duplicate connection");
                    return;
                }
            };
            let frame = match next {
                Some(Ok(frame)) => frame,
                Some(Err(e)) => {
                    warn!(error = %e, "malformed frame from peer: closing the connection");
                    return;
                }
                None => return,
            };
            self.observe(conn.contact);
            if frame.is_response {
                conn.complete(frame.request_id, frame.message);
                continue;
            }
            let answer = self.answer(&conn.contact, frame.message);
            if conn.respond(frame.request_id, answer).await.is_err() {
                return;
            }
        }
    }

    /// The answer to one request of a peer.
    fn answer(&self, from: &Contact, request: PeerMessage) -> PeerMessage {
        match request {
            PeerMessage::Ping => PeerMessage::Pong,
            PeerMessage::FindNode { target } => PeerMessage::Nodes {
                contacts: self.closest_for(&target, from),
            },
            PeerMessage::FindValue { key } => {
                let found = self.store().get(&key, unix_now());
                match found {
                    Ok(Some(record)) => PeerMessage::Value {
                        record: to_wire(&record),
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
            PeerMessage::Store { record } => PeerMessage::StoreResult {
                status: self.store_from_peer(record),
            },
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

    /// Stores a record a peer sent. Its expiry is absolute; it is never extended past
    /// what our own max_ttl would allow, and the replication is clamped as for PUTs.
    fn store_from_peer(&self, record: WireRecord) -> StoreStatus {
        let now = unix_now();
        let latest = now.saturating_add(self.config.max_ttl.as_secs());
        let record = Record {
            key: record.key,
            value: record.value,
            expires_at: record.expires_at.min(latest),
            replication: self.config.clamp_replication(record.replication),
            version: record.version,
        };
        match self.store().put(record, now) {
            Ok(PutOutcome::Inserted | PutOutcome::Replaced | PutOutcome::Unchanged) => {
                StoreStatus::Stored
            }
            Ok(PutOutcome::KeptNewer) => StoreStatus::KeptNewer,
            Err(StoreError::Full { .. }) => StoreStatus::Full,
            Err(StoreError::ValueTooLarge { .. }) => StoreStatus::TooLarge,
            Err(StoreError::Expired) => StoreStatus::Expired,
            Err(e) => {
                warn!(error = %e, "refusing STORE");
                StoreStatus::Refused
            }
        }
    }

    /// Records that `contact` was heard from. When its bucket is full, the bucket's
    /// least-recently-seen contact is pinged (unless heard from recently) and evicted
    /// only if it does not answer.
    pub(crate) fn observe(self: &Arc<Self>, contact: Contact) {
        let now = mono_now();
        let outcome = self.routing().insert(contact, now);
        let InsertOutcome::Pending { oldest } = outcome else {
            return;
        };
        let fresh = self.routing().last_seen(&oldest.id).is_some_and(|seen| {
            now.saturating_duration_since(seen) < self.config.liveness_interval
        });
        if fresh || !lock(&self.pinging).insert(oldest.id) {
            return;
        }
        let inner = self.clone();
        self.tasks.spawn(
            async move {
                let alive = inner.ping(oldest).await.is_ok();
                if alive {
                    inner.routing().insert(oldest, mono_now());
                } else {
                    debug!(peer = %oldest.id.short(), "evicting contact that failed a ping");
                    inner.routing().remove(&oldest.id);
                }
                lock(&inner.pinging).remove(&oldest.id);
            }
            .instrument(self.span.clone()),
        );
    }

    /// Sends one request to `contact`, connecting first when needed.
    pub(crate) async fn rpc(
        self: &Arc<Self>,
        contact: Contact,
        message: PeerMessage,
    ) -> Result<PeerMessage, RpcError> {
        let conn = self.connection(Some(contact.id), contact.addr).await?;
        match conn.request(message, self.config.rpc_timeout).await? {
            PeerMessage::Error { code } => Err(RpcError::Unexpected(match code {
                ErrorCode::Overloaded => "peer overloaded",
                ErrorCode::UnexpectedMessage => "peer did not expect the request",
                _ => "peer error",
            })),
            answer => Ok(answer),
        }
    }

    pub(crate) async fn ping(self: &Arc<Self>, contact: Contact) -> Result<(), RpcError> {
        match self.rpc(contact, PeerMessage::Ping).await? {
            PeerMessage::Pong => Ok(()),
            _ => Err(RpcError::Unexpected("PING not answered with PONG")),
        }
    }

    /// Stops every task of the node.
    pub(crate) async fn close(&self) {
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        info!(parent: &self.span, "node stopped");
    }
}

async fn write_loop(
    mut sink: futures::stream::SplitSink<PeerFramed, PeerFrame>,
    mut rx: mpsc::Receiver<PeerFrame>,
    closed: CancellationToken,
) {
    loop {
        let frame = tokio::select! {
            frame = rx.recv() => frame,
            () = closed.cancelled() => break,
        };
        let Some(frame) = frame else { break };
        // Batch whatever else is queued into one flush.
        let mut result = sink.feed(frame).await;
        while result.is_ok() {
            match rx.try_recv() {
                Ok(frame) => result = sink.feed(frame).await,
                Err(_) => break,
            }
        }
        if let Err(e) = result.and(sink.flush().await) {
            debug!(error = %e, "write failed");
            break;
        }
    }
    closed.cancel();
    let _ = sink.close().await;
}

pub(crate) fn to_wire(record: &Record) -> WireRecord {
    WireRecord {
        key: record.key,
        value: record.value.clone(),
        expires_at: record.expires_at,
        version: record.version,
        replication: record.replication,
    }
}

pub(crate) fn from_wire(record: WireRecord) -> Record {
    Record {
        key: record.key,
        value: record.value,
        expires_at: record.expires_at,
        replication: record.replication,
        version: record.version,
    }
}

/// The node id: SHA-256 of the hostkey file when there is one, else random.
fn node_id_from_hostkey(config: &NodeConfig) -> Result<NodeId, Error> {
    match &config.hostkey {
        Some(path) if path.exists() => {
            let pem = std::fs::read(path).map_err(|source| Error::Io {
                what: format!("reading hostkey {}", path.display()),
                source,
            })?;
            Ok(Key::sha256(&pem))
        }
        _ => Ok(Key::random(&mut rand::thread_rng())),
    }
}

/// The default transport (TCP) and store (in memory, bounded by the config).
pub(crate) fn default_parts(config: &NodeConfig) -> (Arc<dyn Transport>, Box<dyn RecordStore>) {
    (
        Arc::new(TcpTransport),
        Box::new(MemoryStore::new(config.store_limits.clone())),
    )
}
