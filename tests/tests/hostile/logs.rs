//! Stored values never reach the logs, at any level.

use std::io::Write;
use std::sync::{Arc, Mutex};

use anyhow::ensure;
use dht_core::Key;
use dht_tests::{ApiClient, TestNode, api_get, test_config, wait_for};

use crate::WAIT;

/// The value put and got: distinctive, so that any trace of it in the logs is found.
const VALUE: &[u8] = b"SECRET-VALUE-7f3a91";

/// Everything logged, shared between the subscriber's writers and the test.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Buffer {
    fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Three nodes and a bootstrap node: a PUT through one node's API (STOREs carry the
/// value to the replicas), a GET through the API of a node that joined afterwards
/// (a hand-off STORE or a FIND_VALUE brings it over the network), and a GET where it
/// was put.
async fn put_and_get() -> anyhow::Result<()> {
    let bootstrap = TestNode::start(test_config(&[]), false).await?;
    let entry = bootstrap.node.listen_addr();
    let first = TestNode::start(test_config(&[entry]), true).await?;
    let second = TestNode::start(test_config(&[entry]), true).await?;
    let key = Key::sha256(b"hostile/logs");
    let mut client = ApiClient::connect(first.api_addr()).await?;
    client.put(key, VALUE, 600, 3).await?;
    let replicated = wait_for(WAIT, || async {
        [&bootstrap, &first, &second]
            .iter()
            .all(|n| n.node.holds(&key))
    })
    .await;
    ensure!(replicated, "the PUT did not reach every node");
    // The late node gets the value over the network either way: handed off in a STORE
    // when it is among the key's closest nodes, else by its GET's FIND_VALUE.
    let late = TestNode::start(test_config(&[entry]), true).await?;
    let got = api_get(late.api_addr(), key).await?;
    ensure!(
        got.as_deref() == Some(VALUE),
        "the late node's GET answered {got:?}"
    );
    ensure!(client.get(key).await?.as_deref() == Some(VALUE));
    for node in [&late, &second, &first, &bootstrap] {
        node.stop().await;
    }
    Ok(())
}

/// 7. With every task of a small network logging at TRACE level into one buffer (a
///    subscriber for the thread that runs a current-thread runtime), a value PUT and
///    GET through the API and the peers appears nowhere in the logs: not as text, not
///    in hex, not as a list of byte values. The logs are not empty, so logging
///    happened.
#[test]
fn values_never_appear_in_logs() -> anyhow::Result<()> {
    let buffer = Buffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer({
            let buffer = buffer.clone();
            move || buffer.clone()
        })
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(put_and_get())
    })?;
    let logs = buffer.text();
    assert!(
        logs.contains("node started") && logs.contains("DEBUG"),
        "the nodes did not log at info and debug level:\n{logs}"
    );
    let text = String::from_utf8_lossy(VALUE).into_owned();
    let hex: String = VALUE.iter().map(|b| format!("{b:02x}")).collect();
    let debug_bytes = format!("{VALUE:?}");
    let needles = [
        text,
        hex.clone(),
        hex.to_uppercase(),
        debug_bytes.trim_matches(['[', ']']).to_string(),
    ];
    for needle in needles {
        assert!(
            !logs.contains(&needle),
            "the logs contain the value as {needle:?}:\n{}",
            logs.lines()
                .filter(|line| line.contains(&needle))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    Ok(())
}
