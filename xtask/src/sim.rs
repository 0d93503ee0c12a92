//! `cargo xtask sim [OPTIONS]`: builds `dht-sim` in release mode and runs it: real nodes
//! on a simulated WAN, on simulated time (see `sim/src/lib.rs`).

use std::process::Command;

use anyhow::{Context, bail};

use crate::bench::{build_release, workspace_root};

pub(crate) const USAGE: &str =
    "  sim [--scenario steady|churn|partition|silent|transports|eclipse] [--nodes N]
      [--seed S] [--minutes M] [--rate OPS] [--pow BITS] [--loss P] [--connect-rtts 0|1]
      [--tls-rtts 0|1] [--real-tls] [--attacker-budget-log2 B] [--json FILE] [--report DIR]
      Run N real nodes (default 1000) in one process on a simulated WAN (round trips
      from a model of world regions, 0.5 % loss) on tokio's paused time, with PUTs and
      GETs from random nodes while the scenario happens to the network (TLS simulated
      at its cost in round trips unless --real-tls); print the
      figures as JSON, write them to target/sim/<scenario>/summary.json (or FILE), and
      write report.md with SVG plots to target/sim/<scenario>/ (or DIR).";

/// Runs `cargo xtask sim ARGS`.
pub(crate) fn command(args: &[&str]) -> anyhow::Result<()> {
    let root = workspace_root()?;
    let sim = build_release(&root, "dht-sim")?;
    let mut args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let given = |flag: &str, args: &[String]| {
        args.iter()
            .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
    };
    let scenario = args
        .iter()
        .position(|a| a == "--scenario")
        .and_then(|i| args.get(i + 1))
        .map_or("steady", String::as_str);
    let dir = root.join("target/sim").join(scenario);
    if !given("--report", &args) {
        args.push("--report".into());
        args.push(dir.display().to_string());
    }
    if !given("--json", &args) {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        args.push("--json".into());
        args.push(dir.join("summary.json").display().to_string());
    }
    let status = Command::new(sim)
        .args(&args)
        .current_dir(&root)
        .status()
        .context("running dht-sim")?;
    if !status.success() {
        bail!("dht-sim failed ({status})");
    }
    Ok(())
}
