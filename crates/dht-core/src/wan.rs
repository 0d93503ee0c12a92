//! A model of internet round-trip times, for [`SimNetwork`](crate::SimNetwork): hosts
//! placed in world regions in proportion to where DHT nodes run, the round trip between
//! two regions as public ping tables between major cloud regions show it, and each
//! host's own access delay (its last mile: fibre, cable, DSL, Wi-Fi, mobile), which
//! gives the long tail. Pairwise: median about 100 ms, p99 above 300 ms.
//!
//! Deterministic: a host's region and access delay follow from the model's seed and the
//! host's address alone, so the same seed places every host again the same way.

use std::net::IpAddr;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The regions, with the share of hosts in each: an assumption, weighted to Europe and
/// North America as crawls of the IPFS DHT find its nodes.
const REGIONS: [(&str, f64); 8] = [
    ("north-america-east", 0.28),
    ("north-america-west", 0.12),
    ("europe", 0.40),
    ("asia-east", 0.10),
    ("asia-south", 0.04),
    ("south-america", 0.03),
    ("oceania", 0.02),
    ("africa", 0.01),
];

/// Round trips between (the data centres of) two regions, in ms; the diagonal is the
/// round trip within a region. Rounded from public inter-region ping tables
/// (e.g. Virginia–Frankfurt 90, Virginia–Oregon 65, Frankfurt–Mumbai 110,
/// Tokyo–Sydney 105, São Paulo–Frankfurt 200, Frankfurt–Johannesburg 155).
const REGION_RTT_MS: [[u32; 8]; 8] = [
    // NA-E NA-W  EU  AS-E AS-S  SA  OCE  AFR
    [20, 65, 85, 160, 200, 120, 200, 230], // north-america-east
    [65, 20, 140, 110, 220, 170, 140, 290], // north-america-west
    [85, 140, 20, 230, 115, 200, 280, 160], // europe
    [160, 110, 230, 30, 90, 260, 110, 320], // asia-east
    [200, 220, 115, 90, 30, 300, 150, 280], // asia-south
    [120, 170, 200, 260, 300, 30, 310, 340], // south-america
    [200, 140, 280, 110, 150, 310, 20, 410], // oceania
    [230, 290, 160, 320, 280, 340, 410, 40], // africa
];

/// Internet round-trip times between hosts (see the module documentation).
#[derive(Debug, Clone, Copy)]
pub struct WanModel {
    seed: u64,
}

/// Where the model puts one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// Index into the model's regions ([`WanModel::region_name`]).
    pub region: usize,
    /// The host's own share of every round trip (both directions of its last mile).
    pub access: Duration,
}

impl WanModel {
    /// The model whose placements follow from `seed`.
    pub fn new(seed: u64) -> Self {
        WanModel { seed }
    }

    /// The name of region `index`.
    pub fn region_name(index: usize) -> &'static str {
        REGIONS.get(index).map_or("unknown", |(name, _)| name)
    }

    /// Where `host` is.
    pub fn place(&self, host: IpAddr) -> Placement {
        let bits = match host {
            IpAddr::V4(v4) => u128::from(u32::from(v4)),
            IpAddr::V6(v6) => u128::from(v6),
        };
        let mut rng = StdRng::seed_from_u64(self.seed ^ (bits as u64) ^ ((bits >> 64) as u64));
        let mut pick = rng.gen_range(0.0..1.0);
        let mut region = REGIONS.len() - 1;
        for (i, (_, share)) in REGIONS.iter().enumerate() {
            if pick < *share {
                region = i;
                break;
            }
            pick -= share;
        }
        // Last mile: mostly a few ms, a long tail (congested Wi-Fi, mobile, far from
        // any exchange): log-normal, median 4 ms, capped at 250 ms.
        let normal: f64 = {
            // Box–Muller from two uniform draws.
            let (u1, u2): (f64, f64) = (rng.gen_range(f64::EPSILON..1.0), rng.r#gen());
            (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
        };
        let access_ms = (4.0 * (1.2 * normal).exp()).min(250.0);
        Placement {
            region,
            access: Duration::from_secs_f64(access_ms / 1000.0),
        }
    }

    /// The round trip between `a` and `b`.
    pub fn rtt(&self, a: IpAddr, b: IpAddr) -> Duration {
        if a == b {
            return Duration::ZERO;
        }
        let (pa, pb) = (self.place(a), self.place(b));
        let core = Duration::from_millis(u64::from(REGION_RTT_MS[pa.region][pb.region]));
        core + pa.access + pb.access
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn host(i: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))
    }

    #[test]
    fn the_table_is_symmetric_and_shares_add_up() {
        for (i, row) in REGION_RTT_MS.iter().enumerate() {
            for (j, rtt) in row.iter().enumerate() {
                assert_eq!(*rtt, REGION_RTT_MS[j][i], "{i} -> {j}");
            }
        }
        let total: f64 = REGIONS.iter().map(|(_, share)| share).sum();
        assert!((total - 1.0).abs() < 1e-9);
    }

    #[test]
    fn pairs_have_an_internet_like_distribution() {
        for seed in 1..=4 {
            let model = WanModel::new(seed);
            let mut rtts: Vec<Duration> = (0..400u32)
                .flat_map(|a| (a + 1..400).step_by(7).map(move |b| (a, b)))
                .map(|(a, b)| model.rtt(host(a), host(b)))
                .collect();
            rtts.sort();
            let at = |q: f64| rtts[((rtts.len() - 1) as f64 * q) as usize];
            let (p50, p99) = (at(0.5), at(0.99));
            assert!(
                Duration::from_millis(80) <= p50 && p50 <= Duration::from_millis(120),
                "seed {seed}: median {p50:?}"
            );
            assert!(
                p99 >= Duration::from_millis(300),
                "seed {seed}: p99 {p99:?}"
            );
            // Every region gets hosts.
            let mut seen = [0usize; REGIONS.len()];
            for i in 0..400 {
                seen[model.place(host(i)).region] += 1;
            }
            assert!(seen.iter().all(|&n| n > 0), "seed {seed}: {seen:?}");
        }
    }

    #[test]
    fn the_seed_decides_the_placement() {
        let (a, b) = (WanModel::new(1), WanModel::new(1));
        for i in 0..50 {
            assert_eq!(a.place(host(i)), b.place(host(i)));
            assert_eq!(a.rtt(host(i), host(i + 1)), a.rtt(host(i + 1), host(i)));
        }
        let other = WanModel::new(2);
        assert!((0..50).any(|i| a.place(host(i)) != other.place(host(i))));
        assert_eq!(a.rtt(host(3), host(3)), Duration::ZERO);
    }
}
