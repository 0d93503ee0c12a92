//! Where a node's wall-clock time and random numbers come from.
//!
//! A node reads the wall clock only for record versions and expiry, and draws random
//! numbers only for its new host key and proof-of-work search, refresh targets and
//! jitter; both come from its [`Environment`]. In
//! production that is the system's clock and entropy ([`Environment::system`]). A
//! simulation gives every node a clock that follows tokio's (paused) time and a
//! generator seeded from the run's seed ([`Environment::simulated`]), so that the same
//! seed replays the same run: intervals and timeouts already run on tokio's clock.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dht_wire::PeerMessage;
use rand::SeedableRng;
use rand::rngs::StdRng;

/// Wall-clock time, as a node needs it: for the versions of the records it writes and
/// the expiry of the records it holds.
pub trait Clock: Send + Sync + 'static {
    /// Microseconds since the UNIX epoch.
    fn unix_micros(&self) -> u64;
}

/// The system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn unix_micros(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

/// A wall clock that follows tokio's clock from a given UNIX time: under tokio's paused
/// time (a simulation, a test) it moves exactly as the runtime's time does, and never
/// otherwise.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    epoch_micros: u64,
    start: tokio::time::Instant,
}

impl TokioClock {
    /// A clock that reads `unix_secs` now. Call it inside the runtime whose time it
    /// should follow.
    pub fn starting_at(unix_secs: u64) -> Self {
        TokioClock {
            epoch_micros: unix_secs.saturating_mul(1_000_000),
            start: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn unix_micros(&self) -> u64 {
        let elapsed = u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.epoch_micros.saturating_add(elapsed)
    }
}

/// Answers a node gives to peers' requests instead of its own: `None` leaves a request
/// to the node. See [`Environment::with_responder`].
pub type Responder = dyn Fn(&PeerMessage) -> Option<PeerMessage> + Send + Sync;

/// A node's wall clock, the seed of its random numbers, and (in simulations) answers of
/// its own.
#[derive(Clone)]
pub struct Environment {
    pub(crate) clock: Arc<dyn Clock>,
    seed: Option<u64>,
    pub(crate) responder: Option<Arc<Responder>>,
    /// The seed of the host key and the proof-of-work nonce to try first.
    pub(crate) identity: Option<([u8; 32], u64)>,
}

impl fmt::Debug for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Environment")
            .field("seed", &self.seed)
            .field("responder", &self.responder.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for Environment {
    fn default() -> Self {
        Self::system()
    }
}

impl Environment {
    /// The system's clock, and random numbers from the OS's entropy.
    pub fn system() -> Self {
        Environment {
            clock: Arc::new(SystemClock),
            seed: None,
            responder: None,
            identity: None,
        }
    }

    /// `clock`, and random numbers drawn from `seed`, the host key of a node without a
    /// host key file included: the same seed gives the same node id. Give each node of
    /// a simulation a seed of its own (two nodes of one seed would be one id twice).
    pub fn simulated(clock: Arc<dyn Clock>, seed: u64) -> Self {
        Environment {
            clock,
            seed: Some(seed),
            responder: None,
            identity: None,
        }
    }

    /// This environment, where a node without a host key file takes the key of
    /// `key_seed` and tries `nonce` first when it mints its id (so that a nonce found
    /// beforehand gives the id it was found for). For simulations: an attacker that
    /// ground ids near a key runs its nodes with them.
    pub fn with_identity(mut self, key_seed: [u8; 32], nonce: u64) -> Self {
        self.identity = Some((key_seed, nonce));
        self
    }

    /// This environment, where the node answers peers' requests with `responder`'s
    /// answers wherever it gives one (the node's own answer otherwise). For
    /// simulations of hostile nodes: the attacker's node is the real one (it joins,
    /// keeps its table, passes every identity check) and lies only where its
    /// `responder` says. A node's own peers cannot set this; only its embedder can.
    pub fn with_responder(mut self, responder: Arc<Responder>) -> Self {
        self.responder = Some(responder);
        self
    }

    /// Whether the random numbers come from a seed (a node's host key then does too).
    pub(crate) fn is_seeded(&self) -> bool {
        self.seed.is_some()
    }

    /// The generator of a node started in this environment.
    pub(crate) fn rng(&self) -> StdRng {
        match self.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_entropy(),
        }
    }
}

/// Whole seconds of a microsecond time.
pub(crate) fn secs(micros: u64) -> u64 {
    micros / Duration::from_secs(1).as_micros() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[tokio::test(start_paused = true)]
    async fn the_tokio_clock_moves_with_paused_time_only() {
        let clock = TokioClock::starting_at(1_000);
        assert_eq!(clock.unix_micros(), 1_000_000_000);
        tokio::time::advance(Duration::from_millis(1_500)).await;
        assert_eq!(clock.unix_micros(), 1_001_500_000);
        assert_eq!(secs(clock.unix_micros()), 1_001);
    }

    #[test]
    fn a_seed_gives_the_same_numbers_and_the_system_others() {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let draw = |env: &Environment| -> Vec<u64> {
            let mut rng = env.rng();
            (0..4).map(|_| rng.r#gen()).collect()
        };
        let seeded = Environment::simulated(clock.clone(), 7);
        assert_eq!(
            draw(&seeded),
            draw(&Environment::simulated(clock.clone(), 7))
        );
        assert_ne!(draw(&seeded), draw(&Environment::simulated(clock, 8)));
        assert_ne!(draw(&Environment::system()), draw(&Environment::system()));
    }
}
