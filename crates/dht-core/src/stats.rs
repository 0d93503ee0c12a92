//! What the node counts: how often each defence acted, and the sizes of its bounded
//! structures, for tests, logs and (later) metrics.

use std::sync::atomic::{AtomicU64, Ordering};

/// Event counters, incremented where the event happens.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) handshakes_refused: AtomicU64,
    pub(crate) connections_refused_ip: AtomicU64,
    pub(crate) connections_refused_full: AtomicU64,
    pub(crate) connections_evicted: AtomicU64,
    pub(crate) connections_idle_closed: AtomicU64,
    pub(crate) connections_opened: AtomicU64,
    pub(crate) connections_trimmed: AtomicU64,
    pub(crate) message_deadline_cuts: AtomicU64,
    pub(crate) frames_malformed: AtomicU64,
    pub(crate) frames_unsolicited: AtomicU64,
    pub(crate) requests_rate_limited: AtomicU64,
    pub(crate) contacts_rejected_pow: AtomicU64,
    pub(crate) values_held_back: AtomicU64,
    pub(crate) peers_penalised: AtomicU64,
    pub(crate) stores_refused_quota: AtomicU64,
    pub(crate) replication_lookups: AtomicU64,
    pub(crate) read_repairs: AtomicU64,
    pub(crate) copies_sent_back: AtomicU64,
    pub(crate) handoffs_skipped: AtomicU64,
    pub(crate) silent_connections_closed: AtomicU64,
    pub(crate) handshakes_shed: AtomicU64,
    pub(crate) requests_sent: AtomicU64,
    pub(crate) answers_received: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// A snapshot of a node's counters and of the sizes of its bounded structures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeStats {
    /// Peer connections open, including handshakes in progress.
    pub open_connections: usize,
    /// Peers with a connection in use.
    pub connected_peers: usize,
    /// Contacts in the routing table.
    pub routing_table_len: usize,
    /// Records in the local store.
    pub stored_records: usize,
    /// Bytes of records in the local store.
    pub stored_bytes: usize,
    /// Inbound connections whose TLS or HELLO exchange failed or timed out.
    pub handshakes_refused: u64,
    /// Inbound connections refused because their IP had `max_connections_per_ip`.
    pub connections_refused_ip: u64,
    /// Inbound connections refused at `max_connections` with no idle connection to close.
    pub connections_refused_full: u64,
    /// Idle connections closed to make room at `max_connections`.
    pub connections_evicted: u64,
    /// Connections closed after `idle_timeout_secs` (or `transient_idle_secs`) without
    /// traffic.
    pub connections_idle_closed: u64,
    /// Connections established (handshake done), dialled or accepted: what the
    /// connection policy costs in handshakes.
    pub connections_opened: u64,
    /// Transient connections (to peers outside the routing table) closed early because
    /// more than the warm working set were open.
    pub connections_trimmed: u64,
    /// Connections cut because a frame took longer than `frame_deadline_ms` to arrive.
    pub message_deadline_cuts: u64,
    /// Connections closed for a malformed frame.
    pub frames_malformed: u64,
    /// Connections closed for an answer to a request never sent.
    pub frames_unsolicited: u64,
    /// Requests answered with "overloaded" by the per-peer or per-IP rate limits.
    pub requests_rate_limited: u64,
    /// Contacts refused for lacking proof of work.
    pub contacts_rejected_pow: u64,
    /// Values a GET did not take at once, because the peer that gave one was not among
    /// the key's expected closest nodes (see `Vouching` in ops.rs).
    pub values_held_back: u64,
    /// Peers removed from the routing table for breaking the protocol.
    pub peers_penalised: u64,
    /// STOREs refused by the per-peer storage quota.
    pub stores_refused_quota: u64,
    /// Lookups made by periodic replication: one per key region held records in (or per
    /// record of a replication above k/4), not one per record (see `replicate.rs`).
    pub replication_lookups: u64,
    /// Newest versions sent to replicas that a GET found without the record or with an
    /// older version (read repair, `repair.rs`).
    pub read_repairs: u64,
    /// Newer copies sent back to peers whose STORE offered an older one.
    pub copies_sent_back: u64,
    /// Hand-offs of records to new replicas skipped because 64 were waiting already
    /// (periodic replication brings those records instead).
    pub handoffs_skipped: u64,
    /// Connections closed because the peer sent nothing while a request on it waited
    /// its whole timeout (a hung process, a host gone dark).
    pub silent_connections_closed: u64,
    /// Unfinished inbound handshakes shed, oldest first, to let a newcomer in when every
    /// connection slot and reserve place was taken.
    pub handshakes_shed: u64,
    /// Requests sent to peers (each try of a request a peer asked to repeat counts).
    pub requests_sent: u64,
    /// Answers received to them (an "overloaded" or error answer counts; a timeout or
    /// a failed connection does not).
    pub answers_received: u64,
}

impl NodeStats {
    pub(crate) fn from_counters(c: &Counters) -> Self {
        NodeStats {
            handshakes_refused: Counters::get(&c.handshakes_refused),
            connections_refused_ip: Counters::get(&c.connections_refused_ip),
            connections_refused_full: Counters::get(&c.connections_refused_full),
            connections_evicted: Counters::get(&c.connections_evicted),
            connections_idle_closed: Counters::get(&c.connections_idle_closed),
            connections_opened: Counters::get(&c.connections_opened),
            connections_trimmed: Counters::get(&c.connections_trimmed),
            message_deadline_cuts: Counters::get(&c.message_deadline_cuts),
            frames_malformed: Counters::get(&c.frames_malformed),
            frames_unsolicited: Counters::get(&c.frames_unsolicited),
            requests_rate_limited: Counters::get(&c.requests_rate_limited),
            contacts_rejected_pow: Counters::get(&c.contacts_rejected_pow),
            values_held_back: Counters::get(&c.values_held_back),
            peers_penalised: Counters::get(&c.peers_penalised),
            stores_refused_quota: Counters::get(&c.stores_refused_quota),
            replication_lookups: Counters::get(&c.replication_lookups),
            read_repairs: Counters::get(&c.read_repairs),
            copies_sent_back: Counters::get(&c.copies_sent_back),
            handoffs_skipped: Counters::get(&c.handoffs_skipped),
            silent_connections_closed: Counters::get(&c.silent_connections_closed),
            handshakes_shed: Counters::get(&c.handshakes_shed),
            requests_sent: Counters::get(&c.requests_sent),
            answers_received: Counters::get(&c.answers_received),
            ..NodeStats::default()
        }
    }
}
