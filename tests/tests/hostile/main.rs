//! Hostile input against real nodes on 127.0.0.1, at volume: a thousand malformed
//! messages on the API port and on the peer port (while well-behaved clients and peers
//! are served throughout), a request flood from one address at ten times its rate, too
//! many connections from one address, hundreds of idle, silent and byte-at-a-time
//! connections, a NODES answer full of ids without proof of work, and a check that no
//! stored value ever reaches the logs. Each test asserts what the hostile side sees
//! (closed connections, "overloaded" answers) and what the node counts in
//! `Node::stats()`.
//!
//! Random inputs come from a seeded generator: the seed is printed, and `HOSTILE_SEED`
//! replays it.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use dht_core::Node;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

mod api_port;
mod flood;
mod inputs;
mod logs;
mod peer_port;
mod pow;
mod slow;
mod store_quota;

/// How long any single condition may take on a loaded machine.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// A random generator for `test`, seeded from `HOSTILE_SEED` when set; the seed is
/// printed so that a failure can be replayed.
pub(crate) fn seeded_rng(test: &str) -> StdRng {
    let seed = std::env::var("HOSTILE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("{test}: HOSTILE_SEED={seed}");
    StdRng::seed_from_u64(seed)
}

/// Runs `f` on every item, at most `limit` at a time, each in a task of its own;
/// returns the results in completion order.
pub(crate) async fn bounded<I, F, Fut, R>(limit: usize, items: I, f: F) -> Vec<R>
where
    I: IntoIterator,
    F: Fn(I::Item) -> Fut,
    Fut: Future<Output = R> + Send + 'static,
    R: Send + 'static,
{
    let slots = Arc::new(Semaphore::new(limit));
    let mut tasks = JoinSet::new();
    for item in items {
        let slot = slots.clone().acquire_owned().await.expect("never closed");
        let work = f(item);
        tasks.spawn(async move {
            let result = work.await;
            drop(slot);
            result
        });
    }
    tasks.join_all().await
}

/// Samples a node's open connections every few milliseconds and keeps the maximum.
pub(crate) struct ConnectionSampler {
    stop: Arc<AtomicBool>,
    max: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl ConnectionSampler {
    pub(crate) fn start(node: Arc<Node>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let max = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let (stop, max) = (stop.clone(), max.clone());
            async move {
                while !stop.load(Ordering::Relaxed) {
                    max.fetch_max(node.stats().open_connections, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        });
        ConnectionSampler { stop, max, task }
    }

    /// Stops sampling; returns the largest number of open connections seen.
    pub(crate) async fn finish(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("sampler");
        self.max.load(Ordering::Relaxed)
    }
}
