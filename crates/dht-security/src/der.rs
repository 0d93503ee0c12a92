//! Just enough DER to read the outer structure of keys (PKCS#8, PKCS#1, SEC1,
//! SubjectPublicKeyInfo) and to wrap a traditional key into PKCS#8.
//!
//! Only what the key formats we accept use: single-byte tags and definite lengths of
//! at most four length bytes. Every read is bounds-checked and returns `None` on
//! anything unexpected; nothing here panics on malformed input.

use std::fmt::Write as _;

pub(crate) const TAG_INTEGER: u8 = 0x02;
pub(crate) const TAG_BIT_STRING: u8 = 0x03;
pub(crate) const TAG_OCTET_STRING: u8 = 0x04;
pub(crate) const TAG_NULL: u8 = 0x05;
pub(crate) const TAG_OID: u8 = 0x06;
pub(crate) const TAG_SEQUENCE: u8 = 0x30;
/// `[0]`, constructed (SEC1 curve parameters, PKCS#8 attributes).
pub(crate) const TAG_CONTEXT_0: u8 = 0xa0;

/// Contents octets of the object identifiers we recognise.
pub(crate) mod oid {
    /// 1.3.101.112
    pub(crate) const ED25519: &[u8] = &[0x2b, 0x65, 0x70];
    /// 1.2.840.10045.2.1
    pub(crate) const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    /// 1.2.840.10045.3.1.7
    pub(crate) const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    /// 1.2.840.113549.1.1.1
    pub(crate) const RSA_ENCRYPTION: &[u8] =
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

    /// Names of algorithms and curves we refuse, for error messages.
    pub(crate) fn name(oid: &[u8]) -> Option<&'static str> {
        Some(match oid {
            [0x2b, 0x65, 0x70] => "Ed25519",
            [0x2b, 0x65, 0x71] => "Ed448",
            [0x2b, 0x65, 0x6e] => "X25519",
            [0x2b, 0x65, 0x6f] => "X448",
            [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01] => "EC",
            [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07] => "P-256",
            [0x2b, 0x81, 0x04, 0x00, 0x22] => "P-384",
            [0x2b, 0x81, 0x04, 0x00, 0x23] => "P-521",
            [0x2b, 0x81, 0x04, 0x00, 0x0a] => "secp256k1",
            [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01] => "RSA",
            [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a] => "RSA-PSS",
            [0x2a, 0x86, 0x48, 0xce, 0x38, 0x04, 0x01] => "DSA",
            [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x03, 0x01] => "DH",
            [0x2a, 0x85, 0x03, ..] => "GOST",
            [0x2a, 0x81, 0x1c, 0xcf, 0x55, 0x01, 0x82, 0x2d] => "SM2",
            _ => return None,
        })
    }

    /// A readable description: the name if known, and the dotted form.
    pub(crate) fn describe(oid: &[u8]) -> String {
        match name(oid) {
            Some(name) => format!("{name} (OID {})", super::dotted(oid)),
            None => format!("OID {}", super::dotted(oid)),
        }
    }
}

/// A cursor over DER bytes.
#[derive(Clone, Copy)]
pub(crate) struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Reader { data }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub(crate) fn peek_tag(&self) -> Option<u8> {
        self.data.first().copied()
    }

    /// Reads one element: its tag and its contents.
    pub(crate) fn read(&mut self) -> Option<(u8, &'a [u8])> {
        let (&tag, rest) = self.data.split_first()?;
        if tag & 0x1f == 0x1f {
            return None; // multi-byte tags are not used by key formats
        }
        let (&first, mut rest) = rest.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return None; // indefinite or absurd lengths
            }
            let (len_bytes, after) = rest.split_at(n);
            rest = after;
            let len = len_bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            if len < 0x80 || len_bytes.first() == Some(&0) {
                return None; // not the minimal encoding
            }
            len
        };
        if rest.len() < len {
            return None;
        }
        let (contents, after) = rest.split_at(len);
        self.data = after;
        Some((tag, contents))
    }

    /// Reads one element that must have tag `tag`.
    pub(crate) fn expect(&mut self, tag: u8) -> Option<&'a [u8]> {
        match self.read()? {
            (t, contents) if t == tag => Some(contents),
            _ => None,
        }
    }

    /// Reads an element with tag `tag` if the next one has it.
    pub(crate) fn optional(&mut self, tag: u8) -> Option<&'a [u8]> {
        if self.peek_tag() == Some(tag) {
            self.expect(tag)
        } else {
            None
        }
    }
}

/// Reads a whole buffer that must be exactly one element with tag `tag`.
pub(crate) fn single(data: &[u8], tag: u8) -> Option<&[u8]> {
    let mut reader = Reader::new(data);
    let contents = reader.expect(tag)?;
    reader.is_empty().then_some(contents)
}

/// The bit length of a non-negative INTEGER's contents (`None` if negative or empty).
pub(crate) fn unsigned_bits(integer: &[u8]) -> Option<usize> {
    let first = *integer.first()?;
    if first & 0x80 != 0 {
        return None;
    }
    let significant: &[u8] = match integer.iter().position(|b| *b != 0) {
        Some(start) => &integer[start..],
        None => return Some(0),
    };
    let top = significant.first().copied().unwrap_or(0);
    Some((significant.len() - 1) * 8 + (8 - top.leading_zeros() as usize))
}

/// Encodes one element.
pub(crate) fn tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(contents.len() + 6);
    out.push(tag);
    let len = contents.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(contents);
    out
}

/// The dotted form of an OID's contents ("1.2.840.10045.3.1.7").
pub(crate) fn dotted(oid: &[u8]) -> String {
    let mut arcs: Vec<u128> = Vec::new();
    let mut value: u128 = 0;
    for (i, byte) in oid.iter().enumerate() {
        value = match value.checked_mul(128) {
            Some(v) => v | u128::from(byte & 0x7f),
            None => return hex(oid),
        };
        if byte & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (value / 40).min(2);
                arcs.push(first);
                arcs.push(value - first * 40);
            } else {
                arcs.push(value);
            }
            value = 0;
        } else if i + 1 == oid.len() {
            return hex(oid); // truncated arc
        }
    }
    if arcs.is_empty() {
        return hex(oid);
    }
    let mut out = String::new();
    for (i, arc) in arcs.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        let _ = write!(out, "{arc}");
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::from("0x");
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn dotted_names() {
        assert_eq!(dotted(oid::P256), "1.2.840.10045.3.1.7");
        assert_eq!(dotted(oid::RSA_ENCRYPTION), "1.2.840.113549.1.1.1");
        assert_eq!(dotted(oid::ED25519), "1.3.101.112");
        assert_eq!(dotted(&[0x2b, 0x81, 0x04, 0x00, 0x22]), "1.3.132.0.34");
        assert_eq!(dotted(&[0x2b, 0x81]), "0x2b81");
        assert_eq!(dotted(&[]), "0x");
    }

    #[test]
    fn bits_of_integers() {
        assert_eq!(unsigned_bits(&[0x00, 0x80]), Some(8));
        assert_eq!(unsigned_bits(&[0x01, 0x00]), Some(9));
        assert_eq!(unsigned_bits(&[0x00]), Some(0));
        assert_eq!(unsigned_bits(&[0x80]), None);
        assert_eq!(unsigned_bits(&[]), None);
    }

    #[test]
    fn long_lengths() {
        let contents = vec![7u8; 300];
        let encoded = tlv(TAG_OCTET_STRING, &contents);
        assert_eq!(&encoded[..4], &[0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(single(&encoded, TAG_OCTET_STRING), Some(&contents[..]));
        // Non-minimal and indefinite lengths are refused.
        assert_eq!(Reader::new(&[0x04, 0x81, 0x01, 0x00]).read(), None);
        assert_eq!(Reader::new(&[0x30, 0x80, 0x00, 0x00]).read(), None);
        assert_eq!(Reader::new(&[0x04, 0x82, 0x00, 0x90]).read(), None);
    }

    proptest! {
        #[test]
        fn tlv_roundtrip(tag in 0u8..0x1f, contents in proptest::collection::vec(any::<u8>(), 0..600)) {
            let encoded = tlv(tag, &contents);
            prop_assert_eq!(single(&encoded, tag), Some(&contents[..]));
        }

        #[test]
        fn reading_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut reader = Reader::new(&bytes);
            while reader.read().is_some() {}
            let _ = dotted(&bytes);
            let _ = unsigned_bits(&bytes);
        }
    }
}
