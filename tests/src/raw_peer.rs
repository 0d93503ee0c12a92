//! A hand-driven peer that speaks the peer protocol to a node, frame by frame: the
//! tests use it to send what a real node never would.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use dht_core::{DEFAULT_NETWORK_ID, NodeId};
use dht_security::{HostKey, pow};
use dht_wire::{Hello, PROTOCOL_VERSION, PeerCodec, PeerFrame, PeerMessage};
use futures::{SinkExt, StreamExt};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
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
        let mut framed = Framed::new(stream, PeerCodec);
        framed
            .send(PeerFrame::request(0, PeerMessage::Hello(hello)))
            .await?;
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
    pub async fn request(&mut self, message: PeerMessage) -> anyhow::Result<PeerMessage> {
        let id = self.next_id;
        self.next_id += 1;
        self.framed.send(PeerFrame::request(id, message)).await?;
        match tokio::time::timeout(Duration::from_secs(5), self.framed.next()).await? {
            Some(Ok(frame)) if frame.is_response && frame.request_id == id => Ok(frame.message),
            other => bail!("unexpected: {other:?}"),
        }
    }

    /// True when the node closes the connection within 5 s (EOF or an error).
    pub async fn is_closed_by_node(&mut self) -> bool {
        matches!(
            tokio::time::timeout(Duration::from_secs(5), self.framed.next()).await,
            Ok(None | Some(Err(_)))
        )
    }
}
