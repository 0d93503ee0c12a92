//! Joining the network: through the bootstrap peers (or the contacts known from before
//! when none answers), a lookup of the node's own id, then one refresh of every bucket
//! farther than its closest neighbour; retried with backoff while nobody answers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use dht_id::{Key, NodeId};
use dht_routing::Contact;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tracing::{debug, info, warn};

use crate::activity::UpkeepKind;
use crate::error::RpcError;
use crate::node::{Inner, mono_now};

/// Saved contacts dialled at once when rejoining.
const SAVED_CONTACTS_TRIED: usize = 16;

impl Inner {
    /// Joins through the bootstrap peers: connect to them, look up our own id, then
    /// refresh every bucket farther than our closest neighbour.
    pub(crate) async fn join(self: &Arc<Self>) -> bool {
        let started = mono_now();
        let mut reached = 0;
        for peer in &self.config.bootstrap_peers {
            let addrs = match tokio::net::lookup_host(peer.address.as_str()).await {
                Ok(addrs) => addrs.collect::<Vec<_>>(),
                Err(e) => {
                    warn!(peer = %peer, error = %e, "cannot resolve bootstrap peer");
                    continue;
                }
            };
            for addr in addrs {
                match self.reach(peer.id, addr).await {
                    Ok(()) => {
                        reached += 1;
                        break;
                    }
                    Err(e) => debug!(peer = %peer, %addr, error = %e, "bootstrap peer unreachable"),
                }
            }
        }
        if reached == 0 {
            reached += self.reach_saved_contacts().await;
        }
        if reached == 0 && self.routing().is_empty() {
            return false;
        }
        self.lookup(self.id, false).await;
        self.refresh_far_buckets().await;
        let contacts = self.routing().len();
        info!(contacts, bootstrap_reached = reached, "joined the network");
        self.activity.set_joined();
        self.upkeep_round(UpkeepKind::Join, started, contacts, 0);
        true
    }

    /// Connects to the contacts known from before (saved at the last stop, or removed
    /// since for not answering: `rejoin.rs`; each must still prove the id it had), at
    /// most `SAVED_CONTACTS_TRIED` of them at once; returns how many answered.
    async fn reach_saved_contacts(self: &Arc<Self>) -> usize {
        let saved = crate::node::lock(&self.saved_contacts).clone();
        if saved.is_empty() {
            return 0;
        }
        let mut attempts = futures::stream::iter(saved.into_iter().map(|contact| async move {
            self.reach(Some(contact.id), contact.addr).await.is_ok()
        }))
        .buffer_unordered(SAVED_CONTACTS_TRIED);
        let mut reached = 0;
        while let Some(ok) = attempts.next().await {
            reached += usize::from(ok);
        }
        info!(
            reached,
            "reached contacts known from before (saved at the last stop, or removed since)"
        );
        reached
    }

    /// Connects to a peer and waits until it has proven its id (and has been offered to
    /// the routing table): a peer dialled by id proves it with the HELLO that comes with
    /// its first answer (here, to a PING; "overloaded" is an answer too), one dialled by
    /// address only during the handshake.
    async fn reach(self: &Arc<Self>, id: Option<NodeId>, addr: SocketAddr) -> Result<(), RpcError> {
        match id {
            Some(id) => match self.ping(Contact { id, addr }).await {
                Err(RpcError::PeerOverloaded) => Ok(()),
                other => other,
            },
            None => self.connection(None, addr).await.map(drop),
        }
    }

    /// One lookup of a random id in every bucket farther than the closest neighbour.
    async fn refresh_far_buckets(self: &Arc<Self>) {
        let Some(closest) = self.routing().closest_bucket_index() else {
            return;
        };
        let targets: Vec<Key> = self.with_rng(|rng| {
            (0..closest)
                .map(|bucket| self.id.random_in_bucket(bucket, rng))
                .collect()
        });
        let mut lookups: FuturesUnordered<_> =
            targets.into_iter().map(|t| self.lookup(t, false)).collect();
        while lookups.next().await.is_some() {}
    }

    /// Joins, retrying with backoff while no bootstrap peer answers.
    pub(crate) async fn join_with_retry(self: Arc<Self>) {
        let mut delay = Duration::from_millis(500);
        loop {
            if self.join().await {
                return;
            }
            warn!(retry_in = ?delay, "no bootstrap peer reachable");
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.shutdown.cancelled() => return,
            }
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    }
}
