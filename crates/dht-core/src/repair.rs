//! Read repair and copies sent back: replicas that miss a record, or hold an older
//! version of it, get the newest version when a GET or a STORE shows it, rather than at
//! the next replication round (as in Dynamo-style stores).
//!
//! - After a GET that found a value, the answers of the peers where the key's replicas
//!   are expected (see `Vouching` in ops.rs) are compared by version, with those of the
//!   requests still on their way when the GET returned (read here, each within the RPC
//!   timeout). Each of those replicas that answered without the record, or with an
//!   older version, is sent the newest (a REPLICATE), and so is this node's own copy
//!   if older. What the GET returned is not changed: it came from a replica, and the
//!   repair makes the next GET see the newest. A value no replica vouched for (held
//!   back, returned as the best the lookup found) repairs nothing: pushed onto the
//!   replicas it would look vouched for. At most [`REPAIRS_AT_ONCE`] repairs run at once.
//! - A STORE or REPLICATE answered "kept newer" means the sender holds an older copy:
//!   the newer one is sent back to it (at most [`SENT_BACK_AT_ONCE`] at a time, so a
//!   peer sending old copies on purpose gets one answer per STORE, no more).

use std::sync::Arc;

use dht_routing::Contact;
use dht_storage::{Origin, Record};
use dht_wire::PeerMessage;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tracing::{Instrument, debug};

use crate::node::{Inner, to_wire};
use crate::ops::{Answer, Copy, Query};
use crate::stats::Counters;

/// Newer copies sent back to the senders of older ones at once; more are not sent.
pub(crate) const SENT_BACK_AT_ONCE: usize = 16;

/// Read repairs running at once; a GET that finds this many running repairs nothing
/// (the next GET, or the replication round, will). Each holds at most one request per
/// replica and the late answers of one lookup.
pub(crate) const REPAIRS_AT_ONCE: usize = 64;

impl Inner {
    /// Repairs the replicas of a key after a GET that returned `returned`: see the
    /// [module doc](self). `copies`: what the peers that answered hold; `late`: the
    /// requests still on their way.
    pub(crate) fn spawn_read_repair(
        self: &Arc<Self>,
        returned: Record,
        copies: Vec<Copy>,
        late: Option<FuturesUnordered<Query>>,
    ) {
        if late.is_none() && !copies.iter().any(|copy| needs(copy, &returned)) {
            return;
        }
        let Ok(permit) = self.repairing.clone().try_acquire_owned() else {
            debug!(key = %returned.key.short(), "no read repair: {REPAIRS_AT_ONCE} running");
            return;
        };
        let inner = self.clone();
        self.tasks.spawn(
            async move {
                inner.read_repair(returned, copies, late).await;
                drop(permit);
            }
            .instrument(self.span.clone()),
        );
    }

    async fn read_repair(
        self: &Arc<Self>,
        returned: Record,
        mut copies: Vec<Copy>,
        late: Option<FuturesUnordered<Query>>,
    ) {
        let key = returned.key;
        let wanted = usize::from(returned.replication);
        if let Some(mut late) = late {
            let mut answered = Vec::new();
            while let Some((peer, answer)) = late.next().await {
                let record = match answer {
                    Ok(Answer::Nodes(_)) => None,
                    Ok(Answer::Value(record)) => {
                        let now = self.unix_now();
                        match self.accept_remote(record, now) {
                            Some(r) if r.key == key && !r.is_expired(now) => Some(r),
                            _ => continue,
                        }
                    }
                    Err(_) => continue,
                };
                answered.push(Copy {
                    peer,
                    record,
                    replica: false,
                });
            }
            // A late answer counts if its peer is among the `r` closest of all that
            // answered.
            let mut distances: Vec<_> = copies
                .iter()
                .chain(&answered)
                .map(|c| c.peer.id.distance(&key))
                .collect();
            distances.sort_unstable();
            if let Some(rth) = distances.get(wanted.saturating_sub(1)).copied() {
                for copy in &mut answered {
                    copy.replica = copy.peer.id.distance(&key) <= rth;
                }
            }
            copies.extend(answered);
        }
        let mut newest = returned;
        // The peer whose copy is newer than what the GET returned, if any.
        let mut newer_from = None;
        for copy in copies.iter().filter(|c| c.replica) {
            if let Some(record) = &copy.record
                && record.supersedes(&newest)
            {
                newest = record.clone();
                newer_from = Some(copy.peer.id);
            }
        }
        let mut targets: Vec<Contact> = copies
            .iter()
            .filter(|copy| needs(copy, &newest))
            .map(|copy| copy.peer)
            .collect();
        targets.sort_by_key(|c| c.id.distance(&key));
        targets.dedup_by_key(|c| c.id);
        targets.truncate(wanted);
        if let Some(from) = newer_from {
            self.keep_if_newer(&newest, from).await;
        }
        if targets.is_empty() {
            return;
        }
        debug!(key = %key.short(), replicas = targets.len(), "read repair");
        let message = PeerMessage::Replicate {
            record: to_wire(&newest, self.unix_now()),
        };
        let mut sends: FuturesUnordered<_> = targets
            .into_iter()
            .map(|peer| {
                Counters::bump(&self.counters.read_repairs);
                self.rpc(peer, message.clone())
            })
            .collect();
        while sends.next().await.is_some() {}
    }

    /// Stores `newest`, which `from` gave, here if this node holds an older copy of its
    /// key (a GET through this node keeps the newer of its copy and the network's: see
    /// `Inner::get`).
    async fn keep_if_newer(&self, newest: &Record, from: dht_id::NodeId) {
        let held = self
            .store()
            .get(&newest.key, self.unix_now())
            .ok()
            .flatten();
        if held.is_some_and(|held| !newest.same_write(&held) && newest.supersedes(&held)) {
            let _ = self.store.put(newest.clone(), Origin::Peer(from)).await;
        }
    }

    /// Sends the record of `key` held here back to `sender`, which offered an older
    /// copy (its STORE was answered "kept newer"), unless [`SENT_BACK_AT_ONCE`] are on
    /// their way already.
    pub(crate) fn send_newer_back(self: &Arc<Self>, sender: Contact, record: Record) {
        let Ok(permit) = self.sending_back.clone().try_acquire_owned() else {
            return;
        };
        Counters::bump(&self.counters.copies_sent_back);
        let inner = self.clone();
        self.tasks.spawn(
            async move {
                let message = PeerMessage::Replicate {
                    record: to_wire(&record, inner.unix_now()),
                };
                let _ = inner.rpc(sender, message).await;
                drop(permit);
            }
            .instrument(self.span.clone()),
        );
    }
}

/// Whether `copy` is a replica's that lacks `newest` (no copy, or an older version; a
/// copy of the same write relayed a few seconds apart is not stale).
fn needs(copy: &Copy, newest: &Record) -> bool {
    copy.replica
        && copy
            .record
            .as_ref()
            .is_none_or(|held| !newest.same_write(held) && newest.supersedes(held))
}
