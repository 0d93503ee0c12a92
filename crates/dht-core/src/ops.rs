//! Iterative lookups and GET (joining: `join.rs`; PUT: `put.rs`; read repair:
//! `repair.rs`).

use std::ops::ControlFlow;
use std::sync::Arc;

use bytes::Bytes;
use dht_id::Key;
use dht_routing::{Contact, Lookup, LookupConfig, LookupResult, LookupState};
use dht_security::pow;
use dht_storage::{Origin, Record};
use dht_wire::{PeerMessage, WireContact, WireRecord};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tracing::debug;

use crate::activity::LookupKind;
use crate::answer_times::MIN_PEER_TIMEOUT;
use crate::error::{Error, RpcError};
use crate::node::{Inner, mono_now};
use crate::stats::Counters;

/// How much farther than the expected distance of a key's r-th closest node a peer
/// that returns a value may be and still end the GET at once.
const REPLICA_RADIUS_MARGIN: f64 = 3.0;

/// Whether a value a peer returns may end a GET at once. Values are not signed: what
/// vouches for one is who holds it, the nodes closest to the key, whose ids cost proof
/// of work to place there. A peer qualifies when fewer than r live peers the lookup
/// knows are closer to the key, and when it lies within the radius where the density of
/// this node's own neighbourhood puts the key's r closest nodes (times a margin), so that
/// an attacker's ids minted merely near the key, met on the way, cannot end the lookup
/// with a forged value. A value from any other peer is held back: the lookup goes on,
/// and ends with the value of the closest peer that gave one once the r closest it knows
/// have answered (or when it ends by itself), which keeps keys readable while their
/// replicas move (a key whose closest nodes have not received it yet).
struct Vouching {
    /// r: the least replication of a record.
    replicas: usize,
    /// Distance (as a float) within which the key's r closest nodes are expected.
    radius: f64,
}

impl Vouching {
    fn vouches(&self, peer: &Contact, lookup: &Lookup) -> bool {
        lookup.closer_known(&peer.id) < self.replicas
            && lookup.target().distance(&peer.id).to_f64() <= self.radius
    }
}

/// A value held back, from the closest peer that gave one.
struct Held {
    distance: dht_id::Distance,
    record: Record,
    from: Contact,
}

/// Statistics of one lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LookupStats {
    /// Distinct peers asked.
    pub contacted: usize,
    /// Peers that answered.
    pub succeeded: usize,
    /// Rounds (hops) the lookup went through.
    pub hops: usize,
}

impl LookupStats {
    pub(crate) fn of(result: &LookupResult) -> Self {
        LookupStats {
            contacted: result.contacted,
            succeeded: result.succeeded,
            hops: result.hops,
        }
    }
}

/// What a FIND_NODE or FIND_VALUE lookup found.
pub(crate) struct Found {
    pub(crate) result: LookupResult,
    pub(crate) record: Option<Record>,
    /// For a FIND_VALUE: what each peer that answered holds of the key, for read repair.
    pub(crate) copies: Vec<Copy>,
    /// For a FIND_VALUE that ended on a value: the requests still on their way, whose
    /// answers read repair reads (their copies are compared too).
    pub(crate) late: Option<FuturesUnordered<Query>>,
    /// The value is one held back (no replica vouched for it): the best the lookup
    /// found, returned, but not a copy to repair replicas with.
    pub(crate) held_back: bool,
}

/// What one peer that answered a FIND_VALUE holds of the key.
#[derive(Debug, Clone)]
pub(crate) struct Copy {
    pub(crate) peer: Contact,
    /// Its record (accepted as from any peer: not expired, version not from the future),
    /// or `None`: it answered with contacts, so it holds no copy.
    pub(crate) record: Option<Record>,
    /// Whether the peer was, when it answered, where the key's replicas are expected
    /// (see [`Vouching`]): a replica whose copy counts, and which read repair mends.
    pub(crate) replica: bool,
}

/// A peer's answer to a lookup request.
pub(crate) enum Answer {
    Nodes(Vec<WireContact>),
    Value(WireRecord),
}

/// A lookup request on its way: the peer and its answer.
pub(crate) type Query = std::pin::Pin<
    Box<dyn std::future::Future<Output = (Contact, Result<Answer, RpcError>)> + Send>,
>;

impl Inner {
    fn lookup_config(&self) -> LookupConfig {
        LookupConfig {
            k: self.config.k,
            alpha: self.config.alpha,
            peer_timeout: self.config.lookup_peer_timeout,
            deadline: self.config.lookup_deadline,
        }
    }

    /// An iterative lookup of `target`: FIND_NODE, or FIND_VALUE when `want_value`
    /// (which stops at the first valid value).
    pub(crate) async fn lookup(self: &Arc<Self>, target: Key, want_value: bool) -> Found {
        self.lookup_observed(target, want_value, None, |_| ControlFlow::Continue(()))
            .await
    }

    /// [`Inner::lookup`], calling `observe` with the lookup's state after every answer
    /// that brought contacts. While `observe` last said `Break` (the caller has what it
    /// needs), the lookup asks no new peer: it waits for the answers already asked for,
    /// since one of them may still name a closer node (`observe` then says `Continue`,
    /// and the lookup asks that node), and ends once none is in flight. The peers it did
    /// not ask cost nothing. `needed`: the caller needs only that many of the closest
    /// (see [`Lookup::stall_width`]).
    pub(crate) async fn lookup_observed(
        self: &Arc<Self>,
        target: Key,
        want_value: bool,
        needed: Option<usize>,
        mut observe: impl FnMut(&Lookup) -> ControlFlow<()>,
    ) -> Found {
        let started = mono_now();
        let seeds = {
            let mut routing = self.routing();
            routing.note_lookup(&target, mono_now());
            routing.closest(&target, self.config.k)
        };
        let mut lookup = Lookup::new(target, self.id, seeds, self.lookup_config(), mono_now());
        if let Some(needed) = needed {
            lookup = lookup.stall_width(needed);
        }
        let vouching = want_value.then(|| self.vouching());
        let mut in_flight: FuturesUnordered<Query> = FuturesUnordered::new();
        let mut copies: Vec<Copy> = Vec::new();
        let mut record = None;
        let mut held: Option<Held> = None;
        let mut enough = false;
        loop {
            if record.is_some() && lookup.is_finished() {
                break;
            }
            if !enough {
                while let LookupState::Query(contact) = lookup.next(mono_now()) {
                    let now = mono_now();
                    if self.answer_times.is_quiet(&contact.id, now) {
                        // Found silent lately: asked, but not waited for.
                        let wait = MIN_PEER_TIMEOUT.min(self.config.lookup_peer_timeout);
                        lookup.answer_due(&contact.id, now + wait);
                    } else if want_value {
                        // A GET waits for each peer what its answers usually take.
                        let warm = self.usable_conn(&contact.id, contact.addr).is_some();
                        let wait = self
                            .answer_times
                            .peer_timeout(warm, self.config.lookup_peer_timeout);
                        lookup.answer_due(&contact.id, now + wait);
                    }
                    let inner = self.clone();
                    in_flight.push(Box::pin(async move {
                        let answer = inner.query(contact, target, want_value).await;
                        (contact, answer)
                    }));
                }
                if lookup.is_finished() {
                    // A GET that has not found the value still reads the answers on
                    // their way (each ends within the RPC timeout): a replica slower
                    // than the peer timeout is skipped by the lookup's end, not by us.
                    // A value held back is the answer by now: every peer closer than
                    // its giver has answered or is unresponsive.
                    if !want_value || record.is_some() || held.is_some() || in_flight.is_empty() {
                        break;
                    }
                    enough = true;
                }
            }
            // Having enough, only the requests in flight are waited for (each ends
            // within the RPC timeout): no timer moves the lookup on.
            let wake = if enough {
                None
            } else {
                lookup.poll_timeout().map(tokio::time::Instant::from_std)
            };
            if in_flight.is_empty() && wake.is_none() {
                break;
            }
            tokio::select! {
                Some((contact, answer)) = in_flight.next() => {
                    let now = mono_now();
                    match answer {
                        Ok(Answer::Nodes(contacts)) => {
                            let min_pow = self.config.min_pow_difficulty;
                            if contacts.iter().all(|c| pow::has_pow(&c.id, min_pow)) {
                                if let Some(vouching) = &vouching {
                                    let replica = vouching.vouches(&contact, &lookup);
                                    copies.push(Copy { peer: contact, record: None, replica });
                                }
                                let learned = contacts.into_iter().filter_map(|c| routable(c, self.id));
                                lookup.on_success(&contact.id, learned, now);
                                enough = observe(&lookup).is_break();
                            } else {
                                // Ids without the work behind them: the whole answer is
                                // discarded and its sender demoted.
                                Counters::bump(&self.counters.contacts_rejected_pow);
                                self.penalise(&contact, "answered with contacts lacking proof of work");
                                lookup.on_failure(&contact.id, now);
                            }
                        }
                        Ok(Answer::Value(found)) => {
                            let found = self.accept_remote(found, self.unix_now());
                            match found {
                                Some(found) if found.key == target && !found.is_expired(self.unix_now()) => {
                                    let replica = vouching.as_ref().is_some_and(|v| v.vouches(&contact, &lookup));
                                    copies.push(Copy { peer: contact, record: Some(found.clone()), replica });
                                    if replica {
                                        record = Some(found);
                                        lookup.on_value(&contact.id, now);
                                    } else {
                                        Counters::bump(&self.counters.values_held_back);
                                        let distance = target.distance(&contact.id);
                                        if held.as_ref().is_none_or(|h| distance < h.distance) {
                                            held = Some(Held { distance, record: found, from: contact });
                                        }
                                        lookup.on_success(&contact.id, std::iter::empty(), now);
                                    }
                                }
                                _ => {
                                    debug!(peer = %contact.id.short(), "peer returned a wrong, expired or future record");
                                    lookup.on_failure(&contact.id, now);
                                }
                            }
                        }
                        Err(e) => {
                            debug!(peer = %contact.id.short(), error = %e, "lookup request failed");
                            lookup.on_failure(&contact.id, now);
                            // A peer busy with our own load is not failing.
                            if !matches!(e, RpcError::PeerOverloaded) {
                                self.record_ping(contact, Err(e));
                            }
                        }
                    }
                }
                () = sleep_until(wake) => {}
                () = self.shutdown.cancelled() => break,
            }
            // A value held back is the answer once the closest peers known have all
            // answered without a closer one.
            if record.is_none()
                && held.is_some()
                && vouching
                    .as_ref()
                    .is_some_and(|v| lookup.settled_closest(v.replicas).is_some())
            {
                break;
            }
        }
        let mut result = lookup.into_result();
        // Peers that let their time pass unanswered: later lookups do not wait for them
        // until they answer again.
        for quiet in &result.unresponsive {
            self.answer_times.went_quiet(quiet.id, mono_now());
        }
        let mut held_back = false;
        if record.is_none() {
            if let Some(held) = held {
                result.value_from = Some(held.from);
                record = Some(held.record);
                held_back = true;
            }
        }
        let kind = if want_value {
            LookupKind::FindValue
        } else {
            LookupKind::FindNode
        };
        // Succeeded: some peer answered. A lookup nobody answered means this node is cut
        // off from every peer it asked.
        let succeeded = result.succeeded > 0 || record.is_some();
        let now = mono_now();
        let elapsed = now.saturating_duration_since(started);
        self.metrics
            .lookup(kind, result.hops, result.contacted, succeeded, elapsed);
        // A lookup that had nobody to ask (an empty table: readiness says so) is no
        // sign of the network's health either way.
        if result.contacted > 0 {
            self.activity.lookup(kind, elapsed, succeeded, now);
        }
        let late = (want_value && record.is_some() && !in_flight.is_empty()).then_some(in_flight);
        Found {
            result,
            record,
            copies,
            late,
            held_back,
        }
    }

    /// What lets a GET trust a value at once (see [`Vouching`]).
    fn vouching(&self) -> Vouching {
        let k = self.config.k;
        let replicas = usize::from(self.config.min_replication);
        let neighbours = self.routing().closest(&self.id, k);
        // k nodes within d_k of this node: the r closest to any key are expected within
        // r/k of that.
        let radius = match neighbours.get(k - 1) {
            Some(kth) if neighbours.len() == k => {
                self.id.distance(&kth.id).to_f64() * replicas as f64 / k as f64
                    * REPLICA_RADIUS_MARGIN
            }
            _ => f64::INFINITY,
        };
        Vouching { replicas, radius }
    }

    async fn query(
        self: &Arc<Self>,
        contact: Contact,
        target: Key,
        want_value: bool,
    ) -> Result<Answer, RpcError> {
        let request = if want_value {
            PeerMessage::FindValue { key: target }
        } else {
            PeerMessage::FindNode { target }
        };
        match self.rpc(contact, request).await? {
            PeerMessage::Nodes { contacts } => Ok(Answer::Nodes(contacts)),
            PeerMessage::Value { record } if want_value => Ok(Answer::Value(record)),
            _ => Err(RpcError::Unexpected(
                "lookup answered with the wrong message",
            )),
        }
    }

    /// Whether this node is among the `replication` closest known nodes to the key of
    /// `record`, so that its copy answers a GET without asking the network.
    pub(crate) fn is_replica(&self, record: &Record) -> bool {
        self.routing().count_closer_than_local(&record.key) < usize::from(record.replication)
    }

    /// The value of `key` when this node answers a GET from its own store (it holds the
    /// record and is one of its replicas), without waiting; `None` when a GET needs the
    /// network (or the store cannot be read).
    pub(crate) fn get_local(&self, key: &Key) -> Option<Bytes> {
        let record = self.store().get(key, self.unix_now()).ok()??;
        self.is_replica(&record).then_some(record.value)
    }

    /// The value of `key`: from the local store when this node is one of the record's
    /// replicas, else from the network (the newer of a local copy and what was found).
    pub(crate) async fn get(
        self: &Arc<Self>,
        key: Key,
    ) -> (Result<Option<Bytes>, Error>, LookupStats) {
        let local = match self.store().get(&key, self.unix_now()) {
            Ok(local) => local,
            Err(e) => return (Err(e.into()), LookupStats::default()),
        };
        if let Some(record) = &local {
            if self.is_replica(record) {
                return (Ok(Some(record.value.clone())), LookupStats::default());
            }
        }
        let found = self.lookup(key, true).await;
        let result = &found.result;
        let stats = LookupStats::of(result);
        let (value, returned) = match (local, &found.record) {
            (Some(local), Some(remote)) => {
                // A newer value no replica vouched for does not replace our copy.
                if remote.supersedes(&local) && !found.held_back {
                    // Our copy is stale: keep the newer one instead, charged to the
                    // peer that gave it (it is not this node's own PUT).
                    let origin = found
                        .result
                        .value_from
                        .map_or(Origin::Local, |peer| Origin::Peer(peer.id));
                    let _ = self.store.put(remote.clone(), origin).await;
                    (Ok(Some(remote.value.clone())), Some(remote.clone()))
                } else {
                    (Ok(Some(local.value.clone())), Some(local))
                }
            }
            (Some(local), None) => (Ok(Some(local.value.clone())), Some(local)),
            (None, Some(remote)) => (Ok(Some(remote.value.clone())), Some(remote.clone())),
            (None, None) if result.contacted > 0 && result.succeeded == 0 => (
                Err(Error::Unreachable {
                    contacted: result.contacted,
                }),
                None,
            ),
            (None, None) => (Ok(None), None),
        };
        // A value no replica vouched for is returned (the best there is) but not
        // pushed onto the replicas: that would make a forged value look vouched for.
        let from_network = returned.is_some() && returned.as_ref() == found.record.as_ref();
        let vouched = !(from_network && found.held_back);
        if let Some(returned) = returned.filter(|_| vouched) {
            self.spawn_read_repair(returned, found.copies, found.late);
        }
        (value, stats)
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// A contact from a peer's answer, if it can be dialled and is not us.
fn routable(contact: WireContact, local: Key) -> Option<Contact> {
    let ip = contact.addr.ip();
    if contact.id == local || contact.addr.port() == 0 || ip.is_unspecified() || ip.is_multicast() {
        return None;
    }
    Some(Contact {
        id: contact.id,
        addr: contact.addr,
    })
}
