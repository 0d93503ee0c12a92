//! Unfinished inbound handshakes: at most [`HANDSHAKES_PER_IP`] per address and
//! [`HANDSHAKES_PER_PREFIX`] per network (/24 for IPv4, /48 for IPv6) at once, and, when
//! every connection slot and every place of the handshake reserve is taken, the oldest
//! unfinished one is shed to let a newcomer in. A bare TCP connect costs its sender a
//! socket for `connect_timeout`; without these bounds a few dozen addresses holding
//! bare connects kept every newcomer out (issue 18, attack 3), and a bootstrap node
//! could admit nobody during a flood. Connections that finished their handshake are not
//! affected.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::node::lock;

/// Unfinished inbound handshakes from one address at most.
pub(crate) const HANDSHAKES_PER_IP: usize = 4;
/// Unfinished inbound handshakes from one /24 (IPv4) or /48 (IPv6) at most.
pub(crate) const HANDSHAKES_PER_PREFIX: usize = 16;

/// The unfinished inbound handshakes of a node.
#[derive(Debug, Default)]
pub(crate) struct Handshakes {
    next: u64,
    /// By age: the oldest has the lowest number.
    pending: BTreeMap<u64, Pending>,
    per_ip: HashMap<IpAddr, usize>,
    per_prefix: HashMap<IpAddr, usize>,
}

#[derive(Debug)]
struct Pending {
    ip: IpAddr,
    prefix: IpAddr,
    shed: CancellationToken,
    /// Whether it holds a connection slot or a reserve place: shedding one that waits
    /// for a place (or the newcomer itself) would free nothing.
    has_place: bool,
}

/// Why a handshake was not admitted.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Crowded {
    /// Its address has [`HANDSHAKES_PER_IP`] unfinished.
    Ip,
    /// Its network has [`HANDSHAKES_PER_PREFIX`] unfinished.
    Prefix,
}

/// An unfinished handshake's place; it leaves the registry when dropped.
pub(crate) struct HandshakeGuard {
    registry: Arc<Mutex<Handshakes>>,
    id: u64,
    /// Cancelled when the handshake is shed for a newcomer.
    pub(crate) shed: CancellationToken,
}

impl HandshakeGuard {
    /// Notes that this handshake now holds a slot or a reserve place, which shedding it
    /// frees.
    pub(crate) fn holds_place(&self) {
        if let Some(pending) = lock(&self.registry).pending.get_mut(&self.id) {
            pending.has_place = true;
        }
    }
}

impl Drop for HandshakeGuard {
    fn drop(&mut self) {
        lock(&self.registry).end(self.id);
    }
}

/// The network of `ip`: its /24 (IPv4) or /48 (IPv6).
fn prefix_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, 0))
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 80) - 1);
            IpAddr::V6(std::net::Ipv6Addr::from(bits))
        }
    }
}

impl Handshakes {
    /// Registers a handshake from `ip` (`exempt`: no per-address or per-network bound,
    /// for loopback and private addresses unless the node limits them).
    pub(crate) fn begin(
        registry: &Arc<Mutex<Handshakes>>,
        ip: IpAddr,
        exempt: bool,
    ) -> Result<HandshakeGuard, Crowded> {
        let mut this = lock(registry);
        let prefix = prefix_of(ip);
        if !exempt {
            if this.per_ip.get(&ip).copied().unwrap_or(0) >= HANDSHAKES_PER_IP {
                return Err(Crowded::Ip);
            }
            if this.per_prefix.get(&prefix).copied().unwrap_or(0) >= HANDSHAKES_PER_PREFIX {
                return Err(Crowded::Prefix);
            }
        }
        *this.per_ip.entry(ip).or_insert(0) += 1;
        *this.per_prefix.entry(prefix).or_insert(0) += 1;
        let id = this.next;
        this.next += 1;
        let shed = CancellationToken::new();
        this.pending.insert(
            id,
            Pending {
                ip,
                prefix,
                shed: shed.clone(),
                has_place: false,
            },
        );
        Ok(HandshakeGuard {
            registry: registry.clone(),
            id,
            shed,
        })
    }

    /// Sheds the oldest unfinished handshake that holds a place (its task ends and
    /// frees it); false when none is left to shed.
    pub(crate) fn shed_oldest(&mut self) -> bool {
        let oldest = self
            .pending
            .values()
            .find(|p| p.has_place && !p.shed.is_cancelled())
            .map(|p| p.shed.clone());
        match oldest {
            Some(shed) => {
                shed.cancel();
                true
            }
            None => false,
        }
    }

    fn end(&mut self, id: u64) {
        let Some(pending) = self.pending.remove(&id) else {
            return;
        };
        for (map, key) in [
            (&mut self.per_ip, pending.ip),
            (&mut self.per_prefix, pending.prefix),
        ] {
            if let Some(count) = map.get_mut(&key) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    map.remove(&key);
                }
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("literal")
    }

    #[test]
    fn handshakes_are_bounded_per_address_and_per_network() {
        let registry = Arc::new(Mutex::new(Handshakes::default()));
        let mut held = Vec::new();
        for _ in 0..HANDSHAKES_PER_IP {
            held.push(Handshakes::begin(&registry, ip("203.0.113.7"), false).expect("room"));
        }
        assert_eq!(
            Handshakes::begin(&registry, ip("203.0.113.7"), false).err(),
            Some(Crowded::Ip)
        );
        for n in 1..=(HANDSHAKES_PER_PREFIX - HANDSHAKES_PER_IP) {
            let other = ip(&format!("203.0.113.{}", 100 + n));
            held.push(Handshakes::begin(&registry, other, false).expect("room"));
        }
        assert_eq!(
            Handshakes::begin(&registry, ip("203.0.113.250"), false).err(),
            Some(Crowded::Prefix)
        );
        // Another network, and exempt addresses, are not affected.
        assert!(Handshakes::begin(&registry, ip("198.51.100.1"), false).is_ok());
        let exempt = Handshakes::begin(&registry, ip("203.0.113.7"), true);
        assert!(exempt.is_ok());
        drop(exempt);
        // A finished handshake frees its places.
        held.pop();
        assert!(Handshakes::begin(&registry, ip("203.0.113.250"), false).is_ok());
    }

    #[test]
    fn the_oldest_unfinished_handshake_is_shed_first() {
        let registry = Arc::new(Mutex::new(Handshakes::default()));
        let first = Handshakes::begin(&registry, ip("192.0.2.1"), false).expect("room");
        let second = Handshakes::begin(&registry, ip("192.0.2.2"), false).expect("room");
        // Neither holds a place yet (a newcomer, or one waiting for a shed place):
        // shedding either would free nothing.
        assert!(!lock(&registry).shed_oldest());
        assert!(!first.shed.is_cancelled() && !second.shed.is_cancelled());
        first.holds_place();
        second.holds_place();
        assert!(lock(&registry).shed_oldest());
        assert!(first.shed.is_cancelled() && !second.shed.is_cancelled());
        assert!(lock(&registry).shed_oldest());
        assert!(second.shed.is_cancelled());
        assert!(!lock(&registry).shed_oldest(), "nothing left to shed");
        drop((first, second));
        assert_eq!(lock(&registry).len(), 0);
        // IPv6 networks are /48s.
        assert_eq!(prefix_of(ip("2001:db8:1:2::5")), ip("2001:db8:1::"));
    }
}
