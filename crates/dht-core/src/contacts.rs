//! The routing table's bookkeeping: contacts heard from (a full bucket pings its
//! oldest before anyone is evicted), contacts that broke the rules, and the contacts
//! saved for the next start.

use std::sync::Arc;

use dht_id::NodeId;
use dht_routing::{Contact, InsertOutcome};
use tracing::{Instrument, debug, warn};

use crate::error::RpcError;
use crate::node::{Inner, lock, mono_now};
use crate::stats::Counters;

impl Inner {
    /// Inserts `contact` into the routing table as seen at `now`. In a wide bucket the
    /// contact that thereby left the k most recently seen (whose connection is no
    /// longer kept warm) has its connection's idle limit recomputed.
    pub(crate) fn saw(&self, contact: Contact, now: std::time::Instant) -> InsertOutcome {
        let (outcome, edge) = {
            let mut routing = self.routing();
            // A contact already in the core moves within it: nobody leaves.
            let was_core = routing.is_core(&contact.id);
            let outcome = routing.insert(contact, now);
            let edge = if was_core {
                None
            } else {
                routing.core_edge(&contact.id)
            };
            (outcome, edge)
        };
        if matches!(outcome, InsertOutcome::Inserted | InsertOutcome::Updated) {
            if let Some(conn) = edge.and_then(|edge| lock(&self.peers).get(&edge.id).cloned()) {
                conn.recheck_idle();
            }
        }
        outcome
    }

    /// Records that `contact` was heard from. When its bucket is full, the bucket's
    /// least-recently-seen contact is pinged (unless heard from recently) and evicted
    /// only if it does not answer.
    pub(crate) fn observe(self: &Arc<Self>, contact: Contact) {
        let now = mono_now();
        let outcome = self.saw(contact, now);
        if outcome == InsertOutcome::Inserted && !self.store().is_empty() {
            self.spawn_handoff(contact);
        }
        let InsertOutcome::Pending { oldest } = outcome else {
            return;
        };
        let fresh = self.routing().last_seen(&oldest.id).is_some_and(|seen| {
            now.saturating_duration_since(seen) < self.config.liveness_interval
        });
        if fresh || !lock(&self.pinging).insert(oldest.id) {
            return;
        }
        let inner = self.clone();
        self.tasks.spawn(
            async move {
                match inner.ping(oldest).await {
                    Ok(()) => {
                        inner.saw(oldest, mono_now());
                    }
                    // Our own limits say nothing about the peer: keep it. (One that
                    // answers only "overloaded", even after the retries, makes way.)
                    Err(RpcError::LocalLimit | RpcError::Overloaded | RpcError::Closed) => {}
                    Err(e) => {
                        debug!(peer = %oldest.id.short(), error = %e, "evicting contact that failed a ping");
                        inner.forget(&oldest);
                    }
                }
                lock(&inner.pinging).remove(&oldest.id);
            }
            .instrument(self.span.clone()),
        );
    }

    /// A peer broke the protocol's rules: it leaves the routing table and its
    /// connection is closed. (It may come back later by proving itself again.)
    pub(crate) fn penalise(&self, peer: &Contact, reason: &'static str) {
        warn!(peer = %peer.id.short(), addr = %peer.addr, reason, "penalising peer");
        Counters::bump(&self.counters.peers_penalised);
        self.routing().remove(&peer.id);
        if let Some(conn) = lock(&self.peers).get(&peer.id) {
            conn.closed.cancel();
        }
    }

    /// Saves the routing table's contacts in the store, for the next start. An empty
    /// table (a node cut off from every peer) keeps what was saved before.
    pub(crate) async fn save_contacts(&self) {
        let contacts: Vec<Contact> = self.routing().iter().collect();
        if contacts.is_empty() {
            return;
        }
        let blob = encode_contacts(&contacts);
        // Without the store's lock: its commit never holds up a GET.
        let Some(save) = self.store().contacts_saver() else {
            return;
        };
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || save(&blob)).await {
            warn!(error = %e, "cannot save contacts");
        }
    }
}

/// Contacts as text, one `<id>@<address>` per line.
pub(crate) fn encode_contacts(contacts: &[Contact]) -> Vec<u8> {
    let mut text = String::new();
    for contact in contacts {
        text.push_str(&format!("{}@{}\n", contact.id, contact.addr));
    }
    text.into_bytes()
}

/// The contacts of [`encode_contacts`]; lines that do not parse (or name this node) are
/// skipped.
pub(crate) fn decode_contacts(blob: &[u8], local: NodeId) -> Vec<Contact> {
    String::from_utf8_lossy(blob)
        .lines()
        .filter_map(|line| {
            let (id, addr) = line.split_once('@')?;
            Some(Contact {
                id: id.parse().ok()?,
                addr: addr.parse().ok()?,
            })
        })
        .filter(|contact| contact.id != local)
        .collect()
}
