//! Mutual TLS 1.3 handshakes between host keys, driven in memory (no sockets): bytes are
//! shuttled between a `ClientConnection` and a `ServerConnection` until both are done
//! or one refuses.

use std::sync::Arc;

use dht_security::tls::{self, PeerVerifier};
use dht_security::{HostKey, KeyAlgorithm};
use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, ClientConfig, ClientConnection, Error, ServerConfig, ServerConnection,
    SignatureScheme,
};

const ED25519: &str = include_str!("data/ed25519.pk8.pem");
const P256: &str = include_str!("data/p256.pk8.pem");
const RSA2048: &str = include_str!("data/rsa2048.pk8.pem");
const RSA4096: &str = include_str!("data/rsa4096.pk8.pem");

fn key(pem: &str) -> HostKey {
    HostKey::from_pem(pem).unwrap_or_else(|e| panic!("{e}"))
}

/// Which side refused the handshake.
#[derive(Debug, PartialEq)]
enum Refused {
    ByClient(Error),
    ByServer(Error),
}

/// Moves everything `from` wants to write into `to`, then lets `to` process it.
fn shuttle(
    from: &mut rustls::ConnectionCommon<impl Sized>,
    to: &mut rustls::ConnectionCommon<impl Sized>,
) -> Result<bool, Error> {
    let mut bytes = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut bytes).expect("writing to a Vec");
    }
    let moved = !bytes.is_empty();
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        to.read_tls(&mut rest).expect("reading from a slice");
        to.process_new_packets()?;
    }
    Ok(moved)
}

fn handshake(client: &mut ClientConnection, server: &mut ServerConnection) -> Result<(), Refused> {
    for _ in 0..16 {
        let to_server = shuttle(&mut **client, &mut **server).map_err(Refused::ByServer)?;
        let to_client = shuttle(&mut **server, &mut **client).map_err(Refused::ByClient)?;
        if !to_server && !to_client && !client.is_handshaking() && !server.is_handshaking() {
            return Ok(());
        }
    }
    panic!("the handshake did not finish");
}

fn connect(
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
) -> (ClientConnection, ServerConnection, Result<(), Refused>) {
    let name = ServerName::try_from(tls::SERVER_NAME).expect("server name");
    let mut client = ClientConnection::new(client, name).expect("client");
    let mut server = ServerConnection::new(server).expect("server");
    let result = handshake(&mut client, &mut server);
    (client, server, result)
}

/// A client or server configuration presenting exactly this certificate chain and key,
/// whatever they are (rustls' builders refuse a key that does not match the certificate).
#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl Fixed {
    fn new(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Arc<Self> {
        let provider = tls::crypto_provider();
        let signer = provider
            .key_provider
            .load_private_key(key)
            .expect("signing key");
        Arc::new(Fixed(Arc::new(CertifiedKey::new(chain, signer))))
    }
}

impl ResolvesClientCert for Fixed {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

fn verifier() -> Arc<PeerVerifier> {
    Arc::new(PeerVerifier::new(
        tls::crypto_provider().signature_verification_algorithms,
    ))
}

/// A TLS 1.3 client that verifies with our verifier and presents `fixed`.
fn client_presenting(fixed: Arc<Fixed>) -> Arc<ClientConfig> {
    let config = ClientConfig::builder_with_provider(tls::crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier())
        .with_client_cert_resolver(fixed);
    Arc::new(config)
}

/// A TLS 1.3 server that requires client certificates and presents `fixed`.
fn server_presenting(fixed: Arc<Fixed>) -> Arc<ServerConfig> {
    let config = ServerConfig::builder_with_provider(tls::crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .with_client_cert_verifier(verifier())
        .with_cert_resolver(fixed);
    Arc::new(config)
}

fn mismatched(cert_of: &HostKey, signed_by: &HostKey) -> Arc<Fixed> {
    let (cert, _) = cert_of.certificate().expect("cert");
    let (_, key) = signed_by.certificate().expect("cert");
    Fixed::new(vec![cert], key)
}

fn is_bad_signature(e: &Error) -> bool {
    matches!(e, Error::InvalidCertificate(CertificateError::BadSignature))
}

#[test]
fn handshakes_between_all_algorithms() {
    let keys = [
        key(ED25519),
        key(P256),
        key(RSA2048),
        key(RSA4096),
        HostKey::generate().expect("key"),
    ];
    assert_eq!(keys[3].algorithm(), KeyAlgorithm::Rsa { bits: 4096 });
    for client_key in &keys {
        for server_key in &keys {
            let pair = format!("{} -> {}", client_key.algorithm(), server_key.algorithm());
            let client = tls::client_config(client_key).expect("client config");
            let server = tls::server_config(server_key).expect("server config");
            let (client, server, result) = connect(client, server);
            assert_eq!(result, Ok(()), "{pair}");
            assert_eq!(
                client.protocol_version(),
                Some(rustls::ProtocolVersion::TLSv1_3)
            );
            let seen_by_server = tls::peer_spki(server.peer_certificates()).expect("client cert");
            let seen_by_client = tls::peer_spki(client.peer_certificates()).expect("server cert");
            assert_eq!(seen_by_server, client_key.spki_der(), "{pair}");
            assert_eq!(seen_by_client, server_key.spki_der(), "{pair}");
        }
    }
}

#[test]
fn data_flows_after_the_handshake() {
    use std::io::{Read, Write};
    let (a, b) = (
        HostKey::generate().expect("key"),
        HostKey::generate().expect("key"),
    );
    let (mut client, mut server, result) = connect(
        tls::client_config(&a).expect("client"),
        tls::server_config(&b).expect("server"),
    );
    result.expect("handshake");
    client.writer().write_all(b"ping").expect("write");
    shuttle(&mut *client, &mut *server).expect("shuttle");
    let mut got = [0u8; 4];
    server.reader().read_exact(&mut got).expect("read");
    assert_eq!(&got, b"ping");
}

#[test]
fn tls12_only_client_is_refused() {
    let (a, b) = (key(ED25519), key(P256));
    let (cert, private) = a.certificate().expect("cert");
    let client = ClientConfig::builder_with_provider(tls::crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier())
        .with_client_auth_cert(vec![cert], private)
        .expect("client config");
    let (_, _, result) = connect(Arc::new(client), tls::server_config(&b).expect("server"));
    assert!(
        matches!(result, Err(Refused::ByServer(Error::PeerIncompatible(_)))),
        "{result:?}"
    );
}

#[test]
fn tls12_only_server_is_refused() {
    let (a, b) = (key(ED25519), key(P256));
    let (cert, private) = b.certificate().expect("cert");
    let server = ServerConfig::builder_with_provider(tls::crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .expect("versions")
        .with_client_cert_verifier(verifier())
        .with_single_cert(vec![cert], private)
        .expect("server config");
    let (_, _, result) = connect(tls::client_config(&a).expect("client"), Arc::new(server));
    assert!(result.is_err(), "{result:?}");
}

#[test]
fn client_without_certificate_is_refused() {
    let server_key = key(ED25519);
    let client = ClientConfig::builder_with_provider(tls::crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier())
        .with_no_client_auth();
    let (_, server, result) = connect(
        Arc::new(client),
        tls::server_config(&server_key).expect("server"),
    );
    assert_eq!(
        result,
        Err(Refused::ByServer(Error::NoCertificatesPresented))
    );
    assert!(tls::peer_spki(server.peer_certificates()).is_err());
}

#[test]
fn certificate_of_one_key_signed_by_another_is_refused() {
    let server_key = key(P256);
    for (a, b) in [
        (key(ED25519), HostKey::generate().expect("key")),
        (key(P256), key(ED25519)),
        (key(RSA2048), key(RSA4096)),
        (key(ED25519), key(RSA2048)),
    ] {
        let client = client_presenting(mismatched(&a, &b));
        let (_, _, result) = connect(client, tls::server_config(&server_key).expect("server"));
        match result {
            Err(Refused::ByServer(e)) => assert!(
                // The certificate itself is fine, so this is verify_tls13_signature's verdict
                // (a bad signature, or one of an algorithm that does not fit the key).
                matches!(e, Error::InvalidCertificate(_) | Error::PeerMisbehaved(_)),
                "{} cert, {} key: {e:?}",
                a.algorithm(),
                b.algorithm()
            ),
            other => panic!("{} cert, {} key: {other:?}", a.algorithm(), b.algorithm()),
        }
    }
    // Same algorithm: only the signature check can tell; it must be a bad signature.
    let (a, b) = (key(ED25519), HostKey::generate().expect("key"));
    let (_, _, result) = connect(
        client_presenting(mismatched(&a, &b)),
        tls::server_config(&server_key).expect("server"),
    );
    assert!(
        matches!(&result, Err(Refused::ByServer(e)) if is_bad_signature(e)),
        "{result:?}"
    );
}

#[test]
fn server_whose_certificate_is_of_another_key_is_refused() {
    let (a, b) = (key(ED25519), HostKey::generate().expect("key"));
    let server = server_presenting(mismatched(&a, &b));
    let (_, _, result) = connect(tls::client_config(&key(P256)).expect("client"), server);
    assert!(
        matches!(&result, Err(Refused::ByClient(e)) if is_bad_signature(e)),
        "{result:?}"
    );
}

/// A certificate made by rcgen for a key type we do not accept.
fn p384_certified() -> Arc<Fixed> {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("P-384 key");
    let params = rcgen::CertificateParams::new(vec![tls::SERVER_NAME.to_owned()]).expect("params");
    let cert = params.self_signed(&pair).expect("cert");
    Fixed::new(
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(pair.serialize_der().into()),
    )
}

fn garbage_certified() -> Arc<Fixed> {
    let (_, private) = key(ED25519).certificate().expect("cert");
    let garbage: Vec<u8> = (0..300u32).map(|i| (i * 7919 % 251) as u8).collect();
    Fixed::new(vec![CertificateDer::from(garbage)], private)
}

fn chain_certified() -> Arc<Fixed> {
    let host = key(ED25519);
    let (cert, private) = host.certificate().expect("cert");
    let (other, _) = key(P256).certificate().expect("cert");
    Fixed::new(vec![cert, other], private)
}

#[test]
fn bad_client_certificates_are_refused() {
    let server_key = key(ED25519);
    let cases = [
        ("P-384", p384_certified(), None),
        (
            "garbage",
            garbage_certified(),
            Some(CertificateError::BadEncoding),
        ),
        ("chain", chain_certified(), None),
    ];
    for (what, fixed, expected) in cases {
        let (_, _, result) = connect(
            client_presenting(fixed),
            tls::server_config(&server_key).expect("server"),
        );
        match (&result, &expected) {
            (
                Err(Refused::ByServer(Error::InvalidCertificate(CertificateError::BadEncoding))),
                Some(_),
            ) => {}
            (
                Err(Refused::ByServer(Error::InvalidCertificate(CertificateError::Other(e)))),
                None,
            ) => {
                println!("{what}: {e}");
            }
            _ => panic!("{what}: {result:?}"),
        }
    }
}

#[test]
fn bad_server_certificates_are_refused() {
    let client_key = key(P256);
    for (what, fixed) in [
        ("P-384", p384_certified()),
        ("garbage", garbage_certified()),
        ("chain", chain_certified()),
    ] {
        let (_, _, result) = connect(
            tls::client_config(&client_key).expect("client"),
            server_presenting(fixed),
        );
        assert!(
            matches!(
                &result,
                Err(Refused::ByClient(Error::InvalidCertificate(_)))
            ),
            "{what}: {result:?}"
        );
    }
}
