//! The host key: the node's long-term signing key, whose public half its id is bound to.
//!
//! Accepted algorithms: Ed25519 (the default for new keys), ECDSA P-256, and RSA with a
//! modulus of [`RSA_MIN_BITS`]..=[`RSA_MAX_BITS`] bits (the range *ring* signs with).
//! Keys are read from PKCS#8 PEM, or from the traditional PKCS#1 (`RSA PRIVATE KEY`) and
//! SEC1 (`EC PRIVATE KEY`) forms, which are rewrapped into PKCS#8.

use std::fmt;

use rcgen::{
    CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ED25519,
    PKCS_RSA_SHA256, PublicKeyData,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use x509_parser::pem::Pem;

use crate::SecurityError;
pub use crate::key_format::{KeyAlgorithm, RSA_MAX_BITS, RSA_MIN_BITS};
use crate::key_format::{encrypted, pkcs1_to_pkcs8, pkcs8_algorithm, sec1_to_pkcs8};
use crate::tls::SERVER_NAME;

/// The node's host key (private and public half).
pub struct HostKey {
    key_pair: KeyPair,
    algorithm: KeyAlgorithm,
    spki: Vec<u8>,
}

impl fmt::Debug for HostKey {
    /// The algorithm and the SHA-256 fingerprint of the public key, never the private key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostKey")
            .field("algorithm", &self.algorithm)
            .field("spki_sha256", &dht_id::Key::sha256(&self.spki).to_string())
            .finish_non_exhaustive()
    }
}

impl HostKey {
    /// A new Ed25519 key.
    pub fn generate() -> Result<HostKey, SecurityError> {
        let key_pair = KeyPair::generate_for(&PKCS_ED25519)
            .map_err(|e| SecurityError::KeyGeneration(e.to_string()))?;
        Self::from_pkcs8_der(key_pair.serialized_der())
    }

    /// The Ed25519 key of a 32-byte seed (RFC 8032's private key): the same seed gives
    /// the same key. For simulations and tests whose runs must repeat from a seed; a
    /// node's own key comes from [`generate`](Self::generate).
    pub fn ed25519_from_seed(seed: &[u8; 32]) -> Result<HostKey, SecurityError> {
        // RFC 8410's PKCS#8 (version 1) of an Ed25519 private key: this fixed header,
        // then the seed as an OCTET STRING inside the privateKey OCTET STRING.
        const HEADER: [u8; 16] = [
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        let mut pkcs8 = HEADER.to_vec();
        pkcs8.extend_from_slice(seed);
        Self::from_pkcs8_der(&pkcs8)
    }

    /// Parses a PEM private key: PKCS#8 (`-----BEGIN PRIVATE KEY-----`) of Ed25519,
    /// ECDSA P-256 or RSA of [`RSA_MIN_BITS`]..=[`RSA_MAX_BITS`] bits, as
    /// `openssl genpkey` writes them; also the traditional `RSA PRIVATE KEY` (PKCS#1) and
    /// `EC PRIVATE KEY` (SEC1) forms. Anything else (other curves and algorithms, RSA of
    /// another size, encrypted keys, public keys, certificates, garbage) is an error that
    /// says what was found.
    pub fn from_pem(pem: &str) -> Result<HostKey, SecurityError> {
        if pem.contains("Proc-Type:") && pem.contains("ENCRYPTED") {
            return Err(encrypted());
        }
        for block in Pem::iter_from_buffer(pem.as_bytes()) {
            let block = block.map_err(|e| SecurityError::Pem(format!("malformed PEM: {e}")))?;
            let pkcs8 = match block.label.as_str() {
                // `openssl ecparam -genkey` writes the curve before the key.
                "EC PARAMETERS" => continue,
                "PRIVATE KEY" => block.contents,
                "RSA PRIVATE KEY" => pkcs1_to_pkcs8(&block.contents)?,
                "EC PRIVATE KEY" => sec1_to_pkcs8(&block.contents)?,
                "ENCRYPTED PRIVATE KEY" => return Err(encrypted()),
                "PUBLIC KEY" | "RSA PUBLIC KEY" => {
                    return Err(SecurityError::Pem(
                        "this is a public key; the host key file must hold the private key".into(),
                    ));
                }
                "CERTIFICATE" => {
                    return Err(SecurityError::Pem(
                        "this is a certificate; the host key file must hold the private key".into(),
                    ));
                }
                "OPENSSH PRIVATE KEY" => {
                    return Err(SecurityError::Pem(
                        "an OpenSSH private key; expected PKCS#8 PEM (-----BEGIN PRIVATE KEY-----)"
                            .into(),
                    ));
                }
                other => {
                    let shown: String = other.chars().take(40).collect();
                    return Err(SecurityError::Pem(format!(
                        "a PEM block \"{shown}\"; expected -----BEGIN PRIVATE KEY-----"
                    )));
                }
            };
            return Self::from_pkcs8_der(&pkcs8);
        }
        Err(SecurityError::Pem(
            "no PEM block found; expected -----BEGIN PRIVATE KEY-----".into(),
        ))
    }

    /// Reads a DER PKCS#8 private key (the contents of a `PRIVATE KEY` PEM block), with
    /// the same checks as [`from_pem`](Self::from_pem).
    pub fn from_pkcs8_der(pkcs8: &[u8]) -> Result<HostKey, SecurityError> {
        let algorithm = pkcs8_algorithm(pkcs8)?;
        let signature = match algorithm {
            KeyAlgorithm::Ed25519 => &PKCS_ED25519,
            KeyAlgorithm::EcdsaP256 => &PKCS_ECDSA_P256_SHA256,
            KeyAlgorithm::Rsa { .. } => &PKCS_RSA_SHA256,
        };
        let rejected = |e: String| {
            SecurityError::UnsupportedKey(format!("the {algorithm} key is not valid: {e}"))
        };
        let key_pair =
            KeyPair::from_pkcs8_der_and_sign_algo(&PrivatePkcs8KeyDer::from(pkcs8), signature)
                .map_err(|e| rejected(e.to_string()))?;
        // rustls must be able to sign handshakes with it too.
        rustls::crypto::ring::default_provider()
            .key_provider
            .load_private_key(PrivateKeyDer::Pkcs8(pkcs8.to_vec().into()))
            .map_err(|e| rejected(e.to_string()))?;
        let spki = key_pair.subject_public_key_info();
        Ok(HostKey {
            key_pair,
            algorithm,
            spki,
        })
    }

    /// PKCS#8 PEM of the private key (what the node writes to a new host key file).
    pub fn to_pem(&self) -> String {
        self.key_pair.serialize_pem()
    }

    /// The private key as PKCS#8 DER: secret key material, e.g. to derive the storage
    /// key from. Never log it.
    pub fn pkcs8_der(&self) -> &[u8] {
        self.key_pair.serialized_der()
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// DER SubjectPublicKeyInfo of the public key: what the node id is bound to.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// A self-signed certificate for this key, valid from 1975-01-01 to 4096-01-01
    /// (fixed dates: clocks differ and nobody checks validity), with subject and SAN
    /// [`SERVER_NAME`], plus the private key as rustls wants it.
    pub fn certificate(
        &self,
    ) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), SecurityError> {
        let failed = |e: rcgen::Error| SecurityError::Certificate(e.to_string());
        let mut params = CertificateParams::new(vec![SERVER_NAME.to_owned()]).map_err(failed)?;
        params.not_before = rcgen::date_time_ymd(1975, 1, 1);
        params.not_after = rcgen::date_time_ymd(4096, 1, 1);
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, SERVER_NAME);
        params.distinguished_name = name;
        let cert = params.self_signed(&self.key_pair).map_err(failed)?;
        let key = PrivateKeyDer::Pkcs8(self.key_pair.serialize_der().into());
        Ok((cert.der().clone(), key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ED25519: &str = include_str!("../tests/data/ed25519.pk8.pem");
    const P256: &str = include_str!("../tests/data/p256.pk8.pem");
    const P256_SEC1: &str = include_str!("../tests/data/p256.sec1.pem");
    const P256_PUBLIC: &str = include_str!("../tests/data/p256.pub.pem");
    const RSA2048: &str = include_str!("../tests/data/rsa2048.pk8.pem");
    const RSA2048_PKCS1: &str = include_str!("../tests/data/rsa2048.pkcs1.pem");
    const RSA4096: &str = include_str!("../tests/data/rsa4096.pk8.pem");
    const RSA1024: &str = include_str!("../tests/data/rsa1024.pk8.pem");
    const P384: &str = include_str!("../tests/data/p384.pk8.pem");
    const X25519: &str = include_str!("../tests/data/x25519.pk8.pem");
    const ENCRYPTED: &str = include_str!("../tests/data/ed25519.encrypted.pem");

    fn load(pem: &str) -> HostKey {
        HostKey::from_pem(pem).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn generate_roundtrip() {
        let key = HostKey::generate().expect("generated");
        assert_eq!(key.algorithm(), KeyAlgorithm::Ed25519);
        let pem = key.to_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
        let again = load(&pem);
        assert_eq!(again.spki_der(), key.spki_der());
        assert_eq!(again.to_pem(), pem);
        // The DER is the PEM block's contents, stable across loads.
        assert_eq!(again.pkcs8_der(), key.pkcs8_der());
        assert_eq!(
            HostKey::from_pkcs8_der(key.pkcs8_der())
                .expect("der")
                .spki_der(),
            key.spki_der()
        );
        assert_ne!(
            HostKey::generate().expect("generated").spki_der(),
            key.spki_der()
        );
    }

    #[test]
    fn an_ed25519_key_from_a_seed_is_rfc_8032s() {
        // RFC 8032, section 7.1, test 1.
        let hex = |s: &str| -> Vec<u8> {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
                .collect()
        };
        let seed = hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
        let public = hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
        let seed: [u8; 32] = seed.try_into().expect("32 bytes");
        let key = HostKey::ed25519_from_seed(&seed).expect("a valid key");
        assert_eq!(key.algorithm(), KeyAlgorithm::Ed25519);
        assert!(key.spki_der().ends_with(&public), "the RFC's public key");
        let again = HostKey::ed25519_from_seed(&seed).expect("a valid key");
        assert_eq!(again.spki_der(), key.spki_der());
        assert_ne!(
            HostKey::ed25519_from_seed(&[1; 32])
                .expect("valid")
                .spki_der(),
            key.spki_der()
        );
        // It signs TLS handshakes: its PEM loads as any host key file does.
        assert_eq!(load(&key.to_pem()).spki_der(), key.spki_der());
    }

    #[test]
    fn rcgen_generated_keys() {
        for (alg, expected) in [
            (&PKCS_ED25519, KeyAlgorithm::Ed25519),
            (&PKCS_ECDSA_P256_SHA256, KeyAlgorithm::EcdsaP256),
        ] {
            let pair = KeyPair::generate_for(alg).expect("generated");
            let key = load(&pair.serialize_pem());
            assert_eq!(key.algorithm(), expected);
            assert_eq!(key.spki_der(), pair.subject_public_key_info());
            assert_eq!(KeyAlgorithm::of_spki(key.spki_der()), Ok(expected));
        }
    }

    #[test]
    fn openssl_keys_and_their_public_keys() {
        let cases = [
            (
                ED25519,
                KeyAlgorithm::Ed25519,
                &include_bytes!("../tests/data/ed25519.spki.der")[..],
            ),
            (
                P256,
                KeyAlgorithm::EcdsaP256,
                &include_bytes!("../tests/data/p256.spki.der")[..],
            ),
            (
                RSA2048,
                KeyAlgorithm::Rsa { bits: 2048 },
                &include_bytes!("../tests/data/rsa2048.spki.der")[..],
            ),
            (
                RSA4096,
                KeyAlgorithm::Rsa { bits: 4096 },
                &include_bytes!("../tests/data/rsa4096.spki.der")[..],
            ),
        ];
        for (pem, algorithm, openssl_spki) in cases {
            let key = load(pem);
            assert_eq!(key.algorithm(), algorithm);
            // Our SubjectPublicKeyInfo is byte for byte what openssl writes.
            assert_eq!(key.spki_der(), openssl_spki, "{algorithm}");
            assert_eq!(KeyAlgorithm::of_spki(openssl_spki), Ok(algorithm));
            let again = load(&key.to_pem());
            assert_eq!(again.spki_der(), key.spki_der());
        }
    }

    #[test]
    fn traditional_forms_are_rewrapped() {
        let rsa = load(RSA2048_PKCS1);
        assert_eq!(rsa.spki_der(), load(RSA2048).spki_der());
        assert!(rsa.to_pem().starts_with("-----BEGIN PRIVATE KEY-----"));
        let ec = load(P256_SEC1);
        assert_eq!(ec.spki_der(), load(P256).spki_der());
        assert_eq!(load(&ec.to_pem()).spki_der(), ec.spki_der());
        // As `openssl ecparam -genkey` writes it: the curve, then the key.
        let with_params = format!(
            "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n{P256_SEC1}"
        );
        assert_eq!(load(&with_params).spki_der(), ec.spki_der());
    }

    #[test]
    fn refused_keys_say_what_they_are() {
        assert_eq!(
            HostKey::from_pem(RSA1024).err(),
            Some(SecurityError::RsaKeySize { bits: 1024 })
        );
        let message = |pem: &str| {
            HostKey::from_pem(pem)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        for (pem, expected) in [
            (P384, "P-384"),
            (X25519, "X25519"),
            (ENCRYPTED, "encrypted"),
            (ENCRYPTED, "openssl pkcs8"),
            (P256_PUBLIC, "public key"),
            ("", "no PEM block"),
            ("hello world", "no PEM block"),
            (
                "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n",
                "malformed PEM",
            ),
            ("-----BEGIN PRIVATE KEY-----\nAAAA\n", "malformed PEM"),
            (
                "-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n",
                "not a PKCS#8",
            ),
            (
                "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n",
                "certificate",
            ),
            (
                "-----BEGIN DSA PRIVATE KEY-----\nMAA=\n-----END DSA PRIVATE KEY-----\n",
                "DSA PRIVATE KEY",
            ),
            (
                "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\nMAA=\n-----END RSA PRIVATE KEY-----\n",
                "encrypted",
            ),
        ] {
            let got = message(pem);
            assert!(got.contains(expected), "{pem:?}: {got}");
        }
        // The P-384 key rewrapped as SEC1 is refused the same way.
        assert!(
            message(&P384.replace("PRIVATE KEY", "EC PRIVATE KEY"))
                .contains("malformed EC private key")
        );
    }

    #[test]
    fn debug_shows_no_key_material() {
        for pem in [ED25519, P256, RSA2048] {
            let key = load(pem);
            let debug = format!("{key:?}");
            assert!(
                debug.contains("algorithm") && debug.contains("spki_sha256"),
                "{debug}"
            );
            let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
            for window in body.as_bytes().windows(8) {
                let window = std::str::from_utf8(window).expect("base64");
                assert!(!debug.contains(window), "{debug} shows {window}");
            }
            let pkcs8 = key.key_pair.serialized_der();
            let secret_hex: String = pkcs8[pkcs8.len() - 8..]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert!(!debug.contains(&secret_hex));
        }
    }

    #[test]
    fn certificate_holds_the_key() {
        for pem in [ED25519, P256, RSA2048] {
            let key = load(pem);
            let (cert, private) = key.certificate().expect("certificate");
            assert_eq!(private.secret_der(), key.key_pair.serialized_der());
            let (rest, parsed) = x509_parser::parse_x509_certificate(&cert).expect("parses");
            assert!(rest.is_empty());
            assert_eq!(parsed.tbs_certificate.subject_pki.raw, key.spki_der());
            assert_eq!(parsed.validity().not_before.to_datetime().year(), 1975);
            assert_eq!(parsed.validity().not_after.to_datetime().year(), 4096);
            assert!(parsed.subject().to_string().contains(SERVER_NAME));
            let san = parsed
                .subject_alternative_name()
                .expect("ok")
                .expect("present");
            assert_eq!(
                san.value.general_names,
                vec![x509_parser::extensions::GeneralName::DNSName(SERVER_NAME)]
            );
        }
    }

    proptest! {
        #[test]
        fn garbage_never_panics(text in ".{0,300}", bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert!(HostKey::from_pem(&text).is_err());
            let _ = HostKey::from_pkcs8_der(&bytes);
            let _ = KeyAlgorithm::of_spki(&bytes);
        }

        #[test]
        fn damaged_keys_never_panic(at in 0usize..1000, value in any::<u8>()) {
            for pem in [P256, RSA2048] {
                let der = load(pem).key_pair.serialize_der();
                let mut damaged = der.clone();
                let at = at % der.len();
                damaged[at] = value;
                let _ = HostKey::from_pkcs8_der(&damaged);
                prop_assert!(HostKey::from_pkcs8_der(&der[..at]).is_err());
            }
        }
    }
}
