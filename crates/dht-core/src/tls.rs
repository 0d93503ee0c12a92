//! Mutual TLS 1.3 over any [`Transport`]: every peer connection of a node runs
//! through it. The certificate verifiers (in `dht-security`) accept a self-signed
//! certificate whose key proves possession in the handshake; the connection then
//! reports that key ([`PeerIdentity::PublicKey`]) and the HELLO exchange checks that the
//! key and the peer's proof-of-work nonce reproduce the node id it claims.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use dht_id::NodeId;
use dht_security::HostKey;
use futures::future::BoxFuture;
use rustls::pki_types::ServerName;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::Error;
use crate::transport::{Connection, Incoming, Listener, PeerIdentity, Transport};

/// TLS over another transport (TCP, or the in-memory one in tests).
#[derive(Clone)]
pub struct TlsTransport {
    inner: Arc<dyn Transport>,
    connector: TlsConnector,
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for TlsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTransport").finish_non_exhaustive()
    }
}

impl TlsTransport {
    /// Mutual TLS with `host`'s self-signed certificate over `inner`.
    pub fn new(inner: Arc<dyn Transport>, host: &HostKey) -> Result<Self, Error> {
        let tls = |e: dht_security::SecurityError| Error::Tls(e.to_string());
        Ok(TlsTransport {
            inner,
            connector: TlsConnector::from(dht_security::tls::client_config(host).map_err(tls)?),
            acceptor: TlsAcceptor::from(dht_security::tls::server_config(host).map_err(tls)?),
        })
    }
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

fn server_name() -> io::Result<ServerName<'static>> {
    ServerName::try_from(dht_security::tls::SERVER_NAME).map_err(invalid)
}

impl Transport for TlsTransport {
    fn dial(
        &self,
        addr: SocketAddr,
        expected: Option<NodeId>,
    ) -> BoxFuture<'static, io::Result<Connection>> {
        let plain = self.inner.dial(addr, expected);
        let connector = self.connector.clone();
        Box::pin(async move {
            let conn = plain.await?;
            let stream = connector.connect(server_name()?, conn.io).await?;
            let spki = dht_security::tls::peer_spki(stream.get_ref().1.peer_certificates())
                .map_err(invalid)?;
            Ok(Connection {
                io: Box::new(stream),
                remote_addr: conn.remote_addr,
                identity: PeerIdentity::PublicKey(spki),
            })
        })
    }

    fn listen(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn Listener>>> {
        let plain = self.inner.listen(addr);
        let acceptor = self.acceptor.clone();
        Box::pin(async move {
            let inner = plain.await?;
            Ok(Box::new(TlsListener { inner, acceptor }) as Box<dyn Listener>)
        })
    }
}

struct TlsListener {
    inner: Box<dyn Listener>,
    acceptor: TlsAcceptor,
}

impl Listener for TlsListener {
    fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr()
    }

    fn accept(&mut self) -> BoxFuture<'_, io::Result<Incoming>> {
        Box::pin(async move {
            let incoming = self.inner.accept().await?;
            let acceptor = self.acceptor.clone();
            let upgrade = incoming.upgrade;
            Ok(Incoming {
                remote_addr: incoming.remote_addr,
                upgrade: Box::pin(async move {
                    let conn = upgrade.await?;
                    let stream = acceptor.accept(conn.io).await?;
                    let spki = dht_security::tls::peer_spki(stream.get_ref().1.peer_certificates())
                        .map_err(invalid)?;
                    Ok(Connection {
                        io: Box::new(stream),
                        remote_addr: conn.remote_addr,
                        identity: PeerIdentity::PublicKey(spki),
                    })
                }),
            })
        })
    }
}
