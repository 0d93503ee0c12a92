//! Helpers of the API contract tests: raw VoidPhone messages built by hand, answers
//! read back by key, and waiting on nodes.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, bail};
use dht_core::{Key, Node};
use dht_tests::{ApiClient, TestNode, wait_for};
use dht_wire::{ApiMessage, DHT_PUT, DHT_SUCCESS};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// How long any condition may take on a loaded machine.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// The largest value a PUT can carry.
pub(crate) const MAX_VALUE: usize = 65_495;

/// A key of this test file.
pub(crate) fn key(label: &str) -> Key {
    Key::sha256(format!("api-contract/{label}").as_bytes())
}

/// A 4-byte header.
pub(crate) fn header(size: u16, msg_type: u16) -> Vec<u8> {
    let mut bytes = size.to_be_bytes().to_vec();
    bytes.extend_from_slice(&msg_type.to_be_bytes());
    bytes
}

/// A DHT_PUT, byte by byte.
pub(crate) fn raw_put(ttl: u16, replication: u8, reserved: u8, key: &Key, value: &[u8]) -> Vec<u8> {
    let size = u16::try_from(40 + value.len()).expect("the value fits in one message");
    let mut bytes = header(size, DHT_PUT);
    bytes.extend_from_slice(&ttl.to_be_bytes());
    bytes.push(replication);
    bytes.push(reserved);
    bytes.extend_from_slice(key.as_bytes());
    bytes.extend_from_slice(value);
    bytes
}

/// A message made of a header and a key (DHT_GET, DHT_FAILURE, or any type).
pub(crate) fn raw_key_message(msg_type: u16, key: &Key) -> Vec<u8> {
    let mut bytes = header(36, msg_type);
    bytes.extend_from_slice(key.as_bytes());
    bytes
}

/// A DHT_SUCCESS, byte by byte.
pub(crate) fn raw_success(key: &Key, value: &[u8]) -> Vec<u8> {
    let size = u16::try_from(36 + value.len()).expect("the value fits in one message");
    let mut bytes = header(size, DHT_SUCCESS);
    bytes.extend_from_slice(key.as_bytes());
    bytes.extend_from_slice(value);
    bytes
}

/// Writes `bytes` one byte per write, flushing each.
pub(crate) async fn write_one_byte_at_a_time(
    stream: &mut TcpStream,
    bytes: &[u8],
) -> anyhow::Result<()> {
    for byte in bytes {
        stream.write_all(std::slice::from_ref(byte)).await?;
        stream.flush().await?;
        tokio::task::yield_now().await;
    }
    Ok(())
}

/// Reads exactly `n` answers, keyed by the key they carry (any order, no duplicates,
/// only SUCCESS and FAILURE).
pub(crate) async fn read_answers(
    client: &mut ApiClient,
    n: usize,
) -> anyhow::Result<HashMap<Key, ApiMessage>> {
    let mut answers = HashMap::new();
    for i in 1..=n {
        let answer = client
            .recv()
            .await
            .with_context(|| format!("reading answer {i} of {n}"))?;
        if !matches!(
            answer,
            ApiMessage::Success { .. } | ApiMessage::Failure { .. }
        ) {
            bail!("the server sent {answer:?}");
        }
        let k = *answer.key();
        if answers.insert(k, answer).is_some() {
            bail!("two answers for key {}", k.short());
        }
    }
    Ok(answers)
}

/// Waits until `node` holds `key` in its own store.
pub(crate) async fn wait_held(node: &Node, key: Key) -> bool {
    wait_for(WAIT, || async { node.holds(&key) }).await
}

/// How many nodes other than `except` hold `key`.
pub(crate) fn remote_holders(
    bootstrap: &TestNode,
    nodes: &[TestNode],
    except: usize,
    key: &Key,
) -> usize {
    let others = nodes
        .iter()
        .enumerate()
        .filter(|(i, n)| *i != except && n.node.holds(key))
        .count();
    others + usize::from(bootstrap.node.holds(key))
}

pub(crate) async fn stop_all(bootstrap: TestNode, nodes: Vec<TestNode>) {
    for n in &nodes {
        n.stop().await;
    }
    bootstrap.stop().await;
}
