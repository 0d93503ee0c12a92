//! The HELLO exchange that turns a raw connection into an authenticated peer
//! connection. No DHT frame is processed before it completes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use dht_id::NodeId;
use dht_routing::Contact;
use dht_wire::{Hello, PROTOCOL_VERSION, PeerCodec, PeerFrame, PeerMessage};
use futures::{SinkExt, StreamExt};
use tokio_util::codec::Framed;

use crate::conn::reachable_addr;
use crate::deadline::{DeadlineCodec, PartialSince};
use crate::transport::{Connection, PeerIdentity, PeerIo};

/// A connection after the handshake, framed.
pub(crate) type PeerFramed = Framed<Box<dyn PeerIo>, DeadlineCodec<PeerCodec>>;

/// What a completed handshake yields.
pub(crate) struct Shaken {
    /// The framed connection; its read buffer may already hold the peer's first frames.
    pub(crate) framed: PeerFramed,
    /// The peer, with the address it can be reached at.
    pub(crate) contact: Contact,
    /// The socket address the connection comes from (for per-IP limits).
    pub(crate) remote_addr: SocketAddr,
    /// Since when a frame has been partly received (for the frame deadline).
    pub(crate) partial: Arc<PartialSince>,
}

/// Which side of the connection we are.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Role {
    /// We dialled `addr`, expecting `expected` there when known.
    Dialer {
        addr: SocketAddr,
        expected: Option<NodeId>,
    },
    /// The peer dialled us.
    Acceptor,
}

/// Runs the HELLO exchange within `timeout`.
pub(crate) async fn handshake(
    conn: Connection,
    role: Role,
    local: Hello,
    min_pow_difficulty: u32,
    timeout: Duration,
) -> Result<Shaken, String> {
    let remote_addr = conn.remote_addr;
    let identity = conn.identity;
    let (codec, partial) = DeadlineCodec::new(PeerCodec);
    let mut framed = Framed::new(conn.io, codec);
    let exchange = async {
        let theirs = match role {
            Role::Dialer { .. } => {
                framed
                    .send(PeerFrame::request(0, PeerMessage::Hello(local)))
                    .await
                    .map_err(|e| format!("sending HELLO: {e}"))?;
                expect_hello(framed.next().await, true)?
            }
            Role::Acceptor => expect_hello(framed.next().await, false)?,
        };
        // The acceptor checks before answering, so a refused peer learns nothing of us.
        verify(&theirs, &identity, role, &local, min_pow_difficulty)?;
        if let Role::Acceptor = role {
            framed
                .send(PeerFrame::response(0, PeerMessage::Hello(local)))
                .await
                .map_err(|e| format!("sending HELLO: {e}"))?;
        }
        let addr = match role {
            Role::Dialer { addr, .. } => addr,
            Role::Acceptor => reachable_addr(theirs.listen_addr, remote_addr),
        };
        Ok::<_, String>(Contact {
            id: theirs.node_id,
            addr,
        })
    };
    let contact = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| "handshake timed out".to_string())??;
    Ok(Shaken {
        framed,
        contact,
        remote_addr,
        partial,
    })
}

/// The dialer's side when the peer's id is known, without waiting for the peer's HELLO:
/// ours is sent within `timeout`, and the connection may carry requests at once. They
/// travel right behind the HELLO, which saves a round trip on every new connection (the
/// acceptor reads them only once it has accepted our HELLO, and answers nothing before
/// its own). The peer's HELLO must then pass [`HelloCheck::check`] before the connection
/// takes any other frame from it.
pub(crate) async fn send_hello(
    conn: Connection,
    addr: SocketAddr,
    expected: NodeId,
    local: Hello,
    min_pow_difficulty: u32,
    timeout: Duration,
) -> Result<(Shaken, HelloCheck), String> {
    let remote_addr = conn.remote_addr;
    let identity = conn.identity;
    let (codec, partial) = DeadlineCodec::new(PeerCodec);
    let mut framed = Framed::new(conn.io, codec);
    tokio::time::timeout(
        timeout,
        framed.send(PeerFrame::request(0, PeerMessage::Hello(local))),
    )
    .await
    .map_err(|_| "handshake timed out".to_string())?
    .map_err(|e| format!("sending HELLO: {e}"))?;
    let shaken = Shaken {
        framed,
        contact: Contact { id: expected, addr },
        remote_addr,
        partial,
    };
    let check = HelloCheck {
        identity,
        role: Role::Dialer {
            addr,
            expected: Some(expected),
        },
        local,
        min_pow_difficulty,
    };
    Ok((shaken, check))
}

/// What the peer's HELLO must prove on a connection opened by [`send_hello`].
pub(crate) struct HelloCheck {
    identity: PeerIdentity,
    role: Role,
    local: Hello,
    min_pow_difficulty: u32,
}

impl HelloCheck {
    /// Checks the first frame the peer sent: its HELLO answer, with every check the
    /// full handshake makes (the id expected, proven by the TLS key and the work).
    pub(crate) fn check(
        &self,
        first: Option<Result<PeerFrame, dht_wire::PeerCodecError>>,
    ) -> Result<(), String> {
        let theirs = expect_hello(first, true)?;
        verify(
            &theirs,
            &self.identity,
            self.role,
            &self.local,
            self.min_pow_difficulty,
        )
    }
}

fn expect_hello(
    frame: Option<Result<PeerFrame, dht_wire::PeerCodecError>>,
    is_response: bool,
) -> Result<Hello, String> {
    match frame {
        Some(Ok(PeerFrame {
            request_id: 0,
            is_response: r,
            message: PeerMessage::Hello(hello),
        })) if r == is_response => Ok(hello),
        Some(Ok(frame)) => Err(format!(
            "expected HELLO, got {} (request id {})",
            frame.message.name(),
            frame.request_id
        )),
        Some(Err(e)) => Err(format!("malformed frame: {e}")),
        None => Err("closed during the handshake".into()),
    }
}

/// The checks every HELLO passes before the peer is let in.
fn verify(
    theirs: &Hello,
    identity: &PeerIdentity,
    role: Role,
    local: &Hello,
    min_pow_difficulty: u32,
) -> Result<(), String> {
    if theirs.version != PROTOCOL_VERSION {
        return Err(format!(
            "protocol version {} (we speak {PROTOCOL_VERSION})",
            theirs.version
        ));
    }
    if theirs.network_id != local.network_id {
        return Err(format!(
            "network id {:#x} (ours is {:#x})",
            theirs.network_id, local.network_id
        ));
    }
    if theirs.node_id == local.node_id {
        return Err("the peer claims our own node id".into());
    }
    if theirs.listen_addr.port() == 0 {
        return Err("the peer advertises port 0".into());
    }
    if let Role::Dialer {
        expected: Some(expected),
        ..
    } = role
    {
        if theirs.node_id != expected {
            return Err(format!(
                "expected node {expected}, the peer says it is {}",
                theirs.node_id
            ));
        }
    }
    match identity {
        PeerIdentity::PublicKey(spki) => dht_security::pow::verify_identity(
            spki,
            theirs.pow_nonce,
            &theirs.node_id,
            min_pow_difficulty,
        )
        .map_err(|e| format!("the peer's key does not prove its id: {e}")),
        // A node never lets in a peer that did not prove a key.
        _ => Err("the transport did not authenticate the peer".into()),
    }
}
