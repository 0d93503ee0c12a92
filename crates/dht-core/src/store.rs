//! The node's record store, shared between the async tasks (which read it: every store
//! keeps its records in memory) and a writer thread (`writers.rs`, shared by the
//! process's nodes), which applies puts in batches: whatever puts are waiting when it
//! starts a write are committed together (group commit), so that a durable store's disk
//! flush is shared by many records and never runs on an async worker.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use dht_storage::{MemoryStore, Origin, PutOutcome, Record, RecordStore, StoreError, StoreLimits};
use tokio::sync::{Semaphore, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use crate::env::Clock;
use crate::writers::{self, Core, Job, Queue};

/// Puts queued for the writer at most; further senders wait (back-pressure).
const WRITE_QUEUE: usize = 1024;

/// The shared store and its writer.
pub(crate) struct Store {
    core: Arc<Core>,
    writes: Mutex<Writes>,
    /// Places in the writer's queue.
    queued: Arc<Semaphore>,
}

/// Where a store's puts are applied.
enum Writes {
    /// On a writer thread, through its queue (a store that does file IO).
    Thread(Queue),
    /// In place, on the caller's task (a store that only changes memory).
    InPlace,
    /// Nowhere: the store is closed.
    Closed,
}

impl Store {
    /// Assigns `store` to one of the process's writer threads, or, if it does no file IO
    /// ([`RecordStore::does_io`]), has its puts applied in place; either way at
    /// `clock`'s time (what has expired by then is purged to make room).
    pub(crate) fn with_clock(
        store: Box<dyn RecordStore>,
        clock: Arc<dyn Clock>,
    ) -> std::io::Result<Store> {
        let writes = if store.does_io() {
            Writes::Thread(writers::assign()?)
        } else {
            Writes::InPlace
        };
        Ok(Store {
            core: Arc::new(Core::new(store, clock)),
            writes: Mutex::new(writes),
            queued: Arc::new(Semaphore::new(WRITE_QUEUE)),
        })
    }

    fn writes(&self) -> MutexGuard<'_, Writes> {
        self.writes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the store takes writes: it has not been closed and has not failed.
    pub(crate) fn is_open(&self) -> bool {
        !matches!(*self.writes(), Writes::Closed) && !self.core.is_broken()
    }

    /// Whether the store's changes are applied in place (it does no file IO).
    fn in_place(&self) -> bool {
        matches!(*self.writes(), Writes::InPlace)
    }

    /// The store, for reads and for quick in-memory operations.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Box<dyn RecordStore>> {
        self.core.lock()
    }

    /// Applies a put through the writer and waits until it is committed (or, for a
    /// store that does no file IO, applies it at once).
    pub(crate) async fn put(
        &self,
        record: Record,
        origin: Origin,
    ) -> Result<PutOutcome, StoreError> {
        if self.in_place() {
            let applied = self.core.apply(vec![(record, origin)], 1);
            return applied.into_iter().next().unwrap_or_else(|| Err(closed()));
        }
        let permit = self
            .queued
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| closed())?;
        let (reply, answer) = oneshot::channel();
        {
            // Queued under the lock: `close` queues its flush after every put that got in.
            let writes = self.writes();
            let Writes::Thread(queue) = &*writes else {
                return Err(closed());
            };
            let job = Job::Put {
                core: self.core.clone(),
                record,
                origin,
                reply,
                permit,
            };
            queue.send(job).map_err(|_| closed())?;
        }
        answer.await.map_err(|_| closed())?
    }

    /// Purges the records expired at `now`; readers never wait for its disk half. For a
    /// store that does file IO it runs on the store's writer thread, in its place among
    /// the puts queued (a DELETE committed after a later PUT of the same key would lose
    /// that PUT on disk). How many, `None` if the store is closed.
    pub(crate) async fn purge(&self, now: u64) -> Option<Result<usize, StoreError>> {
        if self.in_place() {
            return Some(self.core.purge_staged(now));
        }
        let (reply, answer) = oneshot::channel();
        {
            let writes = self.writes();
            let Writes::Thread(queue) = &*writes else {
                return None;
            };
            let job = Job::Purge {
                core: self.core.clone(),
                now,
                reply,
            };
            queue.send(job).ok()?;
        }
        answer.await.ok()
    }

    /// Runs `work` on the store off the async workers (for operations that may write:
    /// purges, removals), or in place for a store that does no file IO.
    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut dyn RecordStore) -> T + Send + 'static,
    ) -> Option<T> {
        if self.in_place() {
            let done = work(self.core.lock().as_mut());
            self.core.changed.notify_one();
            return Some(done);
        }
        let core = self.core.clone();
        tokio::task::spawn_blocking(move || {
            let done = work(core.lock().as_mut());
            core.changed.notify_one();
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
                () = self.core.changed.notified() => {}
                () = stop.cancelled() => return,
            }
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = stop.cancelled() => return,
            }
            // Changes made while waiting are in this sync: their wakeup is spent.
            let _ = futures::FutureExt::now_or_never(self.core.changed.notified());
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

    /// Stops taking puts and waits until those already queued are applied: the store (a
    /// database file) is closed when this returns.
    pub(crate) async fn close(&self) {
        let flushed = match std::mem::replace(&mut *self.writes(), Writes::Closed) {
            Writes::Thread(queue) => {
                let (done, flushed) = oneshot::channel();
                let _ = queue.send(Job::Flush(done));
                Some(flushed)
            }
            Writes::InPlace | Writes::Closed => None,
        };
        if let Some(flushed) = flushed {
            let _ = flushed.await;
        }
        self.queued.close();
        // Drop the store itself (closing its database file) while the node's handle may
        // live on: a restarted node in the same process can open it again.
        let closed: Box<dyn RecordStore> = Box::new(MemoryStore::new(StoreLimits {
            max_records: 0,
            max_bytes: 0,
            ..StoreLimits::default()
        }));
        let old = std::mem::replace(&mut *self.lock(), closed);
        if !old.does_io() {
            return;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::{Clock, SystemClock};

    impl Store {
        fn new(store: Box<dyn RecordStore>) -> std::io::Result<Store> {
            Store::with_clock(store, Arc::new(SystemClock))
        }
    }

    fn unix_now() -> u64 {
        crate::env::secs(SystemClock.unix_micros())
    }
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

    /// The hourly purge and a put of a key it purges, queued in that order, reach the
    /// disk in that order. Run as a blocking task of its own (as it once was), the
    /// purge's DELETE could be committed after the put: the put was then lost at the
    /// next start.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_purge_and_a_later_put_of_its_key_reach_the_disk_in_order() {
        use dht_storage::{DurableStore, StorageKey, StoreLimits};
        let dir = std::env::temp_dir().join(format!("dht-purge-order-{}", rand::random::<u64>()));
        let key = || StorageKey::from_bytes([7; 32]);
        let open = || {
            DurableStore::open(&dir, key(), StoreLimits::default())
                .expect("open")
                .0
        };
        for round in 0..20u8 {
            let store = Store::new(Box::new(open())).expect("writer");
            let now = unix_now();
            let written = |version: u64, expires_at: u64| Record {
                key: Key::from_bytes([round; 32]),
                value: Bytes::from(vec![round; 8]),
                expires_at,
                replication: 3,
                version,
            };
            store
                .put(written(1, now + 50), Origin::Local)
                .await
                .expect("put");
            let later = written(2, now + 1000);
            let (purged, put) = tokio::join!(
                store.purge(now + 100),
                store.put(later.clone(), Origin::Local)
            );
            assert_eq!(purged.map(|p| p.ok()), Some(Some(1)));
            assert_eq!(put, Ok(PutOutcome::Inserted));
            store.close().await;
            let reopened = open();
            assert_eq!(
                reopened.get(&later.key, now).expect("read"),
                Some(later),
                "round {round}: the put after the purge is gone from the disk"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn puts_are_applied_in_batches_and_visible_to_readers() {
        let store = Arc::new(Store::new(Box::new(Fake::default())).expect("writer"));
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

    /// Names of this process's threads.
    fn thread_names() -> Vec<String> {
        std::fs::read_dir("/proc/self/task")
            .expect("/proc/self/task")
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .map(|name| name.trim().to_owned())
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_stores_share_a_few_writer_threads_and_keep_their_order() {
        let logs: Vec<Arc<Mutex<Vec<u64>>>> = (0..40).map(|_| Arc::default()).collect();
        let stores: Vec<_> = logs
            .iter()
            .map(|seen| {
                let store = Fake {
                    seen: seen.clone(),
                    ..Fake::default()
                };
                Arc::new(Store::new(Box::new(store)).expect("writer"))
            })
            .collect();
        // Each store is sent versions 1..=20 of its own keys, queued in that order (the
        // first poll of each put queues it), all stores at once.
        let all = stores.iter().enumerate().map(|(i, store)| async move {
            let puts = (1..=20u64).map(|version| {
                let record = Record {
                    version,
                    ..record(u8::try_from(version).expect("small"))
                };
                store.put(record, Origin::Local)
            });
            for stored in futures::future::join_all(puts).await {
                stored.unwrap_or_else(|e| panic!("store {i}: {e}"));
            }
        });
        futures::future::join_all(all).await;
        for seen in &logs {
            assert_eq!(*seen.lock().unwrap(), (1..=20).collect::<Vec<_>>());
        }
        let writers = thread_names()
            .iter()
            .filter(|name| name.starts_with("dht-store-write"))
            .count();
        assert!(
            (1..=4).contains(&writers),
            "{writers} writer threads for 40 stores"
        );
        for store in &stores {
            store.close().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_that_panics_fails_alone() {
        // More stores than writer threads: some healthy store shares the broken one's.
        let broken = Store::new(Box::new(Fake {
            panics: true,
            ..Fake::default()
        }))
        .expect("writer");
        let healthy: Vec<_> = (0..8)
            .map(|_| Store::new(Box::new(Fake::default())).expect("writer"))
            .collect();
        assert!(broken.put(record(1), Origin::Local).await.is_err());
        assert!(
            !broken.is_open(),
            "a store that panicked says it is not open"
        );
        assert!(broken.put(record(2), Origin::Local).await.is_err());
        for store in &healthy {
            assert_eq!(
                store.put(record(3), Origin::Local).await.expect("stored"),
                PutOutcome::Inserted
            );
            assert!(store.is_open());
        }
    }

    /// Under tokio's paused time the runtime jumps to its next timer whenever every task
    /// waits: a put that waited for a writer thread would let simulated time run on.
    /// A memory store's puts, purges and close take no time at all.
    #[tokio::test(start_paused = true)]
    async fn a_memory_store_is_changed_in_place_without_simulated_time_passing() {
        // A timer far ahead: where the paused clock would jump to.
        let far = tokio::spawn(tokio::time::sleep(Duration::from_secs(3600)));
        let store = Store::new(Box::new(MemoryStore::default())).expect("store");
        let start = tokio::time::Instant::now();
        for i in 0..20u8 {
            assert_eq!(
                store.put(record(i), Origin::Local).await.expect("stored"),
                PutOutcome::Inserted
            );
        }
        let purged = store.blocking(|s| s.purge_expired(unix_now())).await;
        assert_eq!(purged.map(|p| p.ok()), Some(Some(0)));
        store.close().await;
        assert_eq!(start.elapsed(), Duration::ZERO, "no simulated time passed");
        assert!(
            store.put(record(30), Origin::Local).await.is_err(),
            "closed"
        );
        far.abort();
    }

    /// A memory store that logs the versions put, in order (or panics at a put), and
    /// counts the runs of its syncer (which fail if told so).
    #[derive(Default)]
    struct Fake {
        inner: MemoryStore,
        seen: Arc<Mutex<Vec<u64>>>,
        panics: bool,
        syncs: Arc<std::sync::atomic::AtomicUsize>,
        /// Whether its syncs fail.
        failing: bool,
        /// What `set_sync_every_commit` was last told.
        every_commit: Arc<Mutex<Option<bool>>>,
    }

    impl RecordStore for Fake {
        fn put_from(
            &mut self,
            record: Record,
            now: u64,
            origin: Origin,
        ) -> Result<PutOutcome, StoreError> {
            assert!(!self.panics, "a bug in the store");
            self.seen.lock().unwrap().push(record.version);
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
            Store::new(Box::new(Fake {
                syncs: syncs.clone(),
                ..Fake::default()
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
            store.core.changed.notify_one();
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
            Store::new(Box::new(Fake {
                syncs: syncs.clone(),
                failing: true,
                every_commit: every_commit.clone(),
                ..Fake::default()
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
