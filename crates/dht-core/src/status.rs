//! A snapshot of what a node is and did, for status pages and readiness checks
//! ([`Node::status`](crate::Node::status), [`Node::readiness`](crate::Node::readiness)).
//! It never holds a stored value.

use std::net::SocketAddr;
use std::time::Duration;

use dht_id::NodeId;

use crate::activity::{LookupCounts, RecentLookup, UpkeepRound};

/// One k-bucket of the routing table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketStatus {
    /// The bucket: how many leading bits its contacts share with this node's id.
    pub index: usize,
    /// Contacts in it (at most `capacity`).
    pub contacts: usize,
    /// Contacts it holds at most: k, more in the farthest buckets (`wide_buckets`).
    pub capacity: usize,
    /// Candidates in its replacement cache, waiting for a place.
    pub replacements: usize,
}

/// What a node is and did recently.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeStatus {
    /// Its id.
    pub id: NodeId,
    /// The address it announces to peers.
    pub advertised_addr: SocketAddr,
    /// Time since it started.
    pub uptime: Duration,
    /// Whether it has joined a network (or had none to join).
    pub joined: bool,
    /// Why it is not ready, if it is not (see [`Node::readiness`](crate::Node::readiness)).
    pub not_ready: Option<NotReady>,
    /// Bucket size.
    pub k: usize,
    /// The buckets that hold a contact or a replacement, by index.
    pub buckets: Vec<BucketStatus>,
    /// Contacts in the routing table.
    pub routing_table_len: usize,
    /// Peer connections open, handshakes included.
    pub open_connections: usize,
    /// Records in the local store.
    pub stored_records: usize,
    /// Bytes of records (keys and values) in the local store.
    pub stored_bytes: usize,
    /// The store's record limit (`max_records`).
    pub max_records: usize,
    /// The store's byte limit (`max_bytes`).
    pub max_bytes: usize,
    /// The lookups of the last ten minutes (at most 512), oldest first.
    pub lookups: Vec<RecentLookup>,
    /// The lookups of the last minute.
    pub lookups_last_minute: LookupCounts,
    /// The last upkeep rounds that did some work (at most 32), newest first.
    pub upkeep: Vec<UpkeepRound>,
}

/// Why a node is not ready to serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReady {
    /// It is stopping.
    ShuttingDown,
    /// Its record store is closed or its writer has stopped.
    StoreClosed,
    /// It has not joined the network yet (it is joining, or no bootstrap peer answered).
    NotJoined,
    /// Its routing table is empty: it knows no live peer.
    NoContacts,
}

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NotReady::ShuttingDown => "the node is shutting down",
            NotReady::StoreClosed => "the record store is not open",
            NotReady::NotJoined => "not joined yet: joining, or no bootstrap peer has answered",
            NotReady::NoContacts => "no live contact: the routing table is empty",
        })
    }
}

impl crate::node::Inner {
    /// Why the node is not ready, or `None` when it is: it runs, its store is open, it
    /// has joined and it knows at least one live peer (contacts that stop answering
    /// leave the table, so a contact in it has answered within the liveness bounds).
    pub(crate) fn not_ready(&self) -> Option<NotReady> {
        if self.shutdown.is_cancelled() {
            Some(NotReady::ShuttingDown)
        } else if !self.store.is_open() {
            Some(NotReady::StoreClosed)
        } else if !self.activity.joined() {
            Some(NotReady::NotJoined)
        } else if self.routing().is_empty() {
            Some(NotReady::NoContacts)
        } else {
            None
        }
    }

    pub(crate) fn status(&self) -> NodeStatus {
        let now = crate::node::mono_now();
        let (buckets, routing_table_len) = {
            let routing = self.routing();
            let buckets = (0..dht_id::KEY_BITS)
                .map(|index| BucketStatus {
                    index,
                    contacts: routing.bucket_len(index),
                    capacity: routing.capacity(index),
                    replacements: routing.replacement_len(index),
                })
                .filter(|b| b.contacts + b.replacements > 0)
                .collect();
            (buckets, routing.len())
        };
        let (stored_records, stored_bytes) = {
            let store = self.store();
            (store.len(), store.bytes())
        };
        NodeStatus {
            id: self.id,
            advertised_addr: self.advertised_addr(),
            uptime: self.activity.uptime(now),
            joined: self.activity.joined(),
            not_ready: self.not_ready(),
            k: self.config.k,
            buckets,
            routing_table_len,
            open_connections: self.open_connections(),
            stored_records,
            stored_bytes,
            max_records: self.config.store_limits.max_records,
            max_bytes: self.config.store_limits.max_bytes,
            lookups: self.activity.recent_lookups(now),
            lookups_last_minute: self.activity.lookups_last_minute(now),
            upkeep: self.activity.recent_rounds(now),
        }
    }
}
