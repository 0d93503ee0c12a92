//! Joining again. A node runs its join (bootstrap peers, then the contacts it knows of,
//! a lookup of its own id, a refresh of the far buckets) at start; a node whose routing
//! table has since lost most of its contacts runs it again: its host was cut off (a
//! partition, a network outage, a laptop asleep) long enough for its pings to fail and
//! remove its contacts, and for the others to remove it. Nobody then knows anybody,
//! and only the node itself can reach out. A re-join that reaches nobody is tried again
//! with exponential backoff and jitter. The contacts removed for not answering are kept
//! (a bounded number) as ones to re-join through: after a partition heals they are back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dht_routing::Contact;
use rand::Rng;
use tracing::info;

use crate::activity::UpkeepKind;
use crate::node::{Inner, lock, mono_now};

/// Wait before another re-join after one, doubled (up to [`BACKOFF_MAX`]) while they
/// reach nobody.
const BACKOFF_MIN: Duration = Duration::from_secs(30);
/// The longest wait between re-joins that reach nobody.
const BACKOFF_MAX: Duration = Duration::from_secs(600);
/// Contacts kept to re-join through (saved before the last stop, or removed since).
pub(crate) const REJOIN_CONTACTS_MAX: usize = 256;

/// When a node runs its join again: once its table holds fewer than half of the most
/// contacts it held since its last join, and fewer than k (a small network's table is
/// small from the start and stays so; it re-joins only once it has lost them all).
#[derive(Debug)]
pub(crate) struct Rejoin {
    /// The most contacts the table held since the last join.
    peak: usize,
    /// No re-join before this.
    not_before: Option<Instant>,
    /// The wait after the next re-join that reaches nobody.
    backoff: Duration,
}

impl Rejoin {
    pub(crate) fn new() -> Self {
        Rejoin {
            peak: 0,
            not_before: None,
            backoff: BACKOFF_MIN,
        }
    }

    /// Whether a node whose table holds `len` contacts (bucket size `k`) re-joins now.
    pub(crate) fn due(&mut self, len: usize, k: usize, now: Instant) -> bool {
        self.peak = self.peak.max(len);
        let lost = len < (self.peak / 2).min(k) || (len == 0 && self.peak > 0);
        lost && self.not_before.is_none_or(|at| now >= at)
    }

    /// A re-join ended at `now` with `len` contacts; `reached`: whether it reached
    /// anyone. `jitter` in `[0, 1)` spreads the next attempt by up to a quarter.
    pub(crate) fn done(&mut self, reached: bool, len: usize, now: Instant, jitter: f64) {
        let wait = if reached {
            // The table as it is now is the new measure: a network that shrank is no
            // reason to re-join over and over.
            self.peak = len;
            self.backoff = BACKOFF_MIN;
            BACKOFF_MIN
        } else {
            let wait = self.backoff;
            self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
            wait
        };
        self.not_before = Some(now + wait + wait.mul_f64(jitter.clamp(0.0, 1.0) / 4.0));
    }
}

impl Inner {
    /// Runs the join again when [`Rejoin::due`] says so.
    pub(crate) async fn rejoin_round(self: &Arc<Self>, rejoin: &mut Rejoin) {
        let len = self.routing().len();
        if !rejoin.due(len, self.config.k, mono_now()) {
            return;
        }
        info!(contacts = len, "lost most contacts: joining again");
        let started = mono_now();
        let reached = self.join().await;
        let len = self.routing().len();
        if !reached {
            self.upkeep_round(UpkeepKind::Join, started, 1, 1);
        }
        let jitter = self.with_rng(|rng| rng.gen_range(0.0..1.0));
        rejoin.done(reached, len, mono_now(), jitter);
    }

    /// Keeps `contact`, removed for not answering, among those to re-join through:
    /// it may be back once a partition heals.
    pub(crate) fn remember_for_rejoin(&self, contact: Contact) {
        let mut saved = lock(&self.saved_contacts);
        saved.retain(|c| c.id != contact.id);
        saved.insert(0, contact);
        saved.truncate(REJOIN_CONTACTS_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: usize = 20;

    #[test]
    fn a_node_rejoins_once_it_lost_half_its_contacts_and_backs_off_while_alone() {
        let start = Instant::now();
        let mut rejoin = Rejoin::new();
        // A node starting alone, then filling its table: nothing to re-join.
        assert!(!rejoin.due(0, K, start));
        assert!(!rejoin.due(160, K, start));
        assert!(!rejoin.due(30, K, start), "fewer, but still k or more");
        assert!(rejoin.due(19, K, start), "below k, and below half of 160");
        // Cut off: every attempt reaches nobody, and the waits double up to the most.
        let mut at = start;
        let mut waits = Vec::new();
        for _ in 0..7 {
            rejoin.done(false, 0, at, 0.0);
            let next = (1..)
                .map(|s| at + Duration::from_secs(s))
                .find(|&t| rejoin.due(0, K, t))
                .expect("due again");
            waits.push((next - at).as_secs());
            at = next;
        }
        assert_eq!(waits, [30, 60, 120, 240, 480, 600, 600]);
        // Back: the table as the join left it is the new measure.
        rejoin.done(true, 6, at, 0.0);
        assert!(!rejoin.due(6, K, at + BACKOFF_MAX));
        assert!(
            !rejoin.due(3, K, at + BACKOFF_MAX),
            "half of 6 is not below"
        );
        assert!(rejoin.due(2, K, at + BACKOFF_MAX));
    }

    #[test]
    fn a_small_network_rejoins_only_once_every_contact_is_gone() {
        let now = Instant::now();
        let mut rejoin = Rejoin::new();
        assert!(!rejoin.due(1, K, now));
        assert!(!rejoin.due(1, K, now), "one contact of one");
        assert!(rejoin.due(0, K, now));
    }

    #[test]
    fn jitter_spreads_the_wait_by_up_to_a_quarter() {
        let now = Instant::now();
        let mut rejoin = Rejoin::new();
        rejoin.due(40, K, now);
        rejoin.done(false, 0, now, 0.999);
        assert!(!rejoin.due(0, K, now + Duration::from_secs(37)));
        assert!(rejoin.due(0, K, now + Duration::from_secs(38)));
    }
}
