//! An in-memory network with WAN delays, for simulations on tokio's paused time.
//!
//! Every host has an IP of its own; the round-trip time between two hosts is what the
//! network's delay model says. A dial completes after `connect_rtts` round trips (1 for
//! TCP's handshake; the TLS 1.3 handshake the node runs on top adds its own round trip
//! through the delayed bytes themselves), and every byte written arrives at the other
//! end half a round trip later, in order. A write is lost with the given probability,
//! which costs it a retransmission timeout, as TCP would. Every random draw comes from
//! the network's seed, so that a run is repeated by it.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
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

use crate::transport::{ChannelListener, Connection, Listener, Transport, connect_ends, listening};

/// The round-trip time between two hosts.
pub(crate) type DelayModel = dyn Fn(IpAddr, IpAddr) -> Duration + Send + Sync;

/// The shortest retransmission timeout of a lost write (Linux's `TCP_RTO_MIN`).
const MIN_RTO: Duration = Duration::from_millis(200);
/// Inbound connections queued per listener before dials wait.
const BACKLOG: usize = 128;

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

    /// A pair of connected streams between `a` and `b`.
    fn pipe(&self, a: IpAddr, b: IpAddr) -> (SimStream, SimStream) {
        let rtt = self.rtt(a, b);
        let (ab, ba) = (Arc::new(Mutex::new(Pipe::default())), Arc::default());
        let one_way = rtt / 2;
        let end = |incoming: &Arc<Mutex<Pipe>>, outgoing: &Arc<Mutex<Pipe>>| SimStream {
            incoming: incoming.clone(),
            outgoing: outgoing.clone(),
            one_way,
            rto: MIN_RTO.max(rtt * 2),
            network: self.clone(),
            wait: None,
        };
        (end(&ba, &ab), end(&ab, &ba))
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
            tokio::time::sleep(rtt * network.inner.connect_rtts).await;
            let inbound = listening(network.state().listeners.get(&addr))?;
            let source = SocketAddr::new(ip, next_port(&mut network.state(), ip)?);
            let (ours, theirs) = network.pipe(ip, addr.ip());
            connect_ends(&inbound, Box::new(ours), Box::new(theirs), source, addr).await
        })
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

/// One direction of a connection: chunks in flight, each with the time it arrives.
#[derive(Default)]
struct Pipe {
    chunks: VecDeque<(Instant, Bytes)>,
    /// The writer shut down or is gone: end of stream once the chunks are read.
    closed: bool,
    /// The reader is gone: writes fail.
    reader_gone: bool,
    reader: Option<Waker>,
}

/// One end of a simulated connection.
pub(crate) struct SimStream {
    incoming: Arc<Mutex<Pipe>>,
    outgoing: Arc<Mutex<Pipe>>,
    one_way: Duration,
    rto: Duration,
    network: SimNetwork,
    /// Until the first chunk in flight arrives.
    wait: Option<Pin<Box<Sleep>>>,
}

fn pipe(pipe: &Mutex<Pipe>) -> MutexGuard<'_, Pipe> {
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
                let mut incoming = pipe(&self.incoming);
                let closed = incoming.closed;
                match incoming.chunks.front_mut() {
                    Some((at, chunk)) if *at <= Instant::now() => {
                        let n = chunk.len().min(buf.remaining());
                        buf.put_slice(&chunk.split_to(n));
                        if chunk.is_empty() {
                            incoming.chunks.pop_front();
                        }
                        return Poll::Ready(Ok(()));
                    }
                    Some((at, _)) => *at,
                    None if closed => return Poll::Ready(Ok(())),
                    None => {
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
        let extra = if self.network.lost() {
            self.rto
        } else {
            Duration::ZERO
        };
        let mut outgoing = pipe(&self.outgoing);
        if outgoing.reader_gone || outgoing.closed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        // In order, as TCP delivers: never before what was written earlier.
        let mut at = Instant::now() + self.one_way + extra;
        if let Some((last, _)) = outgoing.chunks.back() {
            at = at.max(*last);
        }
        outgoing
            .chunks
            .push_back((at, Bytes::copy_from_slice(data)));
        if let Some(reader) = outgoing.reader.take() {
            reader.wake();
        }
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        close(&self.outgoing);
        Poll::Ready(Ok(()))
    }
}

/// Ends the stream written to `outgoing`: its reader sees the end once it has read what
/// is in flight.
fn close(outgoing: &Mutex<Pipe>) {
    let mut outgoing = pipe(outgoing);
    outgoing.closed = true;
    if let Some(reader) = outgoing.reader.take() {
        reader.wake();
    }
}

impl Drop for SimStream {
    fn drop(&mut self) {
        close(&self.outgoing);
        pipe(&self.incoming).reader_gone = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn host(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, n))
    }

    /// 100 ms between any two hosts.
    fn network(loss: f64) -> SimNetwork {
        SimNetwork::new(1, 1, loss, |_, _| Duration::from_millis(100))
    }

    async fn connect(net: &SimNetwork) -> (Connection, Connection) {
        let mut listener = net
            .transport(host(2))
            .listen(SocketAddr::new(host(2), 0))
            .await
            .expect("listen");
        let addr = listener.local_addr();
        let dial = tokio::spawn(net.transport(host(1)).dial(addr, None));
        let inbound = listener.accept().await.expect("accept").upgrade.await;
        (
            dial.await.expect("join").expect("dial"),
            inbound.expect("up"),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_dial_costs_a_round_trip_and_bytes_half_of_one() {
        let net = network(0.0);
        let start = Instant::now();
        let (mut a, mut b) = connect(&net).await;
        assert_eq!(start.elapsed(), Duration::from_millis(100), "the dial");
        assert_eq!(b.remote_addr.ip(), host(1));

        let sent = Instant::now();
        a.io.write_all(b"ping").await.expect("write");
        let mut buf = [0u8; 4];
        b.io.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"ping");
        assert_eq!(sent.elapsed(), Duration::from_millis(50), "one way");
        b.io.write_all(b"pong").await.expect("write");
        a.io.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"pong");
        assert_eq!(sent.elapsed(), Duration::from_millis(100), "a round trip");

        // Shut down: the other end reads what was in flight, then the end.
        a.io.write_all(b"bye").await.expect("write");
        a.io.shutdown().await.expect("shutdown");
        let mut rest = Vec::new();
        b.io.read_to_end(&mut rest).await.expect("read");
        assert_eq!(rest, b"bye");
        drop(b);
        assert!(a.io.write_all(b"x").await.is_err(), "the reader is gone");
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_write_arrives_a_retransmission_timeout_later_and_in_order() {
        let net = network(1.0);
        let (mut a, mut b) = connect(&net).await;
        let sent = Instant::now();
        a.io.write_all(b"one").await.expect("write");
        let mut buf = [0u8; 3];
        b.io.read_exact(&mut buf).await.expect("read");
        // 50 ms one way, plus a timeout of two round trips.
        assert_eq!(sent.elapsed(), Duration::from_millis(250));
        assert!(
            net.transport(host(1))
                .dial(SocketAddr::new(host(3), 1), None)
                .await
                .is_err(),
            "nothing listens there"
        );
    }
}
