//! A `dht-node` process that receives STOREs is killed with SIGKILL at random moments,
//! 20 times, and restarted each time: every record it acknowledged is there afterwards,
//! whole (no torn record is ever served).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use dht_core::Key;
use dht_tests::process::{Running, free_port, spawn_node};
use dht_tests::raw_peer::RawPeer;
use dht_wire::{PeerMessage, StoreStatus, WireRecord};
use rand::Rng;

const KILLS: usize = 20;

fn start(config: &Path, log: &Path) -> Running {
    spawn_node(
        env!("CARGO_BIN_EXE_dht-node"),
        config,
        &[],
        log,
        Some("info"),
    )
}

/// Connects once the node answers (it restarts from its database first).
async fn connect(addr: SocketAddr) -> RawPeer {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok((peer, _)) = RawPeer::connect(addr).await {
            return peer;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "dht-node did not come up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn value_of(key: &Key) -> Bytes {
    // Long enough to span several pages of the database, different for every key.
    Bytes::from(key.to_string().repeat(40))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_kill_9() {
    let dir = std::env::temp_dir().join(format!("dht-crash-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).expect("dir");
    let p2p: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let config = dir.join("node.toml");
    std::fs::write(
        &config,
        format!(
            "[dht]\np2p_address = \"{p2p}\"\napi_address = \"127.0.0.1:{}\"\n\
             pow_difficulty = {pow}\nmin_pow_difficulty = {pow}\n\
             peer_requests_per_sec = 1000000.0\npeer_request_burst = 1000000.0\n",
            free_port(),
            pow = dht_tests::TEST_POW
        ),
    )
    .expect("config");
    // The test is one peer asking thousands of times a second: no rate limit for it.
    let log = dir.join("node.log");
    let lifetime = 3600;
    let mut acked: Vec<Key> = Vec::new();
    let mut rng = rand::thread_rng();
    for round in 0..KILLS {
        let mut child = start(&config, &log);
        let mut peer = connect(p2p).await;
        // Everything acknowledged before is there, whole.
        for key in &acked {
            match peer.request(PeerMessage::FindValue { key: *key }).await {
                Ok(PeerMessage::Value { record }) => {
                    assert_eq!(record.value, value_of(key), "round {round}: torn record");
                }
                other => panic!("round {round}: acknowledged record {key:?} lost: {other:?}"),
            }
        }
        // STOREs until a random moment, then SIGKILL (possibly mid-commit).
        let kill_after = Duration::from_millis(rng.gen_range(20..200));
        let storing = async {
            let mut i = 0u32;
            loop {
                let key = Key::sha256(format!("crash/{round}/{i}").as_bytes());
                let record = WireRecord {
                    key,
                    value: value_of(&key),
                    lifetime,
                    version: 1,
                    replication: 3,
                };
                match peer.request(PeerMessage::Store { record }).await {
                    Ok(PeerMessage::StoreResult {
                        status: StoreStatus::Stored,
                    }) => acked.push(key),
                    other => panic!("round {round}: STORE not stored: {other:?}"),
                }
                i += 1;
            }
        };
        let _ = tokio::time::timeout(kill_after, storing).await;
        child.kill();
    }
    // A last start to check the last round too.
    let mut child = start(&config, &log);
    let mut peer = connect(p2p).await;
    for key in &acked {
        match peer.request(PeerMessage::FindValue { key: *key }).await {
            Ok(PeerMessage::Value { record }) => assert_eq!(record.value, value_of(key)),
            other => panic!("acknowledged record lost: {other:?}"),
        }
    }
    println!(
        "{} acknowledged records survived {KILLS} kills",
        acked.len()
    );
    assert!(acked.len() >= KILLS, "too few STOREs to mean anything");
    child.kill();
    let _ = std::fs::remove_dir_all(&dir);
}
