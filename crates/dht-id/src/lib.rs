//! 256-bit identifiers and the Kademlia XOR metric.
//!
//! Keys of stored values and ids of nodes live in the same 256-bit space, so one type,
//! [`Key`], serves both; [`NodeId`] is an alias that says which role a value plays.
//! The distance between two ids is their bitwise XOR read as a big-endian unsigned
//! integer ([`Distance`], ordered). The k-bucket an id falls into, seen from a local id,
//! is the length of the prefix the two share ([`Key::bucket_index`]): bucket 0 holds the
//! farthest half of the space, bucket 255 the single closest id.
//!
//! This crate owns no runtime and reads no clock; randomness is passed in by the caller.
#![deny(missing_docs, rustdoc::broken_intra_doc_links, unreachable_pub)]

use std::fmt;
use std::str::FromStr;

use rand::Rng;

/// Length of a key or node id in bytes.
pub const KEY_LEN: usize = 32;
/// Length of a key or node id in bits, and so the number of k-buckets.
pub const KEY_BITS: usize = KEY_LEN * 8;

/// A 256-bit key of a stored value, or (as [`NodeId`]) the id of a node.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Key([u8; KEY_LEN]);

/// The id of a node: a [`Key`] in the same space as the keys of stored values.
pub type NodeId = Key;

impl Key {
    /// The key made of these bytes.
    pub const fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Key(bytes)
    }

    /// The key's bytes, most significant first.
    pub const fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// The key's bytes, by value.
    pub const fn to_bytes(self) -> [u8; KEY_LEN] {
        self.0
    }

    /// Parses a key from a slice of exactly [`KEY_LEN`] bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, IdError> {
        let array: [u8; KEY_LEN] = bytes.try_into().map_err(|_| IdError::Length(bytes.len()))?;
        Ok(Key(array))
    }

    /// SHA-256 of `data`, the usual way to turn a name into a key.
    pub fn sha256(data: &[u8]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, data);
        let mut out = [0u8; KEY_LEN];
        out.copy_from_slice(digest.as_ref());
        Key(out)
    }

    /// A uniformly random key.
    pub fn random<R: Rng + ?Sized>(rng: &mut R) -> Self {
        let mut out = [0u8; KEY_LEN];
        rng.fill(&mut out[..]);
        Key(out)
    }

    /// A random key that shares exactly `prefix_len` leading bits with `self`, that is a
    /// random id in bucket `prefix_len` as seen from `self`. `prefix_len` must be below
    /// [`KEY_BITS`]; larger values are clamped to the last bucket.
    pub fn random_in_bucket<R: Rng + ?Sized>(&self, prefix_len: usize, rng: &mut R) -> Self {
        let prefix_len = prefix_len.min(KEY_BITS - 1);
        let mut distance = [0u8; KEY_LEN];
        rng.fill(&mut distance[..]);
        // Clear the shared prefix, set the first differing bit.
        for bit in 0..prefix_len {
            distance[bit / 8] &= !(0x80 >> (bit % 8));
        }
        distance[prefix_len / 8] |= 0x80 >> (prefix_len % 8);
        self.xor(&Distance(distance))
    }

    /// The XOR distance between two keys.
    pub fn distance(&self, other: &Key) -> Distance {
        let mut out = [0u8; KEY_LEN];
        for (o, (a, b)) in out.iter_mut().zip(self.0.iter().zip(other.0.iter())) {
            *o = a ^ b;
        }
        Distance(out)
    }

    /// The key at `distance` from `self` (the unique `y` with `d(self, y) = distance`).
    pub fn xor(&self, distance: &Distance) -> Key {
        let mut out = [0u8; KEY_LEN];
        for (o, (a, b)) in out.iter_mut().zip(self.0.iter().zip(distance.0.iter())) {
            *o = a ^ b;
        }
        Key(out)
    }

    /// The k-bucket `other` belongs in as seen from `self`: the length of the prefix the
    /// two keys share, in `0..KEY_BITS`; `None` when the keys are equal.
    pub fn bucket_index(&self, other: &Key) -> Option<usize> {
        self.distance(other).bucket_index()
    }

    /// The first 8 hex digits, for logs.
    pub fn short(&self) -> ShortKey {
        ShortKey(*self)
    }
}

impl From<[u8; KEY_LEN]> for Key {
    fn from(bytes: [u8; KEY_LEN]) -> Self {
        Key(bytes)
    }
}

impl AsRef<[u8]> for Key {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in &self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.short())
    }
}

/// A key shown by its first 8 hex digits (see [`Key::short`]).
#[derive(Clone, Copy)]
pub struct ShortKey(Key);

impl fmt::Display for ShortKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in &self.0.0[..4] {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl FromStr for Key {
    type Err = IdError;

    /// Parses exactly 64 hex digits (either case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.len() != KEY_LEN * 2 {
            return Err(IdError::HexLength(s.len()));
        }
        let mut out = [0u8; KEY_LEN];
        let bytes = s.as_bytes();
        for (i, o) in out.iter_mut().enumerate() {
            let hi = hex_digit(bytes[2 * i]).ok_or(IdError::HexDigit(2 * i))?;
            let lo = hex_digit(bytes[2 * i + 1]).ok_or(IdError::HexDigit(2 * i + 1))?;
            *o = (hi << 4) | lo;
        }
        Ok(Key(out))
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Why bytes or text are not a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// A binary key must be exactly 32 bytes.
    #[error("a key is 32 bytes, got {0}")]
    Length(usize),
    /// A hex key must be exactly 64 digits.
    #[error("a key is 64 hex digits, got {0} characters")]
    HexLength(usize),
    /// A character that is not a hex digit.
    #[error("character {0} is not a hex digit")]
    HexDigit(usize),
}

/// The XOR distance between two keys, ordered as a 256-bit big-endian integer.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Distance([u8; KEY_LEN]);

impl Distance {
    /// Distance zero: a key's distance to itself.
    pub const ZERO: Distance = Distance([0; KEY_LEN]);
    /// The largest distance.
    pub const MAX: Distance = Distance([0xff; KEY_LEN]);

    /// The distance made of these bytes, most significant first.
    pub const fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Distance(bytes)
    }

    /// The distance's bytes, most significant first.
    pub const fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// The distance as a float (53 significant bits), for estimates such as how many
    /// nodes a radius holds.
    pub fn to_f64(&self) -> f64 {
        self.0
            .iter()
            .fold(0.0, |acc, byte| acc * 256.0 + f64::from(*byte))
    }

    /// Number of leading zero bits (256 for distance zero).
    pub fn leading_zeros(&self) -> u32 {
        let mut zeros = 0;
        for byte in &self.0 {
            if *byte == 0 {
                zeros += 8;
            } else {
                return zeros + byte.leading_zeros();
            }
        }
        zeros
    }

    /// Length of the shared prefix of the two keys this is the distance of, which is the
    /// bucket index; `None` for distance zero.
    pub fn bucket_index(&self) -> Option<usize> {
        let zeros = self.leading_zeros() as usize;
        (zeros < KEY_BITS).then_some(zeros)
    }
}

impl fmt::Debug for Distance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Distance(")?;
        for byte in &self.0 {
            write!(f, "{byte:02x}")?;
        }
        write!(f, ")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> impl Strategy<Value = Key> {
        any::<[u8; 32]>().prop_map(Key::from_bytes)
    }

    proptest! {
        #[test]
        fn identity(x in key()) {
            prop_assert_eq!(x.distance(&x), Distance::ZERO);
            prop_assert_eq!(x.bucket_index(&x), None);
        }

        #[test]
        fn symmetry(x in key(), y in key()) {
            prop_assert_eq!(x.distance(&y), y.distance(&x));
        }

        #[test]
        fn xor_composition(x in key(), y in key(), z in key()) {
            let dxy = x.distance(&y);
            let dyz = y.distance(&z);
            let combined = Key::from_bytes(*dxy.as_bytes()).distance(&Key::from_bytes(*dyz.as_bytes()));
            prop_assert_eq!(x.distance(&z), combined);
        }

        #[test]
        fn unidirectional(x in key(), d in any::<[u8; 32]>(), other in key()) {
            let d = Distance::from_bytes(d);
            let y = x.xor(&d);
            prop_assert_eq!(x.distance(&y), d);
            // Any other key at the same distance is y itself.
            if x.distance(&other) == d {
                prop_assert_eq!(other, y);
            } else {
                prop_assert_ne!(other, y);
            }
        }

        #[test]
        fn bucket_index_is_shared_prefix(x in key(), y in key()) {
            let expected = (0..KEY_BITS).find(|&bit| {
                let mask = 0x80u8 >> (bit % 8);
                x.as_bytes()[bit / 8] & mask != y.as_bytes()[bit / 8] & mask
            });
            prop_assert_eq!(x.bucket_index(&y), expected);
        }

        #[test]
        fn bucket_index_agrees_with_distance_order(x in key(), y in key(), z in key()) {
            // A larger shared prefix means strictly closer.
            let (by, bz) = (x.bucket_index(&y), x.bucket_index(&z));
            if let (Some(by), Some(bz)) = (by, bz) {
                if by > bz {
                    prop_assert!(x.distance(&y) < x.distance(&z));
                }
                if x.distance(&y) < x.distance(&z) {
                    prop_assert!(by >= bz);
                }
            }
        }

        #[test]
        fn random_in_bucket_lands_in_bucket(x in key(), bucket in 0usize..KEY_BITS, seed in any::<u64>()) {
            use rand::SeedableRng;
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let y = x.random_in_bucket(bucket, &mut rng);
            prop_assert_eq!(x.bucket_index(&y), Some(bucket));
        }

        #[test]
        fn to_f64_keeps_the_order_of_distances(x in key(), y in key(), z in key()) {
            let (dy, dz) = (x.distance(&y), x.distance(&z));
            if dy < dz {
                prop_assert!(dy.to_f64() <= dz.to_f64());
            }
            let bits = KEY_BITS as i32 - dy.leading_zeros() as i32;
            if bits > 0 {
                // Within a factor of two of 2^(bits - 1), as the highest bit says.
                let value = dy.to_f64();
                prop_assert!(value >= 2f64.powi(bits - 1) && value < 2f64.powi(bits));
            }
        }

        #[test]
        fn hex_roundtrip(x in key()) {
            let text = x.to_string();
            prop_assert_eq!(text.len(), 64);
            prop_assert_eq!(text.parse::<Key>().unwrap(), x);
            prop_assert_eq!(text.to_uppercase().parse::<Key>().unwrap(), x);
        }

        #[test]
        fn hex_parse_never_panics(s in ".{0,80}") {
            let _ = s.parse::<Key>();
        }
    }

    #[test]
    fn popcount_is_not_the_bucket_index() {
        // Distance 0b0111...: one leading zero, but a popcount of 255.
        let x = Key::from_bytes([0; 32]);
        let mut far = [0xff; 32];
        far[0] = 0x7f;
        assert_eq!(x.bucket_index(&Key::from_bytes(far)), Some(1));
        let mut near = [0; 32];
        near[31] = 1;
        assert_eq!(x.bucket_index(&Key::from_bytes(near)), Some(255));
    }

    #[test]
    fn sha256_known_answer() {
        let k = Key::sha256(b"abc");
        assert_eq!(
            k.to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn hex_errors() {
        assert_eq!("abc".parse::<Key>(), Err(IdError::HexLength(3)));
        let bad = "g".repeat(64);
        assert_eq!(bad.parse::<Key>(), Err(IdError::HexDigit(0)));
        assert_eq!(Key::from_slice(&[0; 31]), Err(IdError::Length(31)));
    }
}
