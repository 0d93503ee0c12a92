//! Proof-of-work node ids (S/Kademlia's static crypto puzzle, with the key bound in).
//!
//! `node_id = SHA-256(spki_der || nonce.to_be_bytes())`; the id is valid at difficulty
//! `d` if `SHA-256(node_id)` starts with at least `d` zero bits. Minting costs about
//! `2^d` tries of two SHA-256 each; verifying costs two.

use std::fmt::Write as _;

use dht_id::{KEY_LEN, NodeId};
use ring::digest::{Context, SHA256, digest};

use crate::SecurityError;

/// The default number of leading zero bits `SHA-256(node_id)` must have.
///
/// About 65 536 tries on average. Measured on one core of the build machine: about
/// 4.5 million tries per second in a release build (about 15 ms per id on average) and
/// 2 million in a test build (about 30 ms), so tests that start many nodes stay fast;
/// each step up doubles the cost.
pub const DEFAULT_POW_DIFFICULTY: u32 = 16;

/// The id that `spki_der` and `nonce` derive: `SHA-256(spki_der || nonce big-endian)`.
pub fn derive_node_id(spki_der: &[u8], nonce: u64) -> NodeId {
    let mut ctx = Context::new(&SHA256);
    ctx.update(spki_der);
    ctx.update(&nonce.to_be_bytes());
    finish(ctx)
}

fn finish(ctx: Context) -> NodeId {
    let mut out = [0u8; KEY_LEN];
    out.copy_from_slice(ctx.finish().as_ref());
    NodeId::from_bytes(out)
}

/// Leading zero bits of `SHA-256(id)`.
pub fn pow_bits(id: &NodeId) -> u32 {
    let hash = digest(&SHA256, id.as_bytes());
    let mut bits = 0;
    for byte in hash.as_ref() {
        if *byte == 0 {
            bits += 8;
        } else {
            return bits + byte.leading_zeros();
        }
    }
    bits
}

/// Whether `id` has at least `difficulty` bits of work.
pub fn has_pow(id: &NodeId, difficulty: u32) -> bool {
    pow_bits(id) >= difficulty
}

/// Finds a nonce (trying `start`, `start + 1`, ... wrapping) whose id has at least
/// `difficulty` bits; `None` after `max_tries` tries.
pub fn mint(spki_der: &[u8], difficulty: u32, start: u64, max_tries: u64) -> Option<(u64, NodeId)> {
    // Hash the key once; each try only adds the nonce.
    let mut prefix = Context::new(&SHA256);
    prefix.update(spki_der);
    let mut nonce = start;
    for _ in 0..max_tries {
        let mut ctx = prefix.clone();
        ctx.update(&nonce.to_be_bytes());
        let id = finish(ctx);
        if has_pow(&id, difficulty) {
            return Some((nonce, id));
        }
        nonce = nonce.wrapping_add(1);
    }
    None
}

/// Checks that `spki_der` and `nonce` reproduce `claimed` and that it has at least
/// `min_difficulty` bits of work.
pub fn verify_identity(
    spki_der: &[u8],
    nonce: u64,
    claimed: &NodeId,
    min_difficulty: u32,
) -> Result<(), IdentityError> {
    let derived = derive_node_id(spki_der, nonce);
    if derived != *claimed {
        return Err(IdentityError::IdMismatch {
            claimed: *claimed,
            derived,
        });
    }
    let bits = pow_bits(&derived);
    if bits < min_difficulty {
        return Err(IdentityError::InsufficientWork {
            bits,
            required: min_difficulty,
        });
    }
    Ok(())
}

/// Why a key and nonce do not prove an id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The key and nonce derive a different id than the one claimed.
    #[error("the key and nonce derive id {derived}, not the claimed {claimed}")]
    IdMismatch {
        /// The id the peer (or file) claims.
        claimed: NodeId,
        /// The id the key and nonce actually derive.
        derived: NodeId,
    },
    /// The id is right but has too few bits of work.
    #[error("the id has {bits} bits of work, {required} are required")]
    InsufficientWork {
        /// Leading zero bits of `SHA-256(id)`.
        bits: u32,
        /// The minimum asked for.
        required: u32,
    },
}

/// A minted id and its nonce, as saved next to the host key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MintedId {
    /// The nonce that, with the key, derives `node_id`.
    pub nonce: u64,
    /// The node's id.
    pub node_id: NodeId,
    /// The difficulty the id was minted for.
    pub difficulty: u32,
}

/// Longest text [`MintedId::from_text`] reads; the real thing is about 150 bytes.
const MAX_TEXT_LEN: usize = 4096;

impl MintedId {
    /// The text form: comment lines and `name = value` lines.
    ///
    /// ```text
    /// # proof-of-work of this node's id
    /// nonce = 123
    /// difficulty = 16
    /// node_id = <64 hex digits>
    /// ```
    pub fn to_text(&self) -> String {
        let mut out = String::from("# proof-of-work of this node's id\n");
        let _ = writeln!(out, "nonce = {}", self.nonce);
        let _ = writeln!(out, "difficulty = {}", self.difficulty);
        let _ = writeln!(out, "node_id = {}", self.node_id);
        out
    }

    /// Parses the text of [`to_text`](Self::to_text) and checks it against `spki_der`:
    /// the key and nonce must derive the saved id, and the id must have at least
    /// `difficulty` bits (and at least the bits the file claims). A file left over from
    /// another key, or minted for a lower difficulty, is an error
    /// ([`SecurityError::Identity`]); malformed text is [`SecurityError::NonceFile`].
    pub fn from_text(
        text: &str,
        spki_der: &[u8],
        difficulty: u32,
    ) -> Result<MintedId, SecurityError> {
        let bad = |msg: String| SecurityError::NonceFile(msg);
        if text.len() > MAX_TEXT_LEN {
            return Err(bad(format!(
                "{} bytes, expected at most {MAX_TEXT_LEN}",
                text.len()
            )));
        }
        let (mut nonce, mut saved_difficulty, mut node_id) = (None, None, None);
        for (number, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((name, value)) = line.split_once('=') else {
                return Err(bad(format!("line {number}: expected `name = value`")));
            };
            let (name, value) = (name.trim(), value.trim());
            let duplicate = || bad(format!("line {number}: `{name}` given twice"));
            match name {
                "nonce" => {
                    let v = value
                        .parse::<u64>()
                        .map_err(|e| bad(format!("line {number}: nonce: {e}")))?;
                    if nonce.replace(v).is_some() {
                        return Err(duplicate());
                    }
                }
                "difficulty" => {
                    let v = value
                        .parse::<u32>()
                        .map_err(|e| bad(format!("line {number}: difficulty: {e}")))?;
                    if saved_difficulty.replace(v).is_some() {
                        return Err(duplicate());
                    }
                }
                "node_id" => {
                    let v = value
                        .parse::<NodeId>()
                        .map_err(|e| bad(format!("line {number}: node_id: {e}")))?;
                    if node_id.replace(v).is_some() {
                        return Err(duplicate());
                    }
                }
                _ => return Err(bad(format!("line {number}: unknown name `{name}`"))),
            }
        }
        let missing = |name: &str| bad(format!("`{name}` is missing"));
        let minted = MintedId {
            nonce: nonce.ok_or_else(|| missing("nonce"))?,
            node_id: node_id.ok_or_else(|| missing("node_id"))?,
            difficulty: saved_difficulty.ok_or_else(|| missing("difficulty"))?,
        };
        verify_identity(
            spki_der,
            minted.nonce,
            &minted.node_id,
            difficulty.max(minted.difficulty),
        )?;
        Ok(minted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SPKI: &[u8] = b"not really a SubjectPublicKeyInfo, but any bytes derive an id";

    #[test]
    fn derive_known_answer() {
        let nonce = 0x0102_0304_0506_0708u64;
        let mut input = SPKI.to_vec();
        input.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        let expected = digest(&SHA256, &input);
        assert_eq!(derive_node_id(SPKI, nonce).as_bytes(), expected.as_ref());
        // pow_bits counts the leading zero bits of SHA-256(id), bit by bit.
        for seed in 0u8..=255 {
            let id = NodeId::from_bytes([seed; 32]);
            let hash = digest(&SHA256, id.as_bytes());
            let zeros = (0..256)
                .take_while(|bit| hash.as_ref()[bit / 8] & (0x80 >> (bit % 8)) == 0)
                .count();
            assert_eq!(pow_bits(&id) as usize, zeros);
        }
    }

    #[test]
    fn mint_finds_valid_nonce() {
        for difficulty in [0, 1, 4, 8] {
            let (nonce, id) = mint(SPKI, difficulty, 7, 1 << 20).expect("found");
            assert!(has_pow(&id, difficulty));
            assert_eq!(derive_node_id(SPKI, nonce), id);
            assert_eq!(verify_identity(SPKI, nonce, &id, difficulty), Ok(()));
            // It is the first one from the start.
            for earlier in 7..nonce {
                assert!(!has_pow(&derive_node_id(SPKI, earlier), difficulty));
            }
        }
        // Difficulty 0 accepts the start itself.
        assert_eq!(mint(SPKI, 0, 42, 1).map(|(n, _)| n), Some(42));
    }

    #[test]
    fn mint_wraps_and_gives_up() {
        assert_eq!(mint(SPKI, 0, 5, 0), None);
        assert_eq!(mint(SPKI, 256, u64::MAX - 1, 4), None);
        let (nonce, _) = mint(SPKI, 3, u64::MAX - 2, 1 << 16).expect("found");
        let tries = nonce.wrapping_sub(u64::MAX - 2);
        assert!(tries < 1 << 16);
    }

    #[test]
    fn verify_rejects_wrong_nonce_key_and_work() {
        let (nonce, id) = mint(SPKI, 6, 0, 1 << 20).expect("found");
        assert!(matches!(
            verify_identity(SPKI, nonce + 1, &id, 6),
            Err(IdentityError::IdMismatch { claimed, .. }) if claimed == id
        ));
        assert!(matches!(
            verify_identity(b"another key", nonce, &id, 6),
            Err(IdentityError::IdMismatch { .. })
        ));
        let bits = pow_bits(&id);
        assert_eq!(
            verify_identity(SPKI, nonce, &id, bits + 1),
            Err(IdentityError::InsufficientWork {
                bits,
                required: bits + 1
            })
        );
        assert_eq!(verify_identity(SPKI, nonce, &id, bits), Ok(()));
    }

    #[test]
    fn minted_text_roundtrip_and_stale_file() {
        let (nonce, node_id) = mint(SPKI, 5, 1000, 1 << 20).expect("found");
        let minted = MintedId {
            nonce,
            node_id,
            difficulty: 5,
        };
        let text = minted.to_text();
        assert!(text.starts_with("# proof-of-work"), "{text}");
        assert_eq!(MintedId::from_text(&text, SPKI, 5), Ok(minted));
        assert_eq!(MintedId::from_text(&text, SPKI, 0), Ok(minted));
        // Another key: stale.
        assert!(matches!(
            MintedId::from_text(&text, b"a new key", 5),
            Err(SecurityError::Identity(IdentityError::IdMismatch { .. }))
        ));
        // A higher required difficulty than the id has.
        let bits = pow_bits(&node_id);
        assert!(matches!(
            MintedId::from_text(&text, SPKI, bits + 1),
            Err(SecurityError::Identity(
                IdentityError::InsufficientWork { .. }
            ))
        ));
        // A file that claims more work than the id has.
        let lying = text.replace("difficulty = 5", &format!("difficulty = {}", bits + 1));
        assert!(matches!(
            MintedId::from_text(&lying, SPKI, 0),
            Err(SecurityError::Identity(
                IdentityError::InsufficientWork { .. }
            ))
        ));
        // Extra whitespace, blank lines and comments are fine, in any order.
        let loose =
            format!("\n  # comment\nnode_id={node_id}\n\n difficulty =5 \r\nnonce   =   {nonce}\n");
        assert_eq!(MintedId::from_text(&loose, SPKI, 5), Ok(minted));
    }

    #[test]
    fn malformed_minted_text() {
        let id = NodeId::from_bytes([3; 32]);
        let cases = [
            String::new(),
            "nonce = 1\ndifficulty = 1\n".to_owned(),
            format!("nonce = x\ndifficulty = 1\nnode_id = {id}\n"),
            format!("nonce = -1\ndifficulty = 1\nnode_id = {id}\n"),
            format!("nonce = 1\nnonce = 2\ndifficulty = 1\nnode_id = {id}\n"),
            format!("nonce = 1\ndifficulty = 1\nnode_id = {id}\ncolour = blue\n"),
            "nonce = 1\ndifficulty = 1\nnode_id = abc\n".to_owned(),
            "just words\n".to_owned(),
            "x".repeat(MAX_TEXT_LEN + 1),
        ];
        for text in cases {
            assert!(
                matches!(
                    MintedId::from_text(&text, SPKI, 0),
                    Err(SecurityError::NonceFile(_))
                ),
                "{text:?}"
            );
        }
    }

    #[test]
    fn mint_default_difficulty_and_rate() {
        // Mints at the default difficulty and prints the speed (read it with --nocapture).
        let spki = [0x30u8; 44]; // the size of an Ed25519 SubjectPublicKeyInfo
        let started = std::time::Instant::now();
        let (nonce, id) = mint(&spki, DEFAULT_POW_DIFFICULTY, 0, u64::MAX).expect("found");
        let elapsed = started.elapsed().as_secs_f64();
        assert_eq!(
            verify_identity(&spki, nonce, &id, DEFAULT_POW_DIFFICULTY),
            Ok(())
        );
        let tries = nonce + 1;
        let rate = tries as f64 / elapsed.max(1e-9);
        println!(
            "mint: {tries} tries in {:.1} ms = {rate:.0} tries/s (2 SHA-256 each); \
             difficulty {DEFAULT_POW_DIFFICULTY} takes {:.1} ms on average",
            elapsed * 1000.0,
            (1u64 << DEFAULT_POW_DIFFICULTY) as f64 / rate * 1000.0
        );
    }

    proptest! {
        #[test]
        fn has_pow_agrees_with_bits(bytes in any::<[u8; 32]>(), difficulty in 0u32..=260) {
            let id = NodeId::from_bytes(bytes);
            prop_assert_eq!(has_pow(&id, difficulty), pow_bits(&id) >= difficulty);
        }

        #[test]
        fn minted_text_never_panics(text in ".{0,200}", difficulty in 0u32..8) {
            let _ = MintedId::from_text(&text, SPKI, difficulty);
        }
    }
}
