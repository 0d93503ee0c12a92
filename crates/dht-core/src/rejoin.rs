//! Joining again. A node runs its join (bootstrap peers, then the contacts it knows of,
//! a lookup of its own id, a refresh of the far buckets) at start; a node whose routing
//! table has since lost most of its contacts runs it again: its host was cut off (a
//! partition, a network outage, a laptop asleep) long enough for its pings to fail and
//! remove its contacts, and for the others to remove it. Nobody then knows anybody,
//! and only the node itself can reach out. A re-join that reaches nobody is tried again
//! with exponential backoff and jitter. A node whose lookups have all gone unanswered
//! for [`STARVED_AFTER`] re-joins too, whatever its table holds. The contacts removed for
//! not answering are kept (a bounded number) as ones to re-join through, and are pinged
//! now and then with backoff ([`MaybeBack`], as mainline keeps questionable nodes): after
//! a partition heals, the first of the other side that answers is back in the table, and
//! lookups find the rest of that side through it, even when neither side lost enough of
//! its table to re-join.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dht_id::NodeId;
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
/// How long lookups may all go unanswered before the node re-joins.
pub(crate) const STARVED_AFTER: Duration = Duration::from_secs(300);
/// The first wait before a removed contact is pinged, doubled after each ping it leaves
/// unanswered up to [`MAYBE_BACK_MAX`].
const MAYBE_BACK_FIRST: Duration = Duration::from_secs(60);
/// The longest wait between pings of a removed contact.
const MAYBE_BACK_MAX: Duration = Duration::from_secs(1800);
/// Removed contacts pinged by one upkeep round at most.
pub(crate) const MAYBE_BACK_PER_ROUND: usize = 4;

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

    /// Whether a node whose table holds `len` contacts (bucket size `k`) re-joins now;
    /// `starved`: its lookups have gone unanswered for [`STARVED_AFTER`].
    pub(crate) fn due(&mut self, len: usize, k: usize, starved: bool, now: Instant) -> bool {
        self.peak = self.peak.max(len);
        let lost = len < (self.peak / 2).min(k) || (len == 0 && self.peak > 0);
        (lost || starved) && self.not_before.is_none_or(|at| now >= at)
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
        let now = mono_now();
        let starved = self.activity.lookups_starved(now, STARVED_AFTER);
        if !rejoin.due(len, self.config.k, starved, now) {
            return;
        }
        info!(
            contacts = len,
            starved, "lost most contacts, or every lookup fails: joining again"
        );
        let started = mono_now();
        let reached = self.join().await;
        let len = self.routing().len();
        if !reached {
            self.upkeep_round(UpkeepKind::Join, started, 1, 1);
        }
        let jitter = self.with_rng(|rng| rng.gen_range(0.0..1.0));
        rejoin.done(reached, len, mono_now(), jitter);
    }

    /// Keeps `contact`, removed for not answering, among those to re-join through,
    /// and among those pinged now and then: it may be back once a partition heals.
    pub(crate) fn remember_for_rejoin(&self, contact: Contact) {
        let mut saved = lock(&self.saved_contacts);
        saved.retain(|c| c.id != contact.id);
        saved.insert(0, contact);
        saved.truncate(REJOIN_CONTACTS_MAX);
        drop(saved);
        lock(&self.maybe_back).remember(contact, mono_now());
    }

    /// Pings the removed contacts that are due (see [`MaybeBack`]); one that answers is
    /// back in the table.
    pub(crate) async fn maybe_back_round(self: &Arc<Self>) {
        let now = mono_now();
        let jitter = self.with_rng(|rng| rng.gen_range(0.0..1.0));
        let due = {
            let routing = self.routing();
            lock(&self.maybe_back).due(now, MAYBE_BACK_PER_ROUND, jitter, |id| routing.contains(id))
        };
        let pings = due.into_iter().map(|contact| async move {
            let answered = self.ping(contact).await.is_ok();
            (contact, answered)
        });
        for (contact, answered) in futures::future::join_all(pings).await {
            if answered {
                lock(&self.maybe_back).answered(&contact.id);
                self.saw(contact, mono_now());
                info!(peer = %contact.id.short(), "a removed contact answers again");
            }
        }
    }
}

/// Contacts removed for not answering, pinged with backoff: after a minute, then after
/// waits doubling up to half an hour, at most [`REJOIN_CONTACTS_MAX`] of them (the
/// newest kept). One that answers, or that is back in the table by other ways, leaves.
#[derive(Debug, Default)]
pub(crate) struct MaybeBack {
    entries: Vec<Back>,
}

#[derive(Debug)]
struct Back {
    contact: Contact,
    next: Instant,
    wait: Duration,
}

impl MaybeBack {
    /// Keeps `contact`, removed at `now`.
    pub(crate) fn remember(&mut self, contact: Contact, now: Instant) {
        self.entries.retain(|b| b.contact.id != contact.id);
        self.entries.insert(
            0,
            Back {
                contact,
                next: now + MAYBE_BACK_FIRST,
                wait: MAYBE_BACK_FIRST,
            },
        );
        self.entries.truncate(REJOIN_CONTACTS_MAX);
    }

    /// Up to `max` contacts due for a ping at `now`, leaving out (and forgetting) those
    /// `known` says are in the table again; each one's next ping moves on by its wait
    /// (plus up to a quarter, `jitter` in `[0, 1)`), and the wait doubles.
    pub(crate) fn due(
        &mut self,
        now: Instant,
        max: usize,
        jitter: f64,
        known: impl Fn(&NodeId) -> bool,
    ) -> Vec<Contact> {
        self.entries.retain(|b| !known(&b.contact.id));
        let mut due = Vec::new();
        for back in self.entries.iter_mut().filter(|b| b.next <= now).take(max) {
            let wait = (back.wait * 2).min(MAYBE_BACK_MAX);
            back.next = now + wait + wait.mul_f64(jitter.clamp(0.0, 1.0) / 4.0);
            back.wait = wait;
            due.push(back.contact);
        }
        due
    }

    /// `id` answered: it is back.
    pub(crate) fn answered(&mut self, id: &NodeId) {
        self.entries.retain(|b| b.contact.id != *id);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
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
        assert!(!rejoin.due(0, K, false, start));
        assert!(!rejoin.due(160, K, false, start));
        assert!(
            !rejoin.due(30, K, false, start),
            "fewer, but still k or more"
        );
        assert!(
            rejoin.due(19, K, false, start),
            "below k, and below half of 160"
        );
        // Cut off: every attempt reaches nobody, and the waits double up to the most.
        let mut at = start;
        let mut waits = Vec::new();
        for _ in 0..7 {
            rejoin.done(false, 0, at, 0.0);
            let next = (1..)
                .map(|s| at + Duration::from_secs(s))
                .find(|&t| rejoin.due(0, K, false, t))
                .expect("due again");
            waits.push((next - at).as_secs());
            at = next;
        }
        assert_eq!(waits, [30, 60, 120, 240, 480, 600, 600]);
        // Back: the table as the join left it is the new measure.
        rejoin.done(true, 6, at, 0.0);
        assert!(!rejoin.due(6, K, false, at + BACKOFF_MAX));
        assert!(
            !rejoin.due(3, K, false, at + BACKOFF_MAX),
            "half of 6 is not below"
        );
        assert!(rejoin.due(2, K, false, at + BACKOFF_MAX));
    }

    #[test]
    fn a_small_network_rejoins_only_once_every_contact_is_gone() {
        let now = Instant::now();
        let mut rejoin = Rejoin::new();
        assert!(!rejoin.due(1, K, false, now));
        assert!(!rejoin.due(1, K, false, now), "one contact of one");
        assert!(rejoin.due(0, K, false, now));
    }

    #[test]
    fn a_node_whose_lookups_all_fail_rejoins_whatever_its_table_holds() {
        let now = Instant::now();
        let mut rejoin = Rejoin::new();
        assert!(!rejoin.due(40, K, false, now));
        assert!(rejoin.due(40, K, true, now));
        rejoin.done(false, 40, now, 0.0);
        assert!(!rejoin.due(40, K, true, now + Duration::from_secs(29)));
    }

    fn contact(n: u8) -> Contact {
        Contact {
            id: NodeId::from_bytes([n; 32]),
            addr: ([10, 0, 0, n], 7000).into(),
        }
    }

    #[test]
    fn removed_contacts_are_pinged_with_backoff_until_they_answer() {
        let start = Instant::now();
        let mut back = MaybeBack::default();
        back.remember(contact(1), start);
        let none = |_: &NodeId| false;
        assert!(back.due(start, 4, 0.0, none).is_empty());
        // Due after a minute, then after 2, 4, 8 ... minutes, up to half an hour.
        let mut at = start;
        let mut waits = Vec::new();
        for _ in 0..7 {
            let next = (1..)
                .map(|s| at + Duration::from_secs(s))
                .find(|&t| !back.due(t, 4, 0.0, none).is_empty())
                .expect("due again");
            waits.push((next - at).as_secs());
            at = next;
        }
        assert_eq!(waits, [60, 120, 240, 480, 960, 1800, 1800]);
        back.answered(&contact(1).id);
        assert_eq!(back.len(), 0);
    }

    #[test]
    fn at_most_max_per_round_and_those_back_in_the_table_leave() {
        let start = Instant::now();
        let mut back = MaybeBack::default();
        for n in 1..=6 {
            back.remember(contact(n), start);
        }
        let later = start + Duration::from_secs(61);
        let known = |id: &NodeId| *id == contact(6).id;
        let due = back.due(later, 4, 0.0, known);
        assert_eq!(due.len(), 4);
        assert_eq!(back.len(), 5, "the contact back in the table left");
        // The rest are due in the same second; the four pinged wait longer.
        assert_eq!(back.due(later, 4, 0.0, known).len(), 1);
        for n in 0..(REJOIN_CONTACTS_MAX + 10) {
            back.remember(contact((n % 250) as u8 + 1), start);
        }
        assert!(back.len() <= REJOIN_CONTACTS_MAX);
    }

    #[test]
    fn jitter_spreads_the_wait_by_up_to_a_quarter() {
        let now = Instant::now();
        let mut rejoin = Rejoin::new();
        rejoin.due(40, K, false, now);
        rejoin.done(false, 0, now, 0.999);
        assert!(!rejoin.due(0, K, false, now + Duration::from_secs(37)));
        assert!(rejoin.due(0, K, false, now + Duration::from_secs(38)));
    }
}
