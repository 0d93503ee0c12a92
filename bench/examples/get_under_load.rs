//! A node's GET latency while its durable store commits a bulk load of STOREs, against
//! its idle latency: the GET reads the store's memory, and must not wait for the
//! commits (each one `fsync`ed here, `DiskSync::EveryCommit`, to make them slow).
//!
//! One node on 127.0.0.1 with its durable store in a temporary folder; 8 tasks PUT
//! distinct keys as fast as the node takes them (alone, the node stores them locally,
//! one commit per batch), while the main task GETs a key the node holds, 10,000 times,
//! one every 200 us.
//! Prints p50, p99 and max of the GETs, idle and under load, and the PUTs committed.
//!
//! `cargo run --release -p dht-bench --example get_under_load`

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dht_core::{DiskSync, Key, Node, NodeConfig, PutOptions, StorageBackend};

const GETS: usize = 10_000;
/// One GET every this long, so that the GETs sample the whole load (2 s), not a burst
/// between two commits.
const PACE: Duration = Duration::from_micros(200);
const WRITERS: usize = 8;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("dht-get-under-load-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let node = Arc::new(
        Node::start(NodeConfig {
            p2p_address: ([127, 0, 0, 1], 0).into(),
            hostkey: Some(dir.join("hostkey.pem")),
            storage: StorageBackend::Durable {
                data_dir: dir.join("data"),
                key: None,
                sync: DiskSync::EveryCommit,
            },
            ..NodeConfig::default()
        })
        .await?,
    );
    let key = Key::sha256(b"read while others write");
    node.put(key, Bytes::from_static(b"v"), PutOptions::default())
        .await?;

    let idle = gets(&node, key).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let committed = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (node, stop, committed) = (node.clone(), stop.clone(), committed.clone());
        writers.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = Key::sha256(format!("bulk/{w}/{i}").as_bytes());
                let value = Bytes::from(vec![7u8; 1024]);
                if node.put(key, value, PutOptions::default()).await.is_ok() {
                    committed.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
        }));
    }
    // Let the load start.
    while committed.load(Ordering::Relaxed) < 100 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    let loaded = gets(&node, key).await?;
    let secs = started.elapsed().as_secs_f64();
    let before = committed.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await?;
    }
    println!("GET of a held key, {GETS} times     p50 us   p99 us   max us");
    print_row("idle", &idle);
    print_row("under a bulk STORE load", &loaded);
    println!(
        "p99 under load / idle: {:.2}; PUTs committed during the loaded GETs: {:.0}/s",
        loaded.p99 / idle.p99,
        before as f64 / secs
    );
    if let Ok(node) = Arc::try_unwrap(node) {
        node.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

struct Figures {
    p50: f64,
    p99: f64,
    max: f64,
}

fn print_row(what: &str, f: &Figures) {
    println!("{what:<32} {:>8.1} {:>8.1} {:>8.1}", f.p50, f.p99, f.max);
}

async fn gets(node: &Node, key: Key) -> anyhow::Result<Figures> {
    let mut micros = Vec::with_capacity(GETS);
    let mut due = Instant::now();
    for _ in 0..GETS {
        while Instant::now() < due {
            tokio::task::yield_now().await;
        }
        due += PACE;
        let started = Instant::now();
        let found = node.get(key).await?;
        micros.push(started.elapsed().as_secs_f64() * 1e6);
        anyhow::ensure!(found.is_some(), "the held key was not found");
    }
    micros.sort_by(f64::total_cmp);
    let at = |q: f64| micros[((micros.len() - 1) as f64 * q) as usize];
    Ok(Figures {
        p50: at(0.5),
        p99: at(0.99),
        max: at(1.0),
    })
}
