//! The `/metrics` endpoint, scraped over HTTP as Prometheus would: every family the
//! operations guide promises is there, and the values follow what the node did
//! (API requests by type and outcome, PUT replication, requests to peers, lookups,
//! routing table by bucket range, stored records).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use dht_core::Key;
use dht_tests::http::{HttpAnswer, http_get, samples, serve_endpoint};
use dht_tests::{ApiClient, init_tracing, start_network, wait_for};
use tokio::io::AsyncWriteExt;

async fn scrape(addr: SocketAddr) -> anyhow::Result<HashMap<String, f64>> {
    let HttpAnswer {
        status,
        headers,
        body,
    } = http_get(addr, "/metrics").await?;
    anyhow::ensure!(status.contains("200"), "status {status}");
    anyhow::ensure!(
        headers.contains("content-type: application/openmetrics-text"),
        "headers {headers}"
    );
    anyhow::ensure!(body.ends_with("# EOF\n"), "not a whole OpenMetrics text");
    Ok(samples(&body))
}

fn value(samples: &HashMap<String, f64>, series: &str) -> f64 {
    match samples.get(series) {
        Some(v) => *v,
        None => panic!("no sample {series}; have: {:#?}", {
            let mut names: Vec<_> = samples.keys().collect();
            names.sort();
            names
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_what_the_node_did() -> anyhow::Result<()> {
    init_tracing();
    let (bootstrap, nodes) = start_network(6).await?;
    let a = &nodes[0];
    let server = serve_endpoint(a).await?;
    let addr = server.local_addr();

    // Before any request: the families are there, with nothing counted.
    let before = scrape(addr).await?;
    assert_eq!(value(&before, "dht_stored_records"), 0.0);
    assert_eq!(
        value(&before, "dht_rejected_total{reason=\"rate_limited\"}"),
        0.0
    );

    // One PUT, a GET that finds it, a GET that does not, and a malformed request.
    let key = Key::sha256(b"metrics/key");
    let mut client = ApiClient::connect(a.api_addr()).await?;
    client.put(key, b"value", 600, 3).await?;
    assert!(
        wait_for(Duration::from_secs(10), || async {
            scrape(addr)
                .await
                .is_ok_and(|s| s.get("dht_puts_total{outcome=\"replicated\"}") == Some(&1.0))
        })
        .await,
        "the PUT's replication was not counted"
    );
    assert_eq!(client.get(key).await?.as_deref(), Some(&b"value"[..]));
    assert_eq!(client.get(Key::sha256(b"metrics/missing")).await?, None);
    let mut bad = ApiClient::connect(a.api_addr()).await?;
    bad.stream().write_all(&[0, 4, 0x01, 0x99]).await?;
    assert!(bad.is_closed_by_server().await);

    let s = scrape(addr).await?;
    let requests = |t: &str, outcome: &str| {
        value(
            &s,
            &format!("dht_api_requests_total{{type=\"{t}\",outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(requests("put", "accepted"), 1.0);
    assert_eq!(requests("get", "found"), 1.0);
    assert_eq!(requests("get", "not_found"), 1.0);
    assert_eq!(requests("invalid", "malformed"), 1.0);
    assert_eq!(
        value(&s, "dht_api_request_duration_seconds_count{type=\"get\"}"),
        2.0
    );
    assert_eq!(
        value(&s, "dht_api_request_duration_seconds_count{type=\"put\"}"),
        1.0
    );
    // `client` is still connected.
    assert!(value(&s, "dht_api_connections") >= 1.0);

    // The node's own view: two GETs, one PUT acknowledged by at least 3 peers.
    assert_eq!(value(&s, "dht_gets_total{outcome=\"found\"}"), 1.0);
    assert_eq!(value(&s, "dht_gets_total{outcome=\"not_found\"}"), 1.0);
    assert_eq!(value(&s, "dht_get_duration_seconds_count"), 2.0);
    assert_eq!(value(&s, "dht_put_duration_seconds_count"), 1.0);
    assert!(value(&s, "dht_put_replicas_sum") >= 3.0);
    assert!(value(&s, "dht_rpc_requests_total{kind=\"store\",outcome=\"ok\"}") >= 3.0);
    assert!(value(&s, "dht_rpc_duration_seconds_count{kind=\"store\"}") >= 3.0);
    // The PUT's FIND_NODE lookup and the missing key's FIND_VALUE lookup.
    assert!(value(&s, "dht_lookup_hops_count{kind=\"find_node\"}") >= 1.0);
    assert!(value(&s, "dht_lookup_peers_contacted_count{kind=\"find_value\"}") >= 1.0);
    assert!(value(&s, "dht_lookup_peers_contacted_sum{kind=\"find_value\"}") >= 1.0);

    // Sizes read at scrape time agree with the node.
    let contacts = value(&s, "dht_routing_table_contacts");
    assert_eq!(contacts, a.node.routing_table_len() as f64);
    let by_range: f64 = s
        .iter()
        .filter(|(series, _)| series.starts_with("dht_routing_bucket_contacts{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(by_range, contacts, "bucket ranges do not add up");
    assert_eq!(
        value(&s, "dht_stored_records"),
        a.node.stored_records() as f64
    );
    assert!(value(&s, "dht_stored_bytes") > 0.0);
    assert!(value(&s, "dht_open_connections") >= 1.0);
    assert!(value(&s, "dht_connections_opened_total") >= value(&s, "dht_open_connections"));
    assert_eq!(
        value(&s, "dht_rejected_total{reason=\"malformed_frame\"}"),
        0.0
    );

    // The lookups and the upkeep of the join are counted, and the node is ready.
    assert!(
        value(
            &s,
            "dht_lookups_total{kind=\"find_node\",outcome=\"succeeded\"}"
        ) >= 1.0
    );
    assert!(value(&s, "dht_lookup_duration_seconds_count{kind=\"find_value\"}") >= 1.0);
    assert!(value(&s, "dht_lookups_last_minute{outcome=\"succeeded\"}") >= 2.0);
    assert_eq!(
        value(&s, "dht_lookups_last_minute{outcome=\"failed\"}"),
        0.0
    );
    assert_eq!(value(&s, "dht_upkeep_rounds_total{kind=\"join\"}"), 1.0);
    assert_eq!(value(&s, "dht_ready"), 1.0);

    // Anything else is refused.
    let answer = http_get(addr, "/nope").await?;
    assert!(answer.status.contains("404"), "{}", answer.status);

    server.shutdown().await;
    for n in &nodes {
        n.stop().await;
    }
    bootstrap.stop().await;
    Ok(())
}

/// The metric names an expression of the Grafana dashboard uses.
fn dashboard_metrics(dashboard: &serde_json::Value) -> Vec<String> {
    let mut names = Vec::new();
    let panels = dashboard["panels"].as_array().expect("panels");
    for target in panels
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
    {
        let expr = target["expr"]
            .as_str()
            .expect("every target has an expression");
        for (at, _) in expr.match_indices("dht_") {
            let name: String = expr[at..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grafana_dashboard_queries_only_series_a_node_serves() -> anyhow::Result<()> {
    init_tracing();
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker/grafana-dashboard.json");
    let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    assert_eq!(dashboard["uid"], "voidphone-dht");
    assert_eq!(dashboard["__inputs"][0]["name"], "DS_PROMETHEUS");
    let used = dashboard_metrics(&dashboard);
    assert!(used.len() >= 15, "{used:?}");

    let (bootstrap, nodes) = start_network(1).await?;
    let server = serve_endpoint(&nodes[0]).await?;
    let scraped = scrape(server.local_addr()).await?;
    let served: Vec<&str> = scraped
        .keys()
        .map(|series| {
            series
                .split_once('{')
                .map_or(series.as_str(), |(name, _)| name)
        })
        .collect();
    let missing: Vec<&String> = used
        .iter()
        .filter(|name| !served.contains(&name.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries series no node serves: {missing:?}"
    );
    // Every panel filters on the dashboard's variables.
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap_or_default();
            assert!(expr.contains("job=~\"$job\""), "{expr}");
        }
    }
    server.shutdown().await;
    nodes[0].stop().await;
    bootstrap.stop().await;
    Ok(())
}
