//! Latency summaries (percentiles computed as the anchors compute theirs) and the lookup
//! counters read from a node's Prometheus metrics.

use std::time::Duration;

use dht_core::Node;
use serde::{Deserialize, Serialize};

use crate::protocol::{LookupCounters, LookupSums};

/// Percentiles of a set of latencies, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

impl Summary {
    /// The summary of `samples` (any order); `None` when empty. Percentile q is the
    /// sample at rank ceil(q·n), as the anchors compute it.
    pub fn of(samples: &[Duration]) -> Option<Summary> {
        let ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        Summary::of_ms(&ms)
    }

    /// [`Summary::of`] over milliseconds.
    pub fn of_ms(samples: &[f64]) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        Some(Summary {
            count: n,
            p50: percentile(&sorted, 0.50),
            p90: percentile(&sorted, 0.90),
            p99: percentile(&sorted, 0.99),
            max: sorted[n - 1],
            mean: sorted.iter().sum::<f64>() / n as f64,
        })
    }
}

/// The sample at rank ceil(q·n) of `sorted` (ascending, not empty).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
    sorted[rank - 1]
}

/// The median of counts (the lower middle one); 0 when empty.
pub fn median(values: &[usize]) -> usize {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted
        .get(sorted.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or(0)
}

/// The lookup counters of `node`, read through its Prometheus metrics
/// (`dht_lookup_hops` and `dht_lookup_peers_contacted`, by kind).
pub fn lookup_counters(node: &Node) -> LookupCounters {
    let mut registry = prometheus_client::registry::Registry::default();
    node.register_metrics(&mut registry);
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, &registry).is_err() {
        return LookupCounters::default();
    }
    parse_lookup_counters(&text)
}

/// The lookup counters in a Prometheus text exposition.
pub fn parse_lookup_counters(text: &str) -> LookupCounters {
    let sums = |kind: &str| LookupSums {
        count: sample(text, "dht_lookup_hops_count", kind).map_or(0, |v| v as u64),
        rounds: sample(text, "dht_lookup_hops_sum", kind).unwrap_or(0.0),
        contacted: sample(text, "dht_lookup_peers_contacted_sum", kind).unwrap_or(0.0),
    };
    let unlabelled = |name: &str| {
        let prefix = format!("{name} ");
        text.lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .and_then(|value| value.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    LookupCounters {
        find_value: sums("find_value"),
        find_node: sums("find_node"),
        puts: unlabelled("dht_put_duration_seconds_count") as u64,
        put_seconds: unlabelled("dht_put_duration_seconds_sum"),
    }
}

/// The value of `name{kind="<kind>"}` in a text exposition.
fn sample(text: &str, name: &str, kind: &str) -> Option<f64> {
    let prefix = format!("{name}{{kind=\"{kind}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_rank() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = Summary::of_ms(&samples).unwrap();
        assert_eq!((s.p50, s.p90, s.p99, s.max), (50.0, 90.0, 99.0, 100.0));
        assert!((s.mean - 50.5).abs() < 1e-9);
        let one = Summary::of_ms(&[3.0]).unwrap();
        assert_eq!((one.p50, one.p99, one.max), (3.0, 3.0, 3.0));
        assert!(Summary::of_ms(&[]).is_none());
        assert_eq!(median(&[5, 1, 3]), 3);
        assert_eq!(median(&[]), 0);
    }

    #[test]
    fn lookup_counters_from_text() {
        let text = "# TYPE dht_lookup_hops histogram\n\
            dht_lookup_hops_sum{kind=\"find_value\"} 12.0\n\
            dht_lookup_hops_count{kind=\"find_value\"} 6\n\
            dht_lookup_hops_sum{kind=\"find_node\"} 40.0\n\
            dht_lookup_hops_count{kind=\"find_node\"} 10\n\
            dht_lookup_peers_contacted_sum{kind=\"find_value\"} 24.0\n\
            dht_lookup_peers_contacted_count{kind=\"find_value\"} 6\n\
            dht_put_duration_seconds_sum 0.5\n\
            dht_put_duration_seconds_count 4\n";
        let c = parse_lookup_counters(text);
        assert_eq!((c.puts, c.put_seconds), (4, 0.5));
        assert_eq!(c.find_value.count, 6);
        assert_eq!(c.find_value.rounds, 12.0);
        assert_eq!(c.find_value.contacted, 24.0);
        assert_eq!(c.find_node.count, 10);
        assert_eq!(c.find_node.contacted, 0.0);
        let later = LookupSums {
            count: 10,
            rounds: 20.0,
            contacted: 44.0,
        };
        assert_eq!(later.since(&c.find_value), (4, Some(2.0), Some(5.0)));
        assert_eq!(later.since(&later), (0, None, None));
    }
}
