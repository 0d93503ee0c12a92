//! Throughput of the mainline DHT (8.0.1), measured the way `dht-bench` measures ours:
//! one node, C requests in flight (C client threads, each waiting for its answer before
//! the next request), for a fixed time, on a seeded `Testnet` of N nodes in this process.
//!
//! usage: mainline-tput N [SECS] [C,C,...]
//!
//! The network and the two client nodes are set up as `../shared/anchors/mainline` sets
//! them up (writer and reader are server-mode nodes bootstrapped from node 0 and 8 other
//! testnet nodes; the reader joins after the PUTs, so it holds no replica). Then:
//! - PUT/s: the writer's `put_immutable` of fresh 100-byte values, counting those that
//!   succeeded;
//! - GET/s: the reader's `get_immutable` of the last 200 values PUT, in turn (as
//!   dht-bench asks for the 200 keys of its latency series in turn; a mainline node keeps
//!   only its 1,000 most recent values, and the testnet's nodes cannot be configured),
//!   counting those found with the right value. The reader holds no replica, so each GET is a lookup; mainline remembers the
//!   closest nodes its recent queries found, so a key asked for again may take one round.
//!
//! Each C of the list gives one PUT series (all first) and one GET series. Prints
//! `put_rate c=C: R/s ...` and `get_rate c=C: R/s ...` lines.
#![allow(deprecated)] // the blocking API of mainline 8 is marked deprecated in favour of as_async()

use mainline::{Dht, Id, Testnet};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The GETs ask for the last this many values PUT.
const GET_KEYS: usize = 200;

/// What one series achieved.
#[derive(Default)]
struct Tally {
    ok: usize,
    failed: usize,
    /// From the common start to the last answer.
    elapsed: Duration,
}

impl Tally {
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

/// Runs `work(thread, i)` on `c` threads until `secs` have passed since the start; each
/// call says whether it succeeded, or `None` when there is nothing left to do.
fn series(c: usize, secs: f64, work: impl Fn(usize, usize) -> Option<bool> + Sync) -> Tally {
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let (ok, failed) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let last = Mutex::new(start);
    std::thread::scope(|scope| {
        for t in 0..c {
            let (work, ok, failed, last) = (&work, &ok, &failed, &last);
            scope.spawn(move || {
                let mut i = 0;
                while Instant::now() < end {
                    let Some(done) = work(t, i) else { break };
                    let counter = if done { ok } else { failed };
                    counter.fetch_add(1, Ordering::Relaxed);
                    let now = Instant::now();
                    let mut last = last.lock().unwrap();
                    *last = (*last).max(now);
                    i += 1;
                }
            });
        }
    });
    let elapsed = last.into_inner().unwrap() - start;
    Tally {
        ok: ok.into_inner(),
        failed: failed.into_inner(),
        elapsed,
    }
}

/// A distinct 100-byte value for thread `t`, call `i`.
fn value(n: usize, t: usize, i: usize) -> Vec<u8> {
    let mut v = format!("mainline-tput n={n} t={t} i={i} ").into_bytes();
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

fn main() {
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

    // Hard watchdog, as the anchors have.
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(280));
        eprintln!("WATCHDOG: aborting after 280 s");
        std::process::exit(3);
    });

    let testnet = Testnet::builder(n)
        .bind_address(Ipv4Addr::LOCALHOST)
        .build()
        .expect("testnet");
    // Node 0 and 8 pseudo-random others, as the latency anchor does.
    let boot: Vec<String> = {
        let mut idx = vec![0usize];
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        while idx.len() < 9.min(n) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let j = (x % n as u64) as usize;
            if !idx.contains(&j) {
                idx.push(j);
            }
        }
        idx.iter().map(|&j| testnet.bootstrap[j].clone()).collect()
    };
    let mk = || {
        Dht::builder()
            .bootstrap(&boot)
            .bind_address(Ipv4Addr::LOCALHOST)
            .server_mode()
            .build()
            .expect("client node")
    };
    let writer = mk();
    let joined = writer.bootstrapped();
    eprintln!("[progress] {n} nodes up, writer bootstrapped={joined}");

    let stored: Mutex<Vec<(Id, Vec<u8>)>> = Mutex::new(Vec::new());
    for &c in &cs {
        let puts = series(c, secs, |t, i| {
            let v = value(n, c * 1_000 + t, i);
            Some(match writer.put_immutable(&v) {
                Ok(id) => {
                    stored.lock().unwrap().push((id, v));
                    true
                }
                Err(e) => {
                    if std::env::var("VERBOSE").is_ok() {
                        eprintln!("[put] {e:?}");
                    }
                    false
                }
            })
        });
        println!("{}", puts.line("put_rate", c));
    }

    let reader = mk();
    let _ = reader.bootstrapped();
    let mut stored = stored.into_inner().unwrap();
    stored.drain(..stored.len().saturating_sub(GET_KEYS));
    if stored.is_empty() {
        println!("get_rate: n/a (no PUT succeeded)");
        return;
    }
    let next = AtomicUsize::new(0);
    for &c in &cs {
        let gets = series(c, secs, |_, _| {
            let (id, v) = &stored[next.fetch_add(1, Ordering::Relaxed) % stored.len()];
            Some(
                reader
                    .get_immutable(*id)
                    .is_some_and(|got| got[..] == v[..]),
            )
        });
        println!("{}", gets.line("get_rate", c));
    }
    drop(testnet);
}
