//! How peer connections are made: a [`Transport`] dials and listens, and every
//! connection says what it proved about the remote end.
//!
//! The node only ever sees a byte stream plus a [`PeerIdentity`], so a TLS transport
//! slots in under the framing without touching the protocol logic, and
//! [`MemoryTransport`] replaces TCP for deterministic tests of many nodes in one process
//! (its streams are `tokio::io::duplex` pipes, so paused tokio time drives everything).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use dht_id::NodeId;
use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

/// A bidirectional byte stream to a peer.
pub trait PeerIo: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> PeerIo for T {}

/// What a transport proved about the remote end of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerIdentity {
    /// Nothing: the id the peer claims in its HELLO is trusted as it is. This is what
    /// plain TCP and the in-memory transport give.
    Unverified,
    /// The peer proved possession of this public key (DER SubjectPublicKeyInfo) in an
    /// authenticated handshake.
    PublicKey(Vec<u8>),
}

/// One established connection, before the DHT handshake.
pub struct Connection {
    /// The byte stream.
    pub io: Box<dyn PeerIo>,
    /// The remote socket address as this side sees it.
    pub remote_addr: SocketAddr,
    /// What the transport proved about the peer.
    pub identity: PeerIdentity,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("remote_addr", &self.remote_addr)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

/// An inbound connection just accepted, before its transport handshake.
pub struct Incoming {
    /// The remote socket address.
    pub remote_addr: SocketAddr,
    /// Completes the connection (for TLS, the handshake). The node runs it in a task of
    /// its own, within its connect timeout, so a slow peer never stalls the accept loop.
    pub upgrade: BoxFuture<'static, io::Result<Connection>>,
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming")
            .field("remote_addr", &self.remote_addr)
            .finish_non_exhaustive()
    }
}

impl Incoming {
    /// An inbound connection that needs no further handshake.
    pub fn ready(conn: Connection) -> Self {
        Incoming {
            remote_addr: conn.remote_addr,
            upgrade: Box::pin(std::future::ready(Ok(conn))),
        }
    }
}

/// Accepts inbound connections.
pub trait Listener: Send + 'static {
    /// The address actually bound (with the port chosen when 0 was asked for).
    fn local_addr(&self) -> SocketAddr;
    /// Waits for the next inbound connection.
    fn accept(&mut self) -> BoxFuture<'_, io::Result<Incoming>>;
}

/// Dials and listens. `expected` is the node id the dialler expects at `addr`, when
/// known: an authenticating transport refuses a peer that cannot prove it.
pub trait Transport: Send + Sync + 'static {
    /// Opens a connection to `addr`.
    fn dial(
        &self,
        addr: SocketAddr,
        expected: Option<NodeId>,
    ) -> BoxFuture<'static, io::Result<Connection>>;
    /// Binds `addr` and returns a listener for it.
    fn listen(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn Listener>>>;
    /// Whether this transport authenticates peers itself for the node of `host`: its
    /// connections then report the key the other end holds
    /// ([`PeerIdentity::PublicKey`]), and the node runs no TLS over them. Only a
    /// simulated network can (it knows every host's key; [`crate::SimNetwork`] when told
    /// to); every other transport gets mutual TLS (the default, `false`).
    fn authenticates(&self, _host: &dht_security::HostKey) -> bool {
        false
    }
}

/// Plain TCP: no authentication ([`PeerIdentity::Unverified`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct TcpTransport;

struct TcpListenerBox {
    listener: tokio::net::TcpListener,
    local: SocketAddr,
}

impl Listener for TcpListenerBox {
    fn local_addr(&self) -> SocketAddr {
        self.local
    }

    fn accept(&mut self) -> BoxFuture<'_, io::Result<Incoming>> {
        Box::pin(async move {
            let (stream, remote_addr) = self.listener.accept().await?;
            // Only a latency tweak: a failure must not look like an accept error.
            let _ = stream.set_nodelay(true);
            Ok(Incoming::ready(Connection {
                io: Box::new(stream),
                remote_addr,
                identity: PeerIdentity::Unverified,
            }))
        })
    }
}

impl Transport for TcpTransport {
    fn dial(
        &self,
        addr: SocketAddr,
        _expected: Option<NodeId>,
    ) -> BoxFuture<'static, io::Result<Connection>> {
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            Ok(Connection {
                io: Box::new(stream),
                remote_addr: addr,
                identity: PeerIdentity::Unverified,
            })
        })
    }

    fn listen(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn Listener>>> {
        Box::pin(async move {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            let local = listener.local_addr()?;
            Ok(Box::new(TcpListenerBox { listener, local }) as Box<dyn Listener>)
        })
    }
}

/// Buffer size of each direction of an in-memory pipe.
const MEMORY_PIPE_BYTES: usize = 256 * 1024;
/// Inbound connections queued per in-memory listener before dials wait.
const MEMORY_BACKLOG: usize = 128;

type Inbound = mpsc::Sender<Connection>;

/// An in-memory network: every [`MemoryTransport`] made from one `MemoryNetwork` can
/// reach the others' listeners by address. No global state: each test makes its own.
#[derive(Clone, Default)]
pub struct MemoryNetwork {
    inner: Arc<Mutex<MemoryState>>,
}

#[derive(Default)]
struct MemoryState {
    listeners: HashMap<SocketAddr, Inbound>,
    next_port: u16,
}

impl std::fmt::Debug for MemoryNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryNetwork").finish_non_exhaustive()
    }
}

impl MemoryNetwork {
    /// A new, empty network.
    pub fn new() -> Self {
        Self::default()
    }

    /// A transport attached to this network.
    pub fn transport(&self) -> MemoryTransport {
        MemoryTransport {
            network: self.clone(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        // A poisoned lock only means another test thread panicked; the map is still sound.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A transport over in-memory pipes (see [`MemoryNetwork`]).
#[derive(Clone, Debug)]
pub struct MemoryTransport {
    network: MemoryNetwork,
}

/// The queue of the listener at an address of an in-process network, if one listens.
pub(crate) fn listening(
    listener: Option<&mpsc::Sender<Connection>>,
) -> io::Result<mpsc::Sender<Connection>> {
    listener
        .cloned()
        .ok_or_else(|| io::Error::new(io::ErrorKind::ConnectionRefused, "nothing listens there"))
}

/// Completes a dial of an in-process network: `theirs` goes to the listener's queue as
/// a connection from `source` (the dialling host, with what is proved about it), `ours`
/// is returned as the connection to `addr` (the listening host, likewise).
pub(crate) async fn connect_ends(
    inbound: &mpsc::Sender<Connection>,
    ours: Box<dyn PeerIo>,
    theirs: Box<dyn PeerIo>,
    (source, source_identity): (SocketAddr, PeerIdentity),
    (addr, addr_identity): (SocketAddr, PeerIdentity),
) -> io::Result<Connection> {
    inbound
        .send(Connection {
            io: theirs,
            remote_addr: source,
            identity: source_identity,
        })
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::ConnectionRefused, "listener gone"))?;
    Ok(Connection {
        io: ours,
        remote_addr: addr,
        identity: addr_identity,
    })
}

/// A listener of an in-process network: its dials hand it their connections through a
/// channel, and `release` (which frees its address) runs when it is dropped.
pub(crate) struct ChannelListener {
    rx: mpsc::Receiver<Connection>,
    local: SocketAddr,
    release: Option<Box<dyn FnOnce() + Send>>,
}

impl ChannelListener {
    pub(crate) fn new(
        rx: mpsc::Receiver<Connection>,
        local: SocketAddr,
        release: impl FnOnce() + Send + 'static,
    ) -> Self {
        ChannelListener {
            rx,
            local,
            release: Some(Box::new(release)),
        }
    }
}

impl Drop for ChannelListener {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            release();
        }
    }
}

impl Listener for ChannelListener {
    fn local_addr(&self) -> SocketAddr {
        self.local
    }

    fn accept(&mut self) -> BoxFuture<'_, io::Result<Incoming>> {
        Box::pin(async move {
            self.rx
                .recv()
                .await
                .map(Incoming::ready)
                .ok_or_else(|| io::Error::new(io::ErrorKind::BrokenPipe, "network gone"))
        })
    }
}

impl Transport for MemoryTransport {
    fn dial(
        &self,
        addr: SocketAddr,
        _expected: Option<NodeId>,
    ) -> BoxFuture<'static, io::Result<Connection>> {
        let network = self.network.clone();
        Box::pin(async move {
            let inbound = listening(network.state().listeners.get(&addr))?;
            let (local_end, remote_end) = tokio::io::duplex(MEMORY_PIPE_BYTES);
            let source = {
                let mut state = network.state();
                state.next_port = state.next_port.wrapping_add(1).max(1);
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), state.next_port)
            };
            connect_ends(
                &inbound,
                Box::new(local_end),
                Box::new(remote_end),
                (source, PeerIdentity::Unverified),
                (addr, PeerIdentity::Unverified),
            )
            .await
        })
    }

    fn listen(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn Listener>>> {
        let network = self.network.clone();
        Box::pin(async move {
            let (tx, rx) = mpsc::channel(MEMORY_BACKLOG);
            let local = {
                let mut state = network.state();
                let mut local = addr;
                if local.port() == 0 {
                    // Hand out ports from the top of the range, like an ephemeral range.
                    let mut port = 10_000u16;
                    while state
                        .listeners
                        .contains_key(&SocketAddr::new(addr.ip(), port))
                    {
                        port = port.checked_add(1).ok_or_else(|| {
                            io::Error::new(io::ErrorKind::AddrInUse, "no free port")
                        })?;
                    }
                    local.set_port(port);
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn memory_transport_connects_by_address() {
        let net = MemoryNetwork::new();
        let t = net.transport();
        let mut listener = t
            .listen("127.0.0.1:0".parse().unwrap())
            .await
            .expect("listen");
        let addr = listener.local_addr();
        assert_ne!(addr.port(), 0);
        let dial = tokio::spawn({
            let t = t.clone();
            async move { t.dial(addr, None).await }
        });
        let mut inbound = listener
            .accept()
            .await
            .expect("accept")
            .upgrade
            .await
            .expect("upgrade");
        let mut outbound = dial.await.expect("join").expect("dial");
        outbound.io.write_all(b"ping").await.expect("write");
        let mut buf = [0u8; 4];
        inbound.io.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"ping");
        // A second listener on the same address is refused, and a dial elsewhere fails.
        assert!(t.listen(addr).await.is_err());
        let other: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert!(t.dial(other, None).await.is_err());
        drop(listener);
        assert!(t.dial(addr, None).await.is_err());
    }
}
