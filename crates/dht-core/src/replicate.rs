//! Periodic replication, on a schedule and a task of its own (liveness pings and bucket
//! refresh never wait for it): every record held is stored again on the `r` closest
//! live nodes to its key.
//!
//! A round costs one lookup per key **region** it holds records in, not one per
//! record. A region is the set of keys sharing their first `L` bits, where `L` is two
//! bits deeper than the prefix within which this node's own `k` closest contacts lie:
//! a region then holds about `k / 4` nodes. In the XOR metric every node inside a
//! region is closer to each key of the region than any node outside it, so the `r`
//! closest nodes of every key of a region (`r <= k / 4`) are among the `k` closest nodes
//! of any one of its keys, which one lookup finds. Records whose replication is larger
//! are looked up one by one. A node holds records mostly near its own id, so a round
//! usually costs a few lookups whatever the number of records.
//!
//! A round has a time budget (half the replicate interval): at the budget it starts no
//! more records (in a region as between regions), and the next round, a tenth of the
//! interval later, resumes at the first key not done. STOREs run [`REPLICATION_PARALLELISM`] at a time
//! and regions [`REGIONS_AT_ONCE`] at a time.

use std::sync::Arc;

use dht_id::Key;
use dht_routing::Contact;
use dht_storage::Record;
use futures::StreamExt;
use futures::stream::{FuturesOrdered, FuturesUnordered};
use tracing::{Instrument, debug};

use crate::activity::UpkeepKind;
use crate::node::{Inner, lock, mono_now};
use crate::stats::Counters;

/// Records replicated at once.
pub(crate) const REPLICATION_PARALLELISM: usize = 8;
/// Regions whose lookups run at once.
const REGIONS_AT_ONCE: usize = 4;
/// Bits a region's prefix goes beyond the prefix of this node's `k` closest contacts:
/// 2 makes regions of about `k / 4` nodes.
const REGION_EXTRA_BITS: u32 = 2;
/// Share of the replicate interval a round may take before it stops, to resume later.
const ROUND_BUDGET: f64 = 0.5;
/// A round that stopped at its budget resumes after this share of the interval.
const RESUME_AFTER: f64 = 0.1;

/// What the replication of a region did.
#[derive(Debug, Default)]
struct Done {
    /// Records replicated (tried).
    records: usize,
    /// Of those, how many reached no replica.
    failed: usize,
    /// The first record not started (the deadline came), if any.
    rest: Option<Key>,
}

/// How a round ended.
#[derive(Debug, PartialEq, Eq)]
enum RoundEnd {
    /// Every record was replicated (or tried).
    Complete,
    /// The budget ran out: the next round resumes at this key, the first not done.
    Stopped(Key),
}

impl Inner {
    /// Starts the replication task; it ends with the node.
    pub(crate) fn spawn_replication(self: &Arc<Self>) {
        let inner = self.clone();
        self.tasks
            .spawn(async move { inner.replicate().await }.instrument(self.span.clone()));
    }

    async fn replicate(self: Arc<Self>) {
        let interval = self.config.replicate_interval;
        let mut wait = self.jittered(interval);
        let mut resume_at = None;
        loop {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.shutdown.cancelled() => return,
            }
            match self.replicate_round(resume_at.take()).await {
                RoundEnd::Complete => wait = self.jittered(interval),
                RoundEnd::Stopped(next) => {
                    resume_at = Some(next);
                    wait = interval.mul_f64(RESUME_AFTER);
                }
            }
        }
    }

    /// Stores every record held again on the `r` closest live nodes to its key,
    /// starting at `resume_at` (and wrapping around). The record travels as it is: its
    /// expiry and version never change on the way.
    async fn replicate_round(self: &Arc<Self>, resume_at: Option<Key>) -> RoundEnd {
        let started = mono_now();
        let unix_now = self.unix_now();
        let _ = self.store.purge(unix_now).await;
        let mut records = match self.store().records(unix_now) {
            Ok(records) => records,
            Err(e) => {
                debug!(error = %e, "cannot list records to replicate");
                return RoundEnd::Complete;
            }
        };
        // Records a peer stored here within the interval are that peer's to replicate.
        {
            let mut received = lock(&self.received);
            let recent = received.recent(mono_now(), self.config.replicate_interval);
            records.retain(|record| !recent.contains_key(&record.key));
        }
        if let Some(next) = resume_at {
            let split = records.partition_point(|record| record.key < next);
            records.rotate_left(split);
        }
        let count = records.len();
        let regions = regions(records, self.region_bits(), self.batch_replication());
        debug!(records = count, regions = regions.len(), "replicating");
        let deadline = started + self.config.replicate_interval.mul_f64(ROUND_BUDGET);
        let mut regions = regions.into_iter().peekable();
        let mut work = FuturesOrdered::new();
        let (mut replicated, mut unreplicated) = (0, 0);
        // The first key not done, in the earliest region that stopped at the deadline.
        let mut resume = None;
        loop {
            while work.len() < REGIONS_AT_ONCE
                && !self.shutdown.is_cancelled()
                && mono_now() < deadline
            {
                let Some(region) = regions.next() else { break };
                work.push_back(self.replicate_region(region, deadline));
            }
            let Some(done) = work.next().await else {
                break;
            };
            replicated += done.records;
            unreplicated += done.failed;
            resume = resume.or(done.rest);
        }
        let resume = resume.or_else(|| regions.peek().and_then(|r| r.first()).map(|r| r.key));
        let end = resume.map_or(RoundEnd::Complete, RoundEnd::Stopped);
        if self.shutdown.is_cancelled() {
            return RoundEnd::Complete;
        }
        self.upkeep_round(UpkeepKind::Replication, started, replicated, unreplicated);
        end
    }

    /// Replicates the records of one region (all of one key prefix, or a record of its
    /// own): one lookup for all. Starts no record after `deadline`. Returns how many
    /// it replicated and how many of those reached no replica, and the first record not
    /// started, if any.
    async fn replicate_region(
        self: &Arc<Self>,
        region: Vec<Record>,
        deadline: std::time::Instant,
    ) -> Done {
        Counters::bump(&self.counters.replication_lookups);
        if let [record] = region.as_slice() {
            let failed = usize::from(self.store_on_closest(record, true, None).await == 0);
            return Done {
                records: 1,
                failed,
                rest: None,
            };
        }
        let Some(first) = region.first() else {
            return Done::default();
        };
        let found = self.lookup(first.key, false).await;
        let closest: Arc<Vec<Contact>> = Arc::new(found.result.closest);
        let mut records = region.into_iter().peekable();
        let mut work = FuturesUnordered::new();
        let mut done = Done::default();
        loop {
            while work.len() < REPLICATION_PARALLELISM
                && !self.shutdown.is_cancelled()
                && mono_now() < deadline
            {
                let Some(record) = records.next() else { break };
                let (inner, closest) = (self.clone(), closest.clone());
                work.push(async move {
                    let mut candidates: Vec<Contact> = closest.to_vec();
                    candidates.sort_by_key(|c| c.id.distance(&record.key));
                    let wanted = usize::from(record.replication);
                    inner.store_on(&record, &candidates, wanted, true).await
                });
            }
            let Some(replicas) = work.next().await else {
                break;
            };
            done.records += 1;
            done.failed += usize::from(replicas == 0);
        }
        done.rest = records.peek().map(|r| r.key);
        done
    }

    /// The prefix length of a region: [`REGION_EXTRA_BITS`] beyond the common prefix of
    /// this node's id and its `k`-th closest contact; 0 (one region) while the table
    /// holds fewer than `k` contacts, when one lookup finds every node known.
    fn region_bits(&self) -> u32 {
        let k = self.config.k;
        let closest = self.routing().closest(&self.id, k);
        match closest.get(k.saturating_sub(1)) {
            Some(kth) if closest.len() >= k => {
                kth.id.distance(&self.id).leading_zeros() + REGION_EXTRA_BITS
            }
            _ => 0,
        }
    }

    /// The largest replication replicated region by region: a region holds about
    /// `k / 4` nodes (at least 1).
    fn batch_replication(&self) -> u8 {
        u8::try_from((self.config.k / 4).max(1)).unwrap_or(u8::MAX)
    }
}

/// Splits `records` (in key order, possibly rotated) into runs of consecutive records
/// whose keys share their first `bits` bits; a record whose replication is above
/// `batch_max` is a run of its own.
fn regions(records: Vec<Record>, bits: u32, batch_max: u8) -> Vec<Vec<Record>> {
    let mut regions: Vec<Vec<Record>> = Vec::new();
    let mut current: Vec<Record> = Vec::new();
    for record in records {
        if record.replication > batch_max {
            regions.push(vec![record]);
            continue;
        }
        let same = current
            .first()
            .is_some_and(|first| first.key.distance(&record.key).leading_zeros() >= bits);
        if !same && !current.is_empty() {
            regions.push(std::mem::take(&mut current));
        }
        current.push(record);
    }
    if !current.is_empty() {
        regions.push(current);
    }
    regions
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn record(first_byte: u8, last_byte: u8, replication: u8) -> Record {
        let mut key = [0u8; 32];
        key[0] = first_byte;
        key[31] = last_byte;
        Record {
            key: Key::from_bytes(key),
            value: Bytes::from_static(b"v"),
            expires_at: 10,
            replication,
            version: 1,
        }
    }

    fn shape(regions: &[Vec<Record>]) -> Vec<usize> {
        regions.iter().map(Vec::len).collect()
    }

    #[test]
    fn records_sharing_a_prefix_form_one_region() {
        // First bytes 0x00, 0x01 share 7 bits; 0x80 shares none with them.
        let records = vec![
            record(0x00, 1, 3),
            record(0x00, 2, 3),
            record(0x01, 1, 3),
            record(0x80, 1, 3),
        ];
        assert_eq!(shape(&regions(records.clone(), 8, 5)), [2, 1, 1]);
        assert_eq!(shape(&regions(records.clone(), 7, 5)), [3, 1]);
        assert_eq!(shape(&regions(records.clone(), 1, 5)), [3, 1]);
        assert_eq!(shape(&regions(records, 0, 5)), [4]);
    }

    #[test]
    fn a_record_with_a_large_replication_is_looked_up_alone() {
        let records = vec![record(0x00, 1, 3), record(0x00, 2, 9), record(0x00, 3, 3)];
        assert_eq!(shape(&regions(records, 0, 5)), [1, 2]);
    }
}
