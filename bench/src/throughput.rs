//! One node's API throughput: `c` client connections, one request in flight on each,
//! for a fixed time.
//!
//! DHT_PUT has no answer, so a PUT's acceptance is made visible by a DHT_GET of a key
//! the node holds locally sent right after it on the same connection: the server reads
//! a connection's requests in order and stores a PUT (committed, in the durable store)
//! before it reads the next request, so that GET's answer means the PUT was accepted.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dht_core::Key;
use rand::RngCore;

use crate::client::{ANSWER_TIMEOUT, ApiClient};

/// What the connections send.
#[derive(Debug, Clone)]
pub enum Workload {
    /// DHT_GET of these keys, in turn.
    Get(Vec<Key>),
    /// DHT_PUT of fresh random keys (100-byte values, replication 3), each followed by a
    /// DHT_GET of `barrier`, a key the node holds locally.
    Put {
        /// The key whose GET confirms the PUT before it.
        barrier: Key,
    },
}

/// What a throughput run achieved.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Requests answered (GETs that found the value; PUTs accepted).
    pub done: usize,
    /// GETs answered DHT_FAILURE (for PUTs: barrier GETs that failed).
    pub failed: usize,
    /// From the common start to the last answer.
    pub elapsed: Duration,
    /// Keys PUT (for the confirmation afterwards).
    pub put_keys: Vec<Key>,
    /// The first client error, if a connection broke.
    pub error: Option<String>,
}

impl Outcome {
    /// Requests done per second.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.done as f64 / secs
        } else {
            0.0
        }
    }
}

/// Runs `workload` on `connections` connections to `api` for `duration`.
pub async fn run(
    api: SocketAddr,
    connections: usize,
    duration: Duration,
    workload: &Workload,
) -> anyhow::Result<Outcome> {
    let mut clients = Vec::with_capacity(connections);
    for _ in 0..connections {
        clients.push(ApiClient::connect(api).await?);
    }
    let start = Instant::now();
    let end = start + duration;
    let tasks = clients.into_iter().enumerate().map(|(c, client)| {
        let workload = workload.clone();
        // One time limit for the whole series: every answer's wait is within it.
        let limit = duration + ANSWER_TIMEOUT;
        tokio::spawn(async move {
            tokio::time::timeout(limit, connection(client, c, end, workload))
                .await
                .unwrap_or_else(|_| Outcome {
                    error: Some(format!("no answer within {ANSWER_TIMEOUT:?}")),
                    ..Outcome::default()
                })
        })
    });
    let mut outcome = Outcome::default();
    for task in futures::future::join_all(tasks).await {
        let part = task.map_err(|e| anyhow::anyhow!("client task failed: {e}"))?;
        outcome.done += part.done;
        outcome.failed += part.failed;
        outcome.put_keys.extend(part.put_keys);
        if outcome.error.is_none() {
            outcome.error = part.error;
        }
    }
    outcome.elapsed = start.elapsed();
    Ok(outcome)
}

/// One connection's loop: a request, its answer, the next, until `end`.
async fn connection(
    mut client: ApiClient,
    number: usize,
    end: Instant,
    workload: Workload,
) -> Outcome {
    let mut out = Outcome::default();
    let mut turn = number.wrapping_mul(7919);
    while Instant::now() < end {
        let step = match &workload {
            Workload::Get(keys) if keys.is_empty() => break,
            Workload::Get(keys) => {
                turn = turn.wrapping_add(1);
                client
                    .get_unbounded(keys[turn % keys.len()])
                    .await
                    .map(|v| (v.is_some(), None))
            }
            Workload::Put { barrier } => {
                let key = Key::random(&mut rand::thread_rng());
                let mut value = vec![0u8; 100];
                rand::thread_rng().fill_bytes(&mut value);
                match client.put(key, Bytes::from(value), 3).await {
                    Ok(()) => client
                        .get_unbounded(*barrier)
                        .await
                        .map(|v| (v.is_some(), Some(key))),
                    Err(e) => Err(e),
                }
            }
        };
        match step {
            Ok((true, key)) => {
                out.done += 1;
                out.put_keys.extend(key);
            }
            Ok((false, key)) => {
                out.failed += 1;
                // The PUT was read before the failed barrier GET: it was accepted too.
                if let Some(key) = key {
                    out.done += 1;
                    out.put_keys.push(key);
                }
            }
            Err(e) => {
                out.error = Some(format!("{e:#}"));
                break;
            }
        }
    }
    out
}
