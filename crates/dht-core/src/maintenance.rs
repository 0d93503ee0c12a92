//! Kademlia upkeep, on timers: liveness pings of quiet contacts (removed after
//! `ping_failures` failures in a row), re-join, refresh of buckets without a recent
//! lookup, the periodic save of the contacts, and the sync to disk of a store whose
//! commits wait for the OS only. Periodic replication runs on its own task
//! (`replicate.rs`); the hand-off of records to new replicas is `handoff.rs`. The decisions about the
//! routing table are made by `dht-routing`; this module runs them.

use std::sync::Arc;
use std::time::Duration;

use dht_routing::Contact;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use rand::Rng;
use tracing::{Instrument, debug};

use crate::activity::UpkeepKind;
use crate::error::RpcError;
use crate::node::{Inner, lock, mono_now};
use crate::rejoin::Rejoin;

/// Contacts pinged at once by one liveness round.
const PINGS_PER_ROUND: usize = 16;
/// How often the routing table's contacts are saved for the next start (and at
/// shutdown): a node that crashes rejoins through contacts at most this old.
const CONTACTS_SAVED_EVERY: Duration = Duration::from_secs(300);
/// Buckets refreshed by one round.
const REFRESHES_PER_ROUND: usize = 4;
/// Contacts closest to this node that are pinged after `neighbour_liveness`: with the
/// node itself, the replicas of most records it holds (r = 3 by default; a record's
/// other replicas are among the nearest few of each of them).
const NEIGHBOURS_WATCHED: usize = 8;

impl Inner {
    /// Starts the upkeep task; it ends with the node.
    pub(crate) fn spawn_maintenance(self: &Arc<Self>) {
        let inner = self.clone();
        self.tasks
            .spawn(async move { inner.maintain().await }.instrument(self.span.clone()));
    }

    /// With commits that wait for the OS only (`DiskSync::Within`), syncs the store to
    /// disk at most `interval` after it changed. An idle store wakes nobody.
    pub(crate) fn spawn_disk_sync(self: &Arc<Self>) {
        let Some(interval) = self.config.storage.sync_interval() else {
            return;
        };
        let inner = self.clone();
        self.tasks.spawn(
            async move {
                inner
                    .store
                    .sync_after_changes(interval, &inner.shutdown)
                    .await;
            }
            .instrument(self.span.clone()),
        );
    }

    async fn maintain(self: Arc<Self>) {
        let shortest = [
            self.config.liveness_interval,
            self.config.neighbour_liveness,
            self.config.refresh_interval,
            self.config.replicate_interval,
        ]
        .into_iter()
        .min()
        .unwrap_or(Duration::from_secs(60));
        let tick = (shortest / 4).clamp(Duration::from_millis(50), Duration::from_secs(10));
        let save_every = CONTACTS_SAVED_EVERY.min(self.config.replicate_interval);
        let mut next_save = tokio::time::Instant::now() + save_every;
        let mut rejoin = Rejoin::new();
        loop {
            tokio::select! {
                () = tokio::time::sleep(tick) => {}
                () = self.shutdown.cancelled() => return,
            }
            self.liveness_round().await;
            self.maybe_back_round().await;
            self.rejoin_round(&mut rejoin).await;
            self.refresh_round().await;
            if tokio::time::Instant::now() >= next_save {
                self.save_contacts().await;
                next_save = tokio::time::Instant::now() + save_every;
            }
        }
    }

    /// An upkeep round of `kind` that began at `started` worked on `items` (none: it
    /// is not recorded), `failed` of them in vain.
    pub(crate) fn upkeep_round(
        &self,
        kind: UpkeepKind,
        started: std::time::Instant,
        items: usize,
        failed: usize,
    ) {
        if items == 0 {
            return;
        }
        let now = mono_now();
        let elapsed = now.saturating_duration_since(started);
        self.metrics.upkeep(kind, elapsed);
        self.activity.round(kind, elapsed, items, failed, now);
    }

    /// Pings contacts that have been quiet for the liveness interval, and the nearest
    /// ones (the neighbours that hold our records) after `neighbour_liveness`.
    async fn liveness_round(self: &Arc<Self>) {
        let started = mono_now();
        let stale = {
            let routing = self.routing();
            let now = mono_now();
            let mut stale =
                routing.stale_neighbours(now, self.config.neighbour_liveness, NEIGHBOURS_WATCHED);
            for contact in
                routing.stale_contacts(now, self.config.liveness_interval, PINGS_PER_ROUND)
            {
                if stale.len() >= PINGS_PER_ROUND {
                    break;
                }
                if !stale.contains(&contact) {
                    stale.push(contact);
                }
            }
            stale
        };
        let pinged = stale.len();
        let mut pings: FuturesUnordered<_> = stale
            .into_iter()
            .map(|contact| async move { (contact, self.ping(contact).await) })
            .collect();
        let mut failed = 0;
        while let Some((contact, outcome)) = pings.next().await {
            failed += usize::from(outcome.is_err());
            self.record_ping(contact, outcome);
        }
        self.upkeep_round(UpkeepKind::Liveness, started, pinged, failed);
    }

    /// Updates the table after a ping: an answer refreshes the contact; the
    /// `ping_failures`-th failure in a row removes it (its bucket's newest replacement
    /// takes its place). Our own limits or shutdown say nothing about the peer.
    pub(crate) fn record_ping(self: &Arc<Self>, contact: Contact, outcome: Result<(), RpcError>) {
        match outcome {
            Ok(()) => {
                lock(&self.ping_failures).remove(&contact.id);
                self.saw(contact, mono_now());
            }
            // Shutting down, our own limits, or a peer that answered with an error:
            // nothing says the peer is gone. (A peer that answers "overloaded" even after
            // the retries counts as failing: it could hold its bucket place for ever
            // without serving anyone. Lookups do not report that answer here.)
            Err(_) if self.shutdown.is_cancelled() => {}
            Err(RpcError::LocalLimit | RpcError::Overloaded | RpcError::Unexpected(_)) => {}
            Err(e) => {
                // Only contacts of the table are counted: the map stays bounded by it.
                if !self.routing().contains(&contact.id) {
                    return;
                }
                let failures = {
                    let mut map = lock(&self.ping_failures);
                    let count = map.entry(contact.id).or_insert(0);
                    *count += 1;
                    *count
                };
                if failures >= self.config.ping_failures {
                    debug!(peer = %contact.id.short(), error = %e, failures, "removing a contact that stopped answering");
                    self.forget(&contact);
                    lock(&self.ping_failures).remove(&contact.id);
                }
            }
        }
    }

    /// Looks up a random id in each bucket that went without a lookup for the refresh
    /// interval (with jitter, so that many nodes with one interval do not refresh at once).
    async fn refresh_round(self: &Arc<Self>) {
        let started = mono_now();
        let due = self
            .routing()
            .buckets_to_refresh(mono_now(), self.jittered(self.config.refresh_interval));
        let targets: Vec<_> = self.with_rng(|rng| {
            due.into_iter()
                .take(REFRESHES_PER_ROUND)
                .map(|bucket| self.id.random_in_bucket(bucket, rng))
                .collect()
        });
        let refreshed = targets.len();
        let mut lookups: FuturesUnordered<_> =
            targets.into_iter().map(|t| self.lookup(t, false)).collect();
        let mut failed = 0;
        while let Some(found) = lookups.next().await {
            failed += usize::from(found.result.succeeded == 0);
        }
        self.upkeep_round(UpkeepKind::Refresh, started, refreshed, failed);
    }

    /// `interval` plus up to a quarter of it, at random.
    pub(crate) fn jittered(&self, interval: Duration) -> Duration {
        let jitter = self.with_rng(|rng| rng.gen_range(0.0..0.25));
        interval + interval.mul_f64(jitter)
    }
}
