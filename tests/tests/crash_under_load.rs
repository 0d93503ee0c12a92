//! `kill -9` of a dht-node process while 8 API connections PUT as fast as it takes
//! them: after a restart over the same data folder, every PUT that was confirmed more
//! than `sync_interval_ms` before the kill is there, with its value intact.
//!
//! A DHT_PUT has no reply; a PUT counts as confirmed when a DHT_GET of its key sent
//! behind it on the same connection answers its value (the server reads a connection's
//! next request only once the PUT is committed to the node's store).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dht_core::Key;
use dht_tests::process::{Running, free_addr, spawn_node};
use dht_tests::{ApiClient, TEST_POW, wait_for};

const CONNECTIONS: usize = 8;
const SYNC_INTERVAL: Duration = Duration::from_millis(1000);

/// The dht-node binary `cargo test --workspace` built (or builds it).
fn node_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let binary = target.join("debug/dht-node");
    if !binary.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let built = std::process::Command::new(cargo)
            .args(["build", "-p", "dht-node"])
            .status()
            .expect("cargo runs");
        assert!(built.success(), "building dht-node failed");
    }
    binary
}

fn write_config(dir: &Path, api: SocketAddr) -> PathBuf {
    let config = dir.join("node.toml");
    let text = format!(
        "hostkey = \"hostkey.pem\"\n\
         [dht]\n\
         p2p_address = \"{p2p}\"\n\
         api_address = \"{api}\"\n\
         bootstrap_peers = []\n\
         pow_difficulty = {TEST_POW}\n\
         min_pow_difficulty = {TEST_POW}\n\
         [storage]\n\
         backend = \"durable\"\n\
         data_dir = \"data\"\n\
         sync_interval_ms = {sync}\n",
        p2p = free_addr(),
        sync = SYNC_INTERVAL.as_millis(),
    );
    std::fs::write(&config, text).expect("config");
    config
}

async fn start(binary: &Path, config: &Path, log: &Path, api: SocketAddr) -> Running {
    let running = spawn_node(binary.to_str().expect("utf-8 path"), config, &[], log, None);
    let up = wait_for(Duration::from_secs(60), || async {
        tokio::net::TcpStream::connect(api).await.is_ok()
    })
    .await;
    assert!(
        up,
        "the node's API did not come up (log: {})",
        log.display()
    );
    running
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_puts_survive_kill_9_under_concurrent_load() {
    let binary = node_binary();
    let dir = std::env::temp_dir().join(format!("dht-crash-load-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).expect("dir");
    let api = free_addr();
    let config = write_config(&dir, api);
    let log = dir.join("node.log");
    let mut node = start(&binary, &config, &log, api).await;

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

    let _node = start(&binary, &config, &log, api).await;
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
