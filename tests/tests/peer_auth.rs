//! Peers that cannot prove their identity are refused before any DHT message is
//! processed: plain TCP, TLS 1.2, a certificate whose key does not sign the handshake,
//! a malformed certificate, a HELLO claiming an id its key does not make, and an id
//! without enough proof of work. Each is a crafted client against a real node. And when
//! a node dials a peer whose id it knows, its first request follows its HELLO at once,
//! but nothing the peer sends counts before the peer's own HELLO has proven that id.

use std::sync::Arc;
use std::time::Duration;

use dht_core::{Node, NodeConfig};
use dht_security::{HostKey, pow};
use dht_tests::raw_peer::{PeerIdentity, RawAcceptor, RawPeer};
use dht_tests::{TEST_POW, init_tracing, test_config};
use dht_wire::{PeerCodec, PeerFrame, PeerMessage};
use futures::{SinkExt, StreamExt};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WantsClientCert};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, ConfigBuilder, DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

async fn node() -> Node {
    Node::start(test_config(&[])).await.expect("node starts")
}

/// A HELLO over `stream` gets no answer: the node closes the connection.
async fn hello_is_refused<S>(stream: S, hello: dht_wire::Hello) -> bool
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut framed = Framed::new(stream, PeerCodec);
    if framed
        .send(PeerFrame::request(0, PeerMessage::Hello(hello)))
        .await
        .is_err()
    {
        return true;
    }
    matches!(
        tokio::time::timeout(Duration::from_secs(5), framed.next()).await,
        Ok(None | Some(Err(_)))
    )
}

#[tokio::test]
async fn plain_tcp_is_refused() {
    init_tracing();
    let a = node().await;
    let me = PeerIdentity::new().expect("identity");
    let tcp = TcpStream::connect(a.listen_addr()).await.expect("connect");
    assert!(hello_is_refused(tcp, me.hello()).await);
    assert_eq!(a.routing_table_len(), 0);
    a.shutdown().await;
}

#[tokio::test]
async fn tls12_is_refused() {
    init_tracing();
    let a = node().await;
    let me = PeerIdentity::new().expect("identity");
    let (cert, key) = me.host.certificate().expect("certificate");
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS12])
            .expect("TLS 1.2 config")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyServer))
            .with_client_auth_cert(vec![cert], key)
            .expect("client cert");
    assert!(
        me.tls_with(a.listen_addr(), Arc::new(config))
            .await
            .is_err()
    );
    assert_eq!(a.routing_table_len(), 0);
    a.shutdown().await;
}

#[tokio::test]
async fn a_certificate_whose_key_does_not_sign_the_handshake_is_refused() {
    init_tracing();
    let a = node().await;
    let shown = PeerIdentity::new().expect("identity");
    let signer = HostKey::generate().expect("key");
    let (cert, _) = shown.host.certificate().expect("certificate");
    let (_, other_key) = signer.certificate().expect("certificate");
    assert!(presenting_is_refused(&a, &shown, cert, other_key).await);
    assert_eq!(a.routing_table_len(), 0);
    a.shutdown().await;
}

#[tokio::test]
async fn a_malformed_certificate_is_refused() {
    init_tracing();
    let a = node().await;
    let me = PeerIdentity::new().expect("identity");
    let (_, key) = me.host.certificate().expect("certificate");
    let garbage = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x07]);
    assert!(presenting_is_refused(&a, &me, garbage, key).await);
    assert_eq!(a.routing_table_len(), 0);
    a.shutdown().await;
}

#[tokio::test]
async fn a_hello_claiming_an_id_of_another_key_is_refused() {
    init_tracing();
    let a = node().await;
    let me = PeerIdentity::new().expect("identity");
    let other = PeerIdentity::new().expect("identity");
    // Our key, their (valid) id and nonce.
    let mut hello = me.hello();
    hello.node_id = other.id;
    hello.pow_nonce = other.nonce;
    let stream = me.tls(a.listen_addr()).await.expect("TLS itself succeeds");
    assert!(hello_is_refused(stream, hello).await);
    // A wrong nonce for our own id is refused too.
    let mut hello = me.hello();
    hello.pow_nonce = hello.pow_nonce.wrapping_add(1);
    let stream = me.tls(a.listen_addr()).await.expect("TLS");
    assert!(hello_is_refused(stream, hello).await);
    assert_eq!(a.routing_table_len(), 0);
    // The honest HELLO of the same key is let in.
    let hello = me.hello();
    let (_peer, theirs) = RawPeer::connect_as(a.listen_addr(), me, hello)
        .await
        .expect("the honest HELLO is accepted");
    assert_eq!(theirs.node_id, a.id());
    a.shutdown().await;
}

#[tokio::test]
async fn an_id_without_enough_work_is_refused() {
    init_tracing();
    let a = Node::start(NodeConfig {
        min_pow_difficulty: 12,
        ..test_config(&[])
    })
    .await
    .expect("node");
    // A nonce whose id has fewer than 12 bits of work.
    let host = HostKey::generate().expect("key");
    let (nonce, id) = (0u64..)
        .map(|n| (n, pow::derive_node_id(host.spki_der(), n)))
        .find(|(_, id)| pow::pow_bits(id) < 12)
        .expect("found");
    let weak = PeerIdentity { host, nonce, id };
    let stream = weak.tls(a.listen_addr()).await.expect("TLS");
    assert!(hello_is_refused(stream, weak.hello()).await);
    // With enough work, the same node lets a peer in.
    let strong = PeerIdentity::with_difficulty(12).expect("identity");
    let hello = strong.hello();
    assert!(
        RawPeer::connect_as(a.listen_addr(), strong, hello)
            .await
            .is_ok()
    );
    assert_eq!(a.routing_table_len(), 1);
    a.shutdown().await;
}

#[tokio::test]
async fn one_node_at_the_default_difficulty() {
    init_tracing();
    let defaults = NodeConfig::default();
    assert!(defaults.pow_difficulty >= 16);
    let a = Node::start(NodeConfig {
        p2p_address: "127.0.0.1:0".parse().expect("literal"),
        ..NodeConfig::default()
    })
    .await
    .expect("a node at the default difficulty starts");
    assert!(pow::has_pow(&a.id(), defaults.pow_difficulty));
    let b = Node::start(NodeConfig {
        p2p_address: "127.0.0.1:0".parse().expect("literal"),
        bootstrap_peers: vec![dht_core::BootstrapPeer {
            id: Some(a.id()),
            address: a.listen_addr().to_string(),
        }],
        ..NodeConfig::default()
    })
    .await
    .expect("b");
    assert!(b.routing_contacts().iter().any(|c| c.id == a.id()));
    // A test identity (TEST_POW bits) is below the default minimum.
    let weak = PeerIdentity::with_difficulty(TEST_POW).expect("identity");
    if pow::pow_bits(&weak.id) < defaults.min_pow_difficulty {
        let stream = weak.tls(a.listen_addr()).await.expect("TLS");
        assert!(hello_is_refused(stream, weak.hello()).await);
    }
    a.shutdown().await;
    b.shutdown().await;
}

/// Whether the node refuses `who` when its TLS client presents `cert` while signing
/// the handshake with `key` (whatever they are): at the TLS handshake or, failing that,
/// at the HELLO.
async fn presenting_is_refused(
    node: &Node,
    who: &PeerIdentity,
    cert: CertificateDer<'static>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
) -> bool {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let signing = provider.key_provider.load_private_key(key).expect("key");
    let certified = Arc::new(CertifiedKey::new(vec![cert], signing));
    let config = builder(provider).with_client_cert_resolver(Arc::new(Fixed(certified)));
    match who.tls_with(node.listen_addr(), Arc::new(config)).await {
        Err(_) => true,
        Ok(stream) => hello_is_refused(stream, who.hello()).await,
    }
}

fn builder(
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> ConfigBuilder<ClientConfig, WantsClientCert> {
    ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3 config")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyServer))
}

/// Presents a fixed certificate and signing key, whatever they are.
#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesClientCert for Fixed {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The attacking client does not care who the server is.
#[derive(Debug)]
struct AcceptAnyServer;

impl ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The next frame the node sends on `framed`, within 5 s.
async fn next_frame<S>(framed: &mut Framed<S, PeerCodec>) -> PeerFrame
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    tokio::time::timeout(Duration::from_secs(5), framed.next())
        .await
        .expect("a frame in time")
        .expect("not closed")
        .expect("well formed")
}

#[tokio::test]
async fn a_dialled_peer_gets_the_first_request_right_behind_the_hello() {
    init_tracing();
    let node = Arc::new(node().await);
    let peer = RawAcceptor::bind().await.expect("bind");
    let contact = dht_core::Contact {
        id: peer.identity.id,
        addr: peer.addr().expect("addr"),
    };
    let ping = tokio::spawn({
        let node = node.clone();
        async move { node.ping(contact).await }
    });
    let mut framed = peer.accept().await.expect("accepted");
    let hello = next_frame(&mut framed).await;
    assert!(matches!(hello.message, PeerMessage::Hello(_)), "{hello:?}");
    // Nothing has been answered yet, and the request is here already: it did not wait
    // for our HELLO.
    let request = next_frame(&mut framed).await;
    assert_eq!(request.message, PeerMessage::Ping, "{request:?}");
    assert!(
        !node.routing_contacts().iter().any(|c| c.id == contact.id),
        "the peer is not in the table before its HELLO"
    );
    framed
        .send(PeerFrame::response(
            0,
            PeerMessage::Hello(peer.identity.hello()),
        ))
        .await
        .expect("HELLO sent");
    framed
        .send(PeerFrame::response(request.request_id, PeerMessage::Pong))
        .await
        .expect("PONG sent");
    let answered = tokio::time::timeout(Duration::from_secs(5), ping)
        .await
        .expect("in time")
        .expect("join");
    assert!(answered.is_ok(), "{answered:?}");
    assert!(node.routing_contacts().iter().any(|c| c.id == contact.id));
}

#[tokio::test]
async fn an_answer_behind_a_hello_of_another_id_is_refused() {
    init_tracing();
    let node = Arc::new(node().await);
    let peer = RawAcceptor::bind().await.expect("bind");
    // The node expects someone else at the peer's address.
    let expected = PeerIdentity::new().expect("identity").id;
    let contact = dht_core::Contact {
        id: expected,
        addr: peer.addr().expect("addr"),
    };
    let ping = tokio::spawn({
        let node = node.clone();
        async move { node.ping(contact).await }
    });
    let mut framed = peer.accept().await.expect("accepted");
    let _hello = next_frame(&mut framed).await;
    let request = next_frame(&mut framed).await;
    // A well-formed HELLO of the peer's own (proven) id, and a prompt answer.
    framed
        .send(PeerFrame::response(
            0,
            PeerMessage::Hello(peer.identity.hello()),
        ))
        .await
        .expect("HELLO sent");
    let _ = framed
        .send(PeerFrame::response(request.request_id, PeerMessage::Pong))
        .await;
    let answered = tokio::time::timeout(Duration::from_secs(5), ping)
        .await
        .expect("in time")
        .expect("join");
    assert!(
        matches!(&answered, Err(dht_core::RpcError::Connect(reason)) if reason.contains("expected node")),
        "{answered:?}"
    );
    let known = node.routing_contacts();
    assert!(
        !known
            .iter()
            .any(|c| c.id == expected || c.id == peer.identity.id)
    );
    assert_eq!(node.connected_peers(), 0, "the connection is gone");
}

#[tokio::test]
async fn a_peer_still_to_prove_its_id_does_not_stand_in_for_that_node() {
    init_tracing();
    let real = node().await;
    let node = Arc::new(node().await);
    // Someone at another address, whom a lookup named as `real`.
    let impostor = RawAcceptor::bind().await.expect("bind");
    let claimed = dht_core::Contact {
        id: real.id(),
        addr: impostor.addr().expect("addr"),
    };
    let misled = tokio::spawn({
        let node = node.clone();
        async move { node.ping(claimed).await }
    });
    let mut framed = impostor.accept().await.expect("accepted");
    let _hello = next_frame(&mut framed).await;
    let _ping = next_frame(&mut framed).await;
    // While the impostor keeps its HELLO back, the real node is reached as ever.
    let direct = tokio::time::timeout(Duration::from_secs(5), node.ping(real.contact()))
        .await
        .expect("the real node answered in time");
    assert!(direct.is_ok(), "{direct:?}");
    // Then the impostor's HELLO shows it is someone else: only its own request fails.
    framed
        .send(PeerFrame::response(
            0,
            PeerMessage::Hello(impostor.identity.hello()),
        ))
        .await
        .expect("HELLO sent");
    let misled = tokio::time::timeout(Duration::from_secs(5), misled)
        .await
        .expect("in time")
        .expect("join");
    assert!(
        matches!(&misled, Err(dht_core::RpcError::Connect(_))),
        "{misled:?}"
    );
    assert!(node.routing_contacts().contains(&real.contact()));
    assert!(node.ping(real.contact()).await.is_ok());
}
