//! The storage key, the subkeys derived from it, and the sealing of entries: the keyed slot
//! hash of a record key, the AEAD seal with its associated data, and the plaintext layout of
//! a record (see the [module doc](super) for the format).

use std::fmt;

use bytes::Bytes;
use dht_id::{KEY_LEN, Key};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf::{HKDF_SHA256, Prk, Salt};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::quota::Origin;
use crate::record::Record;
use crate::store::StoreError;

/// Version of the entry format; part of every entry's associated data.
pub(crate) const FORMAT_VERSION: u8 = 1;

/// The HKDF-SHA256 `info` of [`StorageKey::derive`].
pub const STORAGE_KEY_INFO: &[u8] = b"voidphone-dht storage v1";

/// The fixed HKDF-SHA256 salt of [`StorageKey::derive`].
pub const STORAGE_KEY_SALT: &[u8] = b"voidphone-dht storage salt";

/// HKDF `info` of the AEAD subkey (AES-256-GCM) expanded from the storage key.
const SEAL_INFO: &[u8] = b"voidphone-dht storage v1 seal";

/// HKDF `info` of the HMAC-SHA256 subkey of the slot hashes expanded from the storage key.
const SLOT_INFO: &[u8] = b"voidphone-dht storage v1 slot";

/// Length of a slot, the keyed hash of a record key (HMAC-SHA256).
pub(crate) const SLOT_LEN: usize = 32;

/// Bytes a seal adds to its plaintext: the nonce and the tag.
pub(crate) const SEAL_OVERHEAD: usize = NONCE_LEN + 16;

/// Bytes of a record's plaintext before the origin: key, expiry, version, replication.
const HEADER_LEN: usize = KEY_LEN + 8 + 8 + 1;

/// Origin tags of the plaintext layout.
const TAG_LOCAL: u8 = 0;
const TAG_PEER: u8 = 1;
const TAG_REPLICATION: u8 = 2;

/// The 256-bit secret that seals a [`DurableStore`](super::DurableStore): its entries'
/// values and keys. Its [`Debug`](fmt::Debug) shows nothing of it.
#[derive(Clone)]
pub struct StorageKey([u8; 32]);

impl StorageKey {
    /// Derives the storage key from secret input key material (the node's host key as
    /// PKCS#8 DER) with HKDF-SHA256, salt [`STORAGE_KEY_SALT`] and info
    /// [`STORAGE_KEY_INFO`] (`"voidphone-dht storage v1"`).
    pub fn derive(ikm: &[u8]) -> StorageKey {
        let prk = Salt::new(HKDF_SHA256, STORAGE_KEY_SALT).extract(ikm);
        StorageKey(expand(&prk, STORAGE_KEY_INFO))
    }

    /// A key given as bytes (from the configuration).
    pub fn from_bytes(bytes: [u8; 32]) -> StorageKey {
        StorageKey(bytes)
    }
}

impl fmt::Debug for StorageKey {
    /// Shows nothing secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StorageKey(..)")
    }
}

/// 32 bytes of HKDF-SHA256 output of `prk` for `info`.
fn expand(prk: &Prk, info: &[u8]) -> [u8; 32] {
    let mut out = [0; 32];
    let infos = [info];
    // Expanding 32 bytes (one hash length) with SHA-256 cannot fail: HKDF allows 255.
    if let Ok(okm) = prk.expand(&infos, HKDF_SHA256) {
        let _ = okm.fill(&mut out);
    }
    out
}

/// The subkeys of a storage key and the random source of nonces.
pub(crate) struct Sealer {
    aead: LessSafeKey,
    slot: hmac::Key,
    rng: SystemRandom,
}

impl Sealer {
    /// The subkeys of `key`: one for the AEAD and one for the slot hashes (HKDF-SHA256
    /// expand of the storage key, used as the pseudorandom key, with distinct infos).
    pub(crate) fn new(key: &StorageKey) -> Result<Sealer, StoreError> {
        let prk = Prk::new_less_safe(HKDF_SHA256, &key.0);
        let aead_key = expand(&prk, SEAL_INFO);
        let slot_key = expand(&prk, SLOT_INFO);
        // AES-256-GCM takes exactly these 32 bytes: this does not fail.
        let unbound = UnboundKey::new(&AES_256_GCM, &aead_key)
            .map_err(|_| StoreError::Backend("AES-256-GCM refused the key".into()))?;
        Ok(Sealer {
            aead: LessSafeKey::new(unbound),
            slot: hmac::Key::new(hmac::HMAC_SHA256, &slot_key),
            rng: SystemRandom::new(),
        })
    }

    /// The slot of `key`: HMAC-SHA256 of its bytes under the slot subkey.
    pub(crate) fn slot(&self, key: &Key) -> [u8; SLOT_LEN] {
        let tag = hmac::sign(&self.slot, key.as_bytes());
        let mut out = [0; SLOT_LEN];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Seals `plaintext` under `name` (the slot, or a meta entry's name):
    /// `nonce (12) || ciphertext || tag (16)`, with associated data `name || FORMAT_VERSION`
    /// and a fresh random nonce.
    pub(crate) fn seal(&self, name: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, StoreError> {
        let mut nonce = [0; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| StoreError::Backend("no randomness for a nonce".into()))?;
        let mut out = Vec::with_capacity(plaintext.len().saturating_add(SEAL_OVERHEAD));
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = self
            .aead
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(name)),
                &mut out[NONCE_LEN..],
            )
            .map_err(|_| StoreError::Backend("sealing failed".into()))?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Opens what [`seal`](Self::seal) sealed under `name`; `None` if it fails
    /// authentication (another key, another name, a changed byte) or is too short.
    pub(crate) fn open(&self, name: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < SEAL_OVERHEAD {
            return None;
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = body.to_vec();
        let len = self
            .aead
            .open_in_place(nonce, Aad::from(aad(name)), &mut buf)
            .ok()?
            .len();
        buf.truncate(len);
        Some(buf)
    }

    /// The sealed entry of `record` written by `origin`, for its slot `slot`.
    pub(crate) fn seal_record(
        &self,
        slot: &[u8; SLOT_LEN],
        record: &Record,
        origin: Origin,
    ) -> Result<Vec<u8>, StoreError> {
        self.seal(slot, &encode(record, origin))
    }

    /// Opens the entry `sealed` found in `slot`; `None` if it fails authentication, does not
    /// decode, or holds a record whose key does not hash to `slot`.
    pub(crate) fn open_record(&self, slot: &[u8], sealed: &[u8]) -> Option<(Record, Origin)> {
        let plain = self.open(slot, sealed)?;
        let (record, origin) = decode(plain)?;
        (self.slot(&record.key) == slot).then_some((record, origin))
    }
}

/// The associated data of an entry named `name`.
fn aad(name: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(name.len() + 1);
    aad.extend_from_slice(name);
    aad.push(FORMAT_VERSION);
    aad
}

/// The plaintext of a record: `key (32) || expires_at (u64 BE) || version (u64 BE) ||
/// replication (u8) || origin tag (u8: 0 local, 1 peer, 2 replication) || peer id (32,
/// tags 1 and 2 only) || value`.
fn encode(record: &Record, origin: Origin) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + 1 + KEY_LEN + record.value.len());
    out.extend_from_slice(record.key.as_bytes());
    out.extend_from_slice(&record.expires_at.to_be_bytes());
    out.extend_from_slice(&record.version.to_be_bytes());
    out.push(record.replication);
    match origin {
        Origin::Local => out.push(TAG_LOCAL),
        Origin::Peer(id) => {
            out.push(TAG_PEER);
            out.extend_from_slice(id.as_bytes());
        }
        Origin::Replication(id) => {
            out.push(TAG_REPLICATION);
            out.extend_from_slice(id.as_bytes());
        }
    }
    out.extend_from_slice(&record.value);
    out
}

/// Reads what [`encode`] wrote; `None` if it is malformed.
fn decode(plain: Vec<u8>) -> Option<(Record, Origin)> {
    let key = key_at(&plain, 0)?;
    let expires_at = u64_at(&plain, KEY_LEN)?;
    let version = u64_at(&plain, KEY_LEN + 8)?;
    let replication = *plain.get(KEY_LEN + 16)?;
    let (origin, value_at) = match *plain.get(HEADER_LEN)? {
        TAG_LOCAL => (Origin::Local, HEADER_LEN + 1),
        TAG_PEER => (
            Origin::Peer(key_at(&plain, HEADER_LEN + 1)?),
            HEADER_LEN + 1 + KEY_LEN,
        ),
        TAG_REPLICATION => (
            Origin::Replication(key_at(&plain, HEADER_LEN + 1)?),
            HEADER_LEN + 1 + KEY_LEN,
        ),
        _ => return None,
    };
    if value_at > plain.len() {
        return None;
    }
    let value = Bytes::from(plain).slice(value_at..);
    let record = Record {
        key,
        value,
        expires_at,
        replication,
        version,
    };
    Some((record, origin))
}

/// The key at `at` in `buf`.
fn key_at(buf: &[u8], at: usize) -> Option<Key> {
    let bytes: [u8; KEY_LEN] = buf.get(at..at.checked_add(KEY_LEN)?)?.try_into().ok()?;
    Some(Key::from_bytes(bytes))
}

/// The big-endian `u64` at `at` in `buf`.
fn u64_at(buf: &[u8], at: usize) -> Option<u64> {
    let bytes: [u8; 8] = buf.get(at..at.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn record(value: &[u8]) -> Record {
        Record {
            key: Key::from_bytes([3; 32]),
            value: Bytes::copy_from_slice(value),
            expires_at: 1_234,
            replication: 7,
            version: 99,
        }
    }

    fn sealer(n: u8) -> Sealer {
        Sealer::new(&StorageKey::from_bytes([n; 32])).unwrap()
    }

    #[test]
    fn derive_is_deterministic_and_depends_on_the_input() {
        let a = StorageKey::derive(b"host key one");
        assert_eq!(a.0, StorageKey::derive(b"host key one").0);
        assert_ne!(a.0, StorageKey::derive(b"host key two").0);
        assert_ne!(a.0, [0; 32]);
        // HKDF-SHA256 as documented: a different info gives a different key.
        let prk = Salt::new(HKDF_SHA256, STORAGE_KEY_SALT).extract(b"host key one");
        assert_eq!(a.0, expand(&prk, STORAGE_KEY_INFO));
        assert_ne!(a.0, expand(&prk, b"another info"));
    }

    #[test]
    fn debug_shows_nothing_secret() {
        let shown = format!("{:?}", StorageKey::from_bytes([0xab; 32]));
        assert_eq!(shown, "StorageKey(..)");
    }

    #[test]
    fn subkeys_differ_from_the_key_and_each_other() {
        let key = StorageKey::from_bytes([5; 32]);
        let prk = Prk::new_less_safe(HKDF_SHA256, &key.0);
        let (seal, slot) = (expand(&prk, SEAL_INFO), expand(&prk, SLOT_INFO));
        assert_ne!(seal, slot);
        assert_ne!(seal, key.0);
    }

    #[test]
    fn slots_are_keyed() {
        let k = Key::from_bytes([1; 32]);
        assert_eq!(sealer(1).slot(&k), sealer(1).slot(&k));
        assert_ne!(sealer(1).slot(&k), sealer(2).slot(&k));
        assert_ne!(
            sealer(1).slot(&k),
            sealer(1).slot(&Key::from_bytes([2; 32]))
        );
        assert_ne!(&sealer(1).slot(&k)[..], k.as_bytes());
    }

    #[test]
    fn record_roundtrip_with_every_origin() {
        let s = sealer(1);
        let r = record(b"value");
        let slot = s.slot(&r.key);
        for origin in [
            Origin::Local,
            Origin::Peer(Key::from_bytes([8; 32])),
            Origin::Replication(Key::from_bytes([9; 32])),
        ] {
            let sealed = s.seal_record(&slot, &r, origin).unwrap();
            assert_eq!(s.open_record(&slot, &sealed), Some((r.clone(), origin)));
        }
    }

    #[test]
    fn nonces_are_fresh() {
        let s = sealer(1);
        let a = s.seal(b"x", b"same").unwrap();
        let b = s.seal(b"x", b"same").unwrap();
        assert_ne!(a[..NONCE_LEN], b[..NONCE_LEN]);
        assert_ne!(a, b);
        assert_eq!(a.len(), 4 + SEAL_OVERHEAD);
    }

    #[test]
    fn sealed_record_hides_key_and_value() {
        let s = sealer(1);
        let r = record(b"a recognizable value");
        let sealed = s.seal_record(&s.slot(&r.key), &r, Origin::Local).unwrap();
        let has = |needle: &[u8]| sealed.windows(needle.len()).any(|w| w == needle);
        assert!(!has(b"recognizable"));
        assert!(!has(r.key.as_bytes()));
    }

    #[test]
    fn wrong_name_key_or_version_fails() {
        let s = sealer(1);
        let r = record(b"v");
        let slot = s.slot(&r.key);
        let sealed = s.seal_record(&slot, &r, Origin::Local).unwrap();
        let other = s.slot(&Key::from_bytes([4; 32]));
        assert_eq!(s.open_record(&other, &sealed), None);
        assert_eq!(sealer(2).open_record(&slot, &sealed), None);
        // Sealed for the right slot under another format version: rejected.
        let mut name = slot.to_vec();
        name.push(FORMAT_VERSION + 1);
        let mut wrong_version = [0; NONCE_LEN].to_vec();
        let mut body = encode(&r, Origin::Local);
        let tag = s
            .aead
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key([0; NONCE_LEN]),
                Aad::from(name),
                &mut body,
            )
            .unwrap();
        wrong_version.extend_from_slice(&body);
        wrong_version.extend_from_slice(tag.as_ref());
        assert_eq!(s.open_record(&slot, &wrong_version), None);
    }

    #[test]
    fn a_sealed_record_under_a_slot_not_its_own_fails() {
        // Even sealed by the key holder, a record only opens in its own slot.
        let s = sealer(1);
        let r = record(b"v");
        let other = s.slot(&Key::from_bytes([4; 32]));
        let sealed = s.seal_record(&other, &r, Origin::Local).unwrap();
        assert_eq!(s.open_record(&other, &sealed), None);
    }

    #[test]
    fn malformed_plaintexts_do_not_decode() {
        let good = encode(&record(b"v"), Origin::Peer(Key::from_bytes([8; 32])));
        for len in 0..good.len() - 1 {
            assert!(decode(good[..len].to_vec()).is_none(), "{len}");
        }
        let mut bad_tag = good.clone();
        bad_tag[HEADER_LEN] = 3;
        assert!(decode(bad_tag).is_none());
        // An empty value decodes (the loader drops it as invalid).
        let empty = encode(&record(b""), Origin::Local);
        assert_eq!(decode(empty).map(|(r, _)| r.value.len()), Some(0));
    }

    proptest! {
        #[test]
        fn flipped_bits_never_open(at in 0usize..64, bit in 0u8..8) {
            let s = sealer(1);
            let r = record(b"some value bytes");
            let slot = s.slot(&r.key);
            let mut sealed = s.seal_record(&slot, &r, Origin::Local).unwrap();
            let at = at % sealed.len();
            sealed[at] ^= 1 << bit;
            prop_assert_eq!(s.open_record(&slot, &sealed), None);
        }

        #[test]
        fn random_bytes_never_open_nor_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let s = sealer(1);
            prop_assert_eq!(s.open_record(&[0; 32], &bytes), None);
            let _ = decode(bytes);
        }
    }
}
