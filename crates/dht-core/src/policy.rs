//! Which peer connections a node keeps warm. A connection to a routing-table contact
//! lives until `idle_timeout` without traffic (liveness pings, which come sooner, keep
//! it), but only to the k most recently seen contacts of a bucket: a wide far bucket's
//! other contacts (`wide_buckets`) cost a table entry, not a connection. Any other
//! connection (to a peer a lookup met, or one that dialled us and is not in our table's
//! warm part) is transient: it closes after `transient_idle` without traffic, and
//! beyond [`TRANSIENT_WARM`] of them the least recently used one idle for
//! [`TRANSIENT_MIN_IDLE`] closes at once. So a node's connections stay bounded by its
//! table plus a small working set, also while it joins and meets many peers at once,
//! and a busy node (whose lookups reuse each connection within the second) keeps them.

use std::sync::Arc;
use std::time::Duration;

use tracing::debug;

use crate::conn::PeerConn;
use crate::node::{Inner, lock};
use crate::stats::Counters;

/// Transient connections kept open (within `transient_idle`) beyond the table's.
pub const TRANSIENT_WARM: usize = 32;
/// A transient connection closes early, over [`TRANSIENT_WARM`], only after this long
/// without traffic: a lookup in progress comes back to its peers sooner.
pub(crate) const TRANSIENT_MIN_IDLE: Duration = Duration::from_secs(1);

impl Inner {
    /// How long `conn` may stay without traffic: a connection to one of the k most
    /// recently seen contacts of a bucket is kept warm (`idle_timeout`); one to any other
    /// peer (met through a lookup, or that dialled us) is closed sooner
    /// (`transient_idle`).
    pub(crate) fn idle_limit(&self, conn: &PeerConn) -> Duration {
        if self.routing().is_core(&conn.contact.id) {
            self.config.idle_timeout
        } else {
            self.config.transient_idle.min(self.config.idle_timeout)
        }
    }

    /// Closes the least recently used transient connections that have been idle for
    /// [`TRANSIENT_MIN_IDLE`] while more than [`TRANSIENT_WARM`] are open. Called when
    /// a connection is established, the only moment their number grows.
    pub(crate) fn trim_transient(&self) {
        // However many of them are in the table, this many cannot exceed the bound.
        let open = lock(&self.peers).len();
        if open <= TRANSIENT_WARM + self.routing().core_len() {
            return;
        }
        let conns: Vec<Arc<PeerConn>> = lock(&self.peers)
            .values()
            .filter(|c| c.is_usable())
            .cloned()
            .collect();
        let mut transient: Vec<Arc<PeerConn>> = {
            let routing = self.routing();
            conns
                .into_iter()
                .filter(|c| !routing.is_core(&c.contact.id))
                .collect()
        };
        let Some(excess) = transient.len().checked_sub(TRANSIENT_WARM) else {
            return;
        };
        transient.retain(|c| c.last_used().elapsed() >= TRANSIENT_MIN_IDLE && !c.has_pending());
        // Ties (one instant, as on simulated time) by id: not by the map's order.
        transient.sort_by_key(|c| (c.last_used(), c.contact.id));
        let mut peers = lock(&self.peers);
        for conn in transient.into_iter().take(excess) {
            if peers
                .get(&conn.contact.id)
                .is_some_and(|c| c.seq == conn.seq)
            {
                peers.remove(&conn.contact.id);
            }
            debug!(peer = %conn.contact.id.short(), "closing a transient connection beyond the warm set");
            Counters::bump(&self.counters.connections_trimmed);
            conn.closed.cancel();
        }
    }
}
