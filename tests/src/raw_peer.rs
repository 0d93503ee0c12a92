//! A hand-driven peer that speaks the peer protocol to a node, frame by frame: the
//! tests use it to send what a real node never would.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use dht_core::{DEFAULT_NETWORK_ID, NodeId};
use dht_security::{HostKey, pow};
use dht_wire::{Hello, PROTOCOL_VERSION, PeerCodec, PeerFrame, PeerMessage};
use futures::{SinkExt, StreamExt};
use rustls::pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::codec::Framed;

use crate::TEST_POW;

/// A peer identity: a key and the proof-of-work nonce of its id.
pub struct PeerIdentity {
    /// The key.
    pub host: HostKey,
    /// The nonce that, with the key, makes the id.
    pub nonce: u64,
    /// The id.
    pub id: NodeId,
}

impl PeerIdentity {
    /// A fresh identity with [`TEST_POW`] bits of work.
    pub fn new() -> anyhow::Result<PeerIdentity> {
        Self::with_difficulty(TEST_POW)
    }

    /// A fresh identity with `difficulty` bits of work.
    pub fn with_difficulty(difficulty: u32) -> anyhow::Result<PeerIdentity> {
        let host = HostKey::generate()?;
        let (nonce, id) = pow::mint(host.spki_der(), difficulty, rand::random(), u64::MAX)
            .context("minting a test identity")?;
        Ok(PeerIdentity { host, nonce, id })
    }

    /// The HELLO this identity sends.
    pub fn hello(&self) -> Hello {
        Hello {
            version: PROTOCOL_VERSION,
            network_id: DEFAULT_NETWORK_ID,
            node_id: self.id,
            listen_addr: "127.0.0.1:9".parse().expect("literal"),
            pow_nonce: self.nonce,
        }
    }

    /// Opens a mutual-TLS connection to a node's peer port with this identity.
    pub async fn tls(&self, addr: SocketAddr) -> anyhow::Result<TlsStream<TcpStream>> {
        self.tls_with(addr, dht_security::tls::client_config(&self.host)?)
            .await
    }

    /// Opens a TLS connection with any client configuration.
    pub async fn tls_with(
        &self,
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
    ) -> anyhow::Result<TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(addr).await?;
        Self::tls_over(tcp, config).await
    }

    /// Opens a mutual-TLS connection to a node's peer port from the local address
    /// `local_ip` (on loopback, 127.0.0.2 stands for "another host").
    pub async fn tls_from(
        &self,
        local_ip: IpAddr,
        addr: SocketAddr,
    ) -> anyhow::Result<TlsStream<TcpStream>> {
        let tcp = tcp_from(local_ip, addr).await?;
        Self::tls_over(tcp, dht_security::tls::client_config(&self.host)?).await
    }

    async fn tls_over(
        tcp: TcpStream,
        config: Arc<rustls::ClientConfig>,
    ) -> anyhow::Result<TlsStream<TcpStream>> {
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from(dht_security::tls::SERVER_NAME)?;
        let stream = tokio::time::timeout(
            Duration::from_secs(5),
            TlsConnector::from(config).connect(name, tcp),
        )
        .await
        .context("TLS handshake timed out")??;
        Ok(stream)
    }
}

/// What an honest but empty peer answers to a node's request.
pub fn honest_answer(request: &PeerMessage) -> PeerMessage {
    match request {
        PeerMessage::Ping => PeerMessage::Pong,
        PeerMessage::Store { .. } | PeerMessage::Replicate { .. } => PeerMessage::StoreResult {
            status: dht_wire::StoreStatus::Stored,
        },
        PeerMessage::FindNode { .. } | PeerMessage::FindValue { .. } => PeerMessage::Nodes {
            contacts: Vec::new(),
        },
        _ => PeerMessage::Error {
            code: dht_wire::ErrorCode::UnexpectedMessage,
        },
    }
}

/// A connection to a node after TLS, speaking frames.
pub struct RawPeer {
    /// The framed stream.
    pub framed: Framed<TlsStream<TcpStream>, PeerCodec>,
    /// Who this peer is.
    pub identity: PeerIdentity,
    next_id: u64,
}

impl RawPeer {
    /// Connects with a fresh identity and exchanges HELLOs. Returns the node's HELLO.
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<(RawPeer, Hello)> {
        let identity = PeerIdentity::new()?;
        let hello = identity.hello();
        Self::connect_as(addr, identity, hello).await
    }

    /// Connects as `identity`, sending `hello` (which may lie), and waits for the
    /// node's HELLO. Fails when the node closes the connection instead.
    pub async fn connect_as(
        addr: SocketAddr,
        identity: PeerIdentity,
        hello: Hello,
    ) -> anyhow::Result<(RawPeer, Hello)> {
        let stream = identity.tls(addr).await?;
        Self::hello_over(stream, identity, hello).await
    }

    /// Connects from the local address `local_ip` with a fresh identity and exchanges
    /// HELLOs. Fails when the node closes the connection instead (for instance when
    /// `local_ip` has its `max_connections_per_ip`).
    pub async fn connect_from(
        local_ip: IpAddr,
        addr: SocketAddr,
    ) -> anyhow::Result<(RawPeer, Hello)> {
        let identity = PeerIdentity::new()?;
        let hello = identity.hello();
        let stream = identity.tls_from(local_ip, addr).await?;
        Self::hello_over(stream, identity, hello).await
    }

    /// Connects with a fresh identity and sends its HELLO and `first` (any bytes) in
    /// one write, before the node's HELLO arrives; then waits for the node's HELLO.
    pub async fn connect_pipelined(
        addr: SocketAddr,
        first: &[u8],
    ) -> anyhow::Result<(RawPeer, Hello)> {
        let identity = PeerIdentity::new()?;
        let hello = identity.hello();
        let stream = identity.tls(addr).await?;
        Self::hello_then(stream, identity, hello, first).await
    }

    async fn hello_over(
        stream: TlsStream<TcpStream>,
        identity: PeerIdentity,
        hello: Hello,
    ) -> anyhow::Result<(RawPeer, Hello)> {
        Self::hello_then(stream, identity, hello, &[]).await
    }

    async fn hello_then(
        mut stream: TlsStream<TcpStream>,
        identity: PeerIdentity,
        hello: Hello,
        first: &[u8],
    ) -> anyhow::Result<(RawPeer, Hello)> {
        let mut bytes = bytes::BytesMut::new();
        dht_wire::encode_frame(
            &PeerFrame::request(0, PeerMessage::Hello(hello)),
            &mut bytes,
        )?;
        bytes.extend_from_slice(first);
        stream.write_all(&bytes).await?;
        stream.flush().await?;
        let mut framed = Framed::new(stream, PeerCodec);
        match tokio::time::timeout(Duration::from_secs(5), framed.next()).await? {
            Some(Ok(PeerFrame {
                message: PeerMessage::Hello(theirs),
                is_response: true,
                ..
            })) => Ok((
                RawPeer {
                    framed,
                    identity,
                    next_id: 1,
                },
                theirs,
            )),
            other => bail!("no HELLO back: {other:?}"),
        }
    }

    /// Sends a request and waits for its answer.
    /// Requests the node makes meanwhile (a hand-off of records, a ping) get the plain
    /// answers an honest peer would give.
    pub async fn request(&mut self, message: PeerMessage) -> anyhow::Result<PeerMessage> {
        let id = self.next_id;
        self.next_id += 1;
        self.framed.send(PeerFrame::request(id, message)).await?;
        loop {
            match tokio::time::timeout(Duration::from_secs(5), self.framed.next()).await? {
                Some(Ok(frame)) if frame.is_response && frame.request_id == id => {
                    return Ok(frame.message);
                }
                Some(Ok(frame)) if !frame.is_response => {
                    let answer = honest_answer(&frame.message);
                    self.framed
                        .send(PeerFrame::response(frame.request_id, answer))
                        .await?;
                }
                other => bail!("unexpected: {other:?}"),
            }
        }
    }

    /// True when the node closes the connection within 5 s (EOF or an error).
    pub async fn is_closed_by_node(&mut self) -> bool {
        matches!(
            tokio::time::timeout(Duration::from_secs(5), self.framed.next()).await,
            Ok(None | Some(Err(_)))
        )
    }

    /// Writes `bytes` as they are (not through the codec) and flushes them.
    pub async fn write_raw(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        // Anything the codec still buffers goes first.
        SinkExt::<PeerFrame>::flush(&mut self.framed).await?;
        let stream = self.framed.get_mut();
        stream.write_all(bytes).await?;
        stream.flush().await?;
        Ok(())
    }

    /// Closes our sending side (TLS close_notify, then TCP FIN); the node's frames can
    /// still be read.
    pub async fn close_write(&mut self) -> anyhow::Result<()> {
        SinkExt::<PeerFrame>::flush(&mut self.framed).await?;
        self.framed.get_mut().shutdown().await?;
        Ok(())
    }

    /// True when the node closes the connection within `timeout` (EOF or an error),
    /// reading and dropping any frames it sends before.
    pub async fn closed_within(&mut self, timeout: Duration) -> bool {
        let end = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(end, self.framed.next()).await {
                Ok(None | Some(Err(_))) => return true,
                Ok(Some(Ok(_))) => continue,
                Err(_) => return false,
            }
        }
    }
}

/// A peer that a node dials: a TLS listener with its own identity, driven frame by
/// frame once the node has connected.
pub struct RawAcceptor {
    listener: tokio::net::TcpListener,
    /// Who this peer is.
    pub identity: PeerIdentity,
}

impl RawAcceptor {
    /// Listens on 127.0.0.1 (any free port) with a fresh identity.
    pub async fn bind() -> anyhow::Result<RawAcceptor> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let identity = PeerIdentity::new()?;
        Ok(RawAcceptor { listener, identity })
    }

    /// Where it listens.
    pub fn addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Accepts one connection and completes TLS as the server; nothing of the peer
    /// protocol is read or sent yet.
    pub async fn accept(
        &self,
    ) -> anyhow::Result<Framed<tokio_rustls::server::TlsStream<TcpStream>, PeerCodec>> {
        let (tcp, _) = tokio::time::timeout(Duration::from_secs(5), self.listener.accept())
            .await
            .context("no connection came")??;
        let config = dht_security::tls::server_config(&self.identity.host)?;
        let stream = tokio::time::timeout(
            Duration::from_secs(5),
            tokio_rustls::TlsAcceptor::from(config).accept(tcp),
        )
        .await
        .context("TLS handshake timed out")??;
        Ok(Framed::new(stream, PeerCodec))
    }
}

/// A TCP connection to `addr` from the local address `local_ip` (any free port).
pub async fn tcp_from(local_ip: IpAddr, addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let socket = match local_ip {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket
        .bind(SocketAddr::new(local_ip, 0))
        .with_context(|| format!("binding {local_ip}"))?;
    Ok(socket.connect(addr).await?)
}
