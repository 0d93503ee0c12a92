//! The `/metrics` endpoint, scraped over HTTP as Prometheus would: every family the
//! operations guide promises is there, and the values follow what the node did
//! (API requests by type and outcome, PUT replication, requests to peers, lookups,
//! routing table by bucket range, stored records).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use dht_api::MetricsServer;
use dht_core::Key;
use dht_tests::{ApiClient, init_tracing, start_network, wait_for};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An HTTP/1.1 GET of `path`: the status line, the headers and the body.
async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(String, String, String)> {
    let mut stream = TcpStream::connect(addr).await?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .context("no response within 10 s")??;
    let response = String::from_utf8(response)?;
    let Some((head, body)) = response.split_once("\r\n\r\n") else {
        bail!("no end of headers in {response:?}");
    };
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    Ok((status.to_string(), headers.to_lowercase(), body.to_string()))
}

/// The samples of an OpenMetrics text: `name{labels}` → value.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

async fn scrape(addr: SocketAddr) -> anyhow::Result<HashMap<String, f64>> {
    let (status, headers, body) = http_get(addr, "/metrics").await?;
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
    let mut registry = Registry::default();
    a.node.register_metrics(&mut registry);
    a.api
        .as_ref()
        .context("node has an API")?
        .register_metrics(&mut registry);
    let server = MetricsServer::bind("127.0.0.1:0".parse()?, registry).await?;
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
    assert_eq!(
        value(&s, "dht_rejected_total{reason=\"malformed_frame\"}"),
        0.0
    );

    // Anything but /metrics is refused.
    let (status, _, _) = http_get(addr, "/nope").await?;
    assert!(status.contains("404"), "{status}");

    server.shutdown().await;
    for n in &nodes {
        n.stop().await;
    }
    bootstrap.stop().await;
    Ok(())
}
