//! The node's record store, shared between the async tasks (which read it: every store
//! keeps its records in memory) and a dedicated writer thread, which applies puts in
//! batches: whatever puts are waiting when it starts a write are committed together
//! (group commit), so that a durable store's disk flush is shared by many records and
//! never runs on an async worker.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use dht_storage::{MemoryStore, Origin, PutOutcome, Record, RecordStore, StoreError, StoreLimits};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

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
    /// Signalled after changes (at most one wakeup kept): what [`Store::changed`] waits for.
    changed: Arc<Notify>,
}

impl Store {
    /// Starts the writer thread over `store`.
    pub(crate) fn new(store: Box<dyn RecordStore>) -> std::io::Result<Store> {
        let shared = Arc::new(Mutex::new(store));
        let changed = Arc::new(Notify::new());
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let writer = std::thread::Builder::new()
            .name("dht-store-writer".into())
            .spawn({
                let (shared, changed) = (shared.clone(), changed.clone());
                move || write_loop(&shared, rx, &changed)
            })?;
        Ok(Store {
            shared,
            writes: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            changed,
        })
    }

    /// Whether the store takes writes: it has not been closed and its writer thread runs.
    pub(crate) fn is_open(&self) -> bool {
        let writing = self
            .writes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|sender| !sender.is_closed());
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        writing && writer.as_ref().is_some_and(|thread| !thread.is_finished())
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
        let changed = self.changed.clone();
        tokio::task::spawn_blocking(move || {
            let mut store = shared.lock().unwrap_or_else(|e| e.into_inner());
            let done = work(store.as_mut());
            changed.notify_one();
            done
        })
        .await
        .ok()
    }

    /// Makes the store's commits durable on disk (its `RecordStore::syncer`) `interval`
    /// after it changed (a batch of puts, or a [`Store::blocking`] run), until `stop`: the
    /// changes of one interval share one sync, an unchanged store is not woken, and the
    /// store stays free for readers and the writer meanwhile.
    pub(crate) async fn sync_after_changes(&self, interval: Duration, stop: &CancellationToken) {
        let Some(syncer) = self.lock().syncer() else {
            return;
        };
        loop {
            tokio::select! {
                () = self.changed.notified() => {}
                () = stop.cancelled() => return,
            }
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = stop.cancelled() => return,
            }
            // Changes made while waiting are in this sync: their wakeup is spent.
            let _ = futures::FutureExt::now_or_never(self.changed.notified());
            let syncer = syncer.clone();
            let synced = tokio::task::spawn_blocking(move || syncer())
                .await
                .unwrap_or_else(|e| Err(StoreError::Backend(format!("sync task failed: {e}"))));
            if let Err(e) = synced {
                // After a failed fsync the OS may have dropped what it could not write,
                // and a later fsync would not say so: from now on every commit waits
                // for the disk, so that nothing acknowledged later can be lost that way.
                error!(
                    error = %e,
                    "the store could not sync to disk: commits since the last sync may be \
                     lost in a power loss; every commit now waits for the disk"
                );
                let every_commit = self
                    .blocking(|store| store.set_sync_every_commit(true))
                    .await;
                if let Some(Err(e)) = every_commit {
                    error!(error = %e, "the store cannot make its commits wait for the disk");
                }
                return;
            }
        }
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
        let _ = tokio::task::spawn_blocking(move || {
            // Closing checkpoints the log anyway; synced first so that a failure shows.
            if let Some(Err(e)) = old.syncer().map(|sync| sync()) {
                warn!(error = %e, "the store could not sync to disk at close");
            }
            drop(old);
        })
        .await;
    }
}

fn closed() -> StoreError {
    StoreError::Backend("the store is closed".into())
}

fn write_loop(
    shared: &Mutex<Box<dyn RecordStore>>,
    mut rx: mpsc::Receiver<(Record, Origin, Reply)>,
    changed: &Notify,
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
        changed.notify_one();
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

    /// A memory store that counts the runs of its syncer.
    struct Flushes {
        inner: MemoryStore,
        syncs: Arc<std::sync::atomic::AtomicUsize>,
        /// Whether its syncs fail.
        failing: bool,
        /// What `set_sync_every_commit` was last told.
        every_commit: Arc<Mutex<Option<bool>>>,
    }

    impl RecordStore for Flushes {
        fn put_from(
            &mut self,
            record: Record,
            now: u64,
            origin: Origin,
        ) -> Result<PutOutcome, StoreError> {
            self.inner.put_from(record, now, origin)
        }
        fn usage_of(&self, peer: &Key) -> (usize, usize) {
            self.inner.usage_of(peer)
        }
        fn get(&self, key: &Key, now: u64) -> Result<Option<Record>, StoreError> {
            self.inner.get(key, now)
        }
        fn remove(&mut self, key: &Key) -> Result<Option<Record>, StoreError> {
            self.inner.remove(key)
        }
        fn purge_expired(&mut self, now: u64) -> Result<usize, StoreError> {
            self.inner.purge_expired(now)
        }
        fn records(&self, now: u64) -> Result<Vec<Record>, StoreError> {
            self.inner.records(now)
        }
        fn syncer(&self) -> Option<dht_storage::Syncer> {
            let (syncs, failing) = (self.syncs.clone(), self.failing);
            Some(Arc::new(move || {
                syncs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if failing {
                    return Err(StoreError::Backend("EIO".into()));
                }
                Ok(())
            }))
        }
        fn set_sync_every_commit(&mut self, on: bool) -> Result<(), StoreError> {
            *self.every_commit.lock().unwrap() = Some(on);
            Ok(())
        }
        fn len(&self) -> usize {
            self.inner.len()
        }
        fn bytes(&self) -> usize {
            self.inner.bytes()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn changes_are_synced_after_the_interval_and_an_idle_store_is_left_alone() {
        let syncs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = || syncs.load(std::sync::atomic::Ordering::SeqCst);
        let store = Arc::new(
            Store::new(Box::new(Flushes {
                inner: MemoryStore::default(),
                syncs: syncs.clone(),
                failing: false,
                every_commit: Arc::default(),
            }))
            .expect("writer"),
        );
        let stop = CancellationToken::new();
        let interval = Duration::from_secs(1);
        let syncer_task = tokio::spawn({
            let (store, stop) = (store.clone(), stop.clone());
            async move { store.sync_after_changes(interval, &stop).await }
        });
        // Idle: no sync, however long.
        tokio::time::sleep(interval * 10).await;
        assert_eq!(counted(), 0);
        // A put is synced `interval` after it (and no sooner).
        let started = tokio::time::Instant::now();
        store.put(record(0), Origin::Local).await.expect("put");
        let synced = tokio::time::timeout(interval * 5, async {
            while counted() == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(synced.is_ok(), "no sync after a put");
        assert!(started.elapsed() >= interval);
        assert_eq!(counted(), 1);
        // Changes within one interval share one sync (signalled here without the writer
        // thread, whose replies paused time would not wait for).
        for _ in 0..3 {
            store.changed.notify_one();
            tokio::time::sleep(interval / 10).await;
        }
        tokio::time::sleep(interval * 3).await;
        assert_eq!(counted(), 2, "one sync for three changes");
        // Idle again: nothing more.
        tokio::time::sleep(interval * 10).await;
        assert_eq!(counted(), 2);
        stop.cancel();
        syncer_task.await.expect("the syncer_task stops");
        store.close().await;
        assert_eq!(counted(), 3, "and one more at close");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_sync_makes_every_commit_wait_for_the_disk() {
        let syncs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let every_commit = Arc::new(Mutex::new(None));
        let store = Arc::new(
            Store::new(Box::new(Flushes {
                inner: MemoryStore::default(),
                syncs: syncs.clone(),
                failing: true,
                every_commit: every_commit.clone(),
            }))
            .expect("writer"),
        );
        let stop = CancellationToken::new();
        let syncer_task = tokio::spawn({
            let (store, stop) = (store.clone(), stop.clone());
            async move {
                store
                    .sync_after_changes(Duration::from_secs(1), &stop)
                    .await
            }
        });
        store.put(record(1), Origin::Local).await.expect("put");
        // The loop ends by itself after the failure, having switched the store.
        tokio::time::timeout(Duration::from_secs(60), syncer_task)
            .await
            .expect("the sync loop stops after a failed sync")
            .expect("join");
        assert_eq!(syncs.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(*every_commit.lock().unwrap(), Some(true));
        stop.cancel();
        store.close().await;
    }
}
