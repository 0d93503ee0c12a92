//! Rate-limit primitives: token buckets, a bounded map of them per key, and the IP
//! groups that per-IP limits and routing-table diversity count by.
//!
//! Time is passed in (`now`); nothing here reads the clock. An earlier `now` than one
//! seen before is treated as no time passing.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

/// Tolerance for floating-point drift: refilling 0.1 ten times gives 0.9999999999999999,
/// which must still pay for a cost of 1.
const EPSILON: f64 = 1e-9;

/// A rate or size: finite and non-negative, anything else counts as 0.
fn sanitize(value: f64) -> f64 {
    if value.is_finite() && value > 0.0 {
        value
    } else {
        0.0
    }
}

/// A token bucket with fractional refill: `rate` tokens per second, up to `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket refilling `rate_per_sec` tokens per second up to `burst`. Negative,
    /// infinite or NaN values count as 0.
    pub fn new(rate_per_sec: f64, burst: f64, now: Instant) -> Self {
        let burst = sanitize(burst);
        TokenBucket {
            rate: sanitize(rate_per_sec),
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        if now > self.last {
            let elapsed = now.duration_since(self.last).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
            self.last = now;
        }
    }

    /// Takes `cost` tokens if available at `now` (refilling first); `false` if not, and
    /// then nothing is taken. A negative or NaN cost is refused.
    pub fn try_take(&mut self, cost: f64, now: Instant) -> bool {
        self.refill(now);
        if cost.is_nan() || cost < 0.0 || self.tokens + EPSILON < cost {
            return false;
        }
        self.tokens = (self.tokens - cost).max(0.0);
        true
    }

    /// The tokens available at `now`.
    pub fn available(&mut self, now: Instant) -> f64 {
        self.refill(now);
        self.tokens
    }

    /// When the bucket is (or will be) full again if nothing more is taken; `None` if
    /// never (it refills at rate 0).
    pub fn full_at(&self) -> Option<Instant> {
        let missing = self.burst - self.tokens;
        if missing <= EPSILON {
            return Some(self.last);
        }
        if self.rate <= 0.0 {
            return None;
        }
        let wait = Duration::try_from_secs_f64(missing / self.rate).ok()?;
        self.last.checked_add(wait)
    }
}

/// When a bucket in a [`KeyedLimiter`] is full; `Never` sorts last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum FullAt {
    At(Instant),
    Never,
}

#[derive(Debug, Clone)]
struct Slot {
    bucket: TokenBucket,
    /// This slot's key in `KeyedLimiter::by_full_at`.
    order: (FullAt, u64),
}

/// How many buckets that have refilled completely one call forgets, at most.
const FORGET_PER_CALL: usize = 2;

/// Token buckets per key (peer id, IP group), bounded to `max_keys` entries.
///
/// A bucket that has refilled completely is the same as a new one, so it can be
/// forgotten: each call forgets a few of those, and a key whose bucket is still full
/// after the call is not stored at all. When the map is full and a new key comes, the
/// bucket that has been full the longest is dropped; if none is full, the one that will
/// be full soonest (so dropping it gives its key the least extra allowance).
/// Each call costs O(log n).
#[derive(Debug, Clone)]
pub struct KeyedLimiter<K: Eq + Hash + Clone> {
    rate: f64,
    burst: f64,
    max_keys: usize,
    buckets: HashMap<K, Slot>,
    by_full_at: BTreeMap<(FullAt, u64), K>,
    next_seq: u64,
}

impl<K: Eq + Hash + Clone> KeyedLimiter<K> {
    /// Buckets of `rate_per_sec` tokens per second up to `burst`, for at most `max_keys`
    /// keys at a time (at least 1).
    pub fn new(rate_per_sec: f64, burst: f64, max_keys: usize) -> Self {
        KeyedLimiter {
            rate: sanitize(rate_per_sec),
            burst: sanitize(burst),
            max_keys: max_keys.max(1),
            buckets: HashMap::new(),
            by_full_at: BTreeMap::new(),
            next_seq: 0,
        }
    }

    /// Takes `cost` tokens from `key`'s bucket (a new, full one if the key is not
    /// tracked); `false` if there are not enough, and then nothing is taken.
    pub fn try_take(&mut self, key: &K, cost: f64, now: Instant) -> bool {
        self.forget_full(now, FORGET_PER_CALL);
        let mut bucket = match self.buckets.remove(key) {
            Some(slot) => {
                self.by_full_at.remove(&slot.order);
                slot.bucket
            }
            None => TokenBucket::new(self.rate, self.burst, now),
        };
        let taken = bucket.try_take(cost, now);
        let full_at = match bucket.full_at() {
            Some(at) if at <= now => return taken, // as good as a new bucket: forget it
            Some(at) => FullAt::At(at),
            None => FullAt::Never,
        };
        if self.buckets.len() >= self.max_keys {
            if let Some((_, evicted)) = self.by_full_at.pop_first() {
                self.buckets.remove(&evicted);
            }
        }
        let order = (full_at, self.next_seq);
        self.next_seq = self.next_seq.wrapping_add(1);
        self.by_full_at.insert(order, key.clone());
        self.buckets.insert(key.clone(), Slot { bucket, order });
        taken
    }

    /// Forgets up to `max` buckets that are full at `now`; returns how many it forgot.
    pub fn forget_full(&mut self, now: Instant, max: usize) -> usize {
        let mut forgotten = 0;
        while forgotten < max {
            match self.by_full_at.first_key_value() {
                Some(((FullAt::At(at), _), _)) if *at <= now => {}
                _ => break,
            }
            if let Some((_, key)) = self.by_full_at.pop_first() {
                self.buckets.remove(&key);
                forgotten += 1;
            }
        }
        forgotten
    }

    /// The number of keys tracked (each with a bucket that is not full).
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Whether `key` has a bucket (that is, it spent tokens that have not come back).
    pub fn contains(&self, key: &K) -> bool {
        self.buckets.contains_key(key)
    }
}

/// The group an IP address belongs to for diversity and per-IP limits: an IPv4 /24 or
/// an IPv6 /48. IPv4-mapped IPv6 addresses count as their IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IpGroup {
    /// The first three octets of an IPv4 address.
    V4([u8; 3]),
    /// The first six bytes of an IPv6 address.
    V6([u8; 6]),
}

impl fmt::Display for IpGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpGroup::V4([a, b, c]) => write!(f, "{}/24", Ipv4Addr::new(*a, *b, *c, 0)),
            IpGroup::V6(prefix) => {
                let mut bytes = [0u8; 16];
                bytes[..6].copy_from_slice(prefix);
                write!(f, "{}/48", Ipv6Addr::from(bytes))
            }
        }
    }
}

/// The [`IpGroup`] of `ip`.
pub fn ip_group(ip: IpAddr) -> IpGroup {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpGroup::V4([a, b, c])
        }
        IpAddr::V6(v6) => {
            let o = v6.octets();
            IpGroup::V6([o[0], o[1], o[2], o[3], o[4], o[5]])
        }
    }
}

/// Whether `ip` is loopback, private (10/8, 172.16/12, 192.168/16), link-local
/// (169.254/16, fe80::/10) or an IPv6 unique local address (fc00::/7); such addresses
/// are exempt from per-IP limits by default. IPv4-mapped IPv6 addresses count as their
/// IPv4 address.
pub fn is_local(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback() || first & 0xfe00 == 0xfc00 || first & 0xffc0 == 0xfe80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, millis: u64) -> Instant {
        start + Duration::from_millis(millis)
    }

    #[test]
    fn bucket_refills_fractionally_up_to_burst() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(0.5, 3.0, t0);
        assert_eq!(bucket.available(t0), 3.0);
        assert!(bucket.try_take(3.0, t0));
        assert!(!bucket.try_take(0.5, t0));
        assert_eq!(bucket.full_at(), Some(at(t0, 6000)));
        // 0.5 tokens per second: one token after two seconds, not before.
        assert!(!bucket.try_take(1.0, at(t0, 1999)));
        assert!(bucket.try_take(1.0, at(t0, 2000)));
        // Refilled in many small steps, drift does not cost a token.
        let mut bucket = TokenBucket::new(0.1, 1.0, t0);
        assert!(bucket.try_take(1.0, t0));
        for second in 1..10 {
            assert!(!bucket.try_take(1.0, at(t0, second * 1000)), "{second}");
        }
        assert!(bucket.try_take(1.0, at(t0, 10_000)));
        // The burst caps what idle time gives.
        let mut bucket = TokenBucket::new(100.0, 5.0, t0);
        assert!(bucket.try_take(5.0, t0));
        assert!((bucket.available(at(t0, 10)) - 1.0).abs() < 1e-9);
        assert_eq!(bucket.available(at(t0, 3_600_000)), 5.0);
        assert!(!bucket.try_take(5.5, at(t0, 3_600_000)));
        assert_eq!(
            bucket.available(at(t0, 3_600_000)),
            5.0,
            "a refused take takes nothing"
        );
    }

    #[test]
    fn bucket_edge_cases() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(1.0, 2.0, at(t0, 1000));
        assert!(bucket.try_take(2.0, at(t0, 1000)));
        // Time going backwards gives nothing and breaks nothing.
        assert_eq!(bucket.available(t0), 0.0);
        assert!(bucket.try_take(1.0, at(t0, 2000)));
        assert!(!bucket.try_take(f64::NAN, at(t0, 9000)));
        assert!(!bucket.try_take(-1.0, at(t0, 9000)));
        assert!(bucket.try_take(0.0, at(t0, 9000)));
        // Nonsense parameters make a bucket that never gives anything.
        let mut never = TokenBucket::new(f64::NAN, -3.0, t0);
        assert!(!never.try_take(1.0, at(t0, 1_000_000)));
        assert_eq!(never.full_at(), Some(at(t0, 1_000_000)));
        let mut stuck = TokenBucket::new(0.0, 1.0, t0);
        assert!(stuck.try_take(1.0, t0));
        assert_eq!(stuck.full_at(), None);
        assert!(!stuck.try_take(1.0, at(t0, 1_000_000)));
        // A tiny rate does not overflow the instant arithmetic.
        let mut slow = TokenBucket::new(1e-300, 1.0, t0);
        assert!(slow.try_take(1.0, t0));
        assert_eq!(slow.full_at(), None);
    }

    #[test]
    fn keyed_limiter_is_per_key() {
        let t0 = Instant::now();
        let mut limiter = KeyedLimiter::new(1.0, 2.0, 10);
        assert!(limiter.try_take(&"a", 1.0, t0));
        assert!(limiter.try_take(&"a", 1.0, t0));
        assert!(!limiter.try_take(&"a", 1.0, t0));
        assert!(limiter.try_take(&"b", 2.0, t0));
        assert_eq!(limiter.len(), 2);
        assert!(limiter.try_take(&"a", 1.0, at(t0, 1000)));
        // A cost above the burst is never paid, and leaves no entry behind.
        assert!(!limiter.try_take(&"c", 3.0, t0));
        assert!(!limiter.contains(&"c"));
        // Full buckets are forgotten.
        assert!(limiter.try_take(&"d", 0.0, at(t0, 10_000)));
        assert!(limiter.is_empty(), "{}", limiter.len());
    }

    #[test]
    fn keyed_limiter_is_bounded_and_evicts_the_longest_full() {
        let t0 = Instant::now();
        let mut limiter = KeyedLimiter::new(1.0, 10.0, 3);
        // "a" will be full at t0+1 s, "b" at t0+5 s, "c" at t0+9 s.
        assert!(limiter.try_take(&"a", 1.0, t0));
        assert!(limiter.try_take(&"b", 5.0, t0));
        assert!(limiter.try_take(&"c", 9.0, t0));
        assert_eq!(limiter.len(), 3);
        // Nothing is full yet: a new key drops the one closest to full.
        assert!(limiter.try_take(&"d", 10.0, at(t0, 500)));
        assert_eq!(limiter.len(), 3);
        assert!(!limiter.contains(&"a"));
        assert!(limiter.contains(&"b") && limiter.contains(&"c") && limiter.contains(&"d"));
        // "c" is still limited; "d" empty.
        assert!(!limiter.try_take(&"c", 2.0, at(t0, 500)));
        assert!(!limiter.try_take(&"d", 1.0, at(t0, 500)));
        // Much later every bucket refilled: the calls forget them.
        for i in 0..3u32 {
            limiter.try_take(&"e", 0.0, at(t0, 60_000 + u64::from(i)));
        }
        assert!(limiter.is_empty());
        // Many keys never grow the map beyond its bound.
        let mut limiter = KeyedLimiter::new(0.001, 1.0, 100);
        for i in 0..10_000u32 {
            assert!(limiter.try_take(&i, 1.0, t0));
            assert!(limiter.len() <= 100);
        }
        // The most recent keys are still limited.
        assert!(!limiter.try_take(&9_999, 1.0, t0));
    }

    #[test]
    fn ip_groups() {
        let group = |s: &str| ip_group(s.parse().expect("ip"));
        assert_eq!(group("192.0.2.1"), group("192.0.2.254"));
        assert_ne!(group("192.0.2.1"), group("192.0.3.1"));
        assert_eq!(group("192.0.2.1"), IpGroup::V4([192, 0, 2]));
        assert_eq!(group("::ffff:192.0.2.9"), group("192.0.2.1"));
        assert_eq!(group("2001:db8:1:2::1"), group("2001:db8:1:ffff::9"));
        assert_ne!(group("2001:db8:1::1"), group("2001:db8:2::1"));
        assert_eq!(
            group("2001:db8:1::1"),
            IpGroup::V6([0x20, 0x01, 0x0d, 0xb8, 0, 1])
        );
        assert_eq!(group("192.0.2.1").to_string(), "192.0.2.0/24");
        assert_eq!(group("2001:db8:1:2::1").to_string(), "2001:db8:1::/48");
    }

    #[test]
    fn local_addresses() {
        for (ip, local) in [
            ("127.0.0.1", true),
            ("127.255.0.9", true),
            ("10.1.2.3", true),
            ("172.16.0.1", true),
            ("172.31.255.255", true),
            ("172.32.0.1", false),
            ("192.168.7.7", true),
            ("192.169.0.1", false),
            ("169.254.1.1", true),
            ("8.8.8.8", false),
            ("100.64.0.1", false),
            ("::1", true),
            ("fc00::1", true),
            ("fdff::1", true),
            ("fe80::1", true),
            ("febf::1", true),
            ("fec0::1", false),
            ("2001:db8::1", false),
            ("::ffff:10.0.0.1", true),
            ("::ffff:8.8.8.8", false),
            ("::", false),
        ] {
            assert_eq!(is_local(ip.parse().expect("ip")), local, "{ip}");
        }
    }
}
