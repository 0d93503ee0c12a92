//! Connection management: accepting and dialling, the registry that keeps one
//! connection per peer, the connection slots that bound them, and each connection's
//! reader and writer tasks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use dht_id::NodeId;
use dht_routing::Contact;
use dht_wire::PeerFrame;
use futures::{SinkExt, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, warn};

use crate::conn::{PeerConn, RETIRE_IDLE, WRITE_QUEUE};
use crate::error::RpcError;
use crate::handshake::{PeerFramed, Role, handshake};
use crate::node::{Inner, lock};
use crate::transport::{Incoming, Listener};

/// How long a writer may take to close its stream gracefully.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

impl Inner {
    /// Accepts inbound connections until shutdown. Each takes a connection slot before
    /// its handshake; without a free slot it is closed at once.
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
                            let Ok(slot) = inner.conn_slots.clone().try_acquire_owned() else {
                                debug!(remote = %conn.remote_addr, "refusing connection: at max_connections");
                                continue;
                            };
                            let inner2 = inner.clone();
                            inner.tasks.spawn(
                                async move { inner2.accept_one(conn, slot).await }
                                    .instrument(inner.span.clone()),
                            );
                        }
                        Err(e) => {
                            warn!(error = %e, "accept failed");
                            // Usually out of file descriptors: give the node a moment.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            }
            .instrument(self.span.clone()),
        );
    }

    async fn accept_one(self: Arc<Self>, incoming: Incoming, slot: OwnedSemaphorePermit) {
        let remote = incoming.remote_addr;
        let timeout = self.config.connect_timeout;
        let work = async {
            let conn = incoming
                .upgrade
                .await
                .map_err(|e| format!("transport handshake: {e}"))?;
            handshake(
                conn,
                Role::Acceptor,
                self.hello,
                self.config.min_pow_difficulty,
                timeout,
            )
            .await
        };
        let shaken = tokio::select! {
            shaken = tokio::time::timeout(timeout, work) => {
                shaken.unwrap_or_else(|_| Err("handshake timed out".into()))
            }
            () = self.shutdown.cancelled() => return,
        };
        match shaken {
            Ok((framed, contact)) => {
                self.establish(framed, contact, contact.id, slot);
            }
            Err(reason) => debug!(%remote, %reason, "inbound connection refused"),
        }
    }

    /// The usable connection to the peer `id` at `addr`, dialling it when there is none.
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
        let dial_lock = DialLock::new(self, addr);
        let _dialling = dial_lock.lock.lock().await;
        if let Some(conn) = id.and_then(|id| self.usable_conn(&id)) {
            return Ok(conn);
        }
        tokio::select! {
            dialled = self.dial(id, addr) => dialled,
            () = self.shutdown.cancelled() => Err(RpcError::Closed),
        }
    }

    fn usable_conn(&self, id: &NodeId) -> Option<Arc<PeerConn>> {
        lock(&self.peers).get(id).filter(|c| c.is_usable()).cloned()
    }

    async fn dial(
        self: &Arc<Self>,
        expected: Option<NodeId>,
        addr: SocketAddr,
    ) -> Result<Arc<PeerConn>, RpcError> {
        if expected == Some(self.id) || addr == self.listen_addr() || addr == self.advertised_addr()
        {
            return Err(RpcError::Connect("that is this node".into()));
        }
        let timeout = self.config.connect_timeout;
        let slot = self.dial_slot(timeout).await?;
        let conn = tokio::time::timeout(timeout, self.transport.dial(addr, expected))
            .await
            .map_err(|_| RpcError::Connect("connect timed out".into()))?
            .map_err(|e| RpcError::Connect(e.to_string()))?;
        let (framed, contact) = handshake(
            conn,
            Role::Dialer { addr, expected },
            self.hello,
            self.config.min_pow_difficulty,
            timeout,
        )
        .await
        .map_err(RpcError::Connect)?;
        let ours = self.establish(framed, contact, self.id, slot);
        // When the peer's simultaneous dial won the tie-break, use that one.
        Ok(self.usable_conn(&contact.id).unwrap_or(ours))
    }

    /// A connection slot for a dial. When every slot is taken, the least recently used
    /// connection without requests in flight is closed to make room.
    async fn dial_slot(&self, timeout: Duration) -> Result<OwnedSemaphorePermit, RpcError> {
        if let Ok(slot) = self.conn_slots.clone().try_acquire_owned() {
            return Ok(slot);
        }
        let idle = lock(&self.peers)
            .values()
            .filter(|c| !c.has_pending())
            .min_by_key(|c| c.last_used())
            .cloned();
        let Some(idle) = idle else {
            return Err(RpcError::LocalLimit);
        };
        debug!(peer = %idle.contact.id.short(), "closing the least recently used connection to make room");
        idle.closed.cancel();
        match tokio::time::timeout(timeout, self.conn_slots.clone().acquire_owned()).await {
            Ok(Ok(slot)) => Ok(slot),
            _ => Err(RpcError::LocalLimit),
        }
    }

    /// Registers an authenticated connection, starts its tasks and records the peer in
    /// the routing table. The slot is held until the connection ends.
    fn establish(
        self: &Arc<Self>,
        framed: PeerFramed,
        contact: Contact,
        dialer: NodeId,
        slot: OwnedSemaphorePermit,
    ) -> Arc<PeerConn> {
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let seq = self.next_conn_seq();
        let conn = Arc::new(PeerConn::new(
            contact,
            dialer,
            seq,
            tx,
            self.config.max_pending_requests,
            self.shutdown.child_token(),
        ));
        self.register(&conn);
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
                reader_conn.fail_pending();
                {
                    let mut peers = lock(&inner.peers);
                    if peers
                        .get(&contact.id)
                        .is_some_and(|c| c.seq == reader_conn.seq)
                    {
                        peers.remove(&contact.id);
                    }
                }
                drop(slot);
            }
            .instrument(span),
        );
        self.observe(contact);
        conn
    }

    /// Keeps one connection per peer. When both peers dialled each other at once (the
    /// older connection is younger than the connect timeout), both keep the connection
    /// dialled by the smaller node id. Otherwise the newer connection wins: the peer
    /// reconnected because it lost the old one, which may be dead without our knowing.
    fn register(&self, conn: &Arc<PeerConn>) {
        let id = conn.contact.id;
        let mut peers = lock(&self.peers);
        if let Some(existing) = peers.get(&id).filter(|c| !c.closed.is_cancelled()) {
            let simultaneous = existing.dialer != conn.dialer
                && existing.established.elapsed() < self.config.connect_timeout;
            let keep_new = !simultaneous || conn.dialer == self.id.min(id);
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
            let next = if conn.is_retired() {
                // A retired duplicate lives until it has been idle for a while.
                tokio::select! {
                    next = stream.next() => next,
                    () = conn.closed.cancelled() => return,
                    () = tokio::time::sleep(RETIRE_IDLE) => {
                        if conn.has_pending() {
                            continue;
                        }
                        debug!("closing retired duplicate connection");
                        return;
                    }
                }
            } else {
                tokio::select! {
                    next = stream.next() => next,
                    () = conn.closed.cancelled() => return,
                    () = conn.retired() => continue,
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
            conn.touch();
            self.observe(conn.contact);
            if frame.is_response {
                conn.complete(frame.request_id, frame.message);
                continue;
            }
            let answer = self.answer(&conn.contact, frame.message);
            if let Err(e) = conn
                .respond(frame.request_id, answer, self.config.rpc_timeout)
                .await
            {
                debug!(error = %e, "cannot answer the peer: closing the connection");
                return;
            }
        }
    }
}

/// Writes queued frames, batching whatever is queued into one flush, until the queue
/// closes, a write fails or the connection is closed (which also interrupts a write
/// blocked on a peer that does not read).
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
        let write = async {
            sink.feed(frame).await?;
            while let Ok(frame) = rx.try_recv() {
                sink.feed(frame).await?;
            }
            sink.flush().await
        };
        let written = tokio::select! {
            written = write => written,
            () = closed.cancelled() => break,
        };
        if let Err(e) = written {
            debug!(error = %e, "write failed");
            break;
        }
    }
    closed.cancel();
    let _ = tokio::time::timeout(CLOSE_GRACE, sink.close()).await;
}

/// One dial per address at a time: the lock of `addr`, removed from the node's map
/// when its last user drops it (also when a dialling future is cancelled).
struct DialLock<'a> {
    inner: &'a Inner,
    addr: SocketAddr,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl<'a> DialLock<'a> {
    fn new(inner: &'a Inner, addr: SocketAddr) -> Self {
        let lock = lock(&inner.dial_locks).entry(addr).or_default().clone();
        DialLock { inner, addr, lock }
    }
}

impl Drop for DialLock<'_> {
    fn drop(&mut self) {
        let mut locks = lock(&self.inner.dial_locks);
        // The map's reference and ours: nobody else waits on this lock. Clones are
        // taken under the map's mutex, which we hold, so the count cannot rise now.
        if Arc::strong_count(&self.lock) <= 2 {
            locks.remove(&self.addr);
        }
    }
}
