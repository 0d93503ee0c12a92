//! How long peers take to answer, as this node sees them: a GET's lookup stops waiting
//! for a peer (and asks another, still taking the late answer) after what answers
//! usually take, not after a fixed `lookup_peer_timeout`. A silent peer then costs a
//! lookup a few round trips instead of a second.
//!
//! Two estimates, as TCP keeps its retransmission timeout (RFC 6298: a smoothed time
//! and its mean deviation, the timeout being the first plus four times the second):
//! one for requests over an open connection, one for requests that dialled first
//! (connect, TLS and the request: several round trips, and a much wider spread).
//!
//! And the peers that went quiet: a request to them timed out or could not connect.
//! Every lookup still asks such a peer when it is among the closest (it may be back, and
//! a late answer counts), but gives it only [`MIN_PEER_TIMEOUT`] before asking another,
//! so that a hung peer stops costing each lookup a full timeout once one request has
//! found it out. Any answer clears the mark; marks expire after [`QUIET_FOR`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dht_id::NodeId;

/// The least a lookup waits for a peer, whatever the estimate: below it a loaded host's
/// scheduling, not the network, decides.
pub(crate) const MIN_PEER_TIMEOUT: Duration = Duration::from_millis(200);

/// How long a peer stays marked quiet without a new failure.
pub(crate) const QUIET_FOR: Duration = Duration::from_secs(600);
/// Quiet peers remembered at most (the oldest mark goes first).
const QUIET_MAX: usize = 1024;

/// RFC 6298's smoothed round-trip time and its mean deviation.
#[derive(Debug, Clone, Copy, Default)]
struct Estimate {
    smoothed: Option<Duration>,
    deviation: Duration,
}

impl Estimate {
    fn sample(&mut self, took: Duration) {
        match self.smoothed {
            None => {
                self.smoothed = Some(took);
                self.deviation = took / 2;
            }
            Some(smoothed) => {
                let error = smoothed.abs_diff(took);
                self.deviation = self.deviation * 3 / 4 + error / 4;
                self.smoothed = Some(smoothed * 7 / 8 + took / 8);
            }
        }
    }

    fn timeout(&self) -> Option<Duration> {
        self.smoothed
            .map(|smoothed| smoothed.saturating_add(self.deviation.saturating_mul(4)))
    }
}

/// Answer times over open connections and over new ones, and the quiet peers.
#[derive(Debug, Default)]
pub(crate) struct AnswerTimes {
    /// `[open connection, new connection]`.
    estimates: Mutex<[Estimate; 2]>,
    /// Quiet peers, with when they were last found so.
    quiet: Mutex<HashMap<NodeId, Instant>>,
}

impl AnswerTimes {
    /// A request answered in `took`, over a connection that was open (`warm`) or dialled
    /// for it.
    pub(crate) fn sample(&self, warm: bool, took: Duration) {
        crate::node::lock(&self.estimates)[usize::from(!warm)].sample(took);
    }

    /// How long to wait for a peer's answer before asking another: the estimate for
    /// its kind of connection, within [`MIN_PEER_TIMEOUT`] and `ceiling` (the
    /// configured peer timeout, which is also what holds before any answer came).
    pub(crate) fn peer_timeout(&self, warm: bool, ceiling: Duration) -> Duration {
        crate::node::lock(&self.estimates)[usize::from(!warm)]
            .timeout()
            .map_or(ceiling, |estimate| {
                estimate.clamp(MIN_PEER_TIMEOUT.min(ceiling), ceiling)
            })
    }

    /// A request to `peer` got no answer (timed out, or no connection) at `now`.
    pub(crate) fn went_quiet(&self, peer: NodeId, now: Instant) {
        let mut quiet = crate::node::lock(&self.quiet);
        if quiet.len() >= QUIET_MAX && !quiet.contains_key(&peer) {
            quiet.retain(|_, since| now.saturating_duration_since(*since) < QUIET_FOR);
            if quiet.len() >= QUIET_MAX {
                let oldest = quiet
                    .iter()
                    .min_by_key(|(_, since)| **since)
                    .map(|(id, _)| *id);
                if let Some(oldest) = oldest {
                    quiet.remove(&oldest);
                }
            }
        }
        quiet.insert(peer, now);
    }

    /// `peer` answered.
    pub(crate) fn answered(&self, peer: &NodeId) {
        let mut quiet = crate::node::lock(&self.quiet);
        if !quiet.is_empty() {
            quiet.remove(peer);
        }
    }

    /// Whether `peer` went quiet within [`QUIET_FOR`] of `now` and has not answered since.
    pub(crate) fn is_quiet(&self, peer: &NodeId, now: Instant) -> bool {
        crate::node::lock(&self.quiet)
            .get(peer)
            .is_some_and(|since| now.saturating_duration_since(*since) < QUIET_FOR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CEILING: Duration = Duration::from_secs(1);

    #[test]
    fn the_ceiling_holds_until_answers_came() {
        let times = AnswerTimes::default();
        assert_eq!(times.peer_timeout(true, CEILING), CEILING);
        times.sample(false, Duration::from_millis(300));
        assert_eq!(
            times.peer_timeout(true, CEILING),
            CEILING,
            "only new connections were measured"
        );
        // 300 ms + 4 × 150 ms.
        assert_eq!(
            times.peer_timeout(false, CEILING),
            Duration::from_millis(900)
        );
    }

    #[test]
    fn a_quiet_peer_stays_marked_until_it_answers_or_the_mark_expires() {
        let times = AnswerTimes::default();
        let now = Instant::now();
        let (a, b) = (NodeId::from_bytes([1; 32]), NodeId::from_bytes([2; 32]));
        times.went_quiet(a, now);
        times.went_quiet(b, now);
        assert!(times.is_quiet(&a, now + Duration::from_secs(1)));
        times.answered(&a);
        assert!(!times.is_quiet(&a, now + Duration::from_secs(1)));
        assert!(times.is_quiet(&b, now + QUIET_FOR - Duration::from_secs(1)));
        assert!(!times.is_quiet(&b, now + QUIET_FOR));
    }

    #[test]
    fn quiet_marks_are_bounded() {
        let times = AnswerTimes::default();
        let now = Instant::now();
        let id = |i: usize| {
            let mut bytes = [0; 32];
            bytes[..8].copy_from_slice(&(i as u64).to_be_bytes());
            NodeId::from_bytes(bytes)
        };
        for i in 0..QUIET_MAX + 10 {
            times.went_quiet(id(i), now + Duration::from_millis(i as u64));
        }
        assert_eq!(crate::node::lock(&times.quiet).len(), QUIET_MAX);
        // The oldest marks made room for the newest.
        assert!(!times.is_quiet(&id(0), now + Duration::from_secs(1)));
        assert!(times.is_quiet(&id(QUIET_MAX + 9), now + Duration::from_secs(1)));
    }

    #[test]
    fn steady_answers_tighten_the_timeout_to_the_floor_and_spread_widens_it() {
        let times = AnswerTimes::default();
        for _ in 0..50 {
            times.sample(true, Duration::from_millis(100));
        }
        assert_eq!(times.peer_timeout(true, CEILING), MIN_PEER_TIMEOUT);
        for took in [20, 300, 40, 250, 60, 320, 80, 280] {
            times.sample(true, Duration::from_millis(took));
        }
        let widened = times.peer_timeout(true, CEILING);
        assert!(
            widened > Duration::from_millis(300) && widened < CEILING,
            "{widened:?}"
        );
        // A ceiling below the floor wins.
        assert_eq!(
            times.peer_timeout(true, Duration::from_millis(50)),
            Duration::from_millis(50)
        );
    }
}
