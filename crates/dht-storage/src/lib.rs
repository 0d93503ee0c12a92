//! Record stores of the DHT.
//!
//! A [`Record`] is a value stored under a [`Key`](dht_id::Key), with an absolute expiry, the
//! replication its publisher asked for and the publisher's version (a timestamp). Records of
//! one key are totally ordered by [`Record::supersedes`], so replicas that receive the same
//! records in any order converge on the same one.
//!
//! [`RecordStore`] is the object-safe interface the node talks to (`Box<dyn RecordStore>`);
//! its methods return [`Result`] so that a persistent backend can report IO failures as
//! [`StoreError::Backend`]. [`MemoryStore`] is the bounded in-memory implementation: it
//! enforces [`StoreLimits`] on value length, record count and bytes held.
//!
//! Every put says who asked for it ([`RecordStore::put_from`] with an [`Origin`]: this
//! node's API, a peer's STORE, or a peer's replication and hand-off), and each held record
//! remembers the origin that wrote it. When the store is nearly full, [`QuotaLimits`] cap
//! the share one peer's STOREs may hold ([`StoreError::QuotaExceeded`]), so that a flood
//! from one peer cannot fill the store and lock out honest peers' records. Local puts and
//! replication are never refused by the quota, only by the hard limits
//! ([`StoreError::Full`]). [`RecordStore::put`] is a local put.
//!
//! [`DurableStore`] keeps the same records, with the same semantics, in an encrypted
//! embedded database (SQLite, entries sealed with AES-256-GCM under a [`StorageKey`]), so
//! that they survive restarts; see the [`durable`] module for its format and durability.
//!
//! This crate owns no runtime and reads no clock: every time-dependent method takes `now`,
//! wall-clock UNIX seconds, from the caller. It never logs or prints a stored value. The
//! durable store's file IO is blocking: the caller runs it off its async workers.
#![deny(missing_docs, rustdoc::broken_intra_doc_links, unreachable_pub)]

pub mod durable;
mod memory;
mod quota;
mod record;
mod store;

pub use durable::{DurableStore, OpenReport, StorageKey};
pub use memory::MemoryStore;
pub use quota::{Origin, QuotaLimits};
pub use record::{EXPIRY_SLACK_SECS, RECORD_OVERHEAD, Record};
pub use store::{
    ContactsSaver, PutOutcome, RecordStore, StagedWrite, Staging, StoreError, StoreLimits, Syncer,
};
