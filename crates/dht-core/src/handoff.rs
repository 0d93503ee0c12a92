//! Hand-off: the records a node holds go at once to the nodes that newly become their
//! replicas (as far as its routing table knows), rather than at the next replication
//! round: to a node newly seen among a record's `r` closest, and, when a replica is
//! removed from the table, to the contacts that take its place.
//!
//! Bounded, so that a mass join or a burst of departures cannot flood the node or its
//! peers:
//!
//! - the store is walked a page ([`PAGE`] records) at a time, each page under the store's
//!   lock only while it is copied, so that GETs and STOREs wait for a page at most;
//! - one hand-off sends at most [`HANDOFF_LIMIT`] records and [`HANDOFF_BYTES`] bytes,
//!   [`HANDOFF_RATE`] records a second, 8 at a time;
//! - [`HANDOFFS_AT_ONCE`] hand-offs send at once, and at most [`HANDOFFS_WAITING`] more
//!   wait; beyond that a hand-off is skipped (`NodeStats::handoffs_skipped`) and periodic
//!   replication brings the records instead;
//! - a recipient that answers "kept newer" gets the next records all the same (it held
//!   a newer copy of that one only); one that fails [`FAILURES_IN_A_ROW`] STOREs in a row
//!   gets no more.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use dht_id::{Key, NodeId};
use dht_routing::{Contact, RoutingTable};
use dht_storage::Record;
use dht_wire::{PeerMessage, StoreStatus};
use tracing::{Instrument, debug};

use crate::node::{Inner, mono_now, to_wire};
use crate::replicate::REPLICATION_PARALLELISM;
use crate::stats::Counters;

/// Records one hand-off sends at most.
const HANDOFF_LIMIT: usize = 1000;
/// Bytes (record footprints, once per recipient) one hand-off sends at most.
const HANDOFF_BYTES: usize = 4 * 1024 * 1024;
/// Records one hand-off sends a second at most.
const HANDOFF_RATE: f64 = 200.0;
/// Hand-offs sending at once.
pub(crate) const HANDOFFS_AT_ONCE: usize = 2;
/// Hand-offs waiting for a place at most; more are skipped.
const HANDOFFS_WAITING: usize = 64;
/// Records copied from the store under one hold of its lock.
const PAGE: usize = 256;
/// STOREs a recipient may fail in a row before it gets no more.
const FAILURES_IN_A_ROW: u32 = 3;

impl Inner {
    /// Hands a newly seen node the records it is now among the `r` closest nodes for
    /// (as far as our routing table knows), so that a node joining close to a key holds
    /// it without waiting for the next replication.
    pub(crate) fn spawn_handoff(self: &Arc<Self>, newcomer: Contact) {
        if self.store().is_empty() {
            return;
        }
        self.spawn_handing(move |routing, record| {
            let closest = routing.closest(&record.key, usize::from(record.replication));
            closest
                .iter()
                .any(|c| c.id == newcomer.id)
                .then(|| vec![newcomer])
        });
    }

    /// Removes `departed` from the routing table, keeping it among the contacts to
    /// re-join through (`rejoin.rs`). The records this node keeps as one
    /// of their `r` closest nodes, with `departed` among the others, are handed to the
    /// contacts that take its place there (as far as our table knows): a replica that
    /// left is replaced within its removal, not at the next replication.
    pub(crate) fn forget(self: &Arc<Self>, departed: &Contact) {
        if self.routing().remove(&departed.id).is_none() {
            return;
        }
        self.remember_for_rejoin(*departed);
        if self.store().is_empty() {
            return;
        }
        let gone = *departed;
        self.spawn_handing(move |routing, record| {
            let r = usize::from(record.replication);
            // Not one of its replicas: the record is not ours to keep.
            if routing.count_closer_than_local(&record.key) >= r {
                return None;
            }
            // With this node, the r - 1 closest contacts are its replicas now;
            // `departed` was one if it is closer than the farthest of them.
            // Those farther than it may be new among them (several at once
            // when several replicas left together): each gets the record,
            // which costs one that held it already a STORE.
            let gone = gone.id.distance(&record.key);
            let successors: Vec<Contact> = routing
                .closest(&record.key, r.saturating_sub(1))
                .into_iter()
                .filter(|c| c.id.distance(&record.key) > gone)
                .collect();
            (!successors.is_empty()).then_some(successors)
        });
    }

    /// Starts a hand-off of the records `pick` chooses recipients for (see the
    /// [module doc](self) for its bounds).
    fn spawn_handing(
        self: &Arc<Self>,
        pick: impl Fn(&RoutingTable, &Record) -> Option<Vec<Contact>> + Send + 'static,
    ) {
        if self.handoffs_waiting.fetch_add(1, Ordering::Relaxed) >= HANDOFFS_WAITING {
            self.handoffs_waiting.fetch_sub(1, Ordering::Relaxed);
            Counters::bump(&self.counters.handoffs_skipped);
            return;
        }
        let inner = self.clone();
        self.tasks.spawn(
            async move {
                let permit = inner.handoffs.clone().acquire_owned().await;
                inner.handoffs_waiting.fetch_sub(1, Ordering::Relaxed);
                let Ok(_permit) = permit else { return };
                let due = inner.records_to_hand(pick).await;
                if !due.is_empty() {
                    debug!(records = due.len(), "handing records to their new replicas");
                }
                inner.hand(due).await;
            }
            .instrument(self.span.clone()),
        );
    }

    /// Up to [`HANDOFF_LIMIT`] records (and [`HANDOFF_BYTES`]) of those held, each with
    /// the contacts `pick` says should receive it (`None`: none), walking the store a
    /// page at a time, with neither the store nor the routing table locked between
    /// pages, and letting the worker serve other tasks after each (a store of 100,000
    /// records is hundreds of pages).
    async fn records_to_hand(
        &self,
        pick: impl Fn(&RoutingTable, &Record) -> Option<Vec<Contact>> + Send,
    ) -> Vec<(Record, Vec<Contact>)> {
        let now = self.unix_now();
        let mut due = Vec::new();
        let mut bytes = 0usize;
        let mut from = Key::from_bytes([0; 32]);
        loop {
            let page = self
                .store()
                .records_from(&from, PAGE, now)
                .unwrap_or_default();
            let Some(last) = page.last().map(|r| r.key) else {
                return due;
            };
            {
                let routing = self.routing();
                for record in page {
                    let Some(to) = pick(&routing, &record) else {
                        continue;
                    };
                    bytes = bytes.saturating_add(record.footprint().saturating_mul(to.len()));
                    due.push((record, to));
                    if due.len() >= HANDOFF_LIMIT || bytes >= HANDOFF_BYTES {
                        return due;
                    }
                }
            }
            match next_key(last) {
                Some(next) => from = next,
                None => return due,
            }
            tokio::task::yield_now().await;
        }
    }

    /// Sends each record to its recipients as a REPLICATE, at most
    /// [`REPLICATION_PARALLELISM`] at a time and [`HANDOFF_RATE`] a second.
    async fn hand(self: &Arc<Self>, due: Vec<(Record, Vec<Contact>)>) {
        let sends: Vec<(Record, Contact)> = due
            .into_iter()
            .flat_map(|(record, to)| to.into_iter().map(move |c| (record.clone(), c)))
            .collect();
        let started = mono_now();
        let mut failures: HashMap<NodeId, u32> = HashMap::new();
        let mut sent = 0usize;
        for batch in sends.chunks(REPLICATION_PARALLELISM) {
            if self.shutdown.is_cancelled() {
                return;
            }
            let due_at = Duration::from_secs_f64(sent as f64 / HANDOFF_RATE);
            let elapsed = mono_now().saturating_duration_since(started);
            if due_at > elapsed {
                tokio::time::sleep(due_at - elapsed).await;
            }
            let live: Vec<&(Record, Contact)> = batch
                .iter()
                .filter(|(_, c)| failures.get(&c.id).copied().unwrap_or(0) < FAILURES_IN_A_ROW)
                .collect();
            sent += live.len();
            let answers = futures::future::join_all(live.iter().map(|(record, contact)| {
                let message = PeerMessage::Replicate {
                    record: to_wire(record, self.unix_now()),
                };
                async move { (contact.id, self.rpc(*contact, message).await) }
            }))
            .await;
            for (id, answer) in answers {
                match answer {
                    Ok(PeerMessage::StoreResult {
                        status: StoreStatus::Stored | StoreStatus::KeptNewer,
                    }) => {
                        failures.remove(&id);
                    }
                    _ => *failures.entry(id).or_insert(0) += 1,
                }
            }
        }
    }
}

/// The key right after `key` in key order; `None` after the largest.
fn next_key(key: Key) -> Option<Key> {
    let mut bytes = *key.as_bytes();
    for byte in bytes.iter_mut().rev() {
        if *byte == 0xff {
            *byte = 0;
        } else {
            *byte += 1;
            return Some(Key::from_bytes(bytes));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_key_carries_and_ends_after_the_largest() {
        let mut bytes = [0u8; 32];
        bytes[31] = 0xff;
        bytes[30] = 0x01;
        let next = next_key(Key::from_bytes(bytes)).expect("next");
        assert_eq!(next.as_bytes()[30..], [0x02, 0x00]);
        assert!(next > Key::from_bytes(bytes));
        assert_eq!(next_key(Key::from_bytes([0xff; 32])), None);
    }
}
