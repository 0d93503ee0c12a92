//! Connection management: accepting and dialling, the registry that keeps one
//! connection per peer, the connection slots that bound them, and the start of each
//! connection's reader (`serve.rs`) and writer (`stream.rs`) tasks.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dht_id::NodeId;
use dht_security::limits;
use futures::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tracing::{Instrument, debug, warn};

use crate::admission::{HandshakeGuard, Handshakes};
use crate::conn::{PeerConn, WRITE_QUEUE};
use crate::error::RpcError;
use crate::handshake::{HelloCheck, Role, Shaken, handshake, send_hello};
use crate::node::{Inner, lock};
use crate::stats::Counters;
use crate::stream::{PeerReader, release_read_buffer};
use crate::transport::{Incoming, Listener};

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
                        Ok(incoming) => inner.admit_inbound(incoming),
                        Err(e) => {
                            warn!(error = %e, "accept failed");
                            // Out of file descriptors (EMFILE, ENFILE): give the node a
                            // moment. Other errors concern one connection only.
                            if matches!(e.raw_os_error(), Some(23 | 24)) {
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                        }
                    }
                }
            }
            .instrument(self.span.clone()),
        );
    }

    /// Admits an inbound connection to its handshake, or refuses it: its IP is at
    /// `max_connections_per_ip`, or every connection slot and every place of the
    /// handshake reserve is taken. A newcomer admitted from the reserve gets a slot only
    /// once it has proven its identity, by closing the least recently used idle
    /// connection of the largest network prefix, never a routing-table contact's (which
    /// keeps a bootstrap node accepting newcomers under a mass join, without letting bare
    /// TCP connects, or cheap ids from one network, evict authenticated peers).
    ///
    /// Unfinished handshakes are bounded per address and per network (`admission.rs`);
    /// when every slot and reserve place is taken, the oldest unfinished handshake is
    /// shed and the newcomer takes the place it frees.
    fn admit_inbound(self: &Arc<Self>, incoming: Incoming) {
        let remote = incoming.remote_addr;
        let Some(ip_slot) = self.ip_slot(remote.ip()) else {
            Counters::bump(&self.counters.connections_refused_ip);
            debug!(%remote, "refusing connection: its IP is at max_connections_per_ip");
            return;
        };
        let exempt = !self.config.limit_local_addresses && limits::is_local(remote.ip());
        let guard = match Handshakes::begin(&self.handshakes, ip_key(remote.ip()), exempt) {
            Ok(guard) => guard,
            Err(crowded) => {
                Counters::bump(&self.counters.connections_refused_ip);
                debug!(%remote, ?crowded, "refusing connection: too many unfinished handshakes from its address or network");
                return;
            }
        };
        let admission = match self.conn_slots.clone().try_acquire_owned() {
            Ok(permit) => Admission::Slot(permit),
            Err(_) => match self.handshake_reserve.clone().try_acquire_owned() {
                Ok(reserve) => Admission::Reserve(reserve),
                Err(_) if lock(&self.handshakes).shed_oldest() => {
                    Counters::bump(&self.counters.handshakes_shed);
                    Admission::Shed
                }
                Err(_) => {
                    Counters::bump(&self.counters.connections_refused_full);
                    debug!(%remote, "refusing connection: at max_connections");
                    return;
                }
            },
        };
        if !matches!(admission, Admission::Shed) {
            guard.holds_place();
        }
        let inner = self.clone();
        self.tasks.spawn(
            async move { inner.accept_one(incoming, admission, ip_slot, guard).await }
                .instrument(self.span.clone()),
        );
    }

    /// The place a shed handshake frees: a connection slot, or a place of the reserve.
    async fn freed_place(&self, timeout: Duration) -> Option<Admission> {
        let wait = async {
            tokio::select! {
                permit = self.conn_slots.clone().acquire_owned() => permit.ok().map(Admission::Slot),
                reserve = self.handshake_reserve.clone().acquire_owned() => reserve.ok().map(Admission::Reserve),
            }
        };
        tokio::time::timeout(timeout, wait).await.ok().flatten()
    }

    async fn accept_one(
        self: Arc<Self>,
        incoming: Incoming,
        admission: Admission,
        ip_slot: IpSlot,
        guard: HandshakeGuard,
    ) {
        let remote = incoming.remote_addr;
        let timeout = self.config.connect_timeout;
        let admission = match admission {
            Admission::Shed => match self.freed_place(timeout).await {
                Some(admission) => {
                    guard.holds_place();
                    admission
                }
                None => {
                    Counters::bump(&self.counters.connections_refused_full);
                    debug!(%remote, "refusing connection: the shed handshake freed no place");
                    return;
                }
            },
            admission => admission,
        };
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
            () = guard.shed.cancelled() => Err("shed for a newcomer: the oldest unfinished handshake".into()),
            () = self.shutdown.cancelled() => return,
        };
        drop(guard);
        let shaken = match shaken {
            Ok(shaken) => shaken,
            Err(reason) => {
                Counters::bump(&self.counters.handshakes_refused);
                debug!(%remote, %reason, "inbound connection refused");
                return;
            }
        };
        let permit = match admission {
            Admission::Slot(permit) => permit,
            // Resolved into a slot or a reserve place before the handshake.
            Admission::Shed => return,
            Admission::Reserve(_reserve) => match self
                .make_room(timeout, Evict::ForNewcomer(remote.ip()))
                .await
            {
                Some(permit) => permit,
                None => {
                    Counters::bump(&self.counters.connections_refused_full);
                    debug!(%remote, "refusing connection: at max_connections, none idle");
                    return;
                }
            },
        };
        let dialer = shaken.contact.id;
        self.establish(shaken, dialer, Slot::new(permit, Some(ip_slot)), None);
    }

    /// A connection slot, closing the least recently used idle connection when none is
    /// free; `None` when nothing can be closed or the slot does not come in time.
    async fn make_room(&self, timeout: Duration, evict: Evict) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = self.conn_slots.clone().try_acquire_owned() {
            return Some(permit);
        }
        if !self.evict_idle(evict) {
            return None;
        }
        match tokio::time::timeout(timeout, self.conn_slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Some(permit),
            _ => None,
        }
    }

    /// A per-IP connection slot, or `None` when the IP has its maximum. IPv6 addresses
    /// count by /64, since one host usually holds a whole /64.
    fn ip_slot(&self, ip: IpAddr) -> Option<IpSlot> {
        if !self.config.limit_local_addresses && limits::is_local(ip) {
            return Some(IpSlot { counts: None, ip });
        }
        let ip = ip_key(ip);
        let mut counts = lock(&self.ip_conns);
        let count = counts.entry(ip).or_insert(0);
        if *count >= self.config.max_connections_per_ip {
            return None;
        }
        *count += 1;
        Some(IpSlot {
            counts: Some(self.ip_conns.clone()),
            ip,
        })
    }

    /// Closes an idle connection in use (no request in flight) to make room, and takes it
    /// out of the registry at once (so that it is not picked twice): for this node's own
    /// dial ([`Evict::Any`]) the least recently used one.
    ///
    /// For an inbound newcomer ([`Evict::ForNewcomer`]), whose id costs only its proof of
    /// work, each network prefix (IPv4 /24, IPv6 /48) gets a share: the newcomer may close
    /// a connection of its own prefix, or of one larger than its own would be with it,
    /// the largest first, never a routing-table contact's (those are the ones lookups and
    /// replication use). Newcomers from one network then replace each other once theirs
    /// is the largest prefix: a flood of cheap ids from it closes one of the others'
    /// connections, not all of them, while a newcomer from a prefix of its own may still
    /// close the idlest connection of the largest.
    fn evict_idle(&self, evict: Evict) -> bool {
        let contacts: std::collections::HashSet<NodeId> = match evict {
            Evict::Any => std::collections::HashSet::new(),
            Evict::ForNewcomer(_) => self.routing().iter().map(|c| c.id).collect(),
        };
        let mut peers = lock(&self.peers);
        // Connections per network prefix: only a newcomer's eviction looks at them (for
        // this node's own dial, all prefixes count alike).
        let mut groups: HashMap<limits::IpGroup, usize> = HashMap::new();
        if let Evict::ForNewcomer(_) = evict {
            for conn in peers.values().filter(|c| c.is_usable()) {
                *groups
                    .entry(limits::ip_group(conn.contact.addr.ip()))
                    .or_default() += 1;
            }
        }
        let crowd = |c: &PeerConn| {
            groups
                .get(&limits::ip_group(c.contact.addr.ip()))
                .copied()
                .unwrap_or(0)
        };
        // A newcomer may close a connection of its own prefix, or of one larger than its
        // own would be with it.
        let eligible = |c: &PeerConn| match evict {
            Evict::Any => true,
            Evict::ForNewcomer(ip) => {
                let own = limits::ip_group(ip);
                limits::ip_group(c.contact.addr.ip()) == own
                    || crowd(c) > groups.get(&own).copied().unwrap_or(0)
            }
        };
        let idle = peers
            .values()
            .filter(|c| c.is_usable() && !c.has_pending() && !contacts.contains(&c.contact.id))
            .filter(|c| eligible(c))
            // The largest prefix first (no prefix counted: all alike); then the least
            // recently used, ties (one instant, as on simulated time) by id, not by the
            // map's order.
            .min_by_key(|c| (std::cmp::Reverse(crowd(c)), c.last_used(), c.contact.id))
            .cloned();
        match idle {
            Some(idle) => {
                debug!(peer = %idle.contact.id.short(), "closing an idle connection to make room");
                Counters::bump(&self.counters.connections_evicted);
                peers.remove(&idle.contact.id);
                idle.closed.cancel();
                true
            }
            None => false,
        }
    }

    /// The usable connection to the peer `id` at `addr`, dialling it when there is none.
    pub(crate) async fn connection(
        self: &Arc<Self>,
        id: Option<NodeId>,
        addr: SocketAddr,
    ) -> Result<Arc<PeerConn>, RpcError> {
        if let Some(conn) = id.and_then(|id| self.usable_conn(&id, addr)) {
            return Ok(conn);
        }
        if self.shutdown.is_cancelled() {
            return Err(RpcError::Closed);
        }
        // One dial per address at a time; the others wait and reuse its result.
        let dial_lock = DialLock::new(self, addr);
        let _dialling = dial_lock.lock.lock().await;
        if let Some(conn) = id.and_then(|id| self.usable_conn(&id, addr)) {
            return Ok(conn);
        }
        tokio::select! {
            dialled = self.dial(id, addr) => dialled,
            () = self.shutdown.cancelled() => Err(RpcError::Closed),
        }
    }

    /// The registered connection that may carry a request to `id` at `addr`.
    pub(crate) fn usable_conn(&self, id: &NodeId, addr: SocketAddr) -> Option<Arc<PeerConn>> {
        lock(&self.peers)
            .get(id)
            .filter(|c| c.serves(addr))
            .cloned()
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
        let slot = self.dial_slot(addr, timeout).await?;
        let conn = tokio::time::timeout(timeout, self.transport.dial(addr, expected))
            .await
            .map_err(|_| RpcError::Connect("connect timed out".into()))?
            .map_err(|e| RpcError::Connect(e.to_string()))?;
        let min_pow = self.config.min_pow_difficulty;
        // With the peer's id known, requests follow our HELLO without waiting for the
        // peer's (checked by the reader before anything else); dialled by address only,
        // the peer's HELLO must first tell who it is.
        let (shaken, check) = match expected {
            Some(expected) => send_hello(conn, addr, expected, self.hello, min_pow, timeout)
                .await
                .map(|(shaken, check)| (shaken, Some(check))),
            None => {
                let role = Role::Dialer { addr, expected };
                handshake(conn, role, self.hello, min_pow, timeout)
                    .await
                    .map(|shaken| (shaken, None))
            }
        }
        .map_err(RpcError::Connect)?;
        let peer = shaken.contact.id;
        let ours = self.establish(shaken, self.id, slot, check);
        // When the peer's simultaneous dial won the tie-break, use that one.
        Ok(self.usable_conn(&peer, addr).unwrap_or(ours))
    }

    /// A connection slot for a dial (counted against the IP too: a peer cannot make us
    /// open many connections to one host by answering with many ids there). When every
    /// slot is taken, the least recently used idle connection is closed to make room.
    async fn dial_slot(&self, addr: SocketAddr, timeout: Duration) -> Result<Slot, RpcError> {
        let ip_slot = self.ip_slot(addr.ip()).ok_or(RpcError::LocalLimit)?;
        let permit = self
            .make_room(timeout, Evict::Any)
            .await
            .ok_or(RpcError::LocalLimit)?;
        Ok(Slot::new(permit, Some(ip_slot)))
    }

    /// Registers an authenticated connection, starts its tasks and records the peer in
    /// the routing table. The slot is held until the connection ends. With `check`, the
    /// peer's HELLO is still to come: the connection takes requests at once, but the
    /// reader lets nothing else in, and the peer into the routing table, only once the
    /// HELLO has passed.
    fn establish(
        self: &Arc<Self>,
        shaken: Shaken,
        dialer: NodeId,
        slot: Slot,
        check: Option<HelloCheck>,
    ) -> Arc<PeerConn> {
        let Shaken {
            framed,
            contact,
            remote_addr,
            partial,
        } = shaken;
        Counters::bump(&self.counters.connections_opened);
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let seq = self.next_conn_seq();
        let conn = PeerConn::new(
            contact,
            dialer,
            remote_addr.ip(),
            seq,
            tx,
            self.config.max_pending_requests,
            self.shutdown.child_token(),
        );
        let conn = Arc::new(match check {
            Some(_) => conn.awaiting_hello(),
            None => conn,
        });
        self.register(&conn);
        self.trim_transient();
        // Into the routing table before the reader runs: a reader that penalises the
        // peer at once must find it there to remove it.
        if check.is_none() {
            self.observe(contact);
        }
        let (mut stream, writer) = crate::stream::split(framed);
        let span = tracing::debug_span!(parent: &self.span, "conn", peer = %contact.id.short(), addr = %contact.addr);
        self.tasks.spawn(
            crate::stream::write_loop(writer, rx, conn.closed.clone()).instrument(span.clone()),
        );
        let inner = self.clone();
        let reader_conn = conn.clone();
        self.tasks.spawn(
            async move {
                let proven = match &check {
                    Some(check) => inner.await_hello(&mut stream, &reader_conn, check).await,
                    None => true,
                };
                drop(check);
                if proven {
                    inner.read_loop(stream, &reader_conn, &partial).await;
                }
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
        conn
    }

    /// Waits for the HELLO of a peer dialled with [`send_hello`] and checks it; true when
    /// it passed (the peer then enters the routing table). A refused or missing HELLO
    /// fails the requests already sent with the reason.
    async fn await_hello(
        self: &Arc<Self>,
        stream: &mut PeerReader,
        conn: &Arc<PeerConn>,
        check: &HelloCheck,
    ) -> bool {
        let first = tokio::select! {
            first = tokio::time::timeout(self.config.connect_timeout, stream.next()) => first,
            () = conn.closed.cancelled() => return false,
        };
        let outcome = match first {
            Ok(first) => check.check(first),
            Err(_) => Err("handshake timed out".into()),
        };
        release_read_buffer(stream);
        match outcome {
            Ok(()) => {
                conn.prove();
                conn.received();
                // Kept out of the registry while another connection to the peer was
                // there: now it is proven, the usual rules apply.
                let registered = lock(&self.peers)
                    .get(&conn.contact.id)
                    .is_some_and(|c| c.seq == conn.seq);
                if !registered && conn.is_usable() {
                    self.register(conn);
                }
                self.observe(conn.contact);
                true
            }
            Err(reason) => {
                debug!(%reason, "the dialled peer's HELLO was refused");
                conn.refuse(reason);
                false
            }
        }
    }

    /// Keeps one connection per peer. When both peers dialled each other at once (the
    /// older connection is younger than the connect timeout), both keep the connection
    /// dialled by the smaller node id. Otherwise the newer connection wins: the peer
    /// reconnected because it lost the old one, which may be dead without our knowing.
    ///
    /// A connection whose peer has not proven its id yet (its HELLO is awaited) never
    /// displaces another: it is registered only where there is none, so that whoever
    /// answers at an address a lookup was told cannot take over, or even delay, the
    /// traffic to the node it claims to be. A proven connection takes an unproven one's
    /// place in the registry without closing it.
    fn register(&self, conn: &Arc<PeerConn>) {
        let id = conn.contact.id;
        let mut peers = lock(&self.peers);
        let existing = peers.get(&id).filter(|c| !c.closed.is_cancelled());
        if !conn.is_proven() && existing.is_some_and(|c| c.is_usable()) {
            return;
        }
        if existing.is_some_and(|c| !c.is_proven()) {
            // The unproven one lives on for its own requests; proven in turn, it meets
            // this one under the rules below (both peers may have dialled at once).
            peers.insert(id, conn.clone());
            return;
        }
        if let Some(existing) = existing {
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
}

/// The key of an IP for the per-IP limits: the address itself for IPv4, its /64 for
/// IPv6.
pub(crate) fn ip_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(std::net::Ipv6Addr::from(bits))
        }
    }
}

/// Which idle connections may be closed to make room.
#[derive(Debug, Clone, Copy)]
enum Evict {
    /// Any (for this node's own dial).
    Any,
    /// None to a routing-table contact, the largest network prefix first (for an
    /// inbound newcomer from this address).
    ForNewcomer(IpAddr),
}

/// How an inbound connection was admitted to its handshake.
enum Admission {
    /// With a connection slot of its own.
    Slot(OwnedSemaphorePermit),
    /// With a place in the handshake reserve: it needs a slot once proven.
    Reserve(#[allow(dead_code)] OwnedSemaphorePermit),
    /// With nothing yet: the oldest unfinished handshake was shed, and the place it
    /// frees is this one's.
    Shed,
}

/// A connection's share of the limits: one of `max_connections`, and one of its IP's
/// `max_connections_per_ip` (inbound only). Released when dropped.
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
    _ip: Option<IpSlot>,
}

impl Slot {
    fn new(permit: OwnedSemaphorePermit, ip: Option<IpSlot>) -> Self {
        Slot {
            _permit: permit,
            _ip: ip,
        }
    }
}

/// One connection counted against its IP (`counts` is None for exempt addresses).
struct IpSlot {
    counts: Option<Arc<Mutex<HashMap<IpAddr, usize>>>>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        if let Some(counts) = &self.counts {
            let mut counts = lock(counts);
            if let Some(count) = counts.get_mut(&self.ip) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    counts.remove(&self.ip);
                }
            }
        }
    }
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
