//! The operations endpoint besides `/metrics`: `/healthz`, `/readyz` (and the reasons it
//! gives while a node is not ready), and the status page `/`, which shows the node's
//! routing table, store, lookups and upkeep but never a stored value, and which no
//! request can use to change anything.

use std::time::Duration;

use dht_core::Key;
use dht_tests::http::{http_get, http_request, serve_endpoint};
use dht_tests::process::free_addr;
use dht_tests::{ApiClient, TestNode, init_tracing, start_network, test_config, wait_for};

const DEADLINE: Duration = Duration::from_secs(20);

async fn readyz(addr: std::net::SocketAddr) -> (bool, String) {
    match http_get(addr, "/readyz").await {
        Ok(answer) => (answer.status.contains(" 200 "), answer.body),
        Err(e) => (false, e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_says_why_a_node_is_not_ready() -> anyhow::Result<()> {
    init_tracing();
    // The first node of a network has nothing to join, but knows no peer yet.
    let first = TestNode::start(test_config(&[]), false).await?;
    let first_endpoint = serve_endpoint(&first).await?;
    let health = http_get(first_endpoint.local_addr(), "/healthz").await?;
    assert!(health.status.contains(" 200 "), "{}", health.status);
    assert_eq!(health.body, "ok\n");
    let (ready, why) = readyz(first_endpoint.local_addr()).await;
    assert!(!ready);
    assert_eq!(
        why,
        "not ready: no live contact: the routing table is empty\n"
    );

    // A node whose only bootstrap peer never answers has not joined.
    let nobody = free_addr();
    let lonely = TestNode::start(test_config(&[nobody]), true).await?;
    let lonely_endpoint = serve_endpoint(&lonely).await?;
    let answer = http_get(lonely_endpoint.local_addr(), "/readyz").await?;
    assert!(answer.status.contains(" 503 "), "{}", answer.status);
    assert_eq!(
        answer.body,
        "not ready: not joined yet: joining, or no bootstrap peer has answered\n"
    );

    // Once a node joins through it, the first node is ready too.
    let second = TestNode::start(test_config(&[first.node.listen_addr()]), true).await?;
    let second_endpoint = serve_endpoint(&second).await?;
    for addr in [first_endpoint.local_addr(), second_endpoint.local_addr()] {
        assert!(
            wait_for(DEADLINE, || async { readyz(addr).await.0 }).await,
            "not ready: {:?}",
            readyz(addr).await
        );
    }
    assert_eq!(readyz(second_endpoint.local_addr()).await.1, "ready\n");

    // A node that is stopping is not ready, while its endpoint still answers.
    second.stop().await;
    let (ready, why) = readyz(second_endpoint.local_addr()).await;
    assert!(!ready);
    assert_eq!(why, "not ready: the node is shutting down\n");
    let health = http_get(second_endpoint.local_addr(), "/healthz").await?;
    assert!(health.status.contains(" 200 "));

    for endpoint in [first_endpoint, lonely_endpoint, second_endpoint] {
        endpoint.shutdown().await;
    }
    lonely.stop().await;
    first.stop().await;
    Ok(())
}

/// The `data-contacts` attributes of the bucket rows of a status page, in order.
fn bucket_rows(page: &str) -> Vec<(usize, usize)> {
    page.split("<g class=\"bucket\" ")
        .skip(1)
        .map(|row| {
            let attribute = |name: &str| -> usize {
                let start = row.find(&format!("{name}=\"")).expect("attribute") + name.len() + 2;
                let end = row[start..].find('"').expect("closing quote") + start;
                row[start..end].parse().expect("a number")
            };
            (attribute("data-index"), attribute("data-contacts"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_the_node_and_never_a_value() -> anyhow::Result<()> {
    init_tracing();
    let (bootstrap, nodes) = start_network(4).await?;
    let a = &nodes[0];
    let endpoint = serve_endpoint(a).await?;
    let addr = endpoint.local_addr();

    // A value that must never appear, and lookups for the histogram.
    let secret = "do-not-show-this-value-0123";
    let key = Key::sha256(b"status/secret");
    let mut client = ApiClient::connect(a.api_addr()).await?;
    client.put(key, secret.as_bytes(), 600, 3).await?;
    assert!(
        wait_for(DEADLINE, || async { a.node.holds(&key) }).await,
        "the PUT was not stored"
    );
    for i in 0..5 {
        assert_eq!(
            client
                .get(Key::sha256(format!("status/missing/{i}").as_bytes()))
                .await?,
            None
        );
    }

    let before = a.node.routing_table_len();
    let answer = http_get(addr, "/").await?;
    let after = a.node.routing_table_len();
    assert!(answer.status.contains(" 200 "), "{}", answer.status);
    assert!(
        answer
            .headers
            .contains("content-type: text/html; charset=utf-8")
    );
    assert!(
        answer
            .headers
            .contains("content-security-policy: default-src 'none'"),
        "{}",
        answer.headers
    );
    let page = answer.body;
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.contains(&a.node.id().to_string()), "the full id");
    assert!(page.contains("id=\"readiness\">ready</span>"));
    // The routing table: one row per bucket that holds a contact or a replacement, in
    // order, adding up to the contacts the node had.
    let rows = bucket_rows(&page);
    assert!(!rows.is_empty());
    assert!(rows.windows(2).all(|w| w[0].0 < w[1].0), "{rows:?}");
    let shown: usize = rows.iter().map(|r| r.1).sum();
    assert!(page.contains(&format!("<p>{shown} contacts in ")));
    assert!(
        (before.min(after)..=before.max(after)).contains(&shown),
        "{shown} contacts shown, the table had {before} then {after}"
    );
    assert!(page.contains(&format!("(k = {})", a.node.config().k)));
    // The store against its limits; the lookups and their histogram; the join round.
    assert!(page.contains("records: 1 of 100000"), "store meter");
    assert!(page.contains("id=\"latency-histogram\""));
    let bars: usize = page
        .split("class=\"bin\" data-count=\"")
        .skip(1)
        .map(|rest| {
            rest[..rest.find('"').expect("quote")]
                .parse::<usize>()
                .expect("count")
        })
        .sum();
    assert!(bars >= 6, "the PUT's and five GETs' lookups: {bars}");
    assert!(page.contains(&format!("Latency of the last {bars} lookups")));
    assert!(page.contains("<td>join</td>"), "the join round");
    // Never the value, in any form.
    assert!(!page.contains(secret));
    assert!(!page.contains(&hex(secret.as_bytes())));
    // No script and nothing loaded from elsewhere.
    assert!(!page.contains("<script"));
    assert!(!page.contains("http://") && !page.contains("https://"));

    // Nothing but GET and HEAD; nothing else is served.
    for method in ["POST", "PUT", "DELETE"] {
        let answer = http_request(addr, method, "/").await?;
        assert!(
            answer.status.contains(" 405 "),
            "{method}: {}",
            answer.status
        );
        assert!(answer.headers.contains("allow: get, head"));
    }
    let head = http_request(addr, "HEAD", "/readyz").await?;
    assert!(head.status.contains(" 200 "), "{}", head.status);
    let missing = http_get(addr, "/admin").await?;
    assert!(missing.status.contains(" 404 "));
    assert!(missing.body.contains("/metrics, /healthz, /readyz"));

    endpoint.shutdown().await;
    for n in &nodes {
        n.stop().await;
    }
    bootstrap.stop().await;
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
