//! The threads that commit the record stores' puts, shared by every node of the process.
//!
//! A store's puts are committed off the async workers, in batches (group commit). Each
//! node used to have a writer thread of its own; a process that embeds many nodes (the
//! benchmark's workers, a simulation) then woke a different thread for nearly every
//! STORE, and at 100 nodes per process half of a PUT's context switches and futex calls
//! were those wakeups. Here a few threads (one per core, at most [`MAX_THREADS`]) serve
//! all stores: each store is assigned to one of them for its life, so its puts are still
//! applied in the order they were queued, and a busy thread takes whatever is queued for
//! all its stores in one go, committing each store's share as one batch.
//!
//! A batch is applied in memory under the store's lock and committed without it
//! (`RecordStore::stage_many`): readers never wait for the disk.
//!
//! A store that panics is marked broken (its puts fail from then on); the thread and
//! the other stores carry on.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use dht_storage::{Origin, PutOutcome, Record, RecordStore, StoreError};
use tokio::sync::{Notify, OwnedSemaphorePermit, oneshot};
use tracing::error;

use crate::env::{Clock, secs};

/// Writer threads at most, whatever the number of cores.
const MAX_THREADS: usize = 4;
/// Queued jobs one thread takes at once at most.
const BATCH: usize = 256;

pub(crate) type Reply = oneshot::Sender<Result<PutOutcome, StoreError>>;

/// One store, as its writer thread and its readers share it.
pub(crate) struct Core {
    records: Mutex<Box<dyn RecordStore>>,
    /// Signalled after changes (at most one wakeup kept).
    pub(crate) changed: Notify,
    /// Set when the store panicked: it takes no more puts.
    broken: AtomicBool,
    /// The node's wall clock: puts are applied at its time.
    clock: Arc<dyn Clock>,
}

impl Core {
    pub(crate) fn new(records: Box<dyn RecordStore>, clock: Arc<dyn Clock>) -> Core {
        Core {
            records: Mutex::new(records),
            changed: Notify::new(),
            broken: AtomicBool::new(false),
            clock,
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Box<dyn RecordStore>> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Acquire)
    }
}

/// Work for a writer thread.
pub(crate) enum Job {
    /// A put, with its place in the store's queue (freed once it is taken).
    Put {
        core: Arc<Core>,
        record: Record,
        origin: Origin,
        reply: Reply,
        permit: OwnedSemaphorePermit,
    },
    /// Answered once every job queued before it has been applied.
    Flush(oneshot::Sender<()>),
    /// A purge of the records expired at `now`, applied after every put queued before
    /// it and before every put queued after it (`Core::purge_staged`).
    Purge {
        core: Arc<Core>,
        now: u64,
        reply: oneshot::Sender<Result<usize, StoreError>>,
    },
}

/// A writer thread's queue.
pub(crate) type Queue = Sender<Job>;

/// The process's writer threads, each started when the first store is assigned to it.
struct Writers {
    threads: Vec<Mutex<Option<Queue>>>,
    next: AtomicUsize,
}

/// The queue of the writer thread a new store is to use (round robin).
pub(crate) fn assign() -> std::io::Result<Queue> {
    static WRITERS: OnceLock<Writers> = OnceLock::new();
    let writers = WRITERS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Writers {
            threads: (0..cores.clamp(1, MAX_THREADS))
                .map(|_| Mutex::new(None))
                .collect(),
            next: AtomicUsize::new(0),
        }
    });
    let n = writers.next.fetch_add(1, Ordering::Relaxed) % writers.threads.len();
    let mut slot = writers.threads[n].lock().unwrap_or_else(|e| e.into_inner());
    if let Some(queue) = slot.as_ref() {
        return Ok(queue.clone());
    }
    let (queue, jobs) = channel();
    std::thread::Builder::new()
        .name(format!("dht-store-writer-{n}"))
        .spawn(move || run(&jobs))?;
    *slot = Some(queue.clone());
    Ok(queue)
}

fn run(jobs: &Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        apply(batch);
    }
}

/// One store's share of a batch.
struct Group {
    core: Arc<Core>,
    puts: Vec<(Record, Origin)>,
    replies: Vec<Reply>,
}

/// Applies a batch: each store's puts as one `put_many`, in the order they were queued;
/// a flush is answered after everything before it.
fn apply(batch: Vec<Job>) {
    let mut groups: Vec<Group> = Vec::new();
    for job in batch {
        match job {
            Job::Put {
                core,
                record,
                origin,
                reply,
                permit,
            } => {
                drop(permit);
                let group = match groups.iter().position(|g| Arc::ptr_eq(&g.core, &core)) {
                    Some(at) => &mut groups[at],
                    None => {
                        groups.push(Group {
                            core,
                            puts: Vec::new(),
                            replies: Vec::new(),
                        });
                        groups.last_mut().expect("just pushed")
                    }
                };
                group.puts.push((record, origin));
                group.replies.push(reply);
            }
            Job::Flush(done) => {
                commit(groups.drain(..));
                let _ = done.send(());
            }
            Job::Purge { core, now, reply } => {
                commit(groups.drain(..));
                let purged = catch_unwind(AssertUnwindSafe(|| core.purge_staged(now)))
                    .unwrap_or_else(|_| Err(StoreError::Backend("the purge panicked".into())));
                let _ = reply.send(purged);
            }
        }
    }
    commit(groups.drain(..));
}

fn commit(groups: impl Iterator<Item = Group>) {
    for Group {
        core,
        puts,
        replies,
    } in groups
    {
        let n = puts.len();
        for (reply, result) in replies.into_iter().zip(core.apply(puts, n)) {
            let _ = reply.send(result);
        }
    }
}

impl Core {
    /// Applies `puts` in memory under the store's lock, then commits their disk half
    /// without it: readers (GETs, FIND_VALUEs, a STORE's checks) never wait for a
    /// commit, an `fsync` or a checkpoint. A failed commit withdraws the batch, and every
    /// put of it fails with that error.
    fn apply_staged(
        &self,
        puts: Vec<(Record, Origin)>,
        now: u64,
    ) -> Vec<Result<PutOutcome, StoreError>> {
        let (results, staged) = self.lock().stage_many(puts, now);
        let Some(mut staged) = staged else {
            return results;
        };
        match staged.commit() {
            Ok(()) => results,
            Err(e) => {
                error!(error = %e, "a batch of puts failed to commit: withdrawn");
                let n = results.len();
                self.lock().unstage(staged);
                vec![Err(e); n]
            }
        }
    }

    /// Purges the records expired at `now`: out of memory under the store's lock, off
    /// the disk without it (see [`Core::apply_staged`]). How many.
    pub(crate) fn purge_staged(&self, now: u64) -> Result<usize, StoreError> {
        let (purged, staged) = self.lock().stage_purge(now)?;
        if let Some(mut staged) = staged {
            if let Err(e) = staged.commit() {
                self.lock().unstage(staged);
                return Err(e);
            }
        }
        self.changed.notify_one();
        Ok(purged)
    }

    /// Applies `puts` (`n` of them) at the clock's time, unless the store has failed;
    /// a store that panics is marked failed and fails these puts and every later one.
    pub(crate) fn apply(
        &self,
        puts: Vec<(Record, Origin)>,
        n: usize,
    ) -> Vec<Result<PutOutcome, StoreError>> {
        let results = if self.is_broken() {
            None
        } else {
            let now = secs(self.clock.unix_micros());
            catch_unwind(AssertUnwindSafe(|| self.apply_staged(puts, now))).ok()
        };
        self.changed.notify_one();
        results.unwrap_or_else(|| {
            if !self.broken.swap(true, Ordering::AcqRel) {
                error!("the record store panicked: it takes no more puts");
            }
            (0..n)
                .map(|_| {
                    Err(StoreError::Backend(
                        "the record store failed (it panicked)".into(),
                    ))
                })
                .collect()
        })
    }
}
