//! The node's Prometheus metrics (prometheus-client): what it measures as things happen
//! (requests to peers by kind and outcome, their latency, lookups, GETs and PUTs), and a
//! collector that reads the node's counters and sizes on each scrape (connections,
//! routing table per bucket range, records, and every defence's counter).
//!
//! The metrics are registered into a caller's [`Registry`] by
//! [`Node::register_metrics`](crate::Node::register_metrics): the node serves nothing
//! itself; `dht-api` serves the registry over HTTP.

use std::sync::{Arc, Weak};
use std::time::Duration;

use dht_wire::PeerMessage;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::activity::{LookupKind, UpkeepKind};
use crate::error::RpcError;
use crate::node::Inner;

/// The kind of a request to a peer, as a label value.
pub(crate) fn request_kind(message: &PeerMessage) -> &'static str {
    match message {
        PeerMessage::Hello(_) => "hello",
        PeerMessage::Ping => "ping",
        PeerMessage::FindNode { .. } => "find_node",
        PeerMessage::FindValue { .. } => "find_value",
        PeerMessage::Store { .. } => "store",
        PeerMessage::Replicate { .. } => "replicate",
        _ => "other",
    }
}

/// The outcome of a request to a peer, as a label value.
pub(crate) fn rpc_outcome(result: &Result<PeerMessage, RpcError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(RpcError::Connect(_)) => "connect_failed",
        Err(RpcError::Timeout) => "timeout",
        Err(RpcError::Closed) => "closed",
        Err(RpcError::Overloaded) => "in_flight_limit",
        Err(RpcError::LocalLimit) => "local_connection_limit",
        Err(RpcError::PeerOverloaded) => "peer_overloaded",
        Err(RpcError::Unexpected(_)) => "peer_error",
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BucketsLabel {
    buckets: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// Latency buckets in seconds: 50 µs to about 6.5 s, doubling.
fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.000_05, 2.0, 18)
}

fn latency_histogram() -> Histogram {
    Histogram::new(latency_buckets())
}

/// What the node measures as it works. Each metric is shared (prometheus-client metrics
/// are handles): the node updates them, the registry reads them.
#[derive(Debug)]
pub(crate) struct Metrics {
    rpcs: Family<RpcLabels, Counter>,
    rpc_seconds: Family<KindLabel, Histogram>,
    lookup_hops: Family<KindLabel, Histogram>,
    lookup_contacted: Family<KindLabel, Histogram>,
    lookups: Family<RpcLabels, Counter>,
    lookup_seconds: Family<KindLabel, Histogram>,
    upkeep_rounds: Family<KindLabel, Counter>,
    upkeep_seconds: Family<KindLabel, Histogram>,
    gets: Family<OutcomeLabel, Counter>,
    /// `gets` of outcome `found`, resolved once: a local GET is the hot path, and a
    /// family lookup hashes the labels and takes the family's lock, shared by all
    /// threads.
    gets_found: Counter,
    get_seconds: Histogram,
    puts: Family<OutcomeLabel, Counter>,
    put_seconds: Histogram,
    put_replicas: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let counts = || {
            Histogram::new([
                1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0, 30.0, 50.0, 100.0,
            ])
        };
        let gets: Family<OutcomeLabel, Counter> = Family::default();
        let gets_found = gets
            .get_or_create(&OutcomeLabel { outcome: "found" })
            .clone();
        let metrics = Metrics {
            rpcs: Family::default(),
            rpc_seconds: Family::new_with_constructor(latency_histogram),
            lookup_hops: Family::new_with_constructor(counts),
            lookup_contacted: Family::new_with_constructor(counts),
            lookups: Family::default(),
            lookup_seconds: Family::new_with_constructor(latency_histogram),
            upkeep_rounds: Family::default(),
            upkeep_seconds: Family::new_with_constructor(latency_histogram),
            gets,
            gets_found,
            get_seconds: latency_histogram(),
            puts: Family::default(),
            put_seconds: latency_histogram(),
            put_replicas: counts(),
        };
        // Every series exists from the start (at 0), so that scrapers see it before its
        // first event.
        for kind in RPC_KINDS {
            for outcome in RPC_OUTCOMES {
                drop(metrics.rpcs.get_or_create(&RpcLabels { kind, outcome }));
            }
            drop(metrics.rpc_seconds.get_or_create(&KindLabel { kind }));
        }
        for kind in [LookupKind::FindNode, LookupKind::FindValue].map(LookupKind::as_str) {
            drop(metrics.lookup_hops.get_or_create(&KindLabel { kind }));
            drop(metrics.lookup_contacted.get_or_create(&KindLabel { kind }));
            drop(metrics.lookup_seconds.get_or_create(&KindLabel { kind }));
            for outcome in ["succeeded", "failed"] {
                drop(metrics.lookups.get_or_create(&RpcLabels { kind, outcome }));
            }
        }
        for kind in UpkeepKind::ALL.map(UpkeepKind::as_str) {
            drop(metrics.upkeep_rounds.get_or_create(&KindLabel { kind }));
            drop(metrics.upkeep_seconds.get_or_create(&KindLabel { kind }));
        }
        for outcome in ["found", "not_found", "error"] {
            drop(metrics.gets.get_or_create(&OutcomeLabel { outcome }));
        }
        for outcome in ["replicated", "partly_replicated", "local_only", "error"] {
            drop(metrics.puts.get_or_create(&OutcomeLabel { outcome }));
        }
        metrics
    }
}

/// The kinds of request a node sends ([`request_kind`]).
const RPC_KINDS: [&str; 5] = ["ping", "find_node", "find_value", "store", "replicate"];
/// The outcomes of a request ([`rpc_outcome`]).
const RPC_OUTCOMES: [&str; 8] = [
    "ok",
    "connect_failed",
    "timeout",
    "closed",
    "in_flight_limit",
    "local_connection_limit",
    "peer_overloaded",
    "peer_error",
];

impl Metrics {
    /// One request to a peer finished (answered or failed) after `elapsed`.
    pub(crate) fn rpc(&self, kind: &'static str, outcome: &'static str, elapsed: Duration) {
        self.rpcs.get_or_create(&RpcLabels { kind, outcome }).inc();
        self.rpc_seconds
            .get_or_create(&KindLabel { kind })
            .observe(elapsed.as_secs_f64());
    }

    /// A lookup finished after `elapsed`; `succeeded`: some peer answered it.
    pub(crate) fn lookup(
        &self,
        kind: LookupKind,
        hops: usize,
        contacted: usize,
        succeeded: bool,
        elapsed: Duration,
    ) {
        let kind = kind.as_str();
        let label = KindLabel { kind };
        self.lookup_hops.get_or_create(&label).observe(hops as f64);
        self.lookup_contacted
            .get_or_create(&label)
            .observe(contacted as f64);
        if contacted == 0 {
            // Nobody to ask (an empty table): no lookup of the network took place.
            return;
        }
        self.lookup_seconds
            .get_or_create(&label)
            .observe(elapsed.as_secs_f64());
        let outcome = if succeeded { "succeeded" } else { "failed" };
        self.lookups
            .get_or_create(&RpcLabels { kind, outcome })
            .inc();
    }

    /// An upkeep round that did some work took `elapsed`.
    pub(crate) fn upkeep(&self, kind: UpkeepKind, elapsed: Duration) {
        let label = KindLabel {
            kind: kind.as_str(),
        };
        self.upkeep_rounds.get_or_create(&label).inc();
        self.upkeep_seconds
            .get_or_create(&label)
            .observe(elapsed.as_secs_f64());
    }

    /// A GET finished: `outcome` is `found`, `not_found` or `error`.
    pub(crate) fn get(&self, outcome: &'static str, elapsed: Duration) {
        if outcome == "found" {
            self.gets_found.inc();
        } else {
            self.gets.get_or_create(&OutcomeLabel { outcome }).inc();
        }
        self.get_seconds.observe(elapsed.as_secs_f64());
    }

    /// A PUT finished its replication: `replicas` peers acknowledged it.
    pub(crate) fn put(&self, outcome: &'static str, replicas: usize, elapsed: Duration) {
        self.puts.get_or_create(&OutcomeLabel { outcome }).inc();
        self.put_seconds.observe(elapsed.as_secs_f64());
        self.put_replicas.observe(replicas as f64);
    }

    /// Registers every metric, and a collector of the node's counters and sizes that
    /// reads `inner` on each scrape (and reports nothing once the node is gone).
    pub(crate) fn register(&self, registry: &mut Registry, inner: Weak<Inner>) {
        registry.register(
            "dht_rpc_requests",
            "Requests this node sent to peers, by kind and outcome",
            self.rpcs.clone(),
        );
        registry.register_with_unit(
            "dht_rpc_duration",
            "Time from sending a request to a peer (connecting first if needed) to its answer or failure",
            Unit::Seconds,
            self.rpc_seconds.clone(),
        );
        registry.register(
            "dht_lookup_hops",
            "Rounds of an iterative lookup",
            self.lookup_hops.clone(),
        );
        registry.register(
            "dht_lookup_peers_contacted",
            "Distinct peers asked by one iterative lookup",
            self.lookup_contacted.clone(),
        );
        registry.register(
            "dht_lookups",
            "Iterative lookups by kind and outcome (succeeded: some peer answered)",
            self.lookups.clone(),
        );
        registry.register_with_unit(
            "dht_lookup_duration",
            "Time an iterative lookup took",
            Unit::Seconds,
            self.lookup_seconds.clone(),
        );
        registry.register(
            "dht_upkeep_rounds",
            "Upkeep rounds that did some work, by kind (join, liveness, refresh, replication)",
            self.upkeep_rounds.clone(),
        );
        registry.register_with_unit(
            "dht_upkeep_round_duration",
            "Time an upkeep round that did some work took",
            Unit::Seconds,
            self.upkeep_seconds.clone(),
        );
        registry.register(
            "dht_gets",
            "GETs through this node (embedded or API), by outcome",
            self.gets.clone(),
        );
        registry.register_with_unit(
            "dht_get_duration",
            "Time a GET took, local hits included",
            Unit::Seconds,
            self.get_seconds.clone(),
        );
        registry.register(
            "dht_puts",
            "PUTs through this node whose replication finished, by outcome",
            self.puts.clone(),
        );
        registry.register_with_unit(
            "dht_put_duration",
            "Time from a PUT to the end of its replication to the closest nodes",
            Unit::Seconds,
            self.put_seconds.clone(),
        );
        registry.register(
            "dht_put_replicas",
            "Peers that acknowledged a PUT's record",
            self.put_replicas.clone(),
        );
        registry.register_collector(Box::new(NodeCollector { inner }));
    }
}

/// Reads the node's sizes and counters at scrape time.
#[derive(Debug)]
struct NodeCollector {
    inner: Weak<Inner>,
}

/// The bucket ranges the routing table is reported in (bucket = bits shared with our id).
const BUCKET_RANGES: [(usize, usize); 9] = [
    (0, 3),
    (4, 7),
    (8, 11),
    (12, 15),
    (16, 19),
    (20, 23),
    (24, 31),
    (32, 63),
    (64, 255),
];

fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let gauge = ConstGauge::new(value);
    gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
}

impl Collector for NodeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(inner) = self.inner.upgrade() else {
            return Ok(());
        };
        let stats = inner.stats();
        let per_bucket = per_bucket_range(&inner);
        let to_i64 = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
        let now = crate::node::mono_now();
        gauge(
            &mut encoder,
            "dht_ready",
            "1 when the node is ready (joined, a live contact, the store open), else 0",
            i64::from(inner.not_ready().is_none()),
        )?;
        gauge(
            &mut encoder,
            "dht_uptime_seconds",
            "Seconds since the node started",
            i64::try_from(inner.activity.uptime(now).as_secs()).unwrap_or(i64::MAX),
        )?;
        {
            let minute = inner.activity.lookups_last_minute(now);
            let mut family = encoder.encode_descriptor(
                "dht_lookups_last_minute",
                "Iterative lookups that ended in the last 60 seconds, by outcome",
                None,
                MetricType::Gauge,
            )?;
            for (outcome, count) in [("succeeded", minute.succeeded), ("failed", minute.failed)] {
                ConstGauge::new(i64::try_from(count).unwrap_or(i64::MAX))
                    .encode(family.encode_family(&OutcomeLabel { outcome })?)?;
            }
        }
        gauge(
            &mut encoder,
            "dht_open_connections",
            "Peer connections open, handshakes included",
            to_i64(stats.open_connections),
        )?;
        gauge(
            &mut encoder,
            "dht_connected_peers",
            "Peers with a connection in use",
            to_i64(stats.connected_peers),
        )?;
        gauge(
            &mut encoder,
            "dht_routing_table_contacts",
            "Contacts in the routing table",
            to_i64(stats.routing_table_len),
        )?;
        {
            let mut family = encoder.encode_descriptor(
                "dht_routing_bucket_contacts",
                "Contacts in the routing table by bucket range (bits shared with this node's id)",
                None,
                MetricType::Gauge,
            )?;
            for ((low, high), count) in BUCKET_RANGES.iter().zip(per_bucket) {
                let labels = BucketsLabel {
                    buckets: format!("{low}-{high}"),
                };
                ConstGauge::new(to_i64(count)).encode(family.encode_family(&labels)?)?;
            }
        }
        gauge(
            &mut encoder,
            "dht_stored_records",
            "Records in the local store",
            to_i64(stats.stored_records),
        )?;
        gauge(
            &mut encoder,
            "dht_stored_bytes",
            "Bytes of records (keys and values) in the local store",
            to_i64(stats.stored_bytes),
        )?;
        let rejected: [(&'static str, u64); 11] = [
            ("handshake_failed", stats.handshakes_refused),
            ("per_ip_connection_limit", stats.connections_refused_ip),
            ("connection_limit", stats.connections_refused_full),
            ("frame_deadline", stats.message_deadline_cuts),
            ("malformed_frame", stats.frames_malformed),
            ("unsolicited_answer", stats.frames_unsolicited),
            ("rate_limited", stats.requests_rate_limited),
            ("contacts_without_pow", stats.contacts_rejected_pow),
            ("value_held_back", stats.values_held_back),
            ("store_quota", stats.stores_refused_quota),
            ("peer_penalised", stats.peers_penalised),
        ];
        reason_counters(
            &mut encoder,
            "dht_rejected",
            "Connections, frames, requests and contacts refused or cut by a defence, by reason",
            &rejected,
        )?;
        let opened = encoder.encode_descriptor(
            "dht_connections_opened",
            "Peer connections established (TLS and HELLO done), dialled or accepted",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(stats.connections_opened).encode(opened)?;
        reason_counters(
            &mut encoder,
            "dht_connections_closed",
            "Idle peer connections closed by this node, by reason",
            &[
                ("idle_timeout", stats.connections_idle_closed),
                ("evicted_for_newcomer", stats.connections_evicted),
                ("transient_limit", stats.connections_trimmed),
            ],
        )
    }
}

/// One counter family labelled by `reason`.
fn reason_counters(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    counts: &[(&'static str, u64)],
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for &(reason, count) in counts {
        ConstCounter::new(count).encode(family.encode_family(&ReasonLabel { reason })?)?;
    }
    Ok(())
}

/// Contacts per entry of [`BUCKET_RANGES`].
fn per_bucket_range(inner: &Arc<Inner>) -> [usize; BUCKET_RANGES.len()] {
    let mut counts = [0; BUCKET_RANGES.len()];
    for contact in inner.routing().iter() {
        let Some(bucket) = inner.id.bucket_index(&contact.id) else {
            continue;
        };
        if let Some(slot) = BUCKET_RANGES
            .iter()
            .position(|&(low, high)| (low..=high).contains(&bucket))
        {
            counts[slot] += 1;
        }
    }
    counts
}
