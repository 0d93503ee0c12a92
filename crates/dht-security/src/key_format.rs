//! Key formats: which algorithm a PKCS#8 private key or a SubjectPublicKeyInfo holds,
//! checked against what we accept, and rewrapping of traditional PKCS#1 / SEC1 private
//! keys into PKCS#8.

use std::fmt;

use crate::SecurityError;
use crate::der::{self, Reader, oid};

/// Smallest accepted RSA modulus, in bits.
pub const RSA_MIN_BITS: usize = 2048;
/// Largest accepted RSA modulus, in bits (the largest *ring* signs with).
pub const RSA_MAX_BITS: usize = 4096;

/// How to turn a traditional or encrypted key into what we read.
const CONVERT_HINT: &str = "convert with: openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.pk8";

/// The algorithm of a host key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// Ed25519.
    Ed25519,
    /// ECDSA on the NIST P-256 curve.
    EcdsaP256,
    /// RSA with a modulus of `bits` bits.
    Rsa {
        /// Length of the modulus.
        bits: usize,
    },
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyAlgorithm::Ed25519 => write!(f, "Ed25519"),
            KeyAlgorithm::EcdsaP256 => write!(f, "ECDSA P-256"),
            KeyAlgorithm::Rsa { bits } => write!(f, "RSA-{bits}"),
        }
    }
}

impl KeyAlgorithm {
    /// The algorithm of a DER SubjectPublicKeyInfo, if it is one we accept, in its
    /// canonical encoding (as in certificates made by [`HostKey::certificate`](crate::HostKey::certificate)): Ed25519,
    /// ECDSA P-256 with an uncompressed point, or `rsaEncryption` (NULL parameters) with
    /// a modulus of [`RSA_MIN_BITS`]..=[`RSA_MAX_BITS`] bits.
    pub fn of_spki(spki_der: &[u8]) -> Result<KeyAlgorithm, SecurityError> {
        let malformed = || SecurityError::UnsupportedKey("malformed SubjectPublicKeyInfo".into());
        let mut spki = Reader::new(der::single(spki_der, der::TAG_SEQUENCE).ok_or_else(malformed)?);
        let mut alg = Reader::new(spki.expect(der::TAG_SEQUENCE).ok_or_else(malformed)?);
        let key = spki.expect(der::TAG_BIT_STRING).ok_or_else(malformed)?;
        if !spki.is_empty() {
            return Err(malformed());
        }
        let alg_oid = alg.expect(der::TAG_OID).ok_or_else(malformed)?;
        let Some((0, key)) = key.split_first().map(|(unused, rest)| (*unused, rest)) else {
            return Err(malformed());
        };
        match alg_oid {
            oid::ED25519 if alg.is_empty() && key.len() == 32 => Ok(KeyAlgorithm::Ed25519),
            oid::EC_PUBLIC_KEY => {
                let curve = alg.expect(der::TAG_OID).ok_or_else(malformed)?;
                if curve != oid::P256 {
                    return Err(unsupported_curve(curve));
                }
                if !alg.is_empty() || key.len() != 65 || key[0] != 4 {
                    return Err(malformed());
                }
                Ok(KeyAlgorithm::EcdsaP256)
            }
            oid::RSA_ENCRYPTION => {
                if alg.expect(der::TAG_NULL) != Some(&[]) || !alg.is_empty() {
                    return Err(malformed());
                }
                let mut rsa =
                    Reader::new(der::single(key, der::TAG_SEQUENCE).ok_or_else(malformed)?);
                let modulus = rsa.expect(der::TAG_INTEGER).ok_or_else(malformed)?;
                let exponent = rsa.expect(der::TAG_INTEGER).ok_or_else(malformed)?;
                if !rsa.is_empty() || der::unsigned_bits(exponent).unwrap_or(0) < 2 {
                    return Err(malformed());
                }
                rsa_algorithm(modulus)
            }
            oid::ED25519 => Err(malformed()),
            other => Err(unsupported_algorithm(other)),
        }
    }
}

fn accepted() -> String {
    format!("accepted are Ed25519, ECDSA P-256 and RSA of {RSA_MIN_BITS} to {RSA_MAX_BITS} bits")
}

fn unsupported_algorithm(alg_oid: &[u8]) -> SecurityError {
    SecurityError::UnsupportedKey(format!(
        "a key of algorithm {}; {}",
        oid::describe(alg_oid),
        accepted()
    ))
}

fn unsupported_curve(curve: &[u8]) -> SecurityError {
    SecurityError::UnsupportedKey(format!(
        "an EC key on curve {}; {}",
        oid::describe(curve),
        accepted()
    ))
}

/// The RSA algorithm for a modulus (an INTEGER's contents), if its size is accepted.
fn rsa_algorithm(modulus: &[u8]) -> Result<KeyAlgorithm, SecurityError> {
    let bits = der::unsigned_bits(modulus).ok_or_else(|| {
        SecurityError::UnsupportedKey("an RSA key with a negative modulus".into())
    })?;
    if (RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
        Ok(KeyAlgorithm::Rsa { bits })
    } else {
        Err(SecurityError::RsaKeySize { bits })
    }
}

pub(crate) fn encrypted() -> SecurityError {
    SecurityError::UnsupportedKey(format!(
        "the private key is encrypted; decrypt it first ({CONVERT_HINT}, which asks for the passphrase)"
    ))
}

/// The algorithm of a PKCS#8 PrivateKeyInfo, checked against what we accept.
pub(crate) fn pkcs8_algorithm(pkcs8: &[u8]) -> Result<KeyAlgorithm, SecurityError> {
    let malformed = || SecurityError::Pem("the PRIVATE KEY block is not a PKCS#8 key".into());
    let mut info = Reader::new(der::single(pkcs8, der::TAG_SEQUENCE).ok_or_else(malformed)?);
    let version = info.expect(der::TAG_INTEGER).ok_or_else(malformed)?;
    if version != [0] && version != [1] {
        return Err(malformed());
    }
    let mut alg = Reader::new(info.expect(der::TAG_SEQUENCE).ok_or_else(malformed)?);
    let private_key = info.expect(der::TAG_OCTET_STRING).ok_or_else(malformed)?;
    match alg.expect(der::TAG_OID).ok_or_else(malformed)? {
        oid::ED25519 => Ok(KeyAlgorithm::Ed25519),
        oid::EC_PUBLIC_KEY => {
            let curve = alg.expect(der::TAG_OID).ok_or_else(|| {
                SecurityError::UnsupportedKey("an EC key without a named curve".into())
            })?;
            if curve == oid::P256 {
                Ok(KeyAlgorithm::EcdsaP256)
            } else {
                Err(unsupported_curve(curve))
            }
        }
        oid::RSA_ENCRYPTION => rsa_private_key_algorithm(private_key),
        other => Err(unsupported_algorithm(other)),
    }
}

/// The algorithm of a PKCS#1 RSAPrivateKey.
fn rsa_private_key_algorithm(pkcs1: &[u8]) -> Result<KeyAlgorithm, SecurityError> {
    let malformed = || SecurityError::Pem("malformed RSA private key".into());
    let mut key = Reader::new(der::single(pkcs1, der::TAG_SEQUENCE).ok_or_else(malformed)?);
    key.expect(der::TAG_INTEGER).ok_or_else(malformed)?; // version
    rsa_algorithm(key.expect(der::TAG_INTEGER).ok_or_else(malformed)?)
}

/// Wraps a PKCS#1 RSAPrivateKey into a PKCS#8 PrivateKeyInfo.
pub(crate) fn pkcs1_to_pkcs8(pkcs1: &[u8]) -> Result<Vec<u8>, SecurityError> {
    rsa_private_key_algorithm(pkcs1)?;
    let alg = [
        der::tlv(der::TAG_OID, oid::RSA_ENCRYPTION),
        der::tlv(der::TAG_NULL, &[]),
    ]
    .concat();
    Ok(private_key_info(&alg, pkcs1))
}

/// Wraps a SEC1 ECPrivateKey (which must name its curve) into a PKCS#8 PrivateKeyInfo.
pub(crate) fn sec1_to_pkcs8(sec1: &[u8]) -> Result<Vec<u8>, SecurityError> {
    let malformed = || SecurityError::Pem("malformed EC private key".into());
    let mut key = Reader::new(der::single(sec1, der::TAG_SEQUENCE).ok_or_else(malformed)?);
    if key.expect(der::TAG_INTEGER) != Some(&[1]) {
        return Err(malformed());
    }
    key.expect(der::TAG_OCTET_STRING).ok_or_else(malformed)?;
    let curve = key
        .optional(der::TAG_CONTEXT_0)
        .and_then(|params| der::single(params, der::TAG_OID))
        .ok_or_else(|| {
            SecurityError::UnsupportedKey(format!(
                "an EC private key that names no curve; {CONVERT_HINT}"
            ))
        })?;
    if curve != oid::P256 {
        return Err(unsupported_curve(curve));
    }
    let alg = [
        der::tlv(der::TAG_OID, oid::EC_PUBLIC_KEY),
        der::tlv(der::TAG_OID, curve),
    ]
    .concat();
    Ok(private_key_info(&alg, sec1))
}

/// `PrivateKeyInfo ::= SEQUENCE { version 0, AlgorithmIdentifier, OCTET STRING key }`.
fn private_key_info(algorithm_contents: &[u8], key: &[u8]) -> Vec<u8> {
    let body = [
        der::tlv(der::TAG_INTEGER, &[0]),
        der::tlv(der::TAG_SEQUENCE, algorithm_contents),
        der::tlv(der::TAG_OCTET_STRING, key),
    ]
    .concat();
    der::tlv(der::TAG_SEQUENCE, &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rcgen::PublicKeyData;

    const P256: &str = include_str!("../tests/data/p256.pk8.pem");
    const RSA2048_PKCS1: &str = include_str!("../tests/data/rsa2048.pkcs1.pem");

    fn pem_contents(pem: &str) -> Vec<u8> {
        x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .expect("pem")
            .1
            .contents
    }

    #[test]
    fn spki_checks() {
        let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("generated");
        let err = KeyAlgorithm::of_spki(&p384.subject_public_key_info()).expect_err("P-384");
        assert!(err.to_string().contains("P-384"), "{err}");
        let good = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
            .expect("key")
            .subject_public_key_info();
        for bad in [
            &good[..good.len() - 1],
            &[good.as_slice(), &[0]].concat(),
            &[],
            &[0x30, 0x00],
        ] {
            assert!(KeyAlgorithm::of_spki(bad).is_err());
        }
        // An RSA key of 1024 bits, built by hand.
        let mut modulus = vec![0u8];
        modulus.extend([0xc5; 128]);
        let rsa = [
            der::tlv(der::TAG_INTEGER, &modulus),
            der::tlv(der::TAG_INTEGER, &[1, 0, 1]),
        ]
        .concat();
        let key = [vec![0], der::tlv(der::TAG_SEQUENCE, &rsa)].concat();
        let alg = [
            der::tlv(der::TAG_OID, oid::RSA_ENCRYPTION),
            der::tlv(der::TAG_NULL, &[]),
        ]
        .concat();
        let spki = der::tlv(
            der::TAG_SEQUENCE,
            &[
                der::tlv(der::TAG_SEQUENCE, &alg),
                der::tlv(der::TAG_BIT_STRING, &key),
            ]
            .concat(),
        );
        assert_eq!(
            KeyAlgorithm::of_spki(&spki),
            Err(SecurityError::RsaKeySize { bits: 1024 })
        );
    }

    #[test]
    fn rewrapped_keys_name_their_algorithm() {
        let pkcs8 = pkcs1_to_pkcs8(&pem_contents(RSA2048_PKCS1)).expect("wrapped");
        assert_eq!(
            pkcs8_algorithm(&pkcs8),
            Ok(KeyAlgorithm::Rsa { bits: 2048 })
        );
        assert_eq!(
            pkcs8_algorithm(&pem_contents(P256)),
            Ok(KeyAlgorithm::EcdsaP256)
        );
    }

    proptest! {
        #[test]
        fn damaged_keys_never_panic(at in 0usize..138, value in any::<u8>()) {
            let der = pem_contents(P256);
            let mut damaged = der.clone();
            let at = at % damaged.len();
            damaged[at] = value;
            let _ = pkcs8_algorithm(&damaged);
            let _ = pkcs8_algorithm(&der[..at]);
            let _ = sec1_to_pkcs8(&damaged);
            let _ = pkcs1_to_pkcs8(&damaged);
            let _ = KeyAlgorithm::of_spki(&damaged);
        }
    }
}
