//! PUT: the record made and committed here, the FIND_NODE lookup of its key, and the
//! STOREs on the closest nodes found, which start while the lookup still runs. Periodic
//! replication stores the same way.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dht_id::{Key, NodeId};
use dht_routing::Contact;
use dht_storage::{Origin, PutOutcome, Record};
use dht_wire::{PeerMessage, StoreStatus};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::task::JoinHandle;
use tracing::warn;

use crate::error::{Error, RpcError};
use crate::node::{Inner, to_wire, unix_now};

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
        let now = unix_now();
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
    /// by a FIND_NODE lookup. A STORE does not wait for the lookup to end: it starts on
    /// a node as soon as the lookup has settled it among the `r` closest (every closer
    /// peer the lookup knows has answered, see `Lookup::settled_closest`). When the lookup
    /// ends, the `r` closest of its result are the replicas; a STORE on a node that was
    /// later displaced still completes (one extra copy) but is not counted. So a PUT
    /// usually costs its lookup, not the lookup plus a STORE round trip and a commit.
    /// `replication`: sent as REPLICATE (periodic replication), not as a new PUT's
    /// STORE. Returns how many acknowledged.
    pub(crate) async fn store_on_closest(
        self: &Arc<Self>,
        record: &Record,
        replication: bool,
    ) -> usize {
        let wanted = usize::from(record.replication);
        let message = store_message(record, replication);
        let mut started: HashMap<NodeId, JoinHandle<StoreAnswer>> = HashMap::new();
        let found = self
            .lookup_observed(record.key, false, |lookup| {
                for contact in lookup.settled_closest(wanted).into_iter().flatten() {
                    started
                        .entry(contact.id)
                        .or_insert_with(|| self.spawn_store(contact, message.clone()));
                }
            })
            .await;
        self.store_on_started(&message, &found.result.closest, wanted, started)
            .await
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
        let message = store_message(record, replication);
        self.store_on_started(&message, candidates, wanted, HashMap::new())
            .await
    }

    /// [`Inner::store_on`], where the STOREs of `started` are already on their way.
    async fn store_on_started(
        self: &Arc<Self>,
        message: &PeerMessage,
        candidates: &[Contact],
        wanted: usize,
        mut started: HashMap<NodeId, JoinHandle<StoreAnswer>>,
    ) -> usize {
        let mut send = |contact: &Contact| {
            started
                .remove(&contact.id)
                .unwrap_or_else(|| self.spawn_store(*contact, message.clone()))
        };
        let mut next = candidates.iter();
        let mut in_flight: FuturesUnordered<_> =
            next.by_ref().take(wanted).map(&mut send).collect();
        let mut acked = 0;
        while let Some(answer) = in_flight.next().await {
            match answer {
                Ok(Ok(PeerMessage::StoreResult {
                    status: StoreStatus::Stored,
                })) => acked += 1,
                // The peer holds a newer version: nothing to replace there.
                Ok(Ok(PeerMessage::StoreResult {
                    status: StoreStatus::KeptNewer,
                })) => {}
                _ => {
                    if let Some(contact) = next.next() {
                        in_flight.push(send(contact));
                    }
                }
            }
        }
        // STOREs started on nodes the lookup later found farther than the replicas
        // finish on their own.
        acked
    }

    /// One STORE in a task of its own, so that it goes on whoever waits for it.
    fn spawn_store(
        self: &Arc<Self>,
        contact: Contact,
        message: PeerMessage,
    ) -> JoinHandle<StoreAnswer> {
        let inner = self.clone();
        self.tasks
            .spawn(async move { inner.rpc(contact, message).await })
    }
}

/// A peer's answer to a STORE.
type StoreAnswer = Result<PeerMessage, RpcError>;

fn store_message(record: &Record, replication: bool) -> PeerMessage {
    let record = to_wire(record);
    if replication {
        PeerMessage::Replicate { record }
    } else {
        PeerMessage::Store { record }
    }
}
