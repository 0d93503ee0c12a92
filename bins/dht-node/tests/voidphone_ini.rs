//! `dht-node -c peer.ini` runs from a VoidPhone shared INI file: it answers the API on
//! the `[dht]` api_address, creates its host key at the global `hostkey` path (relative
//! to the file), skips the other modules' sections and logs a warning naming an unknown
//! `[dht]` key.

use std::path::Path;
use std::time::Duration;

use dht_core::Key;
use dht_tests::process::{Running, free_port, spawn_node};
use dht_tests::{ApiClient, api_get, wait_for};

fn start(config: &Path, log: &Path) -> Running {
    spawn_node(
        env!("CARGO_BIN_EXE_dht-node"),
        config,
        &[],
        log,
        Some("info"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_runs_from_a_voidphone_ini_file() {
    let dir = std::env::temp_dir().join(format!("dht-ini-node-{}", rand::random::<u64>()));
    std::fs::create_dir_all(dir.join("keys")).expect("dir");
    let api = format!("127.0.0.1:{}", free_port());
    let config = dir.join("peer.ini");
    std::fs::write(
        &config,
        format!(
            "; one VoidPhone peer\n\
             hostkey = keys/peer.pem\n\n\
             [gossip]\ncache_size = 50\napi_address = 127.0.0.1:1\n\n\
             [dht]\np2p_address = 127.0.0.1:{p2p}\napi_address = {api}\n\
             pow_difficulty = {pow}\nmin_pow_difficulty = {pow}\n\
             cleanup_interval = 86400\n\n\
             [storage]\nbackend = memory\n\n\
             [onion]\nhops = 2\n",
            p2p = free_port(),
            pow = dht_tests::TEST_POW,
        ),
    )
    .expect("config");
    let log = dir.join("node.log");
    let child = start(&config, &log);

    let api = api.parse().expect("address");
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    let up = wait_for(Duration::from_secs(20), || async {
        ApiClient::connect(api).await.is_ok()
    })
    .await;
    assert!(up, "the API did not answer; log:\n{}", log_text());
    let key = Key::sha256(b"voidphone ini");
    let mut client = ApiClient::connect(api).await.expect("connect");
    client.put(key, b"from the ini", 600, 3).await.expect("put");
    let stored = wait_for(Duration::from_secs(10), || async {
        matches!(api_get(api, key).await, Ok(Some(value)) if value == b"from the ini"[..])
    })
    .await;
    assert!(stored, "the value was not read back; log:\n{}", log_text());
    assert!(
        dir.join("keys/peer.pem").exists(),
        "host key not created beside the file"
    );
    let warned = wait_for(Duration::from_secs(5), || async {
        log_text().contains("unknown key `dht.cleanup_interval` ignored")
    })
    .await;
    assert!(
        warned,
        "no warning for the unknown key; log:\n{}",
        log_text()
    );
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
}
