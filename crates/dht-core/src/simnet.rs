//! An in-memory network with WAN delays, for simulations on tokio's paused time.
//!
//! Every host has an IP of its own; the round-trip time between two hosts is what the
//! network's delay model says. A dial completes after `connect_rtts` round trips (1 for
//! TCP's handshake; the TLS 1.3 handshake the node runs on top adds its own round trip
//! through the delayed bytes themselves), and every byte written arrives at the other
//! end half a round trip later, in order. A write is lost with the given probability,
//! which costs it a retransmission timeout, as TCP would. Every random draw comes from
//! the network's seed, so that a run is repeated by it. A network told to
//! [authenticate peers](SimNetwork::authenticate_peers) proves each end's key to the
//! other itself, so that its nodes run no TLS cryptography, and charges TLS's round trip
//! on the dial instead (or none, for a resumed session's 0-RTT request). Told to
//! [resume sessions](SimNetwork::resume_sessions), it charges TLS's round trips only on
//! a host's first dial to a peer within [`TICKET_LIFETIME`]: later dials resume the
//! session with the ticket the peer gave, their first request in 0-RTT early data.
//!
//! Faults, as a WAN has them: a [partition](SimNetwork::partition) drops every packet
//! between two sets of hosts (dials across it hang, bytes written across it are held
//! the way TCP keeps retransmitting them, and arrive after the
//! [heal](SimNetwork::heal), unless they were held longer than TCP retransmits
//! ([`TCP_GIVE_UP`]): that connection is then reset); a [silenced](SimNetwork::silence)
//! host stops answering
//! without closing anything (a hung process, whose kernel still accepts connections;
//! once its process is gone too, a host that vanished: dials to it hang).

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use dht_id::NodeId;
use futures::future::BoxFuture;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio::time::{Instant, Sleep};

use crate::transport::{
    ChannelListener, Connection, Listener, PeerIdentity, Transport, connect_ends, listening,
};

/// The round-trip time between two hosts.
pub(crate) type DelayModel = dyn Fn(IpAddr, IpAddr) -> Duration + Send + Sync;

/// The shortest retransmission timeout of a lost write (Linux's `TCP_RTO_MIN`).
const MIN_RTO: Duration = Duration::from_millis(200);
/// Inbound connections queued per listener before dials wait.
const BACKLOG: usize = 128;
/// How long TCP keeps retransmitting bytes nobody acknowledges before it gives the
/// connection up: about 15 minutes (Linux's `tcp_retries2` = 15, 924.6 s).
pub(crate) const TCP_GIVE_UP: Duration = Duration::from_millis(924_600);
/// How long a session ticket lets a host resume its session with a peer
/// ([`SimNetwork::resume_sessions`]).
pub(crate) const TICKET_LIFETIME: Duration = Duration::from_secs(3600);

/// A simulated network (see the module documentation). Cheap to clone: clones share it.
#[derive(Clone)]
pub struct SimNetwork {
    inner: Arc<SimInner>,
}

struct SimInner {
    delay: Box<DelayModel>,
    connect_rtts: u32,
    loss: f64,
    state: Mutex<SimState>,
}

struct SimState {
    listeners: HashMap<SocketAddr, mpsc::Sender<Connection>>,
    next_port: HashMap<IpAddr, u16>,
    rng: StdRng,
    /// The side of each host while the network is partitioned.
    partition: Option<Box<dyn Fn(IpAddr) -> bool + Send>>,
    /// Hosts that answer nothing.
    silent: HashSet<IpAddr>,
    /// Pipes holding bytes until the heal.
    held: Vec<Weak<Mutex<Pipe>>>,
    /// Each host's public key (DER SubjectPublicKeyInfo), when the network proves
    /// peers' keys itself instead of TLS.
    keys: Option<HashMap<IpAddr, Vec<u8>>>,
    /// Round trips a dial is charged for TLS when the network proves keys.
    tls_rtts: u32,
    /// With session resumption: when each host last completed a dial to each peer
    /// (dialler, peer), the ticket that makes the next dial within
    /// [`TICKET_LIFETIME`] cost no TLS round trip.
    tickets: Option<HashMap<(IpAddr, IpAddr), Instant>>,
}

impl SimState {
    /// Whether packets between `a` and `b` are dropped.
    fn blocked(&self, a: IpAddr, b: IpAddr) -> bool {
        self.silent.contains(&a)
            || self.silent.contains(&b)
            || self
                .partition
                .as_ref()
                .is_some_and(|side| side(a) != side(b))
    }
}

impl std::fmt::Debug for SimNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimNetwork")
            .field("connect_rtts", &self.inner.connect_rtts)
            .field("loss", &self.inner.loss)
            .finish_non_exhaustive()
    }
}

impl SimNetwork {
    /// A network whose round-trip times come from `delay`, where a dial costs
    /// `connect_rtts` round trips and a write is lost with probability `loss`, its
    /// random draws seeded by `seed`.
    pub fn new(
        seed: u64,
        connect_rtts: u32,
        loss: f64,
        delay: impl Fn(IpAddr, IpAddr) -> Duration + Send + Sync + 'static,
    ) -> Self {
        SimNetwork {
            inner: Arc::new(SimInner {
                delay: Box::new(delay),
                connect_rtts,
                loss: loss.clamp(0.0, 1.0),
                state: Mutex::new(SimState {
                    listeners: HashMap::new(),
                    next_port: HashMap::new(),
                    rng: StdRng::seed_from_u64(seed),
                    partition: None,
                    silent: HashSet::new(),
                    held: Vec::new(),
                    keys: None,
                    tls_rtts: 0,
                    tickets: None,
                }),
            }),
        }
    }

    /// The transport of the host at `ip`.
    pub fn transport(&self, ip: IpAddr) -> SimTransport {
        SimTransport {
            network: self.clone(),
            ip,
        }
    }

    fn state(&self) -> MutexGuard<'_, SimState> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The round-trip time between two hosts.
    pub fn rtt(&self, a: IpAddr, b: IpAddr) -> Duration {
        (self.inner.delay)(a, b)
    }

    /// Makes the network prove each end's key to the other, as TLS would, without
    /// TLS's cryptography (which takes most of a large simulation's CPU): nodes started
    /// on it from now on run no TLS, a dial costs `tls_rtts` round trips for TLS's
    /// handshake on top of `connect_rtts` (1 for a full TLS 1.3 handshake; 0 for a
    /// resumed session whose first request rides in 0-RTT early data), and each
    /// connection reports the key the other end's node holds. The HELLO exchange and its
    /// identity checks (key, nonce, proof of work) run as ever.
    pub fn authenticate_peers(&self, tls_rtts: u32) {
        let mut state = self.state();
        state.keys.get_or_insert_with(HashMap::new);
        state.tls_rtts = tls_rtts;
    }

    /// Makes a dial to a peer that this host connected to within [`TICKET_LIFETIME`]
    /// cost no TLS round trip (with [`SimNetwork::authenticate_peers`]): the session is
    /// resumed with the ticket the peer gave and the first request rides in 0-RTT early
    /// data, as TLS 1.3 and QUIC allow. A first contact still costs `tls_rtts`.
    pub fn resume_sessions(&self) {
        self.state().tickets.get_or_insert_with(HashMap::new);
    }

    /// The key the node at `ip` holds, when the network proves keys.
    fn identity(&self, ip: IpAddr) -> PeerIdentity {
        match self.state().keys.as_ref().and_then(|keys| keys.get(&ip)) {
            Some(spki) => PeerIdentity::PublicKey(spki.clone()),
            None => PeerIdentity::Unverified,
        }
    }

    /// Splits the hosts in two: packets between a host for which `side` says `true`
    /// and one for which it says `false` are dropped until [`SimNetwork::heal`].
    pub fn partition(&self, side: impl Fn(IpAddr) -> bool + Send + 'static) {
        self.state().partition = Some(Box::new(side));
    }

    /// Silences `hosts`: they answer nothing and close nothing, until
    /// [`SimNetwork::heal`]. A silenced host whose node still runs is a hung process
    /// (its kernel completes dials, then nothing comes back); one whose node has stopped
    /// is a host that vanished (dials to it hang, its connections are never closed).
    pub fn silence(&self, hosts: impl IntoIterator<Item = IpAddr>) {
        self.state().silent.extend(hosts);
    }

    /// Ends every partition and silence: bytes held across them arrive a
    /// retransmission timeout from now, in order; a connection whose bytes were held
    /// longer than [`TCP_GIVE_UP`] is reset instead (its sender gave it up).
    pub fn heal(&self) {
        let held = {
            let mut state = self.state();
            state.partition = None;
            state.silent.clear();
            std::mem::take(&mut state.held)
        };
        let now = Instant::now();
        for pipe in held.iter().filter_map(Weak::upgrade) {
            let mut pipe = lock(&pipe);
            if pipe.given_up(now) {
                pipe.chunks.clear();
                pipe.reset = true;
                if let Some(reader) = pipe.reader.take() {
                    reader.wake();
                }
                continue;
            }
            pipe.held_since = None;
            let at = now + pipe.one_way + pipe.rto;
            for chunk in pipe.chunks.iter_mut().filter(|(due, _)| due.is_none()) {
                chunk.0 = Some(at);
            }
            pipe.listed = false;
            pipe.fin_held = false;
            if let Some(reader) = pipe.reader.take() {
                reader.wake();
            }
        }
    }

    fn is_silent(&self, ip: IpAddr) -> bool {
        self.state().silent.contains(&ip)
    }

    /// A pair of connected streams between `a` and `b`.
    fn pipe(&self, a: IpAddr, b: IpAddr) -> (SimStream, SimStream) {
        let rtt = self.rtt(a, b);
        let one_way = rtt / 2;
        let rto = MIN_RTO.max(rtt * 2);
        let new = || {
            Arc::new(Mutex::new(Pipe {
                one_way,
                rto,
                ..Pipe::default()
            }))
        };
        let (ab, ba) = (new(), new());
        let end =
            |from: IpAddr, to: IpAddr, incoming: &Arc<Mutex<Pipe>>, outgoing: &Arc<Mutex<Pipe>>| {
                SimStream {
                    from,
                    to,
                    incoming: incoming.clone(),
                    outgoing: outgoing.clone(),
                    network: self.clone(),
                    wait: None,
                }
            };
        (end(a, b, &ba, &ab), end(b, a, &ab, &ba))
    }

    fn lost(&self) -> bool {
        self.inner.loss > 0.0 && self.state().rng.gen_bool(self.inner.loss)
    }
}

/// One host's side of a [`SimNetwork`].
#[derive(Clone, Debug)]
pub struct SimTransport {
    network: SimNetwork,
    ip: IpAddr,
}

impl Transport for SimTransport {
    fn dial(
        &self,
        addr: SocketAddr,
        _expected: Option<NodeId>,
    ) -> BoxFuture<'static, io::Result<Connection>> {
        let (network, ip) = (self.network.clone(), self.ip);
        Box::pin(async move {
            let rtt = network.rtt(ip, addr.ip());
            // TLS's handshake, when the network stands in for it, costs its round trips
            // before the first request (the node's real TLS runs over the delayed bytes).
            let tls = {
                let state = network.state();
                let resumed = state.tickets.as_ref().is_some_and(|tickets| {
                    tickets
                        .get(&(ip, addr.ip()))
                        .is_some_and(|at| at.elapsed() < TICKET_LIFETIME)
                });
                if state.keys.is_some() && !resumed {
                    state.tls_rtts
                } else {
                    0
                }
            };
            tokio::time::sleep(rtt * (network.inner.connect_rtts + tls)).await;
            let inbound = {
                let state = network.state();
                let listener = state.listeners.get(&addr);
                // A dropped SYN, or one to a vanished host, is never answered: the
                // dialler's own timeout ends the wait. A hung process's kernel still
                // completes the handshake.
                let hung = state.silent.contains(&addr.ip()) && listener.is_some();
                if state.blocked(ip, addr.ip()) && !hung {
                    None
                } else {
                    Some(listening(listener))
                }
            };
            let Some(inbound) = inbound else {
                return std::future::pending().await;
            };
            let inbound = inbound?;
            let source = SocketAddr::new(ip, next_port(&mut network.state(), ip)?);
            let (ours, theirs) = network.pipe(ip, addr.ip());
            let (mine, its) = (network.identity(ip), network.identity(addr.ip()));
            let connection = connect_ends(
                &inbound,
                Box::new(ours),
                Box::new(theirs),
                (source, mine),
                (addr, its),
            )
            .await?;
            if let Some(tickets) = network.state().tickets.as_mut() {
                tickets.insert((ip, addr.ip()), Instant::now());
            }
            Ok(connection)
        })
    }

    fn authenticates(&self, host: &dht_security::HostKey) -> bool {
        let mut state = self.network.state();
        match state.keys.as_mut() {
            Some(keys) => {
                keys.insert(self.ip, host.spki_der().to_vec());
                true
            }
            None => false,
        }
    }

    fn listen(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn Listener>>> {
        let (network, ip) = (self.network.clone(), self.ip);
        Box::pin(async move {
            let (tx, rx) = mpsc::channel(BACKLOG);
            let local = {
                let mut state = network.state();
                let port = match addr.port() {
                    0 => next_port(&mut state, ip)?,
                    port => port,
                };
                let local = SocketAddr::new(ip, port);
                if state.listeners.contains_key(&local) {
                    return Err(io::Error::new(io::ErrorKind::AddrInUse, "address in use"));
                }
                state.listeners.insert(local, tx);
                local
            };
            let release = move || {
                network.state().listeners.remove(&local);
            };
            Ok(Box::new(ChannelListener::new(rx, local, release)) as Box<dyn Listener>)
        })
    }
}

/// A free port of `ip`, counting up from 10,000.
fn next_port(state: &mut SimState, ip: IpAddr) -> io::Result<u16> {
    let next = state.next_port.entry(ip).or_insert(10_000);
    loop {
        let port = *next;
        *next = next
            .checked_add(1)
            .ok_or_else(|| io::Error::new(io::ErrorKind::AddrInUse, "no free port"))?;
        if !state.listeners.contains_key(&SocketAddr::new(ip, port)) {
            return Ok(port);
        }
    }
}

/// One direction of a connection: chunks in flight, each with the time it arrives
/// (`None`: held by a fault until the heal).
#[derive(Default)]
struct Pipe {
    chunks: VecDeque<(Option<Instant>, Bytes)>,
    one_way: Duration,
    /// The retransmission timeout of a lost write.
    rto: Duration,
    /// Listed among the network's pipes that hold bytes.
    listed: bool,
    /// The end of the stream was sent across a fault: it arrives at the heal.
    fin_held: bool,
    /// The writer shut down or is gone: end of stream once the chunks are read.
    closed: bool,
    /// The reader is gone: writes fail.
    reader_gone: bool,
    /// Since when bytes (or the end) wait in it for the heal.
    held_since: Option<Instant>,
    /// Given up by TCP (held longer than [`TCP_GIVE_UP`]): both ends fail.
    reset: bool,
    reader: Option<Waker>,
}

impl Pipe {
    /// Whether TCP has given up retransmitting what is held here by `now`.
    fn given_up(&self, now: Instant) -> bool {
        self.held_since
            .is_some_and(|since| now.saturating_duration_since(since) >= TCP_GIVE_UP)
    }
}

/// One end of a simulated connection.
pub(crate) struct SimStream {
    /// This end's host.
    from: IpAddr,
    /// The other end's host.
    to: IpAddr,
    incoming: Arc<Mutex<Pipe>>,
    outgoing: Arc<Mutex<Pipe>>,
    network: SimNetwork,
    /// Until the first chunk in flight arrives.
    wait: Option<Pin<Box<Sleep>>>,
}

fn lock(pipe: &Mutex<Pipe>) -> MutexGuard<'_, Pipe> {
    pipe.lock().unwrap_or_else(|e| e.into_inner())
}

impl AsyncRead for SimStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let due = {
                let mut incoming = lock(&self.incoming);
                if incoming.reset {
                    return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
                }
                let closed = incoming.closed && !incoming.fin_held;
                match incoming.chunks.front_mut() {
                    Some((Some(at), chunk)) if *at <= Instant::now() => {
                        let n = chunk.len().min(buf.remaining());
                        buf.put_slice(&chunk.split_to(n));
                        if chunk.is_empty() {
                            incoming.chunks.pop_front();
                        }
                        return Poll::Ready(Ok(()));
                    }
                    Some((Some(at), _)) => *at,
                    None if closed => return Poll::Ready(Ok(())),
                    // Nothing, or nothing until the heal (which wakes the reader).
                    Some((None, _)) | None => {
                        incoming.reader = Some(cx.waker().clone());
                        return Poll::Pending;
                    }
                }
            };
            let wait = self
                .wait
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
            wait.as_mut().reset(due);
            if wait.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let blocked = self.network.state().blocked(self.from, self.to);
        let lost = !blocked && self.network.lost();
        let mut outgoing = lock(&self.outgoing);
        if outgoing.reset || outgoing.given_up(Instant::now()) {
            outgoing.reset = true;
            return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
        }
        if outgoing.reader_gone || outgoing.closed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        // In order, as TCP delivers: never before what was written earlier, and held
        // behind bytes that are held.
        let extra = if lost { outgoing.rto } else { Duration::ZERO };
        let at = match outgoing.chunks.back() {
            _ if blocked => None,
            Some((None, _)) => None,
            Some((Some(last), _)) => Some((Instant::now() + outgoing.one_way + extra).max(*last)),
            None => Some(Instant::now() + outgoing.one_way + extra),
        };
        outgoing
            .chunks
            .push_back((at, Bytes::copy_from_slice(data)));
        if at.is_none() {
            self.list_held(&mut outgoing);
        } else if let Some(reader) = outgoing.reader.take() {
            reader.wake();
        }
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.close();
        Poll::Ready(Ok(()))
    }
}

impl SimStream {
    /// Lists the pipe this end writes (locked as `outgoing`) among those the heal
    /// releases.
    fn list_held(&self, outgoing: &mut Pipe) {
        outgoing.held_since.get_or_insert_with(Instant::now);
        if !outgoing.listed {
            outgoing.listed = true;
            let pipe = Arc::downgrade(&self.outgoing);
            let mut state = self.network.state();
            // Pipes to a host that vanished are held for good: forget those whose
            // connection is gone, so the list stays as long as the live ones.
            if state.held.len() >= 64 && state.held.len().is_power_of_two() {
                state.held.retain(|held| held.strong_count() > 0);
            }
            state.held.push(pipe);
        }
    }

    /// Ends the stream this end writes: the reader sees the end once it has read what
    /// is in flight (after the heal, if it is sent across a fault).
    fn close(&self) {
        let blocked = self.network.state().blocked(self.from, self.to);
        let mut outgoing = lock(&self.outgoing);
        if outgoing.closed {
            return;
        }
        outgoing.closed = true;
        if blocked {
            outgoing.fin_held = true;
            self.list_held(&mut outgoing);
        } else if let Some(reader) = outgoing.reader.take() {
            reader.wake();
        }
    }
}

impl Drop for SimStream {
    fn drop(&mut self) {
        // A silenced host's end goes without a word (no FIN, no RST): the other end
        // waits on it until its own timeouts give up.
        if self.network.is_silent(self.from) {
            return;
        }
        self.close();
        lock(&self.incoming).reader_gone = true;
    }
}

#[cfg(test)]
mod tests;
