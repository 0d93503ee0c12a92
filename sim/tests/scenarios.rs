//! Every scenario, 1,000 nodes, a few simulated minutes, run as a user runs it
//! (`cargo xtask sim --scenario NAME`, which builds the simulator in release mode): the
//! figures the scenario is about must hold (success fractions, never times: times are
//! the report's to show), and the report must come with its plots.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, ensure};
use serde_json::Value;

/// Nodes of every run.
const NODES: &str = "1000";
/// Simulated minutes of workload of every run.
const MINUTES: &str = "2";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Runs `cargo xtask sim --scenario NAME` into a folder of its own; its JSON summary.
fn sim(scenario: &str) -> anyhow::Result<Value> {
    let dir = std::env::temp_dir().join(format!("dht-sim-{scenario}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let json = dir.join("summary.json");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["xtask", "sim", "--scenario", scenario, "--nodes", NODES])
        .args(["--minutes", MINUTES, "--seed", "5", "--report"])
        .arg(&dir)
        .arg("--json")
        .arg(&json)
        .current_dir(workspace())
        .status()
        .context("running cargo xtask sim")?;
    ensure!(
        status.success(),
        "cargo xtask sim --scenario {scenario}: {status}"
    );
    let summary: Value = serde_json::from_str(
        &std::fs::read_to_string(&json).with_context(|| format!("reading {}", json.display()))?,
    )?;
    let report = std::fs::read_to_string(dir.join("report.md"))?;
    ensure!(
        report.contains(&format!("--scenario {scenario}")),
        "the report names its scenario"
    );
    for plot in ["get_latency.svg", "over_time.svg"] {
        let svg = std::fs::read_to_string(dir.join(plot))?;
        ensure!(svg.starts_with("<svg") && svg.contains("<text"), "{plot}");
        ensure!(report.contains(plot), "the report shows {plot}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    ensure!(summary["scenario"] == scenario, "{summary}");
    ensure!(summary["nodes"] == 1000, "{summary}");
    ensure!(
        summary["series"].as_array().is_some_and(|s| s.len() >= 20),
        "{summary}"
    );
    for field in [
        "messages_per_node_per_min",
        "connections_per_node",
        "peak_rss_bytes",
    ] {
        ensure!(
            summary[field].as_f64().is_some_and(|v| v > 0.0),
            "{field}: {summary}"
        );
    }
    Ok(summary)
}

fn at_least(summary: &Value, path: &[&str], floor: f64) -> anyhow::Result<()> {
    let value = path.iter().fold(summary, |v, key| &v[key]);
    let value = value
        .as_f64()
        .with_context(|| format!("no {path:?} in {summary}"))?;
    ensure!(value >= floor, "{path:?} = {value} < {floor}");
    Ok(())
}

#[test]
fn steady_serves_every_put_and_get() -> anyhow::Result<()> {
    let s = sim("steady")?;
    at_least(&s, &["get_success"], 0.999)?;
    at_least(&s, &["put_success"], 0.999)?;
    at_least(&s, &["min_replicas_final"], 3.0)
}

#[test]
fn churn_loses_no_key_and_keeps_answering() -> anyhow::Result<()> {
    let s = sim("churn")?;
    at_least(&s, &["get_success"], 0.99)?;
    at_least(&s, &["put_success"], 0.99)?;
    at_least(&s, &["churn", "nodes_replaced"], 50.0)?;
    ensure!(s["churn"]["keys_lost_final"] == 0, "{}", s["churn"]);
    at_least(&s, &["min_replicas_final"], 1.0)
}

#[test]
fn each_side_of_a_partition_serves_itself_and_both_heal() -> anyhow::Result<()> {
    let s = sim("partition")?;
    at_least(&s, &["partition", "split_gets"], 100.0)?;
    at_least(&s, &["partition", "split_get_success"], 0.99)?;
    at_least(&s, &["partition", "after_heal_gets"], 100.0)?;
    at_least(&s, &["partition", "after_heal_get_success"], 0.99)?;
    ensure!(
        s["partition"]["heal_secs"].is_number(),
        "not healed: {}",
        s["partition"]
    );
    Ok(())
}

#[test]
fn a_quarter_of_the_nodes_hanging_costs_few_gets() -> anyhow::Result<()> {
    let s = sim("silent")?;
    at_least(&s, &["silent", "silent_nodes"], 250.0)?;
    at_least(&s, &["silent", "gets"], 500.0)?;
    at_least(&s, &["silent", "get_success"], 0.98)
}

#[test]
fn transports_compare_tcp_quic_like_and_resumed_connections() -> anyhow::Result<()> {
    let s = sim("transports")?;
    let rows = s["transports"].as_array().context("no transports")?;
    ensure!(rows.len() == 4, "{rows:?}");
    for row in rows {
        at_least(row, &["get_success"], 0.999)?;
    }
    ensure!(
        rows[0]["transport"] == "tcp+tls"
            && rows[1]["transport"] == "quic-like"
            && rows[2]["transport"] == "resumed (0-RTT)"
            && rows[3]["transport"] == "quic, tickets"
    );
    // Simulated time, the same for a seed on any machine: each round trip a handshake
    // saves shows in the median GET.
    let p50 = |row: &Value| row["get_latency_ms"]["p50"].as_f64().unwrap_or(f64::NAN);
    ensure!(
        p50(&rows[2]) < p50(&rows[1]) && p50(&rows[1]) < p50(&rows[0]),
        "{rows:?}"
    );
    // Tickets resume the sessions of peers met before: between a first contact's
    // round trip every time and none ever.
    ensure!(
        p50(&rows[2]) <= p50(&rows[3]) && p50(&rows[3]) < p50(&rows[1]),
        "{rows:?}"
    );
    Ok(())
}

#[test]
fn proof_of_work_rations_an_eclipse_attackers_ids() -> anyhow::Result<()> {
    let s = sim("eclipse")?;
    let e = &s["eclipse"];
    ensure!(e["attacker_budget_log2"] == 26, "{e}");
    ensure!(
        s["eclipse_honest_fraction"] == e["pow_on"]["honest_fraction"],
        "{s}"
    );
    // With proof of work (16 bits), 2^26 hashes buy about 2^10 ids, and the attacker
    // cannot take every place near the key.
    let valid = e["pow_on"]["attacker_valid_ids"]
        .as_u64()
        .context("valid ids")?;
    ensure!((700..=1400).contains(&valid), "{e}");
    at_least(e, &["pow_on", "gets"], 500.0)?;
    let near = e["pow_on"]["attacker_near_key_final"]
        .as_u64()
        .context("near")?;
    ensure!(near < 20, "{e}");
    // Without, the same budget buys 2^26 ids: the attacker holds all 20 places nearest
    // the key and its forged value is what many GETs return.
    ensure!(e["pow_off"]["attacker_valid_ids"] == 1u64 << 26, "{e}");
    ensure!(e["pow_off"]["attacker_near_key_final"] == 20, "{e}");
    at_least(e, &["pow_off", "forged_fraction"], 0.2)?;
    Ok(())
}
