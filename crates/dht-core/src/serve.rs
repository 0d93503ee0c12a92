//! A connection's reader task: answers the peer's requests within its rate limits,
//! routes answers to our waiting requests, and closes the connection when it has been
//! idle too long (as `policy.rs` says), a frame takes too long, or the peer breaks the
//! protocol.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use dht_id::NodeId;
use dht_security::limits::{self, KeyedLimiter};
use dht_wire::{ErrorCode, PeerCodecError, PeerMessage};
use futures::StreamExt;
use tokio::time::Instant;
use tracing::{Instrument, debug, warn};

use crate::conn::{PeerConn, RETIRE_IDLE};
use crate::deadline::PartialSince;
use crate::node::{Inner, lock};
use crate::peers::ip_key;
use crate::stats::Counters;
use crate::stream::{PeerReader, release_read_buffer};

/// STOREs of one connection being committed at once; beyond, the reader waits.
const STORES_IN_FLIGHT: usize = 64;
/// The shortest wait between two checks of a connection's timeouts.
const RECHECK: Duration = Duration::from_millis(100);

impl Inner {
    pub(crate) async fn read_loop(
        self: &Arc<Self>,
        mut stream: PeerReader,
        conn: &Arc<PeerConn>,
        partial: &PartialSince,
    ) {
        let frame_deadline = self.config.frame_deadline;
        let stores = Arc::new(tokio::sync::Semaphore::new(STORES_IN_FLIGHT));
        // One timer, set to the next moment a check can change anything: an idle
        // connection wakes once per idle limit, not on a fixed tick.
        let next_check = || {
            let now = Instant::now();
            let mut at = conn.last_used() + self.idle_limit(conn);
            if let Some(overdue) = partial.overdue_at(frame_deadline) {
                at = at.min(overdue);
            }
            if let Some(since) = conn.retired_for() {
                at = at.min(now + RETIRE_IDLE.saturating_sub(since));
            }
            // A check that finds requests in flight (or a retired connection still
            // waiting for answers) looks again a little later.
            at.max(now + RECHECK)
        };
        let check = tokio::time::sleep_until(next_check());
        tokio::pin!(check);
        loop {
            let retired = conn.is_retired();
            let next = tokio::select! {
                next = stream.next() => next,
                () = conn.closed.cancelled() => return,
                () = conn.retired(), if !retired => {
                    check.as_mut().reset(next_check());
                    continue;
                }
                () = conn.recheck_wanted() => {
                    check.as_mut().reset(next_check());
                    continue;
                }
                () = partial.started() => {
                    check.as_mut().reset(next_check());
                    continue;
                }
                () = &mut check => {
                    check.as_mut().reset(next_check());
                    if partial.overdue(frame_deadline) {
                        Counters::bump(&self.counters.message_deadline_cuts);
                        debug!("a frame took longer than frame_deadline_ms: closing");
                        return;
                    }
                    if let Some(since) = conn.retired_for() {
                        // A retired duplicate lives until our requests on it are answered,
                        // briefly, whatever the peer keeps sending on it.
                        let answered = since > RETIRE_IDLE && !conn.has_pending();
                        if answered || since > RETIRE_IDLE + self.config.rpc_timeout {
                            debug!("closing retired duplicate connection");
                            return;
                        }
                        continue;
                    }
                    let quiet = conn.last_used().elapsed();
                    if quiet > self.idle_limit(conn) && !conn.has_pending() {
                        Counters::bump(&self.counters.connections_idle_closed);
                        debug!(idle = ?quiet, "closing idle connection");
                        return;
                    }
                    continue;
                }
            };
            let frame = match next {
                Some(Ok(frame)) => frame,
                // A peer that crashed or lost its network is not a protocol breaker.
                Some(Err(PeerCodecError::Io(e))) if is_disconnect(&e) => {
                    debug!(error = %e, "peer disconnected");
                    return;
                }
                Some(Err(e)) => {
                    Counters::bump(&self.counters.frames_malformed);
                    warn!(error = %e, "malformed frame from peer: closing the connection");
                    self.penalise(&conn.contact, "sent a malformed frame");
                    return;
                }
                None => return,
            };
            release_read_buffer(&mut stream);
            conn.received();
            if frame.is_response {
                if !conn.complete(frame.request_id, frame.message) && !conn.issued(frame.request_id)
                {
                    Counters::bump(&self.counters.frames_unsolicited);
                    self.penalise(&conn.contact, "answered a request never sent");
                    return;
                }
                self.observe(conn.contact);
                continue;
            }
            let admitted = self.admit_request(conn);
            if admitted {
                self.observe(conn.contact);
            }
            let replication = matches!(frame.message, PeerMessage::Replicate { .. });
            let answer = match frame.message {
                PeerMessage::Store { record } | PeerMessage::Replicate { record } if admitted => {
                    // Answered once committed, by a task of its own: the reader goes
                    // on (the writer commits STOREs of all connections together), at
                    // most STORES_IN_FLIGHT at a time per connection.
                    let Ok(permit) = stores.clone().acquire_owned().await else {
                        return;
                    };
                    let (inner, conn, id) = (self.clone(), conn.clone(), frame.request_id);
                    self.tasks.spawn(
                        async move {
                            let status = inner
                                .store_from_peer(&conn.contact, record, replication)
                                .await;
                            let answer = PeerMessage::StoreResult { status };
                            let _ = conn.respond(id, answer, inner.config.rpc_timeout).await;
                            drop(permit);
                        }
                        .in_current_span(),
                    );
                    continue;
                }
                message if admitted => self.answer(&conn.contact, message),
                _ => {
                    Counters::bump(&self.counters.requests_rate_limited);
                    PeerMessage::Error {
                        code: ErrorCode::Overloaded,
                    }
                }
            };
            if let Err(e) = conn
                .respond(frame.request_id, answer, self.config.rpc_timeout)
                .await
            {
                debug!(error = %e, "cannot answer the peer: closing the connection");
                return;
            }
        }
    }

    /// Whether a request of `conn`'s peer is within its per-peer and per-IP rates.
    fn admit_request(&self, conn: &PeerConn) -> bool {
        let now = tokio::time::Instant::now().into_std();
        let exempt = !self.config.limit_local_addresses && limits::is_local(conn.remote_ip);
        let mut limiters = lock(&self.limiters);
        let peer_ok = limiters.peers.try_take(&conn.contact.id, 1.0, now);
        peer_ok && (exempt || limiters.ips.try_take(&ip_key(conn.remote_ip), 1.0, now))
    }
}

/// IO errors that mean the connection ended, as opposed to bytes that make no frame
/// (a frame cut off by a clean close is an error of kind `Other`: malformed).
fn is_disconnect(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    matches!(
        error.kind(),
        UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe
    )
}

/// Request rates per peer id and per source IP.
pub(crate) struct Limiters {
    peers: KeyedLimiter<NodeId>,
    ips: KeyedLimiter<IpAddr>,
}

/// Peers and IPs whose rates are tracked at once; beyond, the longest idle are dropped.
const TRACKED_RATES: usize = 4096;

impl Limiters {
    pub(crate) fn new(peer_rate: (f64, f64), ip_rate: (f64, f64)) -> Self {
        Limiters {
            peers: KeyedLimiter::new(peer_rate.0, peer_rate.1, TRACKED_RATES),
            ips: KeyedLimiter::new(ip_rate.0, ip_rate.1, TRACKED_RATES),
        }
    }
}
