//! The rows of the benchmark table: for each, our figure and the anchors' figure it is
//! compared with (the anchors measure fewer things: the others show "—").

/// One row: a label, our figure key, the anchors' figure key (if they measure it),
/// the unit.
pub(super) struct Row {
    /// What the row shows.
    pub(super) label: &'static str,
    /// Our figure's key (`bench/src/results.rs`).
    pub(super) ours: &'static str,
    /// The anchors' figure key (`anchors.rs`), when they measure it.
    pub(super) anchor: Option<&'static str>,
    /// The unit shown.
    pub(super) unit: &'static str,
}

const fn row(
    label: &'static str,
    ours: &'static str,
    anchor: Option<&'static str>,
    unit: &'static str,
) -> Row {
    Row {
        label,
        ours,
        anchor,
        unit,
    }
}

/// The rows of the table, in order.
pub(super) const ROWS: &[Row] = &[
    row(
        "start-up, whole network",
        "startup.network_ms",
        Some("startup.network_ms"),
        "ms",
    ),
    row(
        "new node: start → joined",
        "startup.new_node_join_ms",
        Some("startup.new_node_join_ms"),
        "ms",
    ),
    row(
        "new node: start → first GET",
        "startup.new_node_first_get_ms",
        None,
        "ms",
    ),
    row(
        "GET p50, dht-core, r=20",
        "get.core.r20.p50",
        Some("get.p50"),
        "ms",
    ),
    row(
        "GET p90, dht-core, r=20",
        "get.core.r20.p90",
        Some("get.p90"),
        "ms",
    ),
    row(
        "GET p99, dht-core, r=20",
        "get.core.r20.p99",
        Some("get.p99"),
        "ms",
    ),
    row(
        "GET max, dht-core, r=20",
        "get.core.r20.max",
        Some("get.max"),
        "ms",
    ),
    row(
        "GET p50, dht-core, r=3",
        "get.core.r3.p50",
        Some("get.p50"),
        "ms",
    ),
    row(
        "GET p90, dht-core, r=3",
        "get.core.r3.p90",
        Some("get.p90"),
        "ms",
    ),
    row(
        "GET p99, dht-core, r=3",
        "get.core.r3.p99",
        Some("get.p99"),
        "ms",
    ),
    row(
        "GET max, dht-core, r=3",
        "get.core.r3.max",
        Some("get.max"),
        "ms",
    ),
    row("GET p50, API, r=20", "get.api.r20.p50", None, "ms"),
    row("GET p99, API, r=20", "get.api.r20.p99", None, "ms"),
    row("GET p50, API, r=3", "get.api.r3.p50", None, "ms"),
    row("GET p90, API, r=3", "get.api.r3.p90", None, "ms"),
    row("GET p99, API, r=3", "get.api.r3.p99", None, "ms"),
    row("GET max, API, r=3", "get.api.r3.max", None, "ms"),
    row(
        "peers contacted per GET lookup, r=3",
        "lookup.get.core.r3.contacted",
        None,
        "",
    ),
    row(
        "rounds per GET lookup, r=3",
        "lookup.get.core.r3.rounds",
        None,
        "",
    ),
    row(
        "peers contacted per GET lookup, r=20",
        "lookup.get.core.r20.contacted",
        None,
        "",
    ),
    row(
        "rounds per GET lookup, r=20",
        "lookup.get.core.r20.rounds",
        None,
        "",
    ),
    row(
        "peers contacted per PUT lookup",
        "lookup.put.r3.contacted",
        None,
        "",
    ),
    row(
        "PUT p50, dht-core, until 20 acked",
        "put.core.r20.p50",
        Some("put.p50"),
        "ms",
    ),
    row(
        "PUT p99, dht-core, until 20 acked",
        "put.core.r20.p99",
        Some("put.p99"),
        "ms",
    ),
    row(
        "PUT max, dht-core, until 20 acked",
        "put.core.r20.max",
        Some("put.max"),
        "ms",
    ),
    row(
        "PUT p50, dht-core, until 3 acked",
        "put.core.r3.p50",
        Some("put.p50"),
        "ms",
    ),
    row(
        "PUT p99, dht-core, until 3 acked",
        "put.core.r3.p99",
        Some("put.p99"),
        "ms",
    ),
    row(
        "PUT p50, API, until found elsewhere, r=3",
        "put.api.r3.p50",
        None,
        "ms",
    ),
    row(
        "PUT p99, API, until found elsewhere, r=3",
        "put.api.r3.p99",
        None,
        "ms",
    ),
    row(
        "PUT p50, API, until found elsewhere, r=20",
        "put.api.r20.p50",
        None,
        "ms",
    ),
    row(
        "API GET/s local keys, 1 conn",
        "tput.get_local.c1",
        None,
        "/s",
    ),
    row(
        "API GET/s local keys, 8 conns",
        "tput.get_local.c8",
        None,
        "/s",
    ),
    row(
        "API GET/s local keys, 64 conns",
        "tput.get_local.c64",
        None,
        "/s",
    ),
    row(
        "API GET/s lookup keys, 1 conn",
        "tput.get_lookup.c1",
        Some("tput.get_lookup.c1"),
        "/s",
    ),
    row(
        "API GET/s lookup keys, 8 conns",
        "tput.get_lookup.c8",
        Some("tput.get_lookup.c8"),
        "/s",
    ),
    row(
        "API GET/s lookup keys, 64 conns",
        "tput.get_lookup.c64",
        Some("tput.get_lookup.c64"),
        "/s",
    ),
    row(
        "API PUT/s accepted, 1 conn",
        "tput.put.c1",
        Some("tput.put.c1"),
        "/s",
    ),
    row(
        "API PUT/s accepted, 8 conns",
        "tput.put.c8",
        Some("tput.put.c8"),
        "/s",
    ),
    row(
        "API PUT/s accepted, 64 conns",
        "tput.put.c64",
        Some("tput.put.c64"),
        "/s",
    ),
    row(
        "PUT replication time during API PUT/s, 64 conns, mean",
        "tput.put.c64.mean_ms",
        None,
        "ms",
    ),
    row(
        "worker CPU per PUT accepted, 64 conns",
        "tput.put.c64.worker_cpu_ms",
        None,
        "ms",
    ),
    row(
        "connections established during API PUT/s, 64 conns, all nodes",
        "tput.put.c64.conns_opened",
        None,
        "",
    ),
    row(
        "requests rate-limited during API PUT/s, 64 conns, all nodes",
        "tput.put.c64.rate_limited",
        None,
        "",
    ),
    row(
        "requests rate-limited during API GET/s lookup keys, 64 conns, all nodes",
        "tput.get_lookup.c64.rate_limited",
        None,
        "",
    ),
    row(
        "API PUTs confirmed by GETs",
        "tput.put.confirmed",
        None,
        "share",
    ),
    row(
        "memory per node (VmHWM/N), after the PUT/GET series",
        "mem.after_latency_kb",
        Some("mem.kb"),
        "kB",
    ),
    row(
        "memory per node (VmHWM/N), after throughput too",
        "mem.after_ops_kb",
        None,
        "kB",
    ),
    row("memory per node (VmHWM/N), idle", "mem.idle_kb", None, "kB"),
    row(
        "memory per node (VmHWM/N), 10,000 records",
        "mem.loaded_kb",
        None,
        "kB",
    ),
    row(
        "API GET/s, a server that only answers (the ceiling here), 64 conns",
        "tput.echo.c64",
        None,
        "/s",
    ),
    row(
        "first request over a new connection (TCP, TLS, HELLO, PING), p50",
        "conn.new.p50",
        None,
        "ms",
    ),
    row(
        "request over an open connection (PING), p50",
        "conn.open.p50",
        None,
        "ms",
    ),
    row(
        "open connections per node, median",
        "conns.median",
        Some("conns.median"),
        "",
    ),
    row("open connections per node, p99", "conns.p99", None, ""),
    row("open connections per node, max", "conns.max", None, ""),
    row(
        "routing-table contacts, median",
        "routing.median",
        Some("routing.median"),
        "",
    ),
    row(
        "connections evicted at the bound, per node",
        "conns.evicted_per_node",
        None,
        "",
    ),
    row(
        "connections refused at the bound, all nodes",
        "conns.refused_full",
        None,
        "",
    ),
    row(
        "requests rate-limited, all nodes",
        "requests.rate_limited",
        None,
        "",
    ),
    row(
        "connections established per node per minute, idle",
        "conns.opened_idle_per_min",
        None,
        "/min",
    ),
    row("idle CPU per node", "cpu.idle_ms_per_s", None, "ms/s"),
];
