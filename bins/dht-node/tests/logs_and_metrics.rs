//! The `dht-node` binary's operator surface: `--log-format json` writes one JSON object
//! per line, `log_level` in the file sets the level unless `RUST_LOG` does, and
//! `metrics_address` serves Prometheus text at `/metrics`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use dht_tests::process::{Running, free_addr, spawn_node};

struct Setup {
    dir: PathBuf,
    config: PathBuf,
    metrics: SocketAddr,
}

fn setup(extra: &str) -> Setup {
    let dir = std::env::temp_dir().join(format!("dht-ops-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).expect("dir");
    let metrics = free_addr();
    let config = dir.join("node.toml");
    std::fs::write(
        &config,
        format!(
            "[dht]\np2p_address = \"{}\"\napi_address = \"{}\"\nmetrics_address = \"{metrics}\"\n\
             pow_difficulty = {pow}\nmin_pow_difficulty = {pow}\n{extra}\n\
             [storage]\nbackend = \"memory\"\n",
            free_addr(),
            free_addr(),
            pow = dht_tests::TEST_POW
        ),
    )
    .expect("config");
    Setup {
        dir,
        config,
        metrics,
    }
}

fn start(setup: &Setup, args: &[&str], rust_log: Option<&str>) -> (Running, PathBuf) {
    let log = setup.dir.join(format!("out-{}.log", rand::random::<u32>()));
    let node = spawn_node(
        env!("CARGO_BIN_EXE_dht-node"),
        &setup.config,
        args,
        &log,
        rust_log,
    );
    (node, log)
}

/// `GET path` over HTTP/1.1: (status line, body), or None when nothing answers.
fn http_get(addr: SocketAddr, path: &str) -> Option<(String, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_string(), body.to_string()))
}

/// Polls until the metrics endpoint answers 200, which the node binds after it has
/// started; returns the body.
fn wait_for_metrics(addr: SocketAddr) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some((status, body)) = http_get(addr, "/metrics") {
            assert!(status.contains("200"), "{status}");
            return body;
        }
        assert!(Instant::now() < deadline, "metrics endpoint never answered");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls the log until `found` says yes (or 20 s pass) and returns its text.
fn wait_for_log(log: &Path, found: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if found(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "log never showed it:\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn json_logs_and_a_metrics_endpoint() {
    let setup = setup("");
    let (_node, log) = start(&setup, &["--log-format", "json"], None);
    let text = wait_for_log(&log, |t| t.contains("dht-node ready"));
    let mut ready = None;
    for line in text.lines() {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            event["timestamp"].is_string() && event["level"].is_string(),
            "{line}"
        );
        if event["message"] == "dht-node ready" {
            ready = Some(event);
        }
    }
    let ready = ready.expect("the ready event");
    assert_eq!(ready["id"].as_str().map(str::len), Some(64), "{ready}");

    let body = wait_for_metrics(setup.metrics);
    assert!(body.contains("# TYPE dht_api_requests counter"), "{body}");
    assert!(
        body.contains("# TYPE dht_rpc_duration_seconds histogram"),
        "{body}"
    );
    assert!(body.contains("dht_routing_table_contacts 0"), "{body}");
    assert!(body.ends_with("# EOF\n"), "{body}");
    let (status, _) = http_get(setup.metrics, "/other").expect("an answer");
    assert!(status.contains("404"), "{status}");
}

#[test]
fn log_level_from_the_file_unless_rust_log_says_otherwise() {
    let setup = setup("log_level = \"warn\"");
    let (node, log) = start(&setup, &[], None);
    wait_for_metrics(setup.metrics);
    drop(node);
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(
        !text.contains("INFO"),
        "log_level = warn still logged INFO:\n{text}"
    );

    let (_node, log) = start(&setup, &[], Some("info"));
    let text = wait_for_log(&log, |t| t.contains("dht-node ready"));
    assert!(text.contains("INFO"), "{text}");
}

#[test]
fn a_bad_log_option_is_a_clear_error() {
    let setup = setup("log_level = \"dht_core=loud\"");
    let output = Command::new(env!("CARGO_BIN_EXE_dht-node"))
        .arg("-c")
        .arg(&setup.config)
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("dht.log_level"), "{stderr}");

    let output = Command::new(env!("CARGO_BIN_EXE_dht-node"))
        .args(["-c", "x.toml", "--log-format", "xml"])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--log-format"), "{stderr}");
}

#[test]
fn health_and_readiness_answer_while_the_node_joins() {
    // A bootstrap peer that accepts connections and never says a word: the join waits
    // for it for the whole connect timeout, a minute here.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let setup = setup(&format!(
        "bootstrap_peers = [\"{}\"]\nconnect_timeout_ms = 60000",
        silent.local_addr().expect("address")
    ));
    let (_node, _log) = start(&setup, &[], None);
    let deadline = Instant::now() + Duration::from_secs(20);
    let (status, body) = loop {
        if let Some(answer) = http_get(setup.metrics, "/readyz") {
            break answer;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz did not answer while the node was joining"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.contains("503"), "{status}");
    assert_eq!(
        body,
        "not ready: not joined yet: joining, or no bootstrap peer has answered\n"
    );
    let (status, body) = http_get(setup.metrics, "/healthz").expect("/healthz answers");
    assert!(status.contains("200") && body == "ok\n", "{status} {body}");
    drop(silent);
}
