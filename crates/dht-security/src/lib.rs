//! Security building blocks of the DHT: the host key, proof-of-work node ids, the TLS
//! configuration with our certificate verifiers, and rate-limit primitives.
//!
//! Identity follows S/Kademlia: a node's id is bound to its public key and costs work,
//! `node_id = SHA-256(SubjectPublicKeyInfo DER || nonce as 8 bytes big-endian)`, valid
//! only if `SHA-256(node_id)` has at least `difficulty` leading zero bits ([`pow`]).
//! Peers authenticate with mutual TLS 1.3 using self-signed certificates of their host
//! key ([`HostKey`], [`tls`]); identity is the key, so the verifiers check no names,
//! dates or issuers, only that the certificate holds a key of an accepted algorithm and
//! that the handshake is really signed by it. After the handshake the caller checks that
//! the peer's key ([`tls::peer_spki`]) and the nonce it announces reproduce its id
//! ([`pow::verify_identity`]).
//!
//! This crate owns no runtime and no sockets, does no file IO and never reads the
//! clock: time comes in as arguments ([`limits`]). (rustls itself reads the system time
//! during handshakes; our verifiers ignore it.)
#![deny(missing_docs, rustdoc::broken_intra_doc_links, unreachable_pub)]

pub mod identity;
mod key_format;
pub mod limits;
pub mod pow;
pub mod tls;

pub use identity::{HostKey, KeyAlgorithm};
pub use pow::{IdentityError, MintedId};

/// Why a key, certificate, configuration or saved proof of work is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecurityError {
    /// The text is not PEM, or not a PEM private key we can read.
    #[error("not a usable PEM private key: {0}")]
    Pem(String),
    /// A private or public key of an algorithm, curve or form we do not accept.
    #[error("unsupported key: {0}")]
    UnsupportedKey(String),
    /// An RSA key whose modulus is outside
    /// [`RSA_MIN_BITS`](identity::RSA_MIN_BITS)..=[`RSA_MAX_BITS`](identity::RSA_MAX_BITS).
    #[error(
        "unsupported key: an RSA key of {bits} bits; accepted are {min} to {max} bits",
        min = identity::RSA_MIN_BITS,
        max = identity::RSA_MAX_BITS
    )]
    RsaKeySize {
        /// The modulus length that was found.
        bits: usize,
    },
    /// The system random number generator failed while generating a key.
    #[error("generating a key failed: {0}")]
    KeyGeneration(String),
    /// A certificate could not be made, or a peer's certificate is unusable.
    #[error("certificate: {0}")]
    Certificate(String),
    /// rustls refused to build a configuration.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// The saved proof-of-work text is malformed.
    #[error("proof-of-work file: {0}")]
    NonceFile(String),
    /// The saved proof of work does not prove the id for this key (a stale file after a
    /// key change) or has too few bits.
    #[error("the saved proof of work is not valid for this key: {0}")]
    Identity(#[from] IdentityError),
}
