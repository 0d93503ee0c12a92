//! PUT: the record made and committed here, the FIND_NODE lookup of its key, and the
//! STOREs on the closest nodes found, which start while the lookup still runs: the PUT
//! is done once the closest nodes the lookup has settled acknowledge, and the lookup
//! finishes by itself. Periodic replication stores the same way.

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dht_id::{Key, NodeId};
use dht_routing::Contact;
use dht_storage::{Origin, PutOutcome, Record};
use dht_wire::{PeerMessage, StoreStatus};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tokio::task::JoinHandle;
use tracing::{Instrument, warn};

use crate::error::{Error, RpcError};
use crate::node::{Inner, to_wire};

/// What a PUT achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutReport {
    /// Remote nodes that acknowledged the STORE.
    pub replicas: usize,
    /// The replication the record got (the hint clamped to `[min_replication, k]`).
    pub replication: u8,
    /// The TTL the record got (the hint clamped to `[min_ttl, max_ttl]`).
    pub ttl: Duration,
    /// Whether this node kept a copy (it does unless its store is full).
    pub stored_locally: bool,
}

/// How a PUT's value should be kept; both are hints the node clamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutOptions {
    /// Lifetime asked for.
    pub ttl: Duration,
    /// Copies asked for.
    pub replication: u8,
}

impl Default for PutOptions {
    fn default() -> Self {
        PutOptions {
            ttl: Duration::from_secs(3600),
            replication: 3,
        }
    }
}

impl Inner {
    /// The first half of a PUT, without waiting: checks the value, clamps the hints
    /// and makes the record, versioned above any copy held here.
    pub(crate) fn prepare_put(
        &self,
        key: Key,
        value: Bytes,
        options: PutOptions,
    ) -> Result<(Record, Duration), Error> {
        if value.is_empty() {
            return Err(Error::BadValue("empty value".into()));
        }
        if value.len() > dht_wire::MAX_VALUE_LEN {
            return Err(Error::BadValue(format!(
                "{} bytes, the largest value is {}",
                value.len(),
                dht_wire::MAX_VALUE_LEN
            )));
        }
        let replication = self.config.clamp_replication(options.replication);
        let ttl = self.config.clamp_ttl(options.ttl);
        let now = self.unix_now();
        // A PUT replaces what this node holds even when its clock runs behind the
        // publisher of that copy: the version is above the one held here.
        let held = self
            .store()
            .get(&key, now)
            .ok()
            .flatten()
            .map(|r| r.version);
        let version = self
            .next_version()
            .max(held.map_or(0, |v| v.saturating_add(1)));
        let record = Record {
            key,
            value,
            expires_at: now.saturating_add(ttl.as_secs()),
            replication,
            version,
        };
        Ok((record, ttl))
    }

    /// Stores a PUT's record here (committed, for a durable store), so that a GET on
    /// this node sees it. Whether it was kept.
    pub(crate) async fn store_locally(&self, record: &Record) -> bool {
        match self.store.put(record.clone(), Origin::Local).await {
            Ok(PutOutcome::Inserted | PutOutcome::Replaced | PutOutcome::Unchanged) => true,
            Ok(PutOutcome::KeptNewer) => false,
            Err(e) => {
                warn!(key = %record.key.short(), error = %e, "PUT not kept locally");
                false
            }
        }
    }

    /// Stores `record` on the `r` nodes closest to its key (`r` its replication), found
    /// by a FIND_NODE lookup, and returns how many acknowledged. A STORE does not wait
    /// for the lookup to end: it starts on a node as soon as the lookup has settled it
    /// among the `r` closest (every closer peer the lookup knows has answered, see
    /// `Lookup::settled_closest`), and the count is of the first `r` so settled: a PUT
    /// costs about the time to settle its closest nodes plus one STORE, not its whole
    /// lookup. Nor does the lookup go on to the `k` closest: once the `r` closest it knows
    /// have answered (and every closer peer it knows, whose answers revealed nobody
    /// closer), it asks no farther peer, which would cost a PUT about `k` requests instead
    /// of a few; that load, times every PUT, is what bounds PUT throughput (each peer
    /// rate-limits its callers). It still reads the answers already asked for: one that
    /// names a closer node resumes it, and that node gets the record too. A lookup that
    /// never settles (fewer than `r` nodes answered) runs to its end and stores on what
    /// it found. `replication`: sent as REPLICATE
    /// (periodic replication), not as a new PUT's STORE; a replication returns only once
    /// its lookup has ended. `slot` (a PUT's place among `PUTS_IN_FLIGHT`) is held until
    /// both the lookup and the STOREs counted are done.
    pub(crate) async fn store_on_closest(
        self: &Arc<Self>,
        record: &Record,
        replication: bool,
        slot: Option<OwnedSemaphorePermit>,
    ) -> usize {
        let wanted = usize::from(record.replication);
        let message = Outgoing {
            record: record.clone(),
            replication,
        };
        let (settled_tx, settled_rx) = oneshot::channel();
        let (finished_tx, finished_rx) = oneshot::channel();
        let inner = self.clone();
        let (key, for_lookup) = (record.key, message.clone());
        // Held by the lookup and by the count of its STOREs, until both are done.
        let slot = slot.map(Arc::new);
        let lookup_slot = slot.clone();
        let tracker = if replication { &self.tasks } else { &self.puts };
        let lookup = tracker.spawn(
            async move {
                let mut started: HashSet<NodeId> = HashSet::new();
                let mut settled_tx = Some(settled_tx);
                let found = inner
                    .lookup_observed(key, false, Some(wanted), |lookup| {
                        let Some(settled) = lookup.settled_closest(wanted) else {
                            return ControlFlow::Continue(());
                        };
                        let stores = inner.spawn_stores(&settled, &for_lookup, &mut started);
                        if let Some(tx) = settled_tx.take() {
                            let _ = tx.send(stores);
                        }
                        // The `r` closest are confirmed (every closer peer known has
                        // answered): the lookup asks nobody farther, and only an answer
                        // already on its way can still name a closer node.
                        ControlFlow::Break(())
                    })
                    .await;
                let closest: Vec<Contact> = found.result.closest;
                let last = closest.iter().take(wanted);
                let stores = inner.spawn_stores(last, &for_lookup, &mut started);
                match settled_tx {
                    // Never settled (fewer than `r` nodes answered): the caller counts
                    // on what the lookup found.
                    Some(tx) => {
                        let _ = tx.send(stores);
                    }
                    // Settled earlier: STOREs on nodes found among the closest since
                    // then go on by themselves.
                    None => drop(stores),
                }
                // The spares for a failed STORE: none the lookup already stored on.
                let spare: Vec<Contact> = closest
                    .into_iter()
                    .filter(|c| !started.contains(&c.id))
                    .collect();
                let _ = finished_tx.send(spare);
                drop(lookup_slot);
            }
            .in_current_span(),
        );
        let Ok(stores) = settled_rx.await else {
            return 0;
        };
        let spare = async { finished_rx.await.unwrap_or_default() };
        let acked = self.count_stores(&message, stores, spare).await;
        // Periodic replication runs a bounded number of records at once: its lookups
        // count among them until they end.
        if replication {
            let _ = lookup.await;
        }
        drop(slot);
        acked
    }

    /// STOREs on those of `contacts` not in `started` yet (which they then join), each
    /// in a task of its own.
    fn spawn_stores<'a>(
        self: &Arc<Self>,
        contacts: impl IntoIterator<Item = &'a Contact>,
        message: &Outgoing,
        started: &mut HashSet<NodeId>,
    ) -> Vec<(NodeId, JoinHandle<StoreAnswer>)> {
        contacts
            .into_iter()
            .filter(|contact| started.insert(contact.id))
            .map(|contact| (contact.id, self.spawn_store(*contact, message.clone())))
            .collect()
    }

    /// Counts the acknowledgements of `stores`. A STORE that fails is replaced by one on
    /// the next of the `spare` candidates not tried yet (asked for at the first failure:
    /// for a PUT, the closest nodes of its lookup once that has ended).
    async fn count_stores(
        self: &Arc<Self>,
        message: &Outgoing,
        stores: Vec<(NodeId, JoinHandle<StoreAnswer>)>,
        spare: impl Future<Output = Vec<Contact>>,
    ) -> usize {
        let mut tried: HashSet<NodeId> = stores.iter().map(|(id, _)| *id).collect();
        let mut in_flight: FuturesUnordered<_> =
            stores.into_iter().map(|(_, store)| store).collect();
        let mut spare = Some(spare);
        let mut candidates = Vec::new().into_iter();
        let mut acked = 0;
        while let Some(answer) = in_flight.next().await {
            match stored(&answer) {
                Stored::Yes => acked += 1,
                Stored::KeptNewer => {}
                Stored::Failed => {
                    if let Some(spare) = spare.take() {
                        candidates = spare.await.into_iter();
                    }
                    if let Some(next) = candidates.by_ref().find(|c| tried.insert(c.id)) {
                        in_flight.push(self.spawn_store(next, message.clone()));
                    }
                }
            }
        }
        acked
    }

    /// Sends STORE (or REPLICATE, see [`Inner::store_on_closest`]) to the closest
    /// `wanted` of `candidates`; a failed one is replaced by the next candidate. Returns
    /// how many acknowledged.
    pub(crate) async fn store_on(
        self: &Arc<Self>,
        record: &Record,
        candidates: &[Contact],
        wanted: usize,
        replication: bool,
    ) -> usize {
        let message = Outgoing {
            record: record.clone(),
            replication,
        };
        let first = candidates.iter().take(wanted);
        let stores = self.spawn_stores(first, &message, &mut HashSet::new());
        let spare = std::future::ready(candidates.to_vec());
        self.count_stores(&message, stores, spare).await
    }

    /// One STORE in a task of its own, so that it goes on whoever waits for it: a PUT's
    /// among the PUTs that shutdown waits for, a REPLICATE among the node's tasks.
    fn spawn_store(
        self: &Arc<Self>,
        contact: Contact,
        message: Outgoing,
    ) -> JoinHandle<StoreAnswer> {
        let inner = self.clone();
        let tracker = if message.replication {
            &self.tasks
        } else {
            &self.puts
        };
        tracker.spawn(async move {
            let message = message.at(inner.unix_now());
            inner.rpc(contact, message).await
        })
    }
}

/// A peer's answer to a STORE.
type StoreAnswer = Result<PeerMessage, RpcError>;

/// What a STORE's task brought.
#[derive(PartialEq, Eq)]
enum Stored {
    /// Acknowledged.
    Yes,
    /// The peer holds a newer version: nothing to replace there (not counted, and not
    /// tried elsewhere instead).
    KeptNewer,
    /// Failed: the next candidate is tried instead.
    Failed,
}

fn stored(answer: &Result<StoreAnswer, tokio::task::JoinError>) -> Stored {
    match answer {
        Ok(Ok(PeerMessage::StoreResult { status })) => match status {
            StoreStatus::Stored => Stored::Yes,
            StoreStatus::KeptNewer => Stored::KeptNewer,
            _ => Stored::Failed,
        },
        _ => Stored::Failed,
    }
}

/// A STORE (or a REPLICATE) to send. Its message is made at each send, so that the
/// lifetime it carries is what is left of the record's at that moment, however long the
/// lookup before it took.
#[derive(Clone)]
struct Outgoing {
    record: Record,
    replication: bool,
}

impl Outgoing {
    fn at(&self, now: u64) -> PeerMessage {
        let record = to_wire(&self.record, now);
        if self.replication {
            PeerMessage::Replicate { record }
        } else {
            PeerMessage::Store { record }
        }
    }
}
