//! Throughput of rust-libp2p Kademlia (libp2p 0.57.1 / libp2p-kad 0.49.0, TCP + noise +
//! yamux on 127.0.0.1), measured the way `dht-bench` measures ours: one node, C requests
//! in flight (C client tasks, each waiting for its answer before the next request), for
//! a fixed time, on N swarms in this process.
//!
//! usage: libp2p-kad-tput N [SECS] [C,C,...]
//!
//! The network is set up as `../shared/anchors/libp2p-kad` sets it up (every node is
//! given node 0 and 8 random others, then all bootstrap; a writer node joins the same
//! way, the reader only after the PUTs, so it holds no replica). Then, for each C:
//! - PUT/s: the writer's `put_record(Quorum::One)` of fresh keys with 100-byte values,
//!   counting those that succeeded;
//! - GET/s: the reader's `get_record` of the last 200 keys PUT, in turn (as dht-bench
//!   asks for the 200 keys of its latency series in turn), counting those whose first
//!   record found has the right value; the query is finished at that record (ours also
//!   stops at the first value found).
//!
//! Prints `put_rate c=C: R/s ...` and `get_rate c=C: R/s ...` lines.

use futures::StreamExt;
use libp2p::{
    kad::{
        self,
        store::{MemoryStore, MemoryStoreConfig},
        GetRecordOk, Mode, QueryId, QueryResult, Quorum, Record,
    },
    noise,
    swarm::SwarmEvent,
    tcp, yamux, Multiaddr, PeerId, Swarm, SwarmBuilder,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

const K_RANDOM: usize = 8;
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Records a node's store keeps at most: our nodes' default bound.
const RECORDS: usize = 100_000;
/// The GETs ask for the last this many keys PUT, as dht-bench's GETs ask for the keys
/// of its 200-operation latency series.
const GET_KEYS: usize = 200;

enum Cmd {
    AddAddrs(Vec<(PeerId, Multiaddr)>),
    Bootstrap(oneshot::Sender<Result<(), String>>),
    Put(Vec<u8>, Vec<u8>, oneshot::Sender<bool>),
    /// The first record's value, if any was found.
    Get(Vec<u8>, oneshot::Sender<Option<Vec<u8>>>),
}

type Behaviour = kad::Behaviour<MemoryStore>;

async fn new_node() -> (Swarm<Behaviour>, PeerId, Multiaddr) {
    let mut swarm = SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|key| {
            let id = key.public().to_peer_id();
            let mut cfg = kad::Config::new(kad::PROTOCOL_NAME);
            cfg.set_query_timeout(Duration::from_secs(30));
            // libp2p's default store keeps 1,024 records, which the writer's own copies
            // alone fill within a second of PUTs; ours keeps 100,000 by default.
            let store = MemoryStoreConfig {
                max_records: RECORDS,
                ..MemoryStoreConfig::default()
            };
            kad::Behaviour::with_config(id, MemoryStore::with_config(id, store), cfg)
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_TIMEOUT))
        .build();
    swarm.behaviour_mut().set_mode(Some(Mode::Server));
    swarm
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    let addr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            break address;
        }
    };
    let id = *swarm.local_peer_id();
    (swarm, id, addr)
}

enum Pending {
    Put(oneshot::Sender<bool>),
    Get(oneshot::Sender<Option<Vec<u8>>>),
    Bootstrap(oneshot::Sender<Result<(), String>>),
}

async fn run_node(mut swarm: Swarm<Behaviour>, mut rx: mpsc::UnboundedReceiver<Cmd>) {
    let mut pending: HashMap<QueryId, Pending> = HashMap::new();
    loop {
        tokio::select! {
            cmd = rx.recv() => {
                let Some(cmd) = cmd else { return };
                let k = swarm.behaviour_mut();
                match cmd {
                    Cmd::AddAddrs(list) => for (p, a) in list { k.add_address(&p, a); },
                    Cmd::Bootstrap(tx) => match k.bootstrap() {
                        Ok(q) => { pending.insert(q, Pending::Bootstrap(tx)); }
                        Err(e) => { let _ = tx.send(Err(format!("{e:?}"))); }
                    },
                    Cmd::Put(key, val, tx) => {
                        let rec = Record::new(kad::RecordKey::new(&key), val);
                        match k.put_record(rec, Quorum::One) {
                            Ok(q) => { pending.insert(q, Pending::Put(tx)); }
                            Err(_) => { let _ = tx.send(false); }
                        }
                    }
                    Cmd::Get(key, tx) => {
                        let q = k.get_record(kad::RecordKey::new(&key));
                        pending.insert(q, Pending::Get(tx));
                    }
                }
            }
            ev = swarm.select_next_some() => {
                let SwarmEvent::Behaviour(kad::Event::OutboundQueryProgressed { id, result, step, .. }) = ev else {
                    continue;
                };
                match result {
                    QueryResult::Bootstrap(r) => {
                        let last = match &r { Ok(ok) => ok.num_remaining == 0, Err(_) => true } || step.last;
                        if last {
                            if let Some(Pending::Bootstrap(tx)) = pending.remove(&id) {
                                let _ = tx.send(r.map(|_| ()).map_err(|e| format!("{e:?}")));
                            }
                        }
                    }
                    QueryResult::PutRecord(r) => {
                        if let Some(Pending::Put(tx)) = pending.remove(&id) {
                            let _ = tx.send(r.is_ok());
                        }
                    }
                    QueryResult::GetRecord(r) => {
                        let found = match r {
                            Ok(GetRecordOk::FoundRecord(pr)) => Some(pr.record.value),
                            _ => None,
                        };
                        if found.is_some() || step.last {
                            if let Some(Pending::Get(tx)) = pending.remove(&id) {
                                let _ = tx.send(found);
                            }
                            if let Some(mut query) = swarm.behaviour_mut().query_mut(&id) {
                                query.finish();
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

struct Handle {
    id: PeerId,
    addr: Multiaddr,
    tx: mpsc::UnboundedSender<Cmd>,
}

async fn spawn_node() -> Handle {
    let (swarm, id, addr) = new_node().await;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run_node(swarm, rx));
    Handle { id, addr, tx }
}

/// xorshift, deterministic
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn seed_list(nodes: &[Handle], me: Option<usize>, rng: &mut Rng) -> Vec<(PeerId, Multiaddr)> {
    let n = nodes.len();
    let mut picks = vec![0usize];
    while picks.len() < (K_RANDOM + 1).min(n) {
        let j = (rng.next() % n as u64) as usize;
        if !picks.contains(&j) && Some(j) != me {
            picks.push(j);
        }
    }
    picks.retain(|&j| Some(j) != me);
    picks
        .iter()
        .map(|&j| (nodes[j].id, nodes[j].addr.clone()))
        .collect()
}

async fn bootstrap(h: &Handle) -> Result<(), String> {
    let (tx, rx) = oneshot::channel();
    h.tx.send(Cmd::Bootstrap(tx)).unwrap();
    match tokio::time::timeout(Duration::from_secs(60), rx).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err("dropped".into()),
        Err(_) => Err("bootstrap timeout 60s".into()),
    }
}

/// A distinct 100-byte value.
fn value(n: usize, c: usize, t: usize, i: usize) -> Vec<u8> {
    let mut v = format!("libp2p-kad-tput n={n} c={c} t={t} i={i} ").into_bytes();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ ((t as u64) << 32 | i as u64);
    while v.len() < 100 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(b'a' + (x % 26) as u8);
    }
    v.truncate(100);
    v
}

/// What one series achieved.
#[derive(Default)]
struct Tally {
    ok: usize,
    failed: usize,
    /// From the common start to the last answer.
    elapsed: Duration,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.ok += other.ok;
        self.failed += other.failed;
        self.elapsed = self.elapsed.max(other.elapsed);
    }

    fn line(&self, name: &str, c: usize) -> String {
        let secs = self.elapsed.as_secs_f64();
        let rate = if secs > 0.0 {
            self.ok as f64 / secs
        } else {
            0.0
        };
        format!(
            "{name} c={c}: {rate:.1}/s ok={} failed={} elapsed={:.2}s",
            self.ok, self.failed, secs
        )
    }
}

type Stored = Arc<Mutex<Vec<(Vec<u8>, Vec<u8>)>>>;

async fn put_series(writer: &Handle, n: usize, c: usize, secs: f64, stored: &Stored) -> Tally {
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let clients = (0..c).map(|t| {
        let (tx, stored) = (writer.tx.clone(), stored.clone());
        tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut i = 0;
            while Instant::now() < end {
                let v = value(n, c, t, i);
                let key = format!("tput-{n}-{c}-{t}-{i}").into_bytes();
                let (done, answer) = oneshot::channel();
                tx.send(Cmd::Put(key.clone(), v.clone(), done)).unwrap();
                if answer.await.unwrap_or(false) {
                    tally.ok += 1;
                    stored.lock().unwrap().push((key, v));
                } else {
                    tally.failed += 1;
                }
                tally.elapsed = start.elapsed();
                i += 1;
            }
            tally
        })
    });
    let mut all = Tally::default();
    for tally in futures::future::join_all(clients).await {
        all.add(tally.unwrap());
    }
    all
}

async fn get_series(
    reader: &Handle,
    c: usize,
    secs: f64,
    stored: &Arc<Vec<(Vec<u8>, Vec<u8>)>>,
    next: &Arc<AtomicUsize>,
) -> Tally {
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let clients = (0..c).map(|_| {
        let (tx, stored, next) = (reader.tx.clone(), stored.clone(), next.clone());
        tokio::spawn(async move {
            let mut tally = Tally::default();
            while Instant::now() < end {
                let (key, v) = &stored[next.fetch_add(1, Ordering::Relaxed) % stored.len()];
                let (done, answer) = oneshot::channel();
                tx.send(Cmd::Get(key.clone(), done)).unwrap();
                match answer.await {
                    Ok(Some(got)) if &got == v => tally.ok += 1,
                    _ => tally.failed += 1,
                }
                tally.elapsed = start.elapsed();
            }
            tally
        })
    });
    let mut all = Tally::default();
    for tally in futures::future::join_all(clients).await {
        all.add(tally.unwrap());
    }
    all
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(20);
    let secs: f64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let cs: Vec<usize> = args
        .get(3)
        .map_or("1,8,64", String::as_str)
        .split(',')
        .filter_map(|c| c.parse().ok())
        .filter(|&c| c > 0)
        .collect();

    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(280));
        eprintln!("WATCHDOG: aborting after 280 s");
        std::process::exit(3);
    });

    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut nodes = Vec::with_capacity(n);
    for _ in 0..n {
        nodes.push(spawn_node().await);
    }
    for i in 0..n {
        let seeds = seed_list(&nodes, Some(i), &mut rng);
        nodes[i].tx.send(Cmd::AddAddrs(seeds)).unwrap();
    }
    let writer = spawn_node().await;
    writer
        .tx
        .send(Cmd::AddAddrs(seed_list(&nodes, None, &mut rng)))
        .unwrap();
    let joined =
        futures::future::join_all(nodes.iter().chain(std::iter::once(&writer)).map(bootstrap))
            .await;
    let errors = joined.iter().filter(|r| r.is_err()).count();
    eprintln!("[progress] {n} nodes up, bootstrap errors={errors}");

    let stored: Stored = Arc::default();
    for &c in &cs {
        let puts = put_series(&writer, n, c, secs, &stored).await;
        println!("{}", puts.line("put_rate", c));
    }

    let reader = spawn_node().await;
    reader
        .tx
        .send(Cmd::AddAddrs(seed_list(&nodes, None, &mut rng)))
        .unwrap();
    let _ = bootstrap(&reader).await;
    let mut stored = std::mem::take(&mut *stored.lock().unwrap());
    stored.drain(..stored.len().saturating_sub(GET_KEYS));
    let stored = Arc::new(stored);
    if stored.is_empty() {
        println!("get_rate: n/a (no PUT succeeded)");
        std::process::exit(0);
    }
    let next = Arc::new(AtomicUsize::new(0));
    for &c in &cs {
        let gets = get_series(&reader, c, secs, &stored, &next).await;
        println!("{}", gets.line("get_rate", c));
    }
    std::process::exit(0);
}
