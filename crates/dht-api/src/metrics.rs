//! What the API server counts, as Prometheus metrics (prometheus-client); `http.rs`
//! serves them.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// What the API server counts.
#[derive(Debug, Clone)]
pub(crate) struct ApiMetrics {
    requests: Family<RequestLabels, Counter>,
    seconds: Family<TypeLabel, Histogram>,
    /// The series of a GET answered from the store, resolved once: that is the hot
    /// path, and a family lookup hashes the labels and takes the family's lock, which
    /// every connection shares.
    get_found: Counter,
    get_seconds: Histogram,
    connections: Gauge,
    connections_refused: Counter,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    r#type: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabel {
    r#type: &'static str,
}

/// Every (type, outcome) the server counts, created up front so that each series is
/// scraped from the start (at 0) rather than appearing with its first event.
const REQUEST_OUTCOMES: [(&str, &[&str]); 3] = [
    ("get", &["found", "not_found", "error", "deadline"]),
    ("put", &["accepted", "refused"]),
    (
        "invalid",
        &["malformed", "server_message", "message_deadline"],
    ),
];

impl Default for ApiMetrics {
    fn default() -> Self {
        let requests: Family<RequestLabels, Counter> = Family::default();
        // 50 µs to about 6.5 s, doubling.
        let seconds: Family<TypeLabel, Histogram> =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.000_05, 2.0, 18)));
        let get_found = requests
            .get_or_create(&RequestLabels {
                r#type: "get",
                outcome: "found",
            })
            .clone();
        let get_seconds = seconds.get_or_create(&TypeLabel { r#type: "get" }).clone();
        let metrics = ApiMetrics {
            requests,
            seconds,
            get_found,
            get_seconds,
            connections: Gauge::default(),
            connections_refused: Counter::default(),
        };
        for (r#type, outcomes) in REQUEST_OUTCOMES {
            for outcome in outcomes {
                drop(
                    metrics
                        .requests
                        .get_or_create(&RequestLabels { r#type, outcome }),
                );
            }
            if r#type != "invalid" {
                drop(metrics.seconds.get_or_create(&TypeLabel { r#type }));
            }
        }
        metrics
    }
}

impl ApiMetrics {
    /// A request of `type` (`get`, `put`, or `invalid` for a message that closed its
    /// connection) ended with `outcome`.
    pub(crate) fn request(&self, r#type: &'static str, outcome: &'static str) {
        self.requests
            .get_or_create(&RequestLabels { r#type, outcome })
            .inc();
    }

    /// A GET was answered from this node's store `elapsed` after it was read: the
    /// `request("get", "found")` and `latency("get", elapsed)` of the hot path.
    pub(crate) fn get_found(&self, elapsed: Duration) {
        self.get_found.inc();
        self.get_seconds.observe(elapsed.as_secs_f64());
    }

    /// A GET was answered, or a PUT accepted (stored here), `elapsed` after it was read.
    pub(crate) fn latency(&self, r#type: &'static str, elapsed: Duration) {
        self.seconds
            .get_or_create(&TypeLabel { r#type })
            .observe(elapsed.as_secs_f64());
    }

    /// A client connection opened (`true`) or closed.
    pub(crate) fn connection(&self, open: bool) {
        if open {
            self.connections.inc();
        } else {
            self.connections.dec();
        }
    }

    /// A client connection was refused at `max_api_connections`.
    pub(crate) fn refused(&self) {
        self.connections_refused.inc();
    }

    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "dht_api_requests",
            "VoidPhone API requests by type (get, put, invalid) and outcome",
            self.requests.clone(),
        );
        registry.register_with_unit(
            "dht_api_request_duration",
            "Time from reading an API request to queueing its answer (GET) or storing it here (PUT)",
            Unit::Seconds,
            self.seconds.clone(),
        );
        registry.register(
            "dht_api_connections",
            "API client connections open",
            self.connections.clone(),
        );
        registry.register(
            "dht_api_connections_refused",
            "API client connections refused at max_api_connections",
            self.connections_refused.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(metrics: &ApiMetrics) -> String {
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).expect("encodes");
        out
    }

    #[test]
    fn a_local_get_counts_in_the_scraped_series() {
        let metrics = ApiMetrics::default();
        metrics.get_found(Duration::from_micros(70));
        metrics.request("get", "found");
        metrics.latency("get", Duration::from_millis(3));
        let text = text(&metrics);
        assert!(
            text.contains("dht_api_requests_total{type=\"get\",outcome=\"found\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("dht_api_request_duration_seconds_count{type=\"get\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("dht_api_requests_total{type=\"get\",outcome=\"not_found\"} 0"),
            "{text}"
        );
    }
}
