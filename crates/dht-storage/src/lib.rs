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
//! This crate owns no runtime and reads no clock: every time-dependent method takes `now`,
//! wall-clock UNIX seconds, from the caller. It never logs or prints a stored value.
#![deny(missing_docs, rustdoc::broken_intra_doc_links, unreachable_pub)]

mod memory;
mod record;
mod store;

pub use memory::MemoryStore;
pub use record::{RECORD_OVERHEAD, Record};
pub use store::{PutOutcome, RecordStore, StoreError, StoreLimits};
