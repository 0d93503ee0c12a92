//! The Kademlia routing table and the iterative lookup, as pure state machines.
//!
//! - [`RoutingTable`] (module `table`): 256 k-buckets indexed by the length of the prefix
//!   a contact's id shares with the local id ([`dht_id::Key::bucket_index`]), each with a
//!   bounded replacement cache. The table never evicts a live contact by itself: a full
//!   bucket answers [`InsertOutcome::Pending`] and the caller pings the oldest entry.
//!   Optional [`Diversity`] limits (module `diversity`, set in [`RoutingConfig::diversity`])
//!   cap the contacts of one network group (e.g. an IPv4 /24) per bucket and per table, as
//!   go-libp2p-kad-dht and geth do against one operator filling the table: a contact over
//!   the limit is [`InsertOutcome::Rejected`].
//! - [`Lookup`] (module `lookup`): the iterative node lookup in the style of rust-libp2p's
//!   `ClosestPeersIter`. [`Lookup::next`] says whom to ask, [`Lookup::on_success`] /
//!   [`Lookup::on_failure`] / [`Lookup::on_value`] feed answers back and
//!   [`Lookup::into_result`] collects.
//!
//! This crate contains no networking code, owns no runtime and timers, and never reads the
//! clock: every time-dependent method takes `now: Instant` from the caller.
#![deny(missing_docs, rustdoc::broken_intra_doc_links, unreachable_pub)]

use std::net::SocketAddr;

use dht_id::NodeId;

mod bucket;
mod diversity;
mod lookup;
mod maintenance;
mod table;

pub use diversity::{Diversity, GroupFn};
pub use lookup::{Lookup, LookupConfig, LookupResult, LookupState};
pub use table::{InsertOutcome, MAX_WIDE_BUCKETS, RoutingConfig, RoutingTable};

/// Default bucket size and number of lookup results ("k" in the Kademlia paper).
pub const DEFAULT_K: usize = 20;

/// A node as the routing layer knows it: its id and the address to reach it at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Contact {
    /// The node's id.
    pub id: NodeId,
    /// The node's address.
    pub addr: SocketAddr,
}

impl Contact {
    /// A contact with this id and address.
    pub fn new(id: NodeId, addr: SocketAddr) -> Self {
        Contact { id, addr }
    }
}
