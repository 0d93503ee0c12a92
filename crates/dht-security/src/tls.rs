//! rustls configurations for mutual TLS 1.3 between nodes, with our verifiers.
//!
//! Every node presents a self-signed certificate of its host key
//! ([`HostKey::certificate`]) and uses the same server name, [`SERVER_NAME`]. Identity
//! is the key: the verifier ([`PeerVerifier`]) checks no names, dates or issuers, only
//! that the peer sends exactly one certificate, that it parses as X.509 and holds a key
//! of an accepted algorithm ([`KeyAlgorithm::of_spki`]), and that the handshake is really
//! signed by that key. After the handshake the caller reads the key with [`peer_spki`]
//! and checks that it and the peer's nonce reproduce the id it claims
//! ([`crate::pow::verify_identity`]).
//!
//! The *ring* provider is built explicitly for each configuration; no process-wide
//! default provider is installed. Session resumption is off: all nodes share one server
//! name, so a client cache keyed by name would offer one node's tickets to another.

use std::sync::Arc;

use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::NoServerSessionStorage;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, OtherError,
    PeerIncompatible, ServerConfig, SignatureScheme,
};

use crate::{HostKey, KeyAlgorithm, SecurityError};

/// The fixed TLS server name every node uses (ids do not fit DNS names; the id is
/// checked after the handshake).
pub const SERVER_NAME: &str = "dht.voidphone.invalid";

/// The *ring* crypto provider our configurations use.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_error(e: rustls::Error) -> SecurityError {
    SecurityError::Tls(e.to_string())
}

/// The client side: TLS 1.3 only, authenticates with `host`'s certificate and verifies
/// the server with [`PeerVerifier`].
pub fn client_config(host: &HostKey) -> Result<Arc<ClientConfig>, SecurityError> {
    let provider = crypto_provider();
    let verifier = Arc::new(PeerVerifier::new(
        provider.signature_verification_algorithms,
    ));
    let (cert, key) = host.certificate()?;
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_error)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(vec![cert], key)
        .map_err(tls_error)?;
    config.resumption = Resumption::disabled();
    Ok(Arc::new(config))
}

/// The server side: TLS 1.3 only, presents `host`'s certificate, and requires a client
/// certificate, verified with [`PeerVerifier`].
pub fn server_config(host: &HostKey) -> Result<Arc<ServerConfig>, SecurityError> {
    let provider = crypto_provider();
    let verifier = Arc::new(PeerVerifier::new(
        provider.signature_verification_algorithms,
    ));
    let (cert, key) = host.certificate()?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_error)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert], key)
        .map_err(tls_error)?;
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// The DER SubjectPublicKeyInfo of the peer's end-entity certificate, from
/// `conn.peer_certificates()` after a completed handshake; an error if there is none,
/// or it is malformed or holds a key we do not accept.
pub fn peer_spki(certs: Option<&[CertificateDer<'_>]>) -> Result<Vec<u8>, SecurityError> {
    let end_entity = certs
        .and_then(<[_]>::first)
        .ok_or_else(|| SecurityError::Certificate("the peer presented no certificate".into()))?;
    let spki = certificate_spki(end_entity)?;
    KeyAlgorithm::of_spki(&spki)?;
    Ok(spki)
}

/// The SubjectPublicKeyInfo of a DER X.509 certificate.
fn certificate_spki(cert: &CertificateDer<'_>) -> Result<Vec<u8>, SecurityError> {
    match x509_parser::parse_x509_certificate(cert) {
        Ok(([], parsed)) => Ok(parsed.tbs_certificate.subject_pki.raw.to_vec()),
        Ok(_) => Err(SecurityError::Certificate(
            "trailing bytes after the certificate".into(),
        )),
        Err(e) => Err(SecurityError::Certificate(format!(
            "malformed certificate: {e}"
        ))),
    }
}

/// Verifies a peer's certificate and handshake signature, as server-certificate
/// verifier (client side) and client-certificate verifier (server side).
///
/// Accepts exactly one certificate (no intermediates) that parses as X.509 and holds an
/// Ed25519, ECDSA P-256 or RSA (2048..=4096 bits) key; names, dates, issuer and the
/// certificate's own signature are not checked, since identity is the key. The TLS 1.3
/// handshake signature is verified against that key; TLS 1.2 is refused.
#[derive(Debug, Clone)]
pub struct PeerVerifier {
    algorithms: WebPkiSupportedAlgorithms,
}

impl PeerVerifier {
    /// A verifier checking handshake signatures with `algorithms` (a provider's
    /// `signature_verification_algorithms`).
    pub fn new(algorithms: WebPkiSupportedAlgorithms) -> Self {
        PeerVerifier { algorithms }
    }

    fn check_certificate(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Result<(), rustls::Error> {
        let refuse = |e: SecurityError| {
            rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
        };
        if !intermediates.is_empty() {
            return Err(refuse(SecurityError::Certificate(format!(
                "expected one self-signed certificate, got a chain of {}",
                intermediates.len() + 1
            ))));
        }
        let spki = certificate_spki(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        KeyAlgorithm::of_spki(&spki).map_err(refuse)?;
        Ok(())
    }

    fn verify_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
}

fn no_tls12() -> rustls::Error {
    rustls::Error::PeerIncompatible(PeerIncompatible::Tls12NotOfferedOrEnabled)
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check_certificate(end_entity, intermediates)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(no_tls12())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

impl ClientCertVerifier for PeerVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check_certificate(end_entity, intermediates)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(no_tls12())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_spki_of_certificates() {
        let host = HostKey::generate().expect("key");
        let (cert, _) = host.certificate().expect("cert");
        assert_eq!(
            peer_spki(Some(std::slice::from_ref(&cert))).as_deref(),
            Ok(host.spki_der())
        );
        assert!(matches!(
            peer_spki(None),
            Err(SecurityError::Certificate(_))
        ));
        assert!(matches!(
            peer_spki(Some(&[])),
            Err(SecurityError::Certificate(_))
        ));
        let garbage = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
        assert!(matches!(
            peer_spki(Some(&[garbage])),
            Err(SecurityError::Certificate(_))
        ));
        let mut trailing = cert.to_vec();
        trailing.push(0);
        assert!(peer_spki(Some(&[CertificateDer::from(trailing)])).is_err());
    }

    #[test]
    fn verifier_settings() {
        let provider = crypto_provider();
        let verifier = PeerVerifier::new(provider.signature_verification_algorithms);
        assert!(verifier.offer_client_auth());
        assert!(verifier.client_auth_mandatory());
        assert!(ClientCertVerifier::root_hint_subjects(&verifier).is_empty());
        assert_eq!(
            ClientCertVerifier::supported_verify_schemes(&verifier),
            provider
                .signature_verification_algorithms
                .supported_schemes()
        );
        let host = HostKey::generate().expect("key");
        let (cert, _) = host.certificate().expect("cert");
        assert!(verifier.check_certificate(&cert, &[]).is_ok());
        assert!(
            verifier
                .check_certificate(&cert, std::slice::from_ref(&cert))
                .is_err()
        );
        assert!(ServerName::try_from(SERVER_NAME).is_ok());
        let config = server_config(&host).expect("server config");
        assert_eq!(config.send_tls13_tickets, 0);
        client_config(&host).expect("client config");
    }
}
