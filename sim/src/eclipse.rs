//! The `eclipse` scenario's attacker: with a budget of hashes it mints node ids as close
//! as it can to one key (each try is a nonce of one key of its own; an id counts only if
//! it carries the network's proof of work), runs a node for each of the closest
//! [`SYBILS`], and those nodes answer every request about the key with a forged record
//! and with each other. Its nodes are the real node code (they join, keep tables, pass
//! every identity check); only their answers about the key lie
//! ([`dht_core::Environment::with_responder`]).

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use dht_core::{Key, NodeId, Responder};
use dht_security::{HostKey, pow};
use dht_wire::{PeerMessage, WireContact, WireRecord};

/// Attacker nodes run: the closest ids it minted (a lookup's k).
pub(crate) const SYBILS: usize = 20;

/// What the attacker's hashing bought.
#[derive(Debug, Clone)]
pub(crate) struct Minted {
    /// The closest ids to the key it found, with their nonces, closest first.
    pub(crate) ids: Vec<(u64, NodeId)>,
    /// Ids with the network's proof of work among all it tried.
    pub(crate) valid: u64,
}

/// Tries `budget` nonces (on every core) for ids with `difficulty` bits of work, and
/// keeps the [`SYBILS`] closest to `key`.
pub(crate) fn mint_near(
    key_seed: [u8; 32],
    key: &Key,
    difficulty: u32,
    budget: u64,
) -> anyhow::Result<Minted> {
    let host = HostKey::ed25519_from_seed(&key_seed)?;
    let spki = host.spki_der();
    let threads = std::thread::available_parallelism().map_or(1, usize::from) as u64;
    let share = budget.div_ceil(threads);
    let parts: Vec<(Vec<(NodeId, u64)>, u64)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let from = t * share;
                    let to = (from + share).min(budget);
                    let mut best: Vec<(NodeId, u64)> = Vec::with_capacity(SYBILS + 1);
                    let mut valid = 0;
                    for nonce in from..to {
                        let id = pow::derive_node_id(spki, nonce);
                        if difficulty > 0 && !pow::has_pow(&id, difficulty) {
                            continue;
                        }
                        valid += 1;
                        let worst = best.last().map(|(w, _)| w.distance(key));
                        if best.len() < SYBILS || worst.is_some_and(|w| id.distance(key) < w) {
                            let at =
                                best.partition_point(|(b, _)| b.distance(key) < id.distance(key));
                            best.insert(at, (id, nonce));
                            best.truncate(SYBILS);
                        }
                    }
                    (best, valid)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_default())
            .collect()
    });
    let valid = parts.iter().map(|(_, v)| v).sum();
    let mut all: Vec<(NodeId, u64)> = parts.into_iter().flat_map(|(b, _)| b).collect();
    all.sort_by_key(|(id, _)| id.distance(key));
    all.truncate(SYBILS);
    Ok(Minted {
        ids: all.into_iter().map(|(id, nonce)| (nonce, id)).collect(),
        valid,
    })
}

/// Bits `id` shares with `key` from the front.
pub(crate) fn shared_prefix(id: &NodeId, key: &Key) -> u32 {
    id.distance(key).leading_zeros()
}

/// The attacker's answers: about `key`, the forged record (FIND_VALUE) or its own nodes
/// (FIND_NODE), from the list `sybils` that fills as they start.
pub(crate) fn responder(
    key: Key,
    forged: WireRecord,
    sybils: Arc<Mutex<Vec<WireContact>>>,
) -> Arc<Responder> {
    Arc::new(move |request: &PeerMessage| match request {
        PeerMessage::FindValue { key: asked } if *asked == key => Some(PeerMessage::Value {
            record: forged.clone(),
        }),
        PeerMessage::FindNode { target } if *target == key => {
            let mut contacts = sybils.lock().unwrap_or_else(|e| e.into_inner()).clone();
            contacts.sort_by_key(|c| c.id.distance(&key));
            Some(PeerMessage::Nodes { contacts })
        }
        _ => None,
    })
}

/// The forged record of `key`: newer than the honest one (its version is ahead of the
/// writer's clock by less than the skew nodes accept), living an hour.
pub(crate) fn forged(key: Key, now_micros: u64) -> WireRecord {
    WireRecord {
        key,
        value: Bytes::from_static(b"forged by the attacker"),
        lifetime: 3600,
        version: now_micros + 300_000_000,
        replication: 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_ids_are_valid_near_and_reproducible() {
        let key = Key::from_bytes([0x5a; 32]);
        let seed = [7u8; 32];
        let minted = mint_near(seed, &key, 4, 1 << 12).expect("mint");
        assert_eq!(minted.ids.len(), SYBILS);
        // About one in 16 tries has 4 bits of work.
        assert!((150..=370).contains(&minted.valid), "{}", minted.valid);
        let spki = HostKey::ed25519_from_seed(&seed).expect("key");
        for pair in minted.ids.windows(2) {
            assert!(pair[0].1.distance(&key) < pair[1].1.distance(&key));
        }
        for (nonce, id) in &minted.ids {
            assert_eq!(pow::derive_node_id(spki.spki_der(), *nonce), *id);
            assert!(pow::has_pow(id, 4));
        }
        // Without proof of work every try counts, and the best id is nearer.
        let free = mint_near(seed, &key, 0, 1 << 12).expect("mint");
        assert_eq!(free.valid, 1 << 12);
        assert!(shared_prefix(&free.ids[0].1, &key) >= shared_prefix(&minted.ids[0].1, &key));
    }

    #[test]
    fn the_attacker_lies_about_its_key_only() {
        let key = Key::from_bytes([1; 32]);
        let other = Key::from_bytes([2; 32]);
        let near = WireContact {
            id: Key::from_bytes([1; 32]),
            addr: "10.0.0.9:1".parse().expect("addr"),
        };
        let far = WireContact {
            id: Key::from_bytes([0xff; 32]),
            addr: "10.0.0.8:1".parse().expect("addr"),
        };
        let sybils = Arc::new(Mutex::new(vec![far, near]));
        let lie = responder(key, forged(key, 1_800_000_000_000_000), sybils);
        match lie(&PeerMessage::FindValue { key }) {
            Some(PeerMessage::Value { record }) => assert_eq!(record.key, key),
            other => panic!("{other:?}"),
        }
        match lie(&PeerMessage::FindNode { target: key }) {
            Some(PeerMessage::Nodes { contacts }) => assert_eq!(contacts, vec![near, far]),
            other => panic!("{other:?}"),
        }
        assert!(lie(&PeerMessage::FindValue { key: other }).is_none());
        assert!(lie(&PeerMessage::Ping).is_none());
    }
}
