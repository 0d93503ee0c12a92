//! What the node did recently, for its status page, its readiness and the windowed
//! figures of its metrics: whether it has joined, the lookups of the last minutes (when,
//! how long, whether any peer answered) and its last upkeep rounds. Everything is
//! bounded: a fixed ring of lookup samples, a fixed ring of rounds, and one minute of
//! per-second lookup counts.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::node::lock;

/// Lookups kept for the latency histogram of the status page.
const LOOKUP_SAMPLES: usize = 512;
/// How long a lookup sample is kept.
const LOOKUP_SAMPLE_AGE: Duration = Duration::from_secs(600);
/// Upkeep rounds kept.
const UPKEEP_ROUNDS: usize = 32;
/// The window of [`Activity::lookups_last_minute`], in one-second slots.
const WINDOW_SECS: usize = 60;

/// Which kind of iterative lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LookupKind {
    /// FIND_NODE: the closest nodes to a key (joins, refreshes, PUTs).
    FindNode,
    /// FIND_VALUE: a GET that asked the network.
    FindValue,
}

impl LookupKind {
    /// The label value: `find_node` or `find_value`.
    pub fn as_str(self) -> &'static str {
        match self {
            LookupKind::FindNode => "find_node",
            LookupKind::FindValue => "find_value",
        }
    }
}

/// One lookup of the last minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecentLookup {
    /// How long ago it ended.
    pub age: Duration,
    /// How long it took.
    pub elapsed: Duration,
    /// What it looked for.
    pub kind: LookupKind,
    /// Whether any peer answered it (or it found the value). A lookup nobody answered
    /// means this node is cut off from the peers it knows.
    pub succeeded: bool,
}

/// What an upkeep round did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpkeepKind {
    /// Joining (or rejoining) the network: items are the contacts known afterwards.
    Join,
    /// Pings of contacts that were quiet: items pinged, failed those that did not answer.
    Liveness,
    /// Lookups of random ids in idle buckets: items buckets, failed those nobody answered.
    Refresh,
    /// Every record held stored again on its closest nodes: items records, failed those
    /// no peer acknowledged.
    Replication,
}

impl UpkeepKind {
    /// Every kind, in the order the status page lists them.
    pub const ALL: [UpkeepKind; 4] = [
        UpkeepKind::Join,
        UpkeepKind::Liveness,
        UpkeepKind::Refresh,
        UpkeepKind::Replication,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            UpkeepKind::Join => "join",
            UpkeepKind::Liveness => "liveness",
            UpkeepKind::Refresh => "refresh",
            UpkeepKind::Replication => "replication",
        }
    }
}

/// One upkeep round that did some work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpkeepRound {
    /// Its kind.
    pub kind: UpkeepKind,
    /// How long ago it ended.
    pub age: Duration,
    /// How long it took.
    pub elapsed: Duration,
    /// What it worked on (see [`UpkeepKind`]).
    pub items: usize,
    /// How many of them failed.
    pub failed: usize,
}

/// Lookups of the last minute, by whether any peer answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LookupCounts {
    /// Lookups that got at least one answer.
    pub succeeded: u64,
    /// Lookups nobody answered.
    pub failed: u64,
}

#[derive(Debug)]
struct Sample {
    ended: Instant,
    elapsed: Duration,
    kind: LookupKind,
    succeeded: bool,
}

#[derive(Debug)]
struct Round {
    ended: Instant,
    elapsed: Duration,
    kind: UpkeepKind,
    items: usize,
    failed: usize,
}

/// One second of the lookup window: which second (since the node started) and its counts.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    second: u64,
    counts: LookupCounts,
}

#[derive(Debug)]
struct Recent {
    lookups: VecDeque<Sample>,
    rounds: VecDeque<Round>,
    window: [Slot; WINDOW_SECS],
    /// When the last lookup some peer answered ended, and the last nobody answered.
    last_success: Option<Instant>,
    last_failure: Option<Instant>,
}

/// Appends `item`, dropping the oldest when `ring` holds `cap` already.
fn push_capped<T>(ring: &mut VecDeque<T>, cap: usize, item: T) {
    if ring.len() >= cap {
        ring.pop_front();
    }
    ring.push_back(item);
}

/// The node's recent activity.
#[derive(Debug)]
pub(crate) struct Activity {
    started: Instant,
    joined: AtomicBool,
    recent: Mutex<Recent>,
}

impl Activity {
    pub(crate) fn new(now: Instant) -> Activity {
        Activity {
            started: now,
            joined: AtomicBool::new(false),
            recent: Mutex::new(Recent {
                lookups: VecDeque::with_capacity(LOOKUP_SAMPLES),
                rounds: VecDeque::with_capacity(UPKEEP_ROUNDS),
                window: [Slot::default(); WINDOW_SECS],
                last_success: None,
                last_failure: None,
            }),
        }
    }

    pub(crate) fn uptime(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.started)
    }

    /// The node is part of a network: a join succeeded, or it had nothing to join (the
    /// first node of a network).
    pub(crate) fn set_joined(&self) {
        self.joined.store(true, Ordering::Relaxed);
    }

    pub(crate) fn joined(&self) -> bool {
        self.joined.load(Ordering::Relaxed)
    }

    fn second(&self, at: Instant) -> u64 {
        self.uptime(at).as_secs()
    }

    /// A lookup ended at `now` after `elapsed`.
    pub(crate) fn lookup(
        &self,
        kind: LookupKind,
        elapsed: Duration,
        succeeded: bool,
        now: Instant,
    ) {
        let second = self.second(now);
        let mut recent = lock(&self.recent);
        push_capped(
            &mut recent.lookups,
            LOOKUP_SAMPLES,
            Sample {
                ended: now,
                elapsed,
                kind,
                succeeded,
            },
        );
        let slot = &mut recent.window[(second % WINDOW_SECS as u64) as usize];
        if slot.second != second {
            *slot = Slot {
                second,
                counts: LookupCounts::default(),
            };
        }
        if succeeded {
            slot.counts.succeeded += 1;
            recent.last_success = Some(now);
        } else {
            slot.counts.failed += 1;
            recent.last_failure = Some(now);
        }
    }

    /// Whether lookups have been failing (nobody answered) since the last one that
    /// succeeded, and that one (or the start, if none did) lies `after` or more before
    /// `now`: the node is cut off from the peers it knows, whatever its table holds.
    pub(crate) fn lookups_starved(&self, now: Instant, after: Duration) -> bool {
        let recent = lock(&self.recent);
        let Some(failure) = recent.last_failure else {
            return false;
        };
        let success = recent.last_success.unwrap_or(self.started);
        failure >= success && now.saturating_duration_since(success) >= after
    }

    /// Lookups that ended within the last minute before `now`.
    pub(crate) fn lookups_last_minute(&self, now: Instant) -> LookupCounts {
        let second = self.second(now);
        let recent = lock(&self.recent);
        let mut total = LookupCounts::default();
        for slot in &recent.window {
            // A slot of second 0 that was never written holds zeros: counting it is harmless.
            if second.saturating_sub(slot.second) < WINDOW_SECS as u64 {
                total.succeeded += slot.counts.succeeded;
                total.failed += slot.counts.failed;
            }
        }
        total
    }

    /// The lookups of the last ten minutes (at most the last 512), oldest first.
    pub(crate) fn recent_lookups(&self, now: Instant) -> Vec<RecentLookup> {
        lock(&self.recent)
            .lookups
            .iter()
            .map(|s| RecentLookup {
                age: now.saturating_duration_since(s.ended),
                elapsed: s.elapsed,
                kind: s.kind,
                succeeded: s.succeeded,
            })
            .filter(|l| l.age <= LOOKUP_SAMPLE_AGE)
            .collect()
    }

    /// An upkeep round that did some work ended at `now`.
    pub(crate) fn round(
        &self,
        kind: UpkeepKind,
        elapsed: Duration,
        items: usize,
        failed: usize,
        now: Instant,
    ) {
        push_capped(
            &mut lock(&self.recent).rounds,
            UPKEEP_ROUNDS,
            Round {
                ended: now,
                elapsed,
                kind,
                items,
                failed,
            },
        );
    }

    /// The last upkeep rounds (at most 32), newest first.
    pub(crate) fn recent_rounds(&self, now: Instant) -> Vec<UpkeepRound> {
        lock(&self.recent)
            .rounds
            .iter()
            .rev()
            .map(|r| UpkeepRound {
                kind: r.kind,
                age: now.saturating_duration_since(r.ended),
                elapsed: r.elapsed,
                items: r.items,
                failed: r.failed,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_minute_window_forgets_what_is_older() {
        let start = Instant::now();
        let activity = Activity::new(start);
        let at = |secs: u64| start + Duration::from_secs(secs);
        let ms = Duration::from_millis(5);
        activity.lookup(LookupKind::FindNode, ms, true, at(1));
        activity.lookup(LookupKind::FindValue, ms, false, at(1));
        activity.lookup(LookupKind::FindNode, ms, true, at(30));
        assert_eq!(
            activity.lookups_last_minute(at(30)),
            LookupCounts {
                succeeded: 2,
                failed: 1
            }
        );
        // Second 61 reuses second 1's slot; second 1 is out of the window at 61.
        activity.lookup(LookupKind::FindNode, ms, true, at(61));
        assert_eq!(
            activity.lookups_last_minute(at(61)),
            LookupCounts {
                succeeded: 2,
                failed: 0
            }
        );
        assert_eq!(
            activity.lookups_last_minute(at(200)),
            LookupCounts::default()
        );
        // The samples are kept longer than the window, with their ages.
        let recent = activity.recent_lookups(at(61));
        assert_eq!(recent.len(), 4);
        assert_eq!(recent[0].age, Duration::from_secs(60));
        assert!(!recent[1].succeeded && recent[1].kind == LookupKind::FindValue);
        assert!(activity.recent_lookups(at(1000)).is_empty());
    }

    #[test]
    fn rings_are_bounded_and_rounds_come_newest_first() {
        let start = Instant::now();
        let activity = Activity::new(start);
        for i in 0..LOOKUP_SAMPLES + 10 {
            let elapsed = Duration::from_millis(i as u64);
            activity.lookup(LookupKind::FindNode, elapsed, true, start);
        }
        let lookups = activity.recent_lookups(start);
        assert_eq!(lookups.len(), LOOKUP_SAMPLES);
        assert_eq!(lookups[0].elapsed, Duration::from_millis(10));
        for i in 0..UPKEEP_ROUNDS + 3 {
            activity.round(UpkeepKind::Liveness, Duration::ZERO, i, 0, start);
        }
        let rounds = activity.recent_rounds(start + Duration::from_secs(2));
        assert_eq!(rounds.len(), UPKEEP_ROUNDS);
        assert_eq!(rounds[0].items, UPKEEP_ROUNDS + 2);
        assert_eq!(rounds[0].age, Duration::from_secs(2));
        assert!(!activity.joined());
        activity.set_joined();
        assert!(activity.joined());
    }
}
