//! The API port under a thousand malformed messages, fifty connections at a time,
//! while a well-behaved client on its own connection keeps doing PUT/GET round trips.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::ensure;
use dht_api::ApiConfig;
use dht_core::Key;
use dht_tests::{ApiClient, TestNode, init_tracing, test_config, wait_for};
use dht_wire::DHT_FAILURE;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::inputs::{ApiCase, Ending, api_case};
use crate::{WAIT, bounded, seeded_rng};

/// Malformed inputs sent, each on its own connection.
const CASES: usize = 1000;
/// Hostile connections open at once.
const AT_ONCE: usize = 50;
/// The API server's connection limit: a leak of a few dozen slots would show.
const MAX_API_CONNECTIONS: usize = 128;

/// Sends one malformed input. `Ok` when the server closed the connection (after
/// answering the valid GET before the garbage, if there is one).
async fn send_case(addr: SocketAddr, case: ApiCase) -> Result<(), String> {
    let shown = &case.bytes[..case.bytes.len().min(48)];
    let fail = |why: String| Err(format!("{} {shown:02x?}: {why}", case.what));
    let mut stream = match TcpStream::connect(addr).await {
        Ok(stream) => stream,
        Err(e) => return fail(format!("connect: {e}")),
    };
    // The server may close before reading everything: a failed write is no failure.
    let _ = stream.write_all(&case.bytes).await;
    if case.ending == Ending::CloseWrite {
        let _ = stream.shutdown().await;
    }
    let mut received = Vec::new();
    let read_to_end = async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    };
    if tokio::time::timeout(WAIT, read_to_end).await.is_err() {
        return fail("the server did not close the connection within 10 s".into());
    }
    if let Some(key) = case.answered {
        let mut failure = 36u16.to_be_bytes().to_vec();
        failure.extend_from_slice(&DHT_FAILURE.to_be_bytes());
        failure.extend_from_slice(key.as_bytes());
        if received != failure {
            return fail(format!(
                "expected DHT_FAILURE for the GET before the garbage, got {received:02x?}"
            ));
        }
    }
    Ok(())
}

/// PUT then GET on one connection until `stop`; every GET must see its PUT's value.
/// Returns the rounds done and the slowest round.
async fn well_behaved(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<(usize, Duration)> {
    let mut client = ApiClient::connect(addr).await?;
    let (mut rounds, mut slowest) = (0, Duration::ZERO);
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let key = Key::sha256(format!("hostile/api/well-behaved/{rounds}").as_bytes());
        let value = format!("round {rounds}");
        client.put(key, value.as_bytes(), 600, 3).await?;
        let got = client.get(key).await?;
        ensure!(
            got.as_deref() == Some(value.as_bytes()),
            "round {rounds}: the GET answered {got:?}"
        );
        slowest = slowest.max(started.elapsed());
        rounds += 1;
    }
    Ok((rounds, slowest))
}

/// 1. A thousand malformed messages (random bytes, bit flips and truncations of valid
///    messages, size fields below 4 or at the cap without the body, unknown types,
///    messages only the server sends, sizes wrong for their type, garbage after a
///    valid GET), each on its own connection: the server closes every one (the
///    truncated ones by the message deadline), answers the GET before the garbage,
///    and the well-behaved client's round trips all succeed meanwhile. Afterwards
///    the node serves a new client, and a hundred clients at once (no connection slot
///    leaked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_malformed_api_messages() -> anyhow::Result<()> {
    init_tracing();
    let mut rng = seeded_rng("a_thousand_malformed_api_messages");
    let api = ApiConfig {
        message_deadline: Duration::from_millis(300),
        max_connections: MAX_API_CONNECTIONS,
        ..ApiConfig::default()
    };
    let node = TestNode::start_with_api(test_config(&[]), api).await?;
    let addr = node.api_addr();
    let stop = Arc::new(AtomicBool::new(false));
    let good = tokio::spawn(well_behaved(addr, stop.clone()));
    // Let the well-behaved client connect first.
    ensure!(
        wait_for(WAIT, || async { node.node.stored_records() > 0 }).await,
        "the well-behaved client did not get going"
    );

    let cases: Vec<ApiCase> = (0..CASES).map(|i| api_case(i, &mut rng)).collect();
    let started = Instant::now();
    let outcomes = bounded(AT_ONCE, cases, |case| send_case(addr, case)).await;
    let flood_time = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (rounds, slowest) = good.await??;

    let failures: Vec<String> = outcomes.into_iter().filter_map(Result::err).collect();
    assert!(
        failures.is_empty(),
        "{} of {CASES} malformed inputs were not handled:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!(
        "{CASES} malformed inputs in {flood_time:?}; {rounds} good round trips, slowest {slowest:?}"
    );
    assert!(
        rounds >= 10,
        "only {rounds} round trips of the well-behaved client during the flood"
    );
    assert!(
        slowest < Duration::from_secs(5),
        "a round trip of the well-behaved client took {slowest:?}"
    );

    // A new client is served, and sees what the well-behaved one stored.
    let mut client = ApiClient::connect(addr).await?;
    let first = Key::sha256(b"hostile/api/well-behaved/0");
    assert_eq!(client.get(first).await?.as_deref(), Some(&b"round 0"[..]));
    // Every slot of a malformed connection came back: 100 clients at once are served
    // (with 128 slots, a leak of 28 or more would refuse some).
    let all_served = wait_for(WAIT, || async {
        let answers = bounded(100, 0..100, |_| async move {
            let mut client = ApiClient::connect(addr).await?;
            client.get(first).await
        })
        .await;
        answers
            .iter()
            .all(|a| matches!(a, Ok(Some(v)) if &v[..] == b"round 0"))
    })
    .await;
    assert!(all_served, "100 clients at once are not all served");
    node.stop().await;
    Ok(())
}
