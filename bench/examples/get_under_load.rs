//! A node's GET latency while its durable store commits a bulk load of PUTs, against
//! its idle latency: a GET reads the store's memory and must not wait for the commits
//! (each one `fsync`ed here, `DiskSync::EveryCommit`, to make them slow).
//!
//! One node on 127.0.0.1 with its durable store in a temporary folder and its VoidPhone
//! API. Two kinds of GET of a key the node holds, 10,000 of each, one every 200 us:
//! through the embedding API (`Node::get`, on the node's runtime) and through the
//! VoidPhone API (DHT_GET over TCP, from a client thread of its own, as another module
//! would send it). Each is measured idle, then under two loads of 8 tasks PUTting
//! distinct 1 KiB keys (alone, the node stores them locally, one commit per batch):
//! - *paced*: 2,000 PUTs/s in all, which keeps the disk busy (an `fsync` per batch) and
//!   leaves the CPU mostly free; issue 17 asks DHT_GET's p99 under it to stay within 2x
//!   idle (what it adds beyond the memory store's control is written up in
//!   docs/STORAGE.md);
//! - *saturating*: as fast as the node takes them, which also takes both cores: what it
//!   adds is CPU sharing as well.
//!
//! All of it twice: on the durable store, then on the memory store as the control (no
//! disk, no writer thread): what the first adds over the second is the store's doing.
//! Prints p50, p99 and max of each series and the PUTs committed meanwhile.
//!
//! `cargo run --release -p dht-bench --example get_under_load`

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dht_api::{ApiConfig, ApiServer};
use dht_bench::client::ApiClient;
use dht_core::{DiskSync, Key, Node, NodeConfig, PutOptions, StorageBackend};

const GETS: usize = 10_000;
/// One GET every this long, so that the GETs sample the whole load (2 s), not a burst
/// between two commits.
const PACE: Duration = Duration::from_micros(200);
const WRITERS: usize = 8;
/// PUTs per second of the paced load, all writers together.
const PACED_RATE: u64 = 2_000;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("dht-get-under-load-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    println!(
        "GET of a held key, {GETS} times, one every {} us; loads of {WRITERS} tasks PUTting \
         1 KiB values",
        PACE.as_micros()
    );
    let durable = StorageBackend::Durable {
        data_dir: dir.join("data"),
        key: None,
        sync: DiskSync::EveryCommit,
    };
    measure("durable store, every commit fsynced", durable, &dir).await?;
    // The control: the same loads with no disk and no writer thread, so that what the
    // durable store adds shows apart from what serving PUTs on two cores costs anyway.
    measure("memory store (the control)", StorageBackend::Memory, &dir).await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// One node on `storage`: its GETs idle and under each load, printed.
async fn measure(title: &str, storage: StorageBackend, dir: &Path) -> anyhow::Result<()> {
    let node = Arc::new(
        Node::start(NodeConfig {
            p2p_address: ([127, 0, 0, 1], 0).into(),
            hostkey: Some(dir.join("hostkey.pem")),
            storage,
            ..NodeConfig::default()
        })
        .await?,
    );
    let api = ApiServer::bind(
        ApiConfig {
            address: ([127, 0, 0, 1], 0).into(),
            ..ApiConfig::default()
        },
        node.clone(),
    )
    .await?;
    let key = Key::sha256(b"read while others write");
    node.put(key, Bytes::from_static(b"v"), PutOptions::default())
        .await?;

    println!(
        "\n{title:<34} {:>30} {:>30}",
        "Node::get: p50 / p99 / max us", "DHT_GET: p50 / p99 / max us"
    );
    let idle = series(&node, api.local_addr(), key).await?;
    print_row("idle", &idle, None);
    let mut ratios = Vec::new();
    for (what, rate) in [
        ("under a paced PUT load", Some(PACED_RATE)),
        ("under a saturating PUT load", None),
    ] {
        let load = Load::start(&node, rate).await;
        let started = Instant::now();
        let loaded = series(&node, api.local_addr(), key).await?;
        let committed = load.stop().await? as f64 / started.elapsed().as_secs_f64();
        print_row(what, &loaded, Some(committed));
        ratios.push((
            what,
            loaded.embedded.p99 / idle.embedded.p99,
            loaded.api.p99 / idle.api.p99,
        ));
    }
    for (what, embedded, api) in ratios {
        println!("p99 {what} / idle: Node::get {embedded:.2}x, DHT_GET {api:.2}x");
    }
    api.shutdown().await;
    if let Ok(node) = Arc::try_unwrap(node) {
        node.shutdown().await;
    }
    Ok(())
}

/// Writer tasks PUTting distinct keys, at `rate` per second in all or as fast as they can.
struct Load {
    stop: Arc<AtomicBool>,
    committed: Arc<AtomicU64>,
    writers: Vec<tokio::task::JoinHandle<()>>,
    started_at: u64,
}

impl Load {
    async fn start(node: &Arc<Node>, rate: Option<u64>) -> Load {
        static ROUND: AtomicU64 = AtomicU64::new(0);
        let round = ROUND.fetch_add(1, Ordering::Relaxed);
        let stop = Arc::new(AtomicBool::new(false));
        let committed = Arc::new(AtomicU64::new(0));
        let every = rate.map(|r| Duration::from_secs_f64(WRITERS as f64 / r as f64));
        let mut writers = Vec::new();
        for w in 0..WRITERS {
            let (node, stop, committed) = (node.clone(), stop.clone(), committed.clone());
            writers.push(tokio::spawn(async move {
                // Each writer a phase of its own: the PUTs come spread over time, as
                // STOREs from many peers do, not in bursts of eight.
                let mut ticks = every.map(|every| {
                    let phase = every.mul_f64(w as f64 / WRITERS as f64);
                    tokio::time::interval_at(tokio::time::Instant::now() + phase, every)
                });
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if let Some(ticks) = ticks.as_mut() {
                        ticks.tick().await;
                    }
                    let key = Key::sha256(format!("bulk/{round}/{w}/{i}").as_bytes());
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
        let started_at = committed.load(Ordering::Relaxed);
        Load {
            stop,
            committed,
            writers,
            started_at,
        }
    }

    /// Stops the writers; the PUTs committed since the load was under way.
    async fn stop(self) -> anyhow::Result<u64> {
        let done = self.committed.load(Ordering::Relaxed) - self.started_at;
        self.stop.store(true, Ordering::Relaxed);
        for w in self.writers {
            w.await?;
        }
        Ok(done)
    }
}

struct Figures {
    p50: f64,
    p99: f64,
    max: f64,
}

impl Figures {
    fn of(mut micros: Vec<f64>) -> Figures {
        micros.sort_by(f64::total_cmp);
        let at = |q: f64| micros[((micros.len() - 1) as f64 * q) as usize];
        Figures {
            p50: at(0.5),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

struct Series {
    embedded: Figures,
    api: Figures,
}

/// The embedded GETs, then the API GETs.
async fn series(node: &Node, api: SocketAddr, key: Key) -> anyhow::Result<Series> {
    let embedded = embedded_gets(node, key).await?;
    let api = tokio::task::spawn_blocking(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(api_gets(api, key))
    })
    .await??;
    Ok(Series { embedded, api })
}

fn print_row(what: &str, s: &Series, committed: Option<f64>) {
    let cell = |f: &Figures| format!("{:.1} / {:.1} / {:.1}", f.p50, f.p99, f.max);
    let committed = committed
        .map(|c| format!("   ({c:.0} PUTs committed/s)"))
        .unwrap_or_default();
    println!(
        "{what:<34} {:>30} {:>30}{committed}",
        cell(&s.embedded),
        cell(&s.api)
    );
}

async fn embedded_gets(node: &Node, key: Key) -> anyhow::Result<Figures> {
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
    Ok(Figures::of(micros))
}

/// DHT_GETs from a client on a thread of its own (it sleeps between them, so that it
/// does not take a core from the node).
async fn api_gets(api: SocketAddr, key: Key) -> anyhow::Result<Figures> {
    let mut client = ApiClient::connect(api).await?;
    let mut micros = Vec::with_capacity(GETS);
    let mut due = Instant::now();
    for _ in 0..GETS {
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        due += PACE;
        let started = Instant::now();
        let found = client.get(key).await?;
        micros.push(started.elapsed().as_secs_f64() * 1e6);
        anyhow::ensure!(found.is_some(), "the held key was not found");
    }
    Ok(Figures::of(micros))
}
