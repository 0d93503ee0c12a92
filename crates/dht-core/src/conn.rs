//! One established, authenticated connection to a peer: request/response
//! multiplexing over a shared framed stream, in both directions.
//!
//! Each connection runs a reader task (answers the peer's requests, routes answers to
//! our waiting requests) and a writer task (drains a bounded queue of frames). Both
//! sides number their own requests; the response flag tells a request of the peer
//! from an answer to ours, so ids never collide.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use dht_id::NodeId;
use dht_routing::Contact;
use dht_wire::{PeerFrame, PeerMessage};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::RpcError;

/// Frames queued for the writer of one connection.
pub(crate) const WRITE_QUEUE: usize = 256;

/// A frame in a writer's queue, boxed: the queue allocates its slots 32 at a time for
/// as long as the connection lives, and 32 inline frames (112 bytes each) were a good
/// part of what an idle connection costs.
pub(crate) type QueuedFrame = Box<PeerFrame>;
/// A connection retired by the duplicate tie-break closes after this long without traffic.
pub(crate) const RETIRE_IDLE: Duration = Duration::from_secs(2);

type Pending = HashMap<u64, oneshot::Sender<PeerMessage>>;

/// Our side of one connection.
pub(crate) struct PeerConn {
    /// The peer, with the address it can be reached at.
    pub(crate) contact: Contact,
    /// Who dialled: used by the tie-break between two connections of one pair.
    pub(crate) dialer: NodeId,
    /// The IP the connection comes from (for per-IP limits).
    pub(crate) remote_ip: IpAddr,
    /// Unique per node, to tell two connections to the same peer apart.
    pub(crate) seq: u64,
    /// When the handshake completed.
    pub(crate) established: Instant,
    tx: mpsc::Sender<QueuedFrame>,
    pending: Mutex<Pending>,
    next_request: AtomicU64,
    max_pending: usize,
    /// Milliseconds after `established` of the last frame sent or received.
    last_used_ms: AtomicU64,
    /// Microseconds after `established` of the last frame received.
    last_received_us: AtomicU64,
    /// Cancelled when the connection is gone (either task ended, or node shutdown).
    pub(crate) closed: CancellationToken,
    retired: AtomicBool,
    /// Milliseconds after `established` when the connection was retired.
    retired_at_ms: AtomicU64,
    retire_notify: Notify,
    /// Wakes the read loop to recompute the connection's idle limit (its contact left
    /// the warm part of the routing table).
    recheck_notify: Notify,
    /// Why the peer's HELLO was refused, on a connection whose requests went out before
    /// it came: what those requests fail with.
    refused: OnceLock<String>,
    /// Whether the peer has proven the id in `contact` (false only while the HELLO of a
    /// connection we dialled with its first requests right behind ours is awaited).
    proven: AtomicBool,
}

impl PeerConn {
    pub(crate) fn new(
        contact: Contact,
        dialer: NodeId,
        remote_ip: IpAddr,
        seq: u64,
        tx: mpsc::Sender<QueuedFrame>,
        max_pending: usize,
        closed: CancellationToken,
    ) -> Self {
        PeerConn {
            contact,
            dialer,
            remote_ip,
            seq,
            established: Instant::now(),
            tx,
            pending: Mutex::new(HashMap::new()),
            // Id 0 is the HELLO exchange.
            next_request: AtomicU64::new(1),
            max_pending,
            last_used_ms: AtomicU64::new(0),
            last_received_us: AtomicU64::new(0),
            closed,
            retired: AtomicBool::new(false),
            retired_at_ms: AtomicU64::new(0),
            retire_notify: Notify::new(),
            recheck_notify: Notify::new(),
            refused: OnceLock::new(),
            proven: AtomicBool::new(true),
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True while new requests may use this connection.
    pub(crate) fn is_usable(&self) -> bool {
        !self.closed.is_cancelled() && !self.retired.load(Ordering::Acquire)
    }

    /// The connection of a dial whose peer has still to prove its id with its HELLO.
    pub(crate) fn awaiting_hello(self) -> Self {
        self.proven.store(false, Ordering::Release);
        self
    }

    /// Whether the peer has proven its id (see [`PeerConn::prove`]).
    pub(crate) fn is_proven(&self) -> bool {
        self.proven.load(Ordering::Acquire)
    }

    /// Records that the peer's HELLO proved the id the connection was dialled for.
    pub(crate) fn prove(&self) {
        self.proven.store(true, Ordering::Release);
    }

    /// Whether a request to the peer `contact.id` at `addr` may go over this
    /// connection: a proven peer is that node wherever it was reached; one still to
    /// prove itself only stands for the address it was dialled at.
    pub(crate) fn serves(&self, addr: SocketAddr) -> bool {
        self.is_usable() && (self.is_proven() || self.contact.addr == addr)
    }

    pub(crate) fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    /// Takes the connection out of use: it lives on until idle, so answers in flight
    /// on it still arrive.
    pub(crate) fn retire(&self) {
        let ms = u64::try_from(self.established.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.retired_at_ms.store(ms, Ordering::Relaxed);
        self.retired.store(true, Ordering::Release);
        // notify_one keeps a permit when nobody waits yet: the wakeup is never lost.
        self.retire_notify.notify_one();
    }

    /// How long ago the connection was retired; `None` while in use.
    pub(crate) fn retired_for(&self) -> Option<Duration> {
        self.is_retired().then(|| {
            let at = self.established
                + Duration::from_millis(self.retired_at_ms.load(Ordering::Relaxed));
            at.elapsed()
        })
    }

    /// Resolves when [`PeerConn::retire`] was called (possibly before this call).
    pub(crate) async fn retired(&self) {
        self.retire_notify.notified().await;
    }

    /// Asks the read loop to recompute when the connection idles out: its idle limit
    /// changed (the contact left the warm part of the table).
    pub(crate) fn recheck_idle(&self) {
        // As for `retire`: a permit is kept when nobody waits.
        self.recheck_notify.notify_one();
    }

    /// Resolves when [`PeerConn::recheck_idle`] was called (possibly before this call).
    pub(crate) async fn recheck_wanted(&self) {
        self.recheck_notify.notified().await;
    }

    pub(crate) fn has_pending(&self) -> bool {
        !self.pending().is_empty()
    }

    /// Records traffic on the connection, for the least-recently-used eviction.
    pub(crate) fn touch(&self) {
        self.last_used_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Records a frame received from the peer (traffic too, see [`touch`](Self::touch)).
    pub(crate) fn received(&self) {
        self.touch();
        self.last_received_us
            .store(self.now_us(), Ordering::Relaxed);
    }

    /// Milliseconds since the connection was established.
    fn now_ms(&self) -> u64 {
        u64::try_from(self.established.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Microseconds since the connection was established.
    fn now_us(&self) -> u64 {
        u64::try_from(self.established.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Whether the connection is closed (by either side, or by [`close_silent`]).
    ///
    /// [`close_silent`]: Self::close_silent
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    /// When the connection last carried a frame.
    pub(crate) fn last_used(&self) -> Instant {
        self.established + Duration::from_millis(self.last_used_ms.load(Ordering::Relaxed))
    }

    /// Whether we ever sent a request with this id (an answer to any other id is a
    /// protocol violation; an answer to an old id is merely late).
    pub(crate) fn issued(&self, id: u64) -> bool {
        id > 0 && id < self.next_request.load(Ordering::Relaxed)
    }

    /// Fails every request still waiting for an answer (the connection is gone).
    pub(crate) fn fail_pending(&self) {
        self.pending().clear();
    }

    /// Closes a connection whose peer failed the HELLO checks: its requests fail as a
    /// refused connection, not as a lost one.
    pub(crate) fn refuse(&self, reason: String) {
        let _ = self.refused.set(reason);
        self.closed.cancel();
        self.fail_pending();
    }

    /// What a request fails with when the connection ends before its answer.
    fn closed_error(&self) -> RpcError {
        match self.refused.get() {
            Some(reason) => RpcError::Connect(reason.clone()),
            None => RpcError::Closed,
        }
    }

    /// Sends `message` as a request and waits up to `timeout` for its answer.
    pub(crate) async fn request(
        &self,
        message: PeerMessage,
        timeout: Duration,
    ) -> Result<PeerMessage, RpcError> {
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (answer_tx, answer_rx) = oneshot::channel();
        {
            let mut pending = self.pending();
            if pending.len() >= self.max_pending {
                return Err(RpcError::Overloaded);
            }
            pending.insert(id, answer_tx);
        }
        // Removes the entry whatever happens to this future (answer, timeout, drop).
        let _guard = PendingGuard { conn: self, id };
        // Checked after registering: `fail_pending` runs after `closed` is cancelled,
        // so either it sees this entry or this sees the cancellation.
        if self.closed.is_cancelled() {
            return Err(self.closed_error());
        }
        self.touch();
        let sent_us = self.now_us();
        // Only requests a peer answers from memory tell it is silent: a STORE's answer
        // waits on the peer's disk too.
        let timed = matches!(
            message,
            PeerMessage::FindNode { .. } | PeerMessage::FindValue { .. } | PeerMessage::Ping
        );
        let exchange = async {
            self.tx
                .send(Box::new(PeerFrame::request(id, message)))
                .await
                .map_err(|_| self.closed_error())?;
            answer_rx.await.map_err(|_| self.closed_error())
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => {
                // Not a frame from the peer for as long as we waited: a hung process or
                // a host gone dark. The connection goes, with every request on it; the
                // next request dials again and finds out within the connect timeout.
                if timed && self.last_received_us.load(Ordering::Relaxed) < sent_us {
                    self.close_silent();
                }
                Err(RpcError::Timeout)
            }
        }
    }

    /// Closes a connection whose peer sent nothing while a request waited its whole
    /// timeout: its other requests fail as a lost connection.
    pub(crate) fn close_silent(&self) {
        self.closed.cancel();
        self.fail_pending();
    }

    /// Queues an answer to the peer's request `id`. While the queue is full the reader
    /// waits (back-pressure on the peer), but at most `timeout`: a peer that sends
    /// requests without reading the answers, or two peers whose queues fill each other
    /// up, would otherwise block both connections for ever. Then the connection fails.
    pub(crate) async fn respond(
        &self,
        id: u64,
        message: PeerMessage,
        timeout: Duration,
    ) -> Result<(), RpcError> {
        let send = self.tx.send(Box::new(PeerFrame::response(id, message)));
        tokio::select! {
            sent = tokio::time::timeout(timeout, send) => match sent {
                Ok(sent) => sent.map_err(|_| RpcError::Closed),
                Err(_) => Err(RpcError::Timeout),
            },
            () = self.closed.cancelled() => Err(RpcError::Closed),
        }
    }

    /// Hands an answer to the request waiting for it; false if none waits (late or bogus).
    pub(crate) fn complete(&self, id: u64, message: PeerMessage) -> bool {
        match self.pending().remove(&id) {
            Some(waiter) => waiter.send(message).is_ok(),
            None => false,
        }
    }
}

struct PendingGuard<'a> {
    conn: &'a PeerConn,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.conn.pending().remove(&self.id);
    }
}

/// Where a peer that connected to us can be reached: the port it advertises, at the
/// IP its connection comes from. An advertised IP is not believed: it cannot be checked
/// without dialling back, and trusting it would let one host pose as many networks
/// (defeating the diversity limits) or point others at a victim.
pub(crate) fn reachable_addr(advertised: SocketAddr, seen_from: SocketAddr) -> SocketAddr {
    SocketAddr::new(seen_from.ip(), advertised.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(max_pending: usize) -> (PeerConn, mpsc::Receiver<QueuedFrame>) {
        let (tx, rx) = mpsc::channel(4);
        let contact = Contact {
            id: NodeId::from_bytes([1; 32]),
            addr: "127.0.0.1:1".parse().unwrap(),
        };
        let conn = PeerConn::new(
            contact,
            contact.id,
            contact.addr.ip(),
            1,
            tx,
            max_pending,
            CancellationToken::new(),
        );
        (conn, rx)
    }

    #[test]
    fn reachable_addr_is_the_seen_ip_with_the_advertised_port() {
        let seen: SocketAddr = "10.1.2.3:5555".parse().unwrap();
        assert_eq!(
            reachable_addr("0.0.0.0:7000".parse().unwrap(), seen),
            "10.1.2.3:7000".parse().unwrap()
        );
        assert_eq!(
            reachable_addr("192.0.2.1:7000".parse().unwrap(), seen),
            "10.1.2.3:7000".parse().unwrap()
        );
    }

    #[tokio::test]
    async fn request_times_out_and_cleans_up() {
        let (conn, mut rx) = conn(1);
        let result = conn
            .request(PeerMessage::Ping, Duration::from_millis(10))
            .await;
        assert!(matches!(result, Err(RpcError::Timeout)));
        assert!(!conn.has_pending());
        let sent = rx.recv().await.expect("frame queued");
        assert_eq!(sent.request_id, 1);
        assert!(!sent.is_response);
        // A late answer finds nobody waiting.
        assert!(!conn.complete(1, PeerMessage::Pong));
    }

    #[tokio::test]
    async fn closing_fails_waiting_requests_at_once() {
        let (conn, _rx) = conn(4);
        let conn = std::sync::Arc::new(conn);
        let waiting = tokio::spawn({
            let conn = conn.clone();
            async move {
                conn.request(PeerMessage::Ping, Duration::from_secs(3600))
                    .await
            }
        });
        while !conn.has_pending() {
            tokio::task::yield_now().await;
        }
        conn.closed.cancel();
        conn.fail_pending();
        let result = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("failed at once")
            .expect("join");
        assert!(matches!(result, Err(RpcError::Closed)));
        // And nothing new is accepted.
        assert!(matches!(
            conn.request(PeerMessage::Ping, Duration::from_secs(1))
                .await,
            Err(RpcError::Closed)
        ));
    }

    #[tokio::test]
    async fn retire_wakeup_is_not_lost() {
        let (conn, _rx) = conn(1);
        conn.retire();
        // The waiter comes after the notification and still wakes.
        tokio::time::timeout(Duration::from_secs(5), conn.retired())
            .await
            .expect("woken");
        assert!(conn.is_retired());
        assert!(!conn.is_usable());
    }

    #[tokio::test]
    async fn too_many_pending_requests_are_refused() {
        let (conn, _rx) = conn(1);
        let conn = std::sync::Arc::new(conn);
        let first = tokio::spawn({
            let conn = conn.clone();
            async move {
                conn.request(PeerMessage::Ping, Duration::from_secs(3600))
                    .await
            }
        });
        while !conn.has_pending() {
            tokio::task::yield_now().await;
        }
        assert!(matches!(
            conn.request(PeerMessage::Ping, Duration::from_secs(1))
                .await,
            Err(RpcError::Overloaded)
        ));
        first.abort();
    }
}
