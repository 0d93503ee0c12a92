//! When each record was last stored here by a peer, for the replication round to skip
//! what its sender replicates (the Kademlia paper's optimisation), in memory bounded by
//! the records held rather than by the STORE rate times the replicate interval.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use dht_id::Key;

/// Entries below which the map is never pruned: pruning costs one look at the store per
/// entry, and a map this small costs nothing.
const FLOOR: usize = 1024;

/// Keys and when a peer last stored them here.
#[derive(Debug, Default)]
pub(crate) struct Received {
    at: HashMap<Key, Instant>,
    /// Size at which the next [`note`](Self::note) prunes: twice the size after the
    /// last pruning (at least [`FLOOR`]), so that pruning costs O(1) per note, amortised.
    prune_at: usize,
}

impl Received {
    /// Notes that a peer stored `key` at `now`. When the map has doubled since it was last
    /// pruned, drops what is older than `interval` and what `held` says the store no
    /// longer holds (expired, replaced by nothing, purged): the map then holds at most
    /// one entry per record held, and never more than twice that.
    pub(crate) fn note(
        &mut self,
        key: Key,
        now: Instant,
        interval: Duration,
        held: impl Fn(&Key) -> bool,
    ) {
        self.at.insert(key, now);
        if self.at.len() <= self.prune_at.max(FLOOR) {
            return;
        }
        self.at
            .retain(|key, at| now.saturating_duration_since(*at) < interval && held(key));
        self.prune_at = self.at.len().saturating_mul(2);
    }

    /// Drops what is older than `interval` at `now` and returns the rest: the keys a peer
    /// stored here within the interval, which the replication round skips.
    pub(crate) fn recent(&mut self, now: Instant, interval: Duration) -> &HashMap<Key, Instant> {
        self.at
            .retain(|_, at| now.saturating_duration_since(*at) < interval);
        &self.at
    }

    /// Entries held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.at.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> Key {
        Key::sha256(&i.to_be_bytes())
    }

    #[test]
    fn a_flood_of_short_lived_keys_stays_bounded_by_what_is_held() {
        // A peer STOREs 20,000 distinct keys within one interval; the store holds only
        // the last 500 (the others expired or were purged).
        let keys: Vec<Key> = (0..20_000u32).map(key).collect();
        let index: HashMap<Key, u32> = keys.iter().zip(0..).map(|(k, i)| (*k, i)).collect();
        let mut received = Received::default();
        let start = Instant::now();
        let interval = Duration::from_secs(3600);
        for (i, k) in (0..).zip(&keys) {
            let newest: u32 = i;
            received.note(*k, start, interval, |k| {
                index.get(k).is_some_and(|j| newest - j < 500)
            });
            assert!(received.len() <= 2 * FLOOR + 1, "{} at {i}", received.len());
        }
    }

    #[test]
    fn held_keys_within_the_interval_are_kept() {
        let mut received = Received::default();
        let start = Instant::now();
        let interval = Duration::from_secs(3600);
        for i in 0..3 * FLOOR as u32 {
            received.note(key(i), start, interval, |_| true);
        }
        assert_eq!(received.len(), 3 * FLOOR);
        let recent = received.recent(start + Duration::from_secs(10), interval);
        assert!(recent.contains_key(&key(0)));
        // After the interval, nothing is recent.
        assert!(received.recent(start + interval, interval).is_empty());
    }
}
