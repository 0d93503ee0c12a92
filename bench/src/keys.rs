//! Choosing keys by where they fall among the network's node ids: keys a given node is
//! not a replica of (so that its GET must go to the network), and keys it is the
//! closest node to (so that its GET is answered locally).

use dht_core::{Key, NodeId};
use rand::Rng;

/// How many of `ids` are closer to `key` than `node` (its rank; 0: the closest).
pub fn rank(key: &Key, node: &NodeId, ids: &[NodeId]) -> usize {
    let own = key.distance(node);
    ids.iter()
        .filter(|id| *id != node && key.distance(id) < own)
        .count()
}

/// `count` random keys whose `r` closest nodes among `ids` include none of `outside`.
/// `None` if that cannot be (more excluded nodes than `ids` has room for), or if
/// random keys hit the condition too rarely.
pub fn keys_outside<R: Rng>(
    rng: &mut R,
    count: usize,
    r: usize,
    outside: &[NodeId],
    ids: &[NodeId],
) -> Option<Vec<Key>> {
    if ids.len() < r + outside.len() {
        return None;
    }
    // A node is outside the r closest of a random key with probability at least
    // 1 / ids.len(); this bounds the tries far above what is needed.
    let tries = count
        .saturating_mul(ids.len())
        .saturating_mul(50)
        .max(10_000);
    let keys: Vec<Key> = std::iter::repeat_with(|| Key::random(rng))
        .take(tries)
        .filter(|key| outside.iter().all(|node| rank(key, node, ids) >= r))
        .take(count)
        .collect();
    (keys.len() == count).then_some(keys)
}

/// `count` random keys whose closest node among `ids` is `node`.
pub fn keys_closest_to<R: Rng>(
    rng: &mut R,
    count: usize,
    node: &NodeId,
    ids: &[NodeId],
) -> Vec<Key> {
    // The key shares the longest prefix with `node` that the other ids allow: a random
    // key in the bucket past the longest prefix `node` shares with any other id is
    // closer to `node` than to any of them.
    let prefix = ids
        .iter()
        .filter(|id| *id != node)
        .filter_map(|id| node.bucket_index(id))
        .max()
        .map_or(0, |p| p + 1);
    std::iter::repeat_with(|| node.random_in_bucket(prefix.min(255), rng))
        .filter(|key| rank(key, node, ids) == 0)
        .take(count)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn ids(n: usize, rng: &mut impl Rng) -> Vec<NodeId> {
        (0..n).map(|_| Key::random(rng)).collect()
    }

    #[test]
    fn keys_outside_exclude_the_nodes_from_the_closest() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let ids = ids(21, &mut rng);
        let keys = keys_outside(&mut rng, 30, 20, &ids[..1], &ids).unwrap();
        assert_eq!(keys.len(), 30);
        for key in &keys {
            assert_eq!(rank(key, &ids[0], &ids), 20, "the farthest of 21");
        }
        let three = keys_outside(&mut rng, 30, 3, &ids[..2], &ids).unwrap();
        assert!(
            three
                .iter()
                .all(|k| ids[..2].iter().all(|n| rank(k, n, &ids) >= 3))
        );
        assert!(keys_outside(&mut rng, 1, 20, &ids[..2], &ids).is_none());
    }

    #[test]
    fn keys_closest_to_a_node() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        let ids = ids(100, &mut rng);
        let keys = keys_closest_to(&mut rng, 50, &ids[5], &ids);
        assert_eq!(keys.len(), 50);
        assert!(keys.iter().all(|k| rank(k, &ids[5], &ids) == 0));
    }
}
