//! Key formats: which algorithm a PKCS#8 private key or a SubjectPublicKeyInfo holds,
//! checked against what we accept, and rewrapping of traditional PKCS#1 / SEC1 private
//! keys into PKCS#8.
//!
//! The DER is read and written by the RustCrypto `spki`, `pkcs8`, `pkcs1` and `sec1`
//! crates (all on the `der` crate); this module only decides what we accept and says
//! what it found.

use std::fmt;

use pkcs1::{RsaPrivateKey, RsaPublicKey};
use pkcs8::der::asn1::{AnyRef, IntRef, OctetStringRef};
use pkcs8::der::{self, Decode, Encode, ErrorKind, Tag};
use pkcs8::spki::{AlgorithmIdentifierRef, SubjectPublicKeyInfoRef};
use pkcs8::{ObjectIdentifier, PrivateKeyInfoRef};
use sec1::{EcParameters, EcPrivateKey};

use crate::SecurityError;

/// Smallest accepted RSA modulus, in bits.
pub const RSA_MIN_BITS: usize = 2048;
/// Largest accepted RSA modulus, in bits (the largest *ring* signs with).
pub const RSA_MAX_BITS: usize = 4096;

/// How to turn a traditional or encrypted key into what we read.
const CONVERT_HINT: &str = "convert with: openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.pk8";

/// The object identifiers we recognise.
mod oid {
    use pkcs8::ObjectIdentifier;

    /// 1.3.101.112
    pub(super) const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
    /// 1.2.840.10045.2.1
    pub(super) const EC_PUBLIC_KEY: ObjectIdentifier = sec1::ALGORITHM_OID;
    /// 1.2.840.10045.3.1.7
    pub(super) const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
    /// 1.2.840.113549.1.1.1
    pub(super) const RSA_ENCRYPTION: ObjectIdentifier = pkcs1::ALGORITHM_OID;
    /// 1.2.643: everything below it is GOST.
    const GOST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.643");

    /// Algorithms and curves by name, for error messages.
    const NAMES: [(ObjectIdentifier, &str); 14] = [
        (ED25519, "Ed25519"),
        (ObjectIdentifier::new_unwrap("1.3.101.113"), "Ed448"),
        (ObjectIdentifier::new_unwrap("1.3.101.110"), "X25519"),
        (ObjectIdentifier::new_unwrap("1.3.101.111"), "X448"),
        (EC_PUBLIC_KEY, "EC"),
        (P256, "P-256"),
        (ObjectIdentifier::new_unwrap("1.3.132.0.34"), "P-384"),
        (ObjectIdentifier::new_unwrap("1.3.132.0.35"), "P-521"),
        (ObjectIdentifier::new_unwrap("1.3.132.0.10"), "secp256k1"),
        (RSA_ENCRYPTION, "RSA"),
        (
            ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10"),
            "RSA-PSS",
        ),
        (ObjectIdentifier::new_unwrap("1.2.840.10040.4.1"), "DSA"),
        (ObjectIdentifier::new_unwrap("1.2.840.113549.1.3.1"), "DH"),
        (ObjectIdentifier::new_unwrap("1.2.156.10197.1.301"), "SM2"),
    ];

    /// The name of an algorithm or curve we know (and mostly refuse).
    pub(super) fn name(oid: ObjectIdentifier) -> Option<&'static str> {
        if oid.starts_with(GOST) {
            return Some("GOST");
        }
        NAMES
            .iter()
            .find(|(known, _)| *known == oid)
            .map(|(_, name)| *name)
    }

    /// A readable description: the name if known, and the dotted form.
    pub(super) fn describe(oid: ObjectIdentifier) -> String {
        match name(oid) {
            Some(name) => format!("{name} (OID {oid})"),
            None => format!("OID {oid}"),
        }
    }
}

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
        let spki = SubjectPublicKeyInfoRef::from_der(spki_der).map_err(|_| malformed())?;
        let alg = spki.algorithm;
        let key = spki.subject_public_key.as_bytes().ok_or_else(malformed)?;
        match alg.oid {
            oid::ED25519 if alg.parameters.is_none() && key.len() == 32 => {
                Ok(KeyAlgorithm::Ed25519)
            }
            oid::ED25519 => Err(malformed()),
            oid::EC_PUBLIC_KEY => {
                let curve = alg.parameters_oid().map_err(|_| malformed())?;
                if curve != oid::P256 {
                    return Err(unsupported_curve(curve));
                }
                match key {
                    [4, point @ ..] if point.len() == 64 => Ok(KeyAlgorithm::EcdsaP256),
                    _ => Err(malformed()),
                }
            }
            oid::RSA_ENCRYPTION => {
                if !alg.parameters.is_some_and(|p| p.is_null()) {
                    return Err(malformed());
                }
                let rsa = RsaPublicKey::<IntRef<'_>>::from_der(key).map_err(|_| malformed())?;
                if unsigned_bits(rsa.public_exponent).unwrap_or(0) < 2 {
                    return Err(malformed());
                }
                rsa_algorithm(rsa.modulus)
            }
            other => Err(unsupported_algorithm(other)),
        }
    }
}

fn accepted() -> String {
    format!("accepted are Ed25519, ECDSA P-256 and RSA of {RSA_MIN_BITS} to {RSA_MAX_BITS} bits")
}

fn unsupported_algorithm(alg_oid: ObjectIdentifier) -> SecurityError {
    SecurityError::UnsupportedKey(format!(
        "a key of algorithm {}; {}",
        oid::describe(alg_oid),
        accepted()
    ))
}

fn unsupported_curve(curve: ObjectIdentifier) -> SecurityError {
    SecurityError::UnsupportedKey(format!(
        "an EC key on curve {}; {}",
        oid::describe(curve),
        accepted()
    ))
}

/// The bit length of a non-negative INTEGER (`None` if negative).
fn unsigned_bits(integer: IntRef<'_>) -> Option<usize> {
    let bytes = integer.as_bytes();
    if bytes.first().is_some_and(|first| first & 0x80 != 0) {
        return None;
    }
    match bytes.iter().position(|b| *b != 0) {
        Some(start) => Some((bytes.len() - start) * 8 - bytes[start].leading_zeros() as usize),
        None => Some(0),
    }
}

/// The RSA algorithm for a modulus, if its size is accepted.
fn rsa_algorithm(modulus: IntRef<'_>) -> Result<KeyAlgorithm, SecurityError> {
    let bits = unsigned_bits(modulus).ok_or_else(|| {
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

/// The algorithm of a PKCS#8 PrivateKeyInfo (v1 or v2), checked against what we accept.
pub(crate) fn pkcs8_algorithm(pkcs8: &[u8]) -> Result<KeyAlgorithm, SecurityError> {
    let info = PrivateKeyInfoRef::from_der(pkcs8)
        .map_err(|_| SecurityError::Pem("the PRIVATE KEY block is not a PKCS#8 key".into()))?;
    let alg = info.algorithm;
    match alg.oid {
        oid::ED25519 => Ok(KeyAlgorithm::Ed25519),
        oid::EC_PUBLIC_KEY => {
            let curve = alg.parameters_oid().map_err(|_| {
                SecurityError::UnsupportedKey("an EC key without a named curve".into())
            })?;
            if curve == oid::P256 {
                Ok(KeyAlgorithm::EcdsaP256)
            } else {
                Err(unsupported_curve(curve))
            }
        }
        oid::RSA_ENCRYPTION => rsa_private_key_algorithm(info.private_key.as_bytes()),
        other => Err(unsupported_algorithm(other)),
    }
}

/// The algorithm of a PKCS#1 RSAPrivateKey.
fn rsa_private_key_algorithm(pkcs1: &[u8]) -> Result<KeyAlgorithm, SecurityError> {
    // Signed integers, so that a negative modulus is named as such.
    let key = RsaPrivateKey::<IntRef<'_>>::from_der(pkcs1)
        .map_err(|_| SecurityError::Pem("malformed RSA private key".into()))?;
    rsa_algorithm(key.modulus)
}

/// Wraps a PKCS#1 RSAPrivateKey into a PKCS#8 PrivateKeyInfo.
pub(crate) fn pkcs1_to_pkcs8(pkcs1: &[u8]) -> Result<Vec<u8>, SecurityError> {
    rsa_private_key_algorithm(pkcs1)?;
    private_key_info(pkcs1::ALGORITHM_ID, pkcs1)
}

/// Wraps a SEC1 ECPrivateKey (which must name its curve) into a PKCS#8 PrivateKeyInfo.
pub(crate) fn sec1_to_pkcs8(sec1: &[u8]) -> Result<Vec<u8>, SecurityError> {
    let no_curve = || {
        SecurityError::UnsupportedKey(format!(
            "an EC private key that names no curve; {CONVERT_HINT}"
        ))
    };
    let key = match EcPrivateKey::from_der(sec1) {
        Ok(key) => key,
        // The curve parameters are the only OID of an ECPrivateKey: this one has an
        // implicit (NULL) or explicit (SEQUENCE) curve.
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::TagUnexpected {
                    expected: Some(Tag::ObjectIdentifier),
                    ..
                }
            ) =>
        {
            return Err(no_curve());
        }
        Err(_) => return Err(SecurityError::Pem("malformed EC private key".into())),
    };
    let curve = key
        .parameters
        .and_then(EcParameters::named_curve)
        .ok_or_else(no_curve)?;
    if curve != oid::P256 {
        return Err(unsupported_curve(curve));
    }
    let algorithm = AlgorithmIdentifierRef {
        oid: oid::EC_PUBLIC_KEY,
        parameters: Some(AnyRef::from(&curve)),
    };
    private_key_info(algorithm, sec1)
}

/// `PrivateKeyInfo ::= SEQUENCE { version 0, AlgorithmIdentifier, OCTET STRING key }`.
fn private_key_info(
    algorithm: AlgorithmIdentifierRef<'_>,
    key: &[u8],
) -> Result<Vec<u8>, SecurityError> {
    let failed =
        |e: der::Error| SecurityError::Pem(format!("cannot rewrap the key as PKCS#8: {e}"));
    let key = OctetStringRef::new(key).map_err(failed)?;
    PrivateKeyInfoRef::new(algorithm, key)
        .to_der()
        .map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rcgen::PublicKeyData;

    const P256: &str = include_str!("../tests/data/p256.pk8.pem");
    const P256_SEC1: &str = include_str!("../tests/data/p256.sec1.pem");
    const RSA2048: &str = include_str!("../tests/data/rsa2048.pk8.pem");
    const RSA2048_PKCS1: &str = include_str!("../tests/data/rsa2048.pkcs1.pem");

    fn pem_contents(pem: &str) -> Vec<u8> {
        x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .expect("pem")
            .1
            .contents
    }

    fn integer(bytes: &[u8]) -> IntRef<'_> {
        IntRef::new(bytes).expect("integer")
    }

    /// A DER SubjectPublicKeyInfo of an `rsaEncryption` key.
    fn rsa_spki(modulus: &[u8], exponent: &[u8]) -> Vec<u8> {
        let rsa = RsaPublicKey {
            modulus: integer(modulus),
            public_exponent: integer(exponent),
        }
        .to_der()
        .expect("RSAPublicKey");
        SubjectPublicKeyInfoRef {
            algorithm: pkcs1::ALGORITHM_ID,
            subject_public_key: der::asn1::BitStringRef::from_bytes(&rsa).expect("bits"),
        }
        .to_der()
        .expect("SubjectPublicKeyInfo")
    }

    #[test]
    fn names_of_oids() {
        assert_eq!(oid::describe(oid::P256), "P-256 (OID 1.2.840.10045.3.1.7)");
        assert_eq!(
            oid::describe(oid::RSA_ENCRYPTION),
            "RSA (OID 1.2.840.113549.1.1.1)"
        );
        assert_eq!(oid::describe(oid::ED25519), "Ed25519 (OID 1.3.101.112)");
        let p384 = ObjectIdentifier::new_unwrap("1.3.132.0.34");
        assert_eq!(oid::describe(p384), "P-384 (OID 1.3.132.0.34)");
        let gost = ObjectIdentifier::new_unwrap("1.2.643.7.1.1.1.1");
        assert_eq!(oid::describe(gost), "GOST (OID 1.2.643.7.1.1.1.1)");
        let unknown = ObjectIdentifier::new_unwrap("1.2.3.4");
        assert_eq!(oid::describe(unknown), "OID 1.2.3.4");
    }

    #[test]
    fn bits_of_integers() {
        assert_eq!(unsigned_bits(integer(&[0x00, 0x80])), Some(8));
        assert_eq!(unsigned_bits(integer(&[0x01, 0x00])), Some(9));
        assert_eq!(unsigned_bits(integer(&[0x00])), Some(0));
        assert_eq!(unsigned_bits(integer(&[0x80])), None);
        assert_eq!(unsigned_bits(integer(&[])), Some(0));
    }

    #[test]
    fn spki_checks() {
        let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("generated");
        let err = KeyAlgorithm::of_spki(&p384.subject_public_key_info()).expect_err("P-384");
        assert!(err.to_string().contains("P-384"), "{err}");
        let good = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
            .expect("key")
            .subject_public_key_info();
        assert_eq!(KeyAlgorithm::of_spki(&good), Ok(KeyAlgorithm::Ed25519));
        for bad in [
            &good[..good.len() - 1],
            &[good.as_slice(), &[0]].concat(),
            &[],
            &[0x30, 0x00],
        ] {
            assert!(KeyAlgorithm::of_spki(bad).is_err());
        }
        // Only DER: non-minimal and indefinite lengths are refused.
        let body = &good[2..];
        let len = u8::try_from(body.len()).expect("short");
        assert_eq!(good[..2], [0x30, len]);
        let long_form = [&[0x30, 0x81, len][..], body].concat();
        let indefinite = [&[0x30, 0x80][..], body, &[0, 0]].concat();
        for bad in [long_form, indefinite] {
            assert!(KeyAlgorithm::of_spki(&bad).is_err());
        }
        // RSA keys of 1024 and 2048 bits, and with a negative modulus or a bad exponent.
        let mut modulus = vec![0u8];
        modulus.extend([0xc5; 128]);
        assert_eq!(
            KeyAlgorithm::of_spki(&rsa_spki(&modulus, &[1, 0, 1])),
            Err(SecurityError::RsaKeySize { bits: 1024 })
        );
        modulus.extend([0xc5; 128]);
        assert_eq!(
            KeyAlgorithm::of_spki(&rsa_spki(&modulus, &[1, 0, 1])),
            Ok(KeyAlgorithm::Rsa { bits: 2048 })
        );
        let negative = KeyAlgorithm::of_spki(&rsa_spki(&modulus[1..], &[1, 0, 1]));
        assert!(
            negative
                .as_ref()
                .is_err_and(|e| e.to_string().contains("negative")),
            "{negative:?}"
        );
        for exponent in [&[1u8][..], &[0], &[0x81]] {
            let got = KeyAlgorithm::of_spki(&rsa_spki(&modulus, exponent));
            assert!(
                got.as_ref()
                    .is_err_and(|e| e.to_string().contains("malformed")),
                "{got:?}"
            );
        }
    }

    #[test]
    fn rewrapped_keys_name_their_algorithm() {
        let pkcs8 = pkcs1_to_pkcs8(&pem_contents(RSA2048_PKCS1)).expect("wrapped");
        // Byte for byte what `openssl pkcs8 -topk8 -nocrypt` writes.
        assert_eq!(pkcs8, pem_contents(RSA2048));
        assert_eq!(
            pkcs8_algorithm(&pkcs8),
            Ok(KeyAlgorithm::Rsa { bits: 2048 })
        );
        assert_eq!(
            pkcs8_algorithm(&pem_contents(P256)),
            Ok(KeyAlgorithm::EcdsaP256)
        );
        let sec1 = pem_contents(P256_SEC1);
        let pkcs8 = sec1_to_pkcs8(&sec1).expect("wrapped");
        assert_eq!(pkcs8_algorithm(&pkcs8), Ok(KeyAlgorithm::EcdsaP256));
        let info = PrivateKeyInfoRef::from_der(&pkcs8).expect("PKCS#8");
        assert_eq!(info.private_key.as_bytes(), sec1);
        assert_eq!(info.algorithm.parameters_oid(), Ok(oid::P256));
    }

    #[test]
    fn sec1_without_a_named_curve() {
        let sec1 = pem_contents(P256_SEC1);
        let key = EcPrivateKey::from_der(&sec1).expect("SEC1");
        let private_key = OctetStringRef::new(key.private_key).expect("octets");
        // `[0]` holding NULL (implicitCurve) or a SEQUENCE (specifiedCurve), or no `[0]`.
        let explicit = |inner: &[u8]| {
            let params = [
                &[0xa0, u8::try_from(inner.len()).expect("short")][..],
                inner,
            ]
            .concat();
            let body = [
                1u8.to_der().expect("version"),
                private_key.to_der().expect("key"),
                params,
            ]
            .concat();
            [&[0x30, u8::try_from(body.len()).expect("short")][..], &body].concat()
        };
        let absent = EcPrivateKey {
            parameters: None,
            ..key
        }
        .to_der()
        .expect("SEC1");
        for damaged in [explicit(&[0x05, 0x00]), explicit(&[0x30, 0x00]), absent] {
            let got = sec1_to_pkcs8(&damaged);
            assert!(
                got.as_ref()
                    .is_err_and(|e| e.to_string().contains("names no curve")),
                "{got:?}"
            );
        }
        let p384 = EcPrivateKey {
            parameters: Some(ObjectIdentifier::new_unwrap("1.3.132.0.34").into()),
            ..key
        }
        .to_der()
        .expect("SEC1");
        let got = sec1_to_pkcs8(&p384);
        assert!(
            got.as_ref().is_err_and(|e| e.to_string().contains("P-384")),
            "{got:?}"
        );
    }

    proptest! {
        #[test]
        fn rewrapping_keeps_the_key(key in proptest::collection::vec(any::<u8>(), 0..600)) {
            let wrapped = private_key_info(pkcs1::ALGORITHM_ID, &key).expect("wrapped");
            let info = PrivateKeyInfoRef::from_der(&wrapped).expect("PKCS#8");
            prop_assert_eq!(info.private_key.as_bytes(), &key[..]);
            prop_assert_eq!(info.algorithm, pkcs1::ALGORITHM_ID);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = pkcs8_algorithm(&bytes);
            let _ = sec1_to_pkcs8(&bytes);
            let _ = pkcs1_to_pkcs8(&bytes);
            let _ = KeyAlgorithm::of_spki(&bytes);
        }

        #[test]
        fn damaged_keys_never_panic(at in 0usize..138, value in any::<u8>()) {
            for der in [pem_contents(P256), pem_contents(P256_SEC1), pem_contents(RSA2048_PKCS1)] {
                let mut damaged = der.clone();
                let at = at % damaged.len();
                damaged[at] = value;
                let _ = pkcs8_algorithm(&damaged);
                let _ = pkcs8_algorithm(&der[..at]);
                let _ = sec1_to_pkcs8(&damaged);
                let _ = sec1_to_pkcs8(&der[..at]);
                let _ = pkcs1_to_pkcs8(&damaged);
                let _ = pkcs1_to_pkcs8(&der[..at]);
                let _ = KeyAlgorithm::of_spki(&damaged);
            }
        }
    }
}
