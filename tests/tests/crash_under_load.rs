//! `kill -9` of a dht-node process while 8 API connections PUT as fast as it takes
//! them: after a restart over the same data folder, every PUT that was confirmed more
//! than `sync_interval_ms` before the kill is there, with its value intact.
//!
//! A DHT_PUT has no reply; a PUT counts as confirmed when a DHT_GET of its key sent
//! behind it on the same connection answers its value (the server reads a connection's
//! next request only once the PUT is committed to the node's store).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dht_core::Key;
use dht_tests::ApiClient;
use dht_tests::process::{NodeProcess, node_binary};

const CONNECTIONS: usize = 8;
const SYNC_INTERVAL: Duration = Duration::from_millis(1000);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_puts_survive_kill_9_under_concurrent_load() {
    let binary = node_binary();
    let dir = std::env::temp_dir().join(format!("dht-crash-load-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).expect("dir");
    let setup = NodeProcess::new(&dir, &[], SYNC_INTERVAL);
    let api = setup.api;
    let log = setup.log.clone();
    let mut node = setup.start(&binary).await;

    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for c in 0..CONNECTIONS {
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let mut confirmed: Vec<(Key, Vec<u8>, Instant)> = Vec::new();
            let Ok(mut client) = ApiClient::connect(api).await else {
                return confirmed;
            };
            for i in 0u64.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let key = Key::sha256(format!("crash/{c}/{i}").as_bytes());
                let value = format!("value {c} {i} {}", "x".repeat(200)).into_bytes();
                if client.put(key, &value, 3600, 1).await.is_err() {
                    break;
                }
                match client.get(key).await {
                    Ok(Some(got)) if got.as_ref() == value.as_slice() => {
                        confirmed.push((key, value, Instant::now()));
                    }
                    // The node died under us.
                    _ => break,
                }
            }
            confirmed
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    node.kill();
    let killed = Instant::now();
    stop.store(true, Ordering::Relaxed);
    let mut confirmed = Vec::new();
    for writer in writers {
        confirmed.extend(writer.await.expect("writer"));
    }
    let due: Vec<_> = confirmed
        .iter()
        .filter(|(_, _, at)| killed.saturating_duration_since(*at) > SYNC_INTERVAL)
        .collect();
    assert!(
        due.len() > 100,
        "only {} PUTs confirmed early enough ({} in all)",
        due.len(),
        confirmed.len()
    );

    let _node = setup.start(&binary).await;
    let mut client = ApiClient::connect(api).await.expect("connect");
    let mut missing = 0;
    for (key, value, _) in &due {
        match client.get(*key).await.expect("answer") {
            Some(got) => assert_eq!(got.as_ref(), value.as_slice(), "a damaged value"),
            None => missing += 1,
        }
    }
    assert_eq!(
        missing,
        0,
        "{missing} of {} confirmed PUTs lost (log: {})",
        due.len(),
        log.display()
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !text.contains("damaged record entries skipped") && !text.contains("moved aside"),
        "the store was damaged: {}",
        log.display()
    );
    eprintln!(
        "{} PUTs confirmed, {} of them more than {SYNC_INTERVAL:?} before the kill: all there",
        confirmed.len(),
        due.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
