//! The node's record store, shared between the async tasks (which read it: every store
//! keeps its records in memory) and a dedicated writer thread, which applies puts in
//! batches: whatever puts are waiting when it starts a write are committed together
//! (group commit), so that a durable store's disk flush is shared by many records and
//! never runs on an async worker.

use std::sync::{Arc, Mutex, MutexGuard};

use dht_storage::{MemoryStore, Origin, PutOutcome, Record, RecordStore, StoreError, StoreLimits};
use tokio::sync::{mpsc, oneshot};

use crate::node::unix_now;

/// Puts waiting for the writer; senders wait when it is full (back-pressure).
const WRITE_QUEUE: usize = 1024;
/// Puts applied by one batch at most.
const BATCH: usize = 256;

type Reply = oneshot::Sender<Result<PutOutcome, StoreError>>;

/// The shared store and its writer.
pub(crate) struct Store {
    shared: Arc<Mutex<Box<dyn RecordStore>>>,
    writes: Mutex<Option<mpsc::Sender<(Record, Origin, Reply)>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Store {
    /// Starts the writer thread over `store`.
    pub(crate) fn new(store: Box<dyn RecordStore>) -> std::io::Result<Store> {
        let shared = Arc::new(Mutex::new(store));
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let writer = std::thread::Builder::new()
            .name("dht-store-writer".into())
            .spawn({
                let shared = shared.clone();
                move || write_loop(&shared, rx)
            })?;
        Ok(Store {
            shared,
            writes: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
        })
    }

    /// The store, for reads and for quick in-memory operations.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Box<dyn RecordStore>> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies a put through the writer and waits until it is committed.
    pub(crate) async fn put(
        &self,
        record: Record,
        origin: Origin,
    ) -> Result<PutOutcome, StoreError> {
        let sender = self
            .writes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(closed)?;
        let (reply, answer) = oneshot::channel();
        sender
            .send((record, origin, reply))
            .await
            .map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    /// Runs `work` on the store off the async workers (for operations that may write:
    /// purges, removals).
    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut dyn RecordStore) -> T + Send + 'static,
    ) -> Option<T> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let mut store = shared.lock().unwrap_or_else(|e| e.into_inner());
            work(store.as_mut())
        })
        .await
        .ok()
    }

    /// Stops the writer after the puts already queued, and waits for it: the store (a
    /// database file) is closed when this returns.
    pub(crate) async fn close(&self) {
        self.writes.lock().unwrap_or_else(|e| e.into_inner()).take();
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(writer) = writer {
            let _ = tokio::task::spawn_blocking(move || writer.join()).await;
        }
        // Drop the store itself (closing its database file) while the node's handle may
        // live on: a restarted node in the same process can open it again.
        let closed: Box<dyn RecordStore> = Box::new(MemoryStore::new(StoreLimits {
            max_records: 0,
            max_bytes: 0,
            ..StoreLimits::default()
        }));
        let old = std::mem::replace(&mut *self.lock(), closed);
        let _ = tokio::task::spawn_blocking(move || drop(old)).await;
    }
}

fn closed() -> StoreError {
    StoreError::Backend("the store is closed".into())
}

fn write_loop(
    shared: &Mutex<Box<dyn RecordStore>>,
    mut rx: mpsc::Receiver<(Record, Origin, Reply)>,
) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(write) => batch.push(write),
                Err(_) => break,
            }
        }
        let (puts, replies): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .map(|(record, origin, reply)| ((record, origin), reply))
            .unzip();
        let results = {
            let mut store = shared.lock().unwrap_or_else(|e| e.into_inner());
            store.put_many(puts, unix_now())
        };
        for (reply, result) in replies.into_iter().zip(results) {
            let _ = reply.send(result);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use dht_id::Key;

    fn record(i: u8) -> Record {
        Record {
            key: Key::from_bytes([i; 32]),
            value: Bytes::from_static(b"v"),
            expires_at: unix_now() + 600,
            replication: 3,
            version: 1,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn puts_are_applied_in_batches_and_visible_to_readers() {
        let store = Arc::new(Store::new(Box::new(MemoryStore::default())).expect("writer"));
        let mut puts = Vec::new();
        for i in 0..50u8 {
            let store = store.clone();
            puts.push(tokio::spawn(async move {
                store.put(record(i), Origin::Local).await
            }));
        }
        for put in puts {
            assert_eq!(
                put.await.expect("join").expect("stored"),
                PutOutcome::Inserted
            );
        }
        assert_eq!(store.lock().len(), 50);
        assert_eq!(
            store.put(record(0), Origin::Local).await.expect("put"),
            PutOutcome::Unchanged
        );
        store.close().await;
        assert!(store.put(record(60), Origin::Local).await.is_err());
    }
}
