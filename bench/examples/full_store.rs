//! How long a full store takes to refuse a put, as it grows: prints nanoseconds per
//! refused put for stores of 1,000 to 100,000 records (none expired, the common case
//! under a flood).
//!
//! `cargo run --release -p dht-bench --example full_store`

use std::time::Instant;

use bytes::Bytes;
use dht_id::Key;
use dht_storage::{MemoryStore, Record, RecordStore, StoreError, StoreLimits};

const NOW: u64 = 1_000;

fn record(i: u64) -> Record {
    Record {
        key: Key::sha256(&i.to_be_bytes()),
        value: Bytes::from_static(b"value"),
        expires_at: NOW + 3_600 + i % 600,
        replication: 3,
        version: 1,
    }
}

fn main() {
    println!("records  refusals  ns/refusal");
    for n in [1_000u64, 10_000, 100_000] {
        let mut store = MemoryStore::new(StoreLimits {
            max_records: n as usize,
            ..StoreLimits::default()
        });
        for i in 0..n {
            store.put(record(i), NOW).expect("room");
        }
        let tries = 2_000u64;
        let started = Instant::now();
        for i in 0..tries {
            let refused = store.put(record(n + i), NOW);
            assert!(matches!(refused, Err(StoreError::Full { .. })));
        }
        let per = started.elapsed().as_nanos() / u128::from(tries);
        println!("{n:>7}  {tries:>8}  {per:>10}");
    }
}
