//! What a node's upkeep asks of its routing table: which contacts have been quiet long
//! enough to deserve a ping, and which buckets have gone without a lookup for long
//! enough to deserve a refresh. The table only answers; the caller pings and looks up.

use std::time::{Duration, Instant};

use dht_id::Key;

use crate::{Contact, RoutingTable};

impl RoutingTable {
    /// Records that a lookup of `target` ran at `now`: it refreshes `target`'s bucket.
    pub fn note_lookup(&mut self, target: &Key, now: Instant) {
        if let Some(index) = self.local_id.bucket_index(target) {
            self.bucket_mut(index).last_lookup = Some(now);
        }
    }

    /// Buckets due for a refresh: those up to the bucket of the closest neighbour (the
    /// nearer ones are empty and would stay empty) without a lookup in their range for
    /// `interval`. A bucket's clock starts at the first call that sees it, so that a new
    /// table does not ask for every refresh at once.
    pub fn buckets_to_refresh(&mut self, now: Instant, interval: Duration) -> Vec<usize> {
        let Some(closest) = self.closest_bucket_index() else {
            return Vec::new();
        };
        let mut due = Vec::new();
        for (index, bucket) in self.buckets.iter_mut().enumerate().take(closest + 1) {
            match bucket.last_lookup {
                None => bucket.last_lookup = Some(now),
                Some(last) if now.saturating_duration_since(last) >= interval => due.push(index),
                Some(_) => {}
            }
        }
        due
    }

    /// Of the `n` contacts closest to the local node, those not heard from for
    /// `interval`, least recently seen first. These neighbours hold the records this
    /// node holds: a node watches them more closely than the rest of its table, so that
    /// a replica that left is noticed, and replaced, soon.
    pub fn stale_neighbours(&self, now: Instant, interval: Duration, n: usize) -> Vec<Contact> {
        let mut stale: Vec<(Instant, Contact)> = self
            .closest(&self.local_id, n)
            .into_iter()
            .filter_map(|contact| Some((self.last_seen(&contact.id)?, contact)))
            .filter(|(seen, _)| now.saturating_duration_since(*seen) >= interval)
            .collect();
        stale.sort_by_key(|(seen, contact)| (*seen, contact.id));
        stale.into_iter().map(|(_, contact)| contact).collect()
    }

    /// Up to `max` contacts not heard from for `interval`, least recently seen first.
    pub fn stale_contacts(&self, now: Instant, interval: Duration, max: usize) -> Vec<Contact> {
        let mut stale: Vec<(Instant, Contact)> = self
            .buckets
            .iter()
            .flat_map(|bucket| bucket.entries.iter())
            .filter(|entry| now.saturating_duration_since(entry.last_seen) >= interval)
            .map(|entry| (entry.last_seen, entry.contact))
            .collect();
        stale.sort_by_key(|(seen, _)| *seen);
        stale
            .into_iter()
            .take(max)
            .map(|(_, contact)| contact)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use rand::SeedableRng;

    use super::*;
    use crate::RoutingConfig;

    fn contact(id: Key, port: u16) -> Contact {
        Contact {
            id,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    #[test]
    fn stale_contacts_are_the_quiet_ones_oldest_first() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let local = Key::random(&mut rng);
        let mut table = RoutingTable::new(local, RoutingConfig::default());
        let t0 = Instant::now();
        let ids: Vec<Key> = (0..5).map(|_| Key::random(&mut rng)).collect();
        for (i, id) in ids.iter().enumerate() {
            table.insert(
                contact(*id, 1000 + i as u16),
                t0 + Duration::from_secs(i as u64),
            );
        }
        let now = t0 + Duration::from_secs(10);
        // Seen at 0, 1, 2, 3, 4 s: quiet for at least 7 s are those seen at 0..=3.
        let stale = table.stale_contacts(now, Duration::from_secs(7), 10);
        assert_eq!(
            stale.iter().map(|c| c.id).collect::<Vec<_>>(),
            ids[..4].to_vec()
        );
        assert_eq!(
            table.stale_contacts(now, Duration::from_secs(7), 2).len(),
            2
        );
        assert!(
            table
                .stale_contacts(now, Duration::from_secs(60), 10)
                .is_empty()
        );
    }

    #[test]
    fn stale_neighbours_are_the_quiet_ones_among_the_closest() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let local = Key::random(&mut rng);
        let mut table = RoutingTable::new(local, RoutingConfig::default());
        let t0 = Instant::now();
        // Bucket i's contact is nearer for larger i: the three nearest are 7, 6, 5.
        let ids: Vec<Key> = (0..8)
            .map(|i| local.random_in_bucket(i, &mut rng))
            .collect();
        for (i, id) in ids.iter().enumerate() {
            table.insert(contact(*id, 1000 + i as u16), t0);
        }
        // The nearest is heard from again later; the far ones stay quiet too.
        table.insert(contact(ids[7], 1007), t0 + Duration::from_secs(50));
        let now = t0 + Duration::from_secs(60);
        let stale = table.stale_neighbours(now, Duration::from_secs(30), 3);
        assert_eq!(stale.iter().map(|c| c.id).collect::<Vec<_>>(), {
            let mut quiet = vec![ids[5], ids[6]];
            quiet.sort();
            quiet
        });
        assert!(
            table
                .stale_neighbours(now, Duration::from_secs(90), 3)
                .is_empty()
        );
    }

    #[test]
    fn buckets_are_refreshed_after_the_interval_unless_looked_up() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let local = Key::random(&mut rng);
        let mut table = RoutingTable::new(local, RoutingConfig::default());
        let t0 = Instant::now();
        assert!(
            table
                .buckets_to_refresh(t0, Duration::from_secs(1))
                .is_empty()
        );
        // Neighbours in buckets 0 and 3: buckets 0..=3 are refreshed, none nearer.
        table.insert(contact(local.random_in_bucket(0, &mut rng), 1), t0);
        table.insert(contact(local.random_in_bucket(3, &mut rng), 2), t0);
        let interval = Duration::from_secs(60);
        // The first call starts the clocks.
        assert!(table.buckets_to_refresh(t0, interval).is_empty());
        assert!(
            table
                .buckets_to_refresh(t0 + Duration::from_secs(30), interval)
                .is_empty()
        );
        // A lookup in bucket 2 refreshes it.
        let target = local.random_in_bucket(2, &mut rng);
        table.note_lookup(&target, t0 + Duration::from_secs(30));
        let due = table.buckets_to_refresh(t0 + Duration::from_secs(61), interval);
        assert_eq!(due, vec![0, 1, 3]);
    }
}
