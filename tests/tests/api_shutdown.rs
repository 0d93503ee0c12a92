//! A client that never reads its answers cannot hold the API server's shutdown: the
//! connection's task, blocked writing to it, gives way when the server stops.

use std::time::Duration;

use bytes::BytesMut;
use dht_core::Key;
use dht_tests::{ApiClient, TestNode, test_config, wait_for};
use dht_wire::ApiMessage;
use prometheus_client::registry::Registry;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// GETs sent, of a value of [`VALUE_LEN`] bytes: far more answers than socket buffers hold.
const GETS: usize = 3000;
const VALUE_LEN: usize = 60_000;

/// GETs the API server has answered with the value, from its metrics.
fn answered(registry: &Registry) -> u64 {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).expect("encoding metrics");
    text.lines()
        .filter(|l| l.starts_with("dht_api_requests_total{") && l.contains("type=\"get\""))
        .filter(|l| l.contains("outcome=\"found\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_cannot_hold_the_shutdown() -> anyhow::Result<()> {
    let node = TestNode::start(test_config(&[]), true).await?;
    let mut registry = Registry::default();
    node.api
        .as_ref()
        .expect("node has an API")
        .register_metrics(&mut registry);
    let key = Key::sha256(b"large");
    let mut client = ApiClient::connect(node.api_addr()).await?;
    client.put(key, &vec![7u8; VALUE_LEN], 3600, 3).await?;
    assert!(
        wait_for(Duration::from_secs(10), || async {
            node.node.get_local(&key).is_some()
        })
        .await,
        "the PUT was not stored"
    );

    // Thousands of GETs on one connection, whose answers are never read.
    let mut requests = BytesMut::new();
    for _ in 0..GETS {
        ApiMessage::Get { key }.encode(&mut requests)?;
    }
    let mut stuck = TcpStream::connect(node.api_addr()).await?;
    let writer = tokio::spawn(async move {
        let _ = stuck.write_all(&requests).await;
        stuck
    });
    assert!(
        wait_for(Duration::from_secs(10), || async {
            answered(&registry) >= 1
        })
        .await,
        "the server did not answer the GETs"
    );

    let stopped = tokio::time::timeout(Duration::from_secs(10), node.stop()).await;
    assert!(
        stopped.is_ok(),
        "the shutdown waited for a client that never reads"
    );
    assert!(
        answered(&registry) < GETS as u64,
        "every answer went out: the client was never blocking the server"
    );
    writer.abort();
    Ok(())
}
