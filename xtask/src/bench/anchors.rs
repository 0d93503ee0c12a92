//! The anchors (`../shared/anchors/*`): building them, running them with a time limit,
//! and reading the figures out of the `name: value` lines they print.
//!
//! Parsing is by labels, not positions: every figure is found as `label=value` inside
//! the line that starts with the anchor's prefix, so that a reordered or extended line
//! still parses, and a missing one gives `n/a` naming what was missing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The anchors' own watchdog exit status.
const WATCHDOG_EXIT: i32 = 3;
/// Our limit on one anchor run, above the anchors' own 280 s watchdog.
const RUN_LIMIT: Duration = Duration::from_secs(300);

/// Figures of one anchor run, by our figure names (`get.p50`, `mem.kb`, ...), or why
/// there are none.
pub(crate) type Figures = Result<BTreeMap<String, f64>, String>;

/// The throughput anchors of our own (`bench/anchors/*`), which run mainline and libp2p
/// as `dht-bench` measures our throughput (the shared anchors measure latency only).
pub(crate) fn throughput_anchors_dir(root: &Path) -> PathBuf {
    root.join("bench/anchors")
}

/// Where the anchors are: `../shared/anchors` beside the workspace.
pub(crate) fn anchors_dir(root: &Path) -> anyhow::Result<PathBuf> {
    let dir = root
        .parent()
        .context("the workspace has no parent folder")?
        .join("shared/anchors");
    if !dir.is_dir() {
        bail!(
            "--anchors: {} is missing (the anchors live in ../shared/anchors beside the repository)",
            dir.display()
        );
    }
    Ok(dir)
}

/// Builds anchor `name` in release mode into `target/anchors`; returns its binary, or
/// why it could not be built.
pub(crate) fn build(root: &Path, dir: &Path, name: &str, binary: &str) -> Result<PathBuf, String> {
    let target = root.join("target/anchors");
    let manifest = dir.join(name).join("Cargo.toml");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--quiet", "--manifest-path"])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .map_err(|e| format!("cargo did not start: {e}"))?;
    if !status.success() {
        return Err(format!("build failed ({status})"));
    }
    Ok(target.join("release").join(binary))
}

/// Runs `binary args`, its stdout to `out`; returns what it printed, or why not.
pub(crate) fn run(binary: &Path, args: &[String], out: &Path) -> Result<String, String> {
    let file = std::fs::File::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let err_path = out.with_extension("err");
    let err_file =
        std::fs::File::create(&err_path).map_err(|e| format!("{}: {e}", err_path.display()))?;
    let mut child = Command::new(binary)
        .args(args)
        .stdout(Stdio::from(file))
        .stderr(Stdio::from(err_file))
        .spawn()
        .map_err(|e| format!("did not start: {e}"))?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > RUN_LIMIT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("killed after {RUN_LIMIT:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(format!("waiting for it failed: {e}")),
        }
    };
    let text = std::fs::read_to_string(out).unwrap_or_default();
    match status.code() {
        Some(0) => Ok(text),
        Some(WATCHDOG_EXIT) => Err("hit its 280 s watchdog".into()),
        _ => {
            let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
            Err(match panic_message(&stderr) {
                Some(message) => format!("failed: {message}"),
                None => format!("failed ({status})"),
            })
        }
    }
}

/// The message of a Rust panic in `stderr` (the line after `panicked at`), shortened.
fn panic_message(stderr: &str) -> Option<String> {
    let mut lines = stderr.lines();
    lines.find(|l| l.contains("panicked at"))?;
    let message = lines.next()?.trim();
    Some(message.chars().take(160).collect())
}

/// `label=<number><unit>` inside `line`: the number, unit stripped.
fn field(line: &str, label: &str) -> Option<f64> {
    let pattern = format!("{label}=");
    let mut rest = line;
    while let Some(at) = rest.find(&pattern) {
        // A label must start a word: `p50=` must not match inside `xp50=`.
        let before = rest[..at].chars().next_back();
        let value = &rest[at + pattern.len()..];
        if before.is_none_or(|c| c.is_whitespace() || c == '(' || c == '/') {
            let number: String = value
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == '-')
                .collect();
            return number.parse().ok();
        }
        rest = value;
    }
    None
}

/// The first line starting with `prefix`.
fn line<'a>(text: &'a str, prefix: &str) -> Result<&'a str, String> {
    text.lines()
        .map(str::trim_start)
        .find(|l| l.starts_with(prefix))
        .ok_or_else(|| format!("no `{prefix}` line in its output"))
}

fn put(
    figures: &mut BTreeMap<String, f64>,
    key: &str,
    line: &str,
    label: &str,
) -> Result<(), String> {
    let value = field(line, label).ok_or_else(|| format!("no {label}= in `{line}`"))?;
    figures.insert(key.into(), value);
    Ok(())
}

/// The latency percentiles of `line` as `<prefix>.p50` ... `<prefix>.mean`, and the
/// `ok=a/b` count as `<prefix>.ok`.
fn latencies(figures: &mut BTreeMap<String, f64>, prefix: &str, line: &str) -> Result<(), String> {
    for p in ["p50", "p90", "p99", "max", "mean"] {
        put(figures, &format!("{prefix}.{p}"), line, p)?;
    }
    put(figures, &format!("{prefix}.ok"), line, "ok")
}

/// The figures of `mainline-bench N OPS`.
pub(crate) fn parse_mainline(text: &str) -> Figures {
    let mut f = BTreeMap::new();
    let startup = line(text, "startup:")?;
    let testnet = field(startup, "nodes)").ok_or("no testnet start-up time")?;
    let clients = field(startup, "client(s)+bootstrap").ok_or("no client start-up time")?;
    f.insert("startup.network_ms".into(), testnet + clients);
    put(
        &mut f,
        "startup.new_node_join_ms",
        startup,
        "late-reader+bootstrap",
    )?;
    latencies(&mut f, "put", line(text, "put_immutable:")?)?;
    latencies(&mut f, "get", line(text, "get_immutable:")?)?;
    let memory = line(text, "memory:")?;
    put(&mut f, "mem.kb", memory, "VmHWM/N")?;
    put(&mut f, "threads", memory, "threads")?;
    Ok(f)
}

/// The figures of `libp2p-kad-bench N OPS MODE`.
pub(crate) fn parse_libp2p(text: &str) -> Figures {
    let mut f = BTreeMap::new();
    let startup = line(text, "startup:")?;
    put(&mut f, "startup.network_ms", startup, "total")?;
    let after = line(text, "after bootstrap:")?;
    let median = |label: &str| -> Result<f64, String> {
        let pattern = format!("{label} min/median/max=");
        let at = after
            .find(&pattern)
            .ok_or_else(|| format!("no {label} in `{after}`"))?;
        after[at + pattern.len()..]
            .split('/')
            .nth(1)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("bad {label} in `{after}`"))
    };
    f.insert("routing.median".into(), median("routing-table entries")?);
    f.insert("conns.median".into(), median("open connections")?);
    put(&mut f, "startup.new_node_join_ms", after, "join+bootstrap")?;
    latencies(&mut f, "put", line(text, "put_record(")?)?;
    latencies(&mut f, "get", line(text, "get_record (first record):")?)?;
    let memory = line(text, "memory:")?;
    put(&mut f, "mem.kb", memory, "VmHWM/N")?;
    put(&mut f, "threads", memory, "threads")?;
    Ok(f)
}

/// The figures of `mainline-tput` or `libp2p-kad-tput N SECS C,C,...`: for each C,
/// `tput.put.c<C>` and `tput.get_lookup.c<C>` (the keys of our own throughput rows).
pub(crate) fn parse_tput(text: &str) -> Figures {
    let mut f = BTreeMap::new();
    for (prefix, key) in [("put_rate c=", "put"), ("get_rate c=", "get_lookup")] {
        let mut found = false;
        for l in text
            .lines()
            .filter_map(|l| l.trim_start().strip_prefix(prefix))
        {
            let (c, rest) = l
                .split_once(':')
                .ok_or_else(|| format!("no `:` in `{prefix}{l}`"))?;
            let c: usize = c.parse().map_err(|_| format!("bad c in `{prefix}{l}`"))?;
            let rate: f64 = rest
                .trim_start()
                .split("/s")
                .next()
                .and_then(|r| r.parse().ok())
                .ok_or_else(|| format!("no rate in `{prefix}{l}`"))?;
            f.insert(format!("tput.{key}.c{c}"), rate);
            found = true;
        }
        if !found {
            return Err(format!("no `{prefix}` line in its output"));
        }
    }
    Ok(f)
}

/// An anchor's latency figures with its throughput figures added. A throughput run that
/// failed leaves its rows empty, and says why in the returned note.
pub(crate) fn with_throughput(latency: Figures, throughput: Figures) -> (Figures, Option<String>) {
    match (latency, throughput) {
        (Ok(mut figures), Ok(more)) => {
            figures.extend(more);
            (Ok(figures), None)
        }
        (Ok(figures), Err(reason)) => (Ok(figures), Some(reason)),
        (Err(reason), Ok(more)) if !more.is_empty() => {
            // Throughput rows only; the latency rows say why they are empty.
            (Ok(more), Some(format!("the latency run: {reason}")))
        }
        (Err(reason), _) => (Err(reason), None),
    }
}

/// The round trips of `tcp-pingpong`: its first TCP and UDP lines on the 2-thread
/// runtime (the runtime our nodes use here), µs.
pub(crate) fn parse_tcp(text: &str) -> Figures {
    let mut f = BTreeMap::new();
    put(
        &mut f,
        "tcp.p50_us",
        line(text, "tokio multi_thread(2):")?,
        "p50",
    )?;
    put(
        &mut f,
        "tcp.p99_us",
        line(text, "tokio multi_thread(2):")?,
        "p99",
    )?;
    put(
        &mut f,
        "udp.p50_us",
        line(text, "UDP tokio multi_thread(2):")?,
        "p50",
    )?;
    Ok(f)
}

/// The round trips of `tls-pingpong`, µs.
pub(crate) fn parse_tls(text: &str) -> Figures {
    let mut f = BTreeMap::new();
    let handshake = line(text, "mutual TLS 1.3 (Ed25519, ring): connect+handshake")?;
    put(&mut f, "tls.handshake_p50_us", handshake, "p50")?;
    let session = line(text, "mutual TLS 1.3 round trip on an established session:")?;
    put(&mut f, "tls.p50_us", session, "p50")?;
    put(&mut f, "tls.p99_us", session, "p99")?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Excerpts of ../shared/anchors/figures/.
    const MAINLINE: &str = "=== mainline 8.0.1  N=100  ops=200 ===
startup: testnet(seeded, 100 nodes)=6722.1ms  client(s)+bootstrap=3.2ms  late-reader+bootstrap=1.9ms (bootstrapped w=true r=true, reader early=false, clients=server-mode)
put_immutable: ok=200/200 total=21.21s p50=112.06ms p90=116.04ms p99=119.94ms max=120.10ms mean=106.06ms
get_immutable: ok=200/200 miss=0 total=0.44s p50=1.56ms p90=2.50ms p99=3.26ms max=56.35ms mean=2.18ms
memory: VmHWM=17440kB  VmHWM/N=174.4kB  RSS(before)=2728kB RSS(after start)=8996kB ((after-before)/N=62.7kB)  threads=104
wall=28.38s
";
    const LIBP2P: &str = "=== libp2p 0.57.1 / libp2p-kad 0.49.0 (tcp+noise+yamux)  N=100  ops=200  seed=full ===
startup: 100 swarms spawned+listening=73.2ms  seed+bootstrap(all 101 nodes incl. writer)=7864.8ms  total=7938.0ms  boot errors=0 []
  after bootstrap: routing-table entries min/median/max=54/68/71  open connections min/median/max=111/121/127  late reader join+bootstrap=70.7ms (Ok(()))
put_record(Quorum::One): ok=200/200 total=1.43s p50=6.91ms p90=8.81ms p99=9.81ms max=12.57ms mean=7.16ms
get_record (first record): ok=200/200 total=0.99s p50=4.54ms p90=7.60ms p99=12.97ms max=18.92ms mean=4.94ms
get_record (query fully finished, 200 of 200): p50=14.76ms p90=21.60ms p99=34.12ms max=37.32ms mean=15.72ms
memory: VmHWM=516448kB  VmHWM/N=5164.5kB  RSS(before)=3828kB RSS(listening, no conns)=119992kB ((..-before)/N=1161.6kB) RSS(after bootstrap)=513036kB ((after-before)/N=5092.1kB)  threads=5
";
    const TCP: &str =
        "tokio current_thread: n=10000 p50=11.9us p90=12.1us p99=31.7us max=173.0us mean=12.5us
tokio multi_thread(2): n=10000 p50=12.6us p90=12.7us p99=13.7us max=99.6us mean=12.7us
UDP tokio multi_thread(2): n=10000 p50=10.2us p90=10.4us p99=11.4us max=348.7us mean=10.4us
";
    const TLS: &str = "mutual TLS 1.3 (Ed25519, ring): connect+handshake+first round trip p50=646us p99=776us (n=200)
mutual TLS 1.3 round trip on an established session: p50=45.7us p90=58.1us p99=91.5us (n=20000)
";

    #[test]
    fn mainline_figures() {
        let f = parse_mainline(MAINLINE).unwrap();
        assert_eq!(f["startup.network_ms"], 6722.1 + 3.2);
        assert_eq!(f["startup.new_node_join_ms"], 1.9);
        assert_eq!(
            (f["get.p50"], f["get.p90"], f["get.p99"], f["get.max"]),
            (1.56, 2.50, 3.26, 56.35)
        );
        assert_eq!(
            (f["put.p50"], f["put.mean"], f["put.ok"]),
            (112.06, 106.06, 200.0)
        );
        assert_eq!((f["mem.kb"], f["threads"]), (174.4, 104.0));
    }

    #[test]
    fn libp2p_figures() {
        let f = parse_libp2p(LIBP2P).unwrap();
        assert_eq!(f["startup.network_ms"], 7938.0);
        assert_eq!((f["routing.median"], f["conns.median"]), (68.0, 121.0));
        assert_eq!(f["startup.new_node_join_ms"], 70.7);
        assert_eq!((f["put.p50"], f["put.p99"]), (6.91, 9.81));
        assert_eq!(
            (f["get.p50"], f["get.max"]),
            (4.54, 18.92),
            "the first record, not the full query"
        );
        assert_eq!(f["mem.kb"], 5164.5);
    }

    const TPUT: &str = "put_rate c=1: 9.5/s ok=29 failed=0 elapsed=3.04s
put_rate c=64: 88.5/s ok=376 failed=112 elapsed=4.25s
get_rate c=1: 361.6/s ok=755 failed=0 elapsed=2.09s
get_rate c=64: 1318.2/s ok=4014 failed=0 elapsed=3.04s
";

    #[test]
    fn throughput_figures() {
        let f = parse_tput(TPUT).unwrap();
        assert_eq!((f["tput.put.c1"], f["tput.put.c64"]), (9.5, 88.5));
        assert_eq!(
            (f["tput.get_lookup.c1"], f["tput.get_lookup.c64"]),
            (361.6, 1318.2)
        );
        assert!(
            parse_tput("put_rate c=1: 9.5/s\n")
                .unwrap_err()
                .contains("get_rate")
        );
        assert!(parse_tput("put_rate c=x: 1/s\nget_rate c=1: 2/s").is_err());
        let latency = parse_mainline(MAINLINE);
        let (merged, note) = with_throughput(latency.clone(), Ok(f.clone()));
        let merged = merged.unwrap();
        assert_eq!((merged["get.p50"], merged["tput.put.c64"]), (1.56, 88.5));
        assert_eq!(note, None);
        let (kept, note) = with_throughput(latency, Err("failed".into()));
        assert!(kept.unwrap().contains_key("get.p50"));
        assert_eq!(note.as_deref(), Some("failed"));
        let (only, note) = with_throughput(Err("watchdog".into()), Ok(f));
        assert_eq!(only.unwrap()["tput.put.c1"], 9.5);
        assert!(note.unwrap().contains("watchdog"));
    }

    #[test]
    fn pingpong_figures() {
        let tcp = parse_tcp(TCP).unwrap();
        assert_eq!(
            (tcp["tcp.p50_us"], tcp["tcp.p99_us"], tcp["udp.p50_us"]),
            (12.6, 13.7, 10.2)
        );
        let tls = parse_tls(TLS).unwrap();
        assert_eq!(
            (tls["tls.handshake_p50_us"], tls["tls.p50_us"]),
            (646.0, 45.7)
        );
    }

    #[test]
    fn missing_or_cut_output_names_what_is_missing() {
        let cut = &MAINLINE[..MAINLINE.find("get_immutable").unwrap()];
        let err = parse_mainline(cut).unwrap_err();
        assert!(err.contains("get_immutable"), "{err}");
        assert!(parse_libp2p("").unwrap_err().contains("startup:"));
        let garbled = MAINLINE.replace("p99=3.26ms", "p99=?");
        assert!(parse_mainline(&garbled).unwrap_err().contains("p99"));
        assert_eq!(field("a xp50=1 p50=2ms", "p50"), Some(2.0));
        let panic = "\nthread 'main' (3320) panicked at src/main.rs:25:58:\ncalled `Result::unwrap()` on an `Err` value: Os { code: 24, message: \"Too many open files\" }\n";
        assert!(
            panic_message(panic)
                .unwrap()
                .contains("Too many open files")
        );
        assert_eq!(panic_message("WATCHDOG: aborting"), None);
    }
}
