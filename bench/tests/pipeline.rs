//! The whole benchmark pipeline on a small network (6 nodes in a worker process, the
//! lowest proof of work, short windows), so that `cargo test` keeps it from rotting.
//! Checks that every figure is there and that the counts add up; never checks a time.

use std::path::PathBuf;
use std::process::Command;

use dht_bench::results::NetworkResult;

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_small_network_yields_every_figure() {
    let dir = TempDir(std::env::temp_dir().join(format!("dht-bench-test-{}", std::process::id())));
    let out = dir.0.join("result.json");
    let ops = 6;
    let status = Command::new(env!("CARGO_BIN_EXE_dht-bench"))
        .args([
            "run",
            "--nodes",
            "6",
            "--ops",
            &ops.to_string(),
            "--pow",
            "4",
        ])
        .args(["--idle-secs", "0.5", "--throughput-secs", "0.3"])
        .args([
            "--concurrency",
            "1,2",
            "--replications",
            "3,5",
            "--preload",
            "50",
        ])
        .arg("--out")
        .arg(&out)
        .arg("--work-dir")
        .arg(dir.0.join("work"))
        .output()
        .expect("dht-bench runs");
    assert!(
        status.status.success(),
        "dht-bench run failed: {}\n{}",
        status.status,
        String::from_utf8_lossy(&status.stderr)
    );
    let text = std::fs::read_to_string(&out).expect("the result file");
    let result: NetworkResult = serde_json::from_str(&text).expect("the result is JSON");
    assert_eq!((result.n, result.ops), (6, ops));
    let value = |key: &str| {
        result
            .value(key)
            .unwrap_or_else(|| panic!("{key} missing; notes: {:?}", result.notes))
    };
    for r in [3, 5] {
        for series in ["get.core", "get.api"] {
            let key = format!("{series}.r{r}");
            let count = value(&format!("{key}.count"));
            assert_eq!(
                count + value(&format!("{key}.held")),
                ops as f64,
                "{key}: every key measured or skipped as held"
            );
            assert_eq!(
                value(&format!("{key}.held")),
                0.0,
                "{key}: keys chosen outside"
            );
            assert_eq!(
                value(&format!("{key}.found")),
                count,
                "{key}: every GET found"
            );
            for p in ["p50", "p90", "p99", "max"] {
                assert!(value(&format!("{key}.{p}")) > 0.0);
            }
            assert!(value(&format!("{key}.p50")) <= value(&format!("{key}.max")));
            let lookup = key.replacen("get.", "lookup.get.", 1);
            assert!(value(&format!("{lookup}.contacted")) >= 1.0);
            assert!(value(&format!("{lookup}.rounds")) >= 1.0);
            let samples = result
                .samples
                .iter()
                .find(|s| s.key == key)
                .expect("samples");
            assert_eq!(samples.ms.len() as f64, count);
        }
        assert_eq!(value(&format!("put.core.r{r}.count")), 2.0 * ops as f64);
        assert_eq!(
            value(&format!("put.core.r{r}.replicated")),
            2.0 * ops as f64,
            "every PUT reached its replicas"
        );
        assert_eq!(value(&format!("put.api.r{r}.missed")), 0.0);
        assert_eq!(value(&format!("put.api.r{r}.count")), (ops / 2) as f64);
        assert!(value(&format!("lookup.put.r{r}.contacted")) >= 1.0);
    }
    for workload in ["get_local", "get_lookup", "put"] {
        for c in [1, 2] {
            assert!(
                value(&format!("tput.{workload}.c{c}")) > 0.0,
                "{workload} c={c}"
            );
        }
    }
    assert!(value("tput.put.confirmed") > 0.0);
    // The ceiling, at the most connections measured.
    assert!(value("tput.echo.c2") > 0.0);
    for key in [
        "mem.idle_kb",
        "mem.after_latency_kb",
        "mem.after_ops_kb",
        "mem.loaded_kb",
    ] {
        assert!(value(key) > 1000.0, "{key}: a node takes more than 1 MB");
    }
    assert!(value("mem.loaded_records") >= 50.0);
    assert!(value("conns.mean") >= 1.0);
    assert!(value("routing.median") >= 1.0);
    assert!(value("cpu.idle_ms_per_s") >= 0.0);
    for key in [
        "conns.evicted_per_node",
        "conns.refused_full",
        "requests.rate_limited",
    ] {
        assert!(value(key) >= 0.0, "{key}");
    }
    for key in [
        "startup.network_ms",
        "startup.loaded_ms",
        "startup.new_node_join_ms",
        "startup.new_node_first_get_ms",
    ] {
        assert!(value(key) > 0.0, "{key}");
    }
    assert!(value("startup.new_node_join_ms") <= value("startup.new_node_first_get_ms"));
    // Every worker node was pinged twice by a node that knew none of them.
    for key in ["conn.new", "conn.open"] {
        assert_eq!(value(&format!("{key}.count")), 6.0, "{key}");
        assert!(value(&format!("{key}.p50")) > 0.0, "{key}");
    }
    assert!(!result.notes.is_empty(), "the notes say what ran where");
}
