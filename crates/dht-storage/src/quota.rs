//! Per-peer quotas: who asked for a record ([`Origin`]), the [`QuotaLimits`] that cap one
//! peer's share of a nearly full store, and the per-origin ledger and admission rule that
//! stores share.

use std::collections::HashMap;

use dht_id::Key;

use crate::store::StoreLimits;

/// Who asked this node to store a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// A PUT through this node's own API.
    Local,
    /// A STORE from this peer (its node id).
    Peer(Key),
    /// Replication or hand-off from this peer, which the receiver itself would choose as
    /// a replica of the record: accounted apart from its STOREs, with a larger share
    /// ([`QuotaLimits::replication_share`]).
    Replication(Key),
}

/// Caps one peer's share of a store once the store is nearly full, so that a flood of
/// STOREs from one peer cannot fill it and lock out honest peers' records.
///
/// The quota never refuses [`Origin::Local`] puts, bounded by the hard limits alone. A put
/// from a peer, STORE ([`Origin::Peer`]) or replication ([`Origin::Replication`], its own
/// ledger and share), is refused with
/// [`StoreError::QuotaExceeded`](crate::StoreError::QuotaExceeded) when all of these
/// hold:
///
/// - it would raise the records or the bytes charged to the peer (a new key, a bigger
///   value, or taking over a record another origin wrote); replacing one's own record with
///   a same-size or smaller one is always allowed;
/// - the store is [under pressure](StoreLimits::under_pressure) before or after the put;
/// - the peer's usage after the put would exceed its share:
///   [`peer_quota`](StoreLimits::peer_quota) for STOREs,
///   [`replication_quota`](StoreLimits::replication_quota) for replication.
///
/// Without pressure a single peer may fill the store up to the pressure point. Fractions
/// are multiplied by the hard limits in `f64` and rounded down; a NaN `pressure` never
/// signals pressure, a NaN `peer_share` gives a share of `floor_records` and no bytes.
#[derive(Debug, Clone)]
pub struct QuotaLimits {
    /// Pressure starts when records or bytes exceed this fraction of `max_records` /
    /// `max_bytes` (default 0.8).
    pub pressure: f64,
    /// Under pressure, one peer may hold at most this fraction of `max_records` and of
    /// `max_bytes` (default 0.05), but never less than `floor_records` records.
    pub peer_share: f64,
    /// The least number of records a peer's share allows (default 100).
    pub floor_records: usize,
    /// Under pressure, the replication from one peer may hold at most this fraction of
    /// `max_records` and of `max_bytes` (default 0.25; at least `floor_records` records):
    /// a neighbour shares many records with this node, but no one peer may fill it.
    pub replication_share: f64,
}

impl Default for QuotaLimits {
    fn default() -> Self {
        QuotaLimits {
            pressure: 0.8,
            peer_share: 0.05,
            floor_records: 100,
            replication_share: 0.25,
        }
    }
}

/// `fraction` of `limit`, rounded down (saturating; NaN gives 0).
fn fraction_of(fraction: f64, limit: usize) -> usize {
    (fraction * limit as f64) as usize
}

impl StoreLimits {
    /// True if a store holding `records` records of `bytes` bytes is under pressure: it
    /// holds more than `quota.pressure` of `max_records` or of `max_bytes`.
    pub fn under_pressure(&self, records: usize, bytes: usize) -> bool {
        records as f64 > self.quota.pressure * self.max_records as f64
            || bytes as f64 > self.quota.pressure * self.max_bytes as f64
    }

    /// The most records and bytes one peer may hold under pressure:
    /// `max(floor_records, peer_share * max_records)` and `peer_share * max_bytes`.
    pub fn peer_quota(&self) -> (usize, usize) {
        let records = fraction_of(self.quota.peer_share, self.max_records);
        (
            records.max(self.quota.floor_records),
            fraction_of(self.quota.peer_share, self.max_bytes),
        )
    }

    /// The most records and bytes the replication from one peer may hold under pressure:
    /// `max(floor_records, replication_share * max_records)` and
    /// `replication_share * max_bytes`.
    pub fn replication_quota(&self) -> (usize, usize) {
        let records = fraction_of(self.quota.replication_share, self.max_records);
        (
            records.max(self.quota.floor_records),
            fraction_of(self.quota.replication_share, self.max_bytes),
        )
    }

    /// Decides whether a store holding `held` may make `put`, whose origin holds `usage`
    /// (both without the records a purge would remove, when the caller asks what a purge
    /// would change). Hard limits first, then the quota (see [`QuotaLimits`]).
    pub(crate) fn admit(&self, held: Tally, usage: Tally, put: &Put) -> Result<(), Refusal> {
        let mut after = held.plus(put.footprint);
        let mut usage_after = usage.plus(put.footprint);
        if let Some((old_origin, old_bytes)) = put.replaces {
            after = after.minus(old_bytes);
            if old_origin == put.origin {
                usage_after = usage_after.minus(old_bytes);
            }
        }
        if !self.allows(after.records, after.bytes) {
            return Err(Refusal::Full);
        }
        let (max_records, max_bytes) = match put.origin {
            Origin::Local => return Ok(()),
            Origin::Peer(_) => self.peer_quota(),
            Origin::Replication(_) => self.replication_quota(),
        };
        let grows = usage_after.records > usage.records || usage_after.bytes > usage.bytes;
        let pressure = self.under_pressure(held.records, held.bytes)
            || self.under_pressure(after.records, after.bytes);
        if grows && pressure && (usage_after.records > max_records || usage_after.bytes > max_bytes)
        {
            return Err(Refusal::Quota);
        }
        Ok(())
    }
}

/// A count of records and their bytes (sum of footprints).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    /// Number of records.
    pub(crate) records: usize,
    /// Sum of their footprints.
    pub(crate) bytes: usize,
}

impl Tally {
    /// As a `(records, bytes)` pair.
    pub(crate) fn pair(self) -> (usize, usize) {
        (self.records, self.bytes)
    }

    /// With one more record of `bytes` bytes.
    pub(crate) fn plus(self, bytes: usize) -> Tally {
        Tally {
            records: self.records.saturating_add(1),
            bytes: self.bytes.saturating_add(bytes),
        }
    }

    /// With one record of `bytes` bytes less.
    pub(crate) fn minus(self, bytes: usize) -> Tally {
        Tally {
            records: self.records.saturating_sub(1),
            bytes: self.bytes.saturating_sub(bytes),
        }
    }

    /// Without the records of `other`.
    pub(crate) fn without(self, other: Tally) -> Tally {
        Tally {
            records: self.records.saturating_sub(other.records),
            bytes: self.bytes.saturating_sub(other.bytes),
        }
    }
}

/// A put a store is about to make, reduced to what the limits look at.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Put {
    /// Who asked.
    pub(crate) origin: Origin,
    /// Footprint of the offered record.
    pub(crate) footprint: usize,
    /// Origin and footprint of the held record of the key it replaces, if any.
    pub(crate) replaces: Option<(Origin, usize)>,
}

/// Why [`StoreLimits::admit`] refused a put.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// A hard limit.
    Full,
    /// The origin's quota.
    Quota,
}

/// Records and bytes charged to each origin. Only origins that hold records have an
/// entry, so the ledger never has more entries than the store has records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Ledger {
    usage: HashMap<Origin, Tally>,
}

impl Ledger {
    /// What `origin` holds.
    pub(crate) fn usage(&self, origin: &Origin) -> Tally {
        self.usage.get(origin).copied().unwrap_or_default()
    }

    /// Charges `origin` for a record of `bytes` bytes.
    pub(crate) fn charge(&mut self, origin: Origin, bytes: usize) {
        let entry = self.usage.entry(origin).or_default();
        *entry = entry.plus(bytes);
    }

    /// Gives `origin` back a record of `bytes` bytes; drops its entry at zero records.
    pub(crate) fn refund(&mut self, origin: Origin, bytes: usize) {
        if let Some(entry) = self.usage.get_mut(&origin) {
            *entry = entry.minus(bytes);
            if entry.records == 0 {
                self.usage.remove(&origin);
            }
        }
    }

    /// Number of origins holding records.
    pub(crate) fn len(&self) -> usize {
        self.usage.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u8) -> Origin {
        Origin::Peer(Key::from_bytes([n; 32]))
    }

    /// 100 records, 10 000 bytes; pressure above 80 / 8 000; a peer's share is 10 / 1 000,
    /// its replication's 30 / 3 000.
    fn limits() -> StoreLimits {
        StoreLimits {
            max_records: 100,
            max_bytes: 10_000,
            quota: QuotaLimits {
                pressure: 0.8,
                peer_share: 0.1,
                floor_records: 5,
                replication_share: 0.3,
            },
            ..StoreLimits::default()
        }
    }

    fn tally(records: usize, bytes: usize) -> Tally {
        Tally { records, bytes }
    }

    fn insert(origin: Origin, footprint: usize) -> Put {
        Put {
            origin,
            footprint,
            replaces: None,
        }
    }

    #[test]
    fn default_quota() {
        let q = QuotaLimits::default();
        assert_eq!(
            (q.pressure, q.peer_share, q.floor_records),
            (0.8, 0.05, 100)
        );
        // 5% of the default limits; a quarter for one peer's replication.
        assert_eq!(StoreLimits::default().peer_quota(), (5_000, 13_421_772));
        assert_eq!(q.replication_share, 0.25);
        assert_eq!(
            StoreLimits::default().replication_quota(),
            (25_000, 67_108_864)
        );
    }

    #[test]
    fn pressure_starts_above_the_fraction() {
        let l = limits();
        assert!(!l.under_pressure(80, 8_000));
        assert!(l.under_pressure(81, 0));
        assert!(l.under_pressure(0, 8_001));
        let nan = StoreLimits {
            quota: QuotaLimits {
                pressure: f64::NAN,
                ..QuotaLimits::default()
            },
            ..limits()
        };
        assert!(!nan.under_pressure(100, 10_000));
    }

    #[test]
    fn peer_quota_has_a_record_floor() {
        assert_eq!(limits().peer_quota(), (10, 1_000));
        let small = StoreLimits {
            max_records: 20,
            ..limits()
        };
        // 10% of 20 is 2, below the floor of 5; bytes have no floor.
        assert_eq!(small.peer_quota(), (5, 1_000));
    }

    #[test]
    fn hard_limits_refuse_every_origin() {
        let l = limits();
        for origin in [
            Origin::Local,
            peer(1),
            Origin::Replication(Key::from_bytes([1; 32])),
        ] {
            assert_eq!(
                l.admit(tally(100, 500), Tally::default(), &insert(origin, 10)),
                Err(Refusal::Full)
            );
            assert_eq!(
                l.admit(tally(10, 9_995), Tally::default(), &insert(origin, 10)),
                Err(Refusal::Full)
            );
        }
    }

    #[test]
    fn quota_applies_to_peers_under_pressure() {
        let l = limits();
        let full_share = tally(10, 500);
        // No pressure before or after: no quota.
        assert_eq!(
            l.admit(tally(79, 7_000), full_share, &insert(peer(1), 10)),
            Ok(())
        );
        // Pressure after the put only.
        assert_eq!(
            l.admit(tally(80, 7_000), full_share, &insert(peer(1), 10)),
            Err(Refusal::Quota)
        );
        // Within the share, or another origin: fine.
        assert_eq!(
            l.admit(tally(90, 7_000), tally(9, 500), &insert(peer(1), 10)),
            Ok(())
        );
        assert_eq!(
            l.admit(tally(90, 7_000), full_share, &insert(Origin::Local, 10)),
            Ok(())
        );
        // Replication has a share of its own, larger: 30 records.
        let replication = Origin::Replication(Key::from_bytes([1; 32]));
        assert_eq!(
            l.admit(tally(90, 7_000), full_share, &insert(replication, 10)),
            Ok(())
        );
        assert_eq!(
            l.admit(tally(90, 7_000), tally(30, 500), &insert(replication, 10)),
            Err(Refusal::Quota)
        );
        assert_eq!(l.replication_quota(), (30, 3_000));
        // The byte share.
        assert_eq!(
            l.admit(tally(10, 8_500), tally(1, 995), &insert(peer(1), 10)),
            Err(Refusal::Quota)
        );
        assert_eq!(
            l.admit(tally(10, 8_500), tally(1, 990), &insert(peer(1), 10)),
            Ok(())
        );
    }

    #[test]
    fn replacing_own_record_without_growth_is_always_allowed() {
        let l = limits();
        let over = tally(20, 2_000);
        let same = Put {
            replaces: Some((peer(1), 10)),
            ..insert(peer(1), 10)
        };
        assert_eq!(l.admit(tally(90, 9_000), over, &same), Ok(()));
        let smaller = Put {
            footprint: 9,
            ..same
        };
        assert_eq!(l.admit(tally(90, 9_000), over, &smaller), Ok(()));
        let bigger = Put {
            footprint: 11,
            ..same
        };
        assert_eq!(
            l.admit(tally(90, 9_000), over, &bigger),
            Err(Refusal::Quota)
        );
        // Taking over another origin's record adds a record to the peer's usage.
        let takeover = Put {
            replaces: Some((peer(2), 10)),
            ..same
        };
        assert_eq!(
            l.admit(tally(90, 9_000), over, &takeover),
            Err(Refusal::Quota)
        );
        assert_eq!(l.admit(tally(90, 9_000), tally(1, 10), &takeover), Ok(()));
    }

    #[test]
    fn ledger_drops_empty_entries() {
        let mut ledger = Ledger::default();
        ledger.charge(peer(1), 10);
        ledger.charge(peer(1), 20);
        ledger.charge(Origin::Local, 5);
        assert_eq!(ledger.usage(&peer(1)), tally(2, 30));
        assert_eq!(ledger.len(), 2);
        ledger.refund(peer(1), 10);
        assert_eq!(ledger.usage(&peer(1)), tally(1, 20));
        ledger.refund(peer(1), 20);
        assert_eq!(ledger.usage(&peer(1)), Tally::default());
        assert_eq!(ledger.len(), 1);
        // Refunding an origin without records changes nothing.
        ledger.refund(peer(2), 10);
        assert_eq!(ledger.len(), 1);
    }
}
