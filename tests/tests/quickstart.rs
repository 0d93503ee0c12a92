//! The README's quick start, run as written: every command of its `sh` block, in order,
//! from the workspace root, each of which must succeed (`cargo xtask deploy`, then
//! `dht-cli` without `--api`, `deploy status`, `deploy stop`). The deployment lives in its
//! own folder (`DHT_DEPLOY_DIR`), so a developer's own deployment is left alone.
//!
//! Before the last command stops it, a real Prometheus (Debian's `prometheus`, which
//! `.ci/run` installs) scrapes the deployment with the `prometheus.yml` that deploy
//! wrote: every member must be `up`, and a PUT and a GET made then must show in the
//! counters and latency histograms, read through Prometheus's query API.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use dht_tests::http::{http_get, required_program};
use dht_tests::process::free_addr;
use dht_tests::workspace;

/// Where the README marks its quick start: the `sh` block after this line.
const MARKER: &str = "<!-- quick-start";

/// The commands of the README's quick-start block, in order.
fn quick_start(readme: &str) -> anyhow::Result<Vec<String>> {
    let after = readme
        .split_once(MARKER)
        .context("README.md has no quick-start marker")?
        .1;
    let block = after
        .split_once("```sh\n")
        .context("no ```sh block after the quick-start marker")?
        .1;
    let block = block.split_once("```").context("the block does not end")?.0;
    Ok(block
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(String::from)
        .collect())
}

/// `line` as it runs here: a program under `target/` is where cargo puts it
/// (`$CARGO_TARGET_DIR` when set).
fn located(line: &str) -> String {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        Some(dir) if line.starts_with("target/") => {
            let dir = workspace().join(dir);
            format!("{}/{}", dir.display(), &line["target/".len()..])
        }
        _ => line.to_string(),
    }
}

/// Runs one README line with `sh` in the workspace, its deployment in `deploy_dir`, with
/// nothing from the environment naming another node.
fn run(line: &str, deploy_dir: &Path) -> anyhow::Result<Output> {
    let output = Command::new("sh")
        .arg("-c")
        .arg(located(line))
        .current_dir(workspace())
        .env("DHT_DEPLOY_DIR", deploy_dir)
        .env_remove("DHT_API")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {line:?}"))?;
    ensure!(
        output.status.success(),
        "`{line}` failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(output)
}

/// Stops the deployment however the test ends.
struct Deployment(PathBuf);

impl Drop for Deployment {
    fn drop(&mut self) {
        if self.0.join("cluster.json").exists() {
            let _ = Command::new("cargo")
                .args(["xtask", "deploy", "stop"])
                .current_dir(workspace())
                .env("DHT_DEPLOY_DIR", &self.0)
                .output();
        }
    }
}

/// A Prometheus server, killed when dropped.
struct Prometheus {
    child: Child,
    web: SocketAddr,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `text` percent-encoded for a URL's query.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Prometheus {
    fn start(program: &Path, config: &Path, data: &Path) -> anyhow::Result<Prometheus> {
        let web = free_addr();
        let log = std::fs::File::create(data.with_extension("log"))?;
        let child = Command::new(program)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address={web}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        Ok(Prometheus { child, web })
    }

    /// The samples of an instant query: (labels, value) pairs.
    fn query(
        &self,
        runtime: &tokio::runtime::Runtime,
        query: &str,
    ) -> anyhow::Result<Vec<(serde_json::Value, f64)>> {
        let path = format!("/api/v1/query?query={}", encode(query));
        let answer = runtime.block_on(http_get(self.web, &path))?;
        ensure!(
            answer.status.contains(" 200 "),
            "{query}: {} {}",
            answer.status,
            answer.body
        );
        let json: serde_json::Value = serde_json::from_str(&answer.body)
            .with_context(|| format!("{query}: not JSON: {}", answer.body))?;
        ensure!(json["status"] == "success", "{query}: {json}");
        let result = json["data"]["result"].as_array().context("no result")?;
        result
            .iter()
            .map(|sample| {
                let value = sample["value"][1]
                    .as_str()
                    .context("no value")?
                    .parse::<f64>()?;
                Ok((sample["metric"].clone(), value))
            })
            .collect()
    }

    /// The single value of `query` (a sum), or `None` while it has none.
    fn value(&self, runtime: &tokio::runtime::Runtime, query: &str) -> anyhow::Result<Option<f64>> {
        Ok(self.query(runtime, query)?.first().map(|(_, v)| *v))
    }
}

/// Polls `check` every 250 ms until it is `Ok(true)` or `within` passes.
fn poll(
    within: Duration,
    what: &str,
    mut check: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let last = check();
        if matches!(last, Ok(true)) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{what} within {within:?}; last: {last:?}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// What a real Prometheus, started with the deployment's `prometheus.yml`, sees.
fn prometheus_sees_the_deployment(deploy_dir: &Path, cli: &str) -> anyhow::Result<()> {
    let Some(program) = required_program(&["prometheus"], "prometheus") else {
        return Ok(());
    };
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(deploy_dir.join("cluster.json"))?)?;
    let members = record["nodes"].as_array().context("no members")?.len();
    let data = deploy_dir.join("prometheus-data");
    let _ = std::fs::remove_dir_all(&data);
    let prometheus = Prometheus::start(&program, &deploy_dir.join("prometheus.yml"), &data)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    // Every member is up (scraped every 5 s).
    poll(Duration::from_secs(60), "every member up", || {
        let up = prometheus.query(&runtime, "up{job=\"dht\"}")?;
        Ok(up.len() == members && up.iter().all(|(_, v)| *v == 1.0))
    })?;
    let names: Vec<String> = prometheus
        .query(&runtime, "up{job=\"dht\"}")?
        .iter()
        .map(|(labels, _)| labels["member"].as_str().unwrap_or_default().to_string())
        .collect();
    ensure!(
        names.iter().any(|n| n == "node-1") && names.iter().any(|n| n == "bootstrap"),
        "{names:?}"
    );

    // A PUT and a GET now show in the counters and the latency histograms.
    let series = [
        "sum(dht_api_requests_total{type=\"put\",outcome=\"accepted\"})",
        "sum(dht_api_request_duration_seconds_count{type=\"put\"})",
        "sum(dht_api_requests_total{type=\"get\",outcome=\"found\"})",
        "sum(dht_get_duration_seconds_count)",
        "sum(dht_api_request_duration_seconds_count{type=\"get\"})",
    ];
    let mut before = Vec::new();
    for query in series {
        before.push(
            prometheus
                .value(&runtime, query)?
                .with_context(|| format!("no {query}"))?,
        );
    }
    run(
        &format!("{cli} put prometheus-check 'seen by prometheus'"),
        deploy_dir,
    )?;
    let got = run(&format!("{cli} get prometheus-check"), deploy_dir)?;
    ensure!(
        got.stdout == b"seen by prometheus",
        "{:?}",
        String::from_utf8_lossy(&got.stdout)
    );
    for (query, before) in series.iter().zip(before) {
        poll(
            Duration::from_secs(30),
            &format!("{query} above {before}"),
            || {
                Ok(prometheus
                    .value(&runtime, query)?
                    .is_some_and(|now| now >= before + 1.0))
            },
        )?;
    }
    // The histogram answers a quantile.
    let p50 = prometheus
        .value(&runtime, "histogram_quantile(0.5, sum by (le) (dht_api_request_duration_seconds_bucket{type=\"get\"}))")?
        .context("no GET p50")?;
    ensure!(p50.is_finite() && p50 > 0.0, "GET p50 {p50}");
    Ok(())
}

/// After SIGKILL of node-5, `deploy status` names it down and exits non-zero.
fn a_member_down_fails_the_status(deploy_dir: &Path) -> anyhow::Result<()> {
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(deploy_dir.join("cluster.json"))?)?;
    let members = record["nodes"].as_array().context("no members")?;
    let victim = members
        .iter()
        .find(|m| m["name"] == "node-5")
        .context("no node-5")?;
    let pid = victim["pid"].as_u64().context("no pid")?;
    let killed = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()?;
    ensure!(killed.success(), "kill -KILL {pid}");
    let output = Command::new("cargo")
        .args(["xtask", "deploy", "status"])
        .current_dir(workspace())
        .env("DHT_DEPLOY_DIR", deploy_dir)
        .output()?;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    ensure!(
        !output.status.success(),
        "status exited 0 with node-5 down:\n{stdout}"
    );
    ensure!(
        stdout
            .lines()
            .any(|l| l.starts_with("node-5 ") && l.contains(" DOWN ")),
        "{stdout}"
    );
    ensure!(
        stdout.lines().filter(|l| l.contains(" up ")).count() == members.len() - 1,
        "{stdout}"
    );
    ensure!(stderr.contains("1 of 6 members down: node-5"), "{stderr}");
    Ok(())
}

#[test]
fn the_readme_quick_start_works_as_written() -> anyhow::Result<()> {
    let readme = std::fs::read_to_string(workspace().join("README.md"))?;
    let lines = quick_start(&readme)?;
    ensure!(
        lines
            .first()
            .is_some_and(|l| l.starts_with("cargo xtask deploy")),
        "{lines:?}"
    );
    ensure!(
        lines
            .last()
            .is_some_and(|l| l.starts_with("cargo xtask deploy stop")),
        "{lines:?}"
    );
    let deploy_dir = workspace().join("target").join("quickstart-deploy");
    let deployment = Deployment(deploy_dir.clone());
    let mut cli = None;
    for line in &lines[..lines.len() - 1] {
        let output = run(line, &deploy_dir)?;
        let (stdout, stderr) = (
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
        if line.contains("dht-cli") {
            let program = line.split_whitespace().next().unwrap_or_default();
            cli = Some(program.to_string());
            // Without --api, the deployment's record chose the node, and said so.
            ensure!(
                stderr.contains("dht-cli: using node-"),
                "`{line}`: {stderr}"
            );
        }
        if line.contains("dht-cli") && line.contains(" get greeting") {
            ensure!(stdout == "hello world", "`{line}` printed {stdout:?}");
        }
        if line.ends_with("deploy status") || line.contains("deploy status ") {
            let members = stdout.lines().filter(|l| l.contains(" up ")).count();
            ensure!(members == 6, "`{line}`: {members} members up:\n{stdout}");
        }
    }
    let cli = cli.context("the quick start uses no dht-cli")?;
    prometheus_sees_the_deployment(&deploy_dir, &cli)?;
    a_member_down_fails_the_status(&deploy_dir)?;
    run(&lines[lines.len() - 1], &deploy_dir)?;
    ensure!(
        !deploy_dir.join("cluster.json").exists(),
        "deploy stop left the record"
    );
    drop(deployment);
    Ok(())
}

#[test]
fn the_quick_start_block_is_read_line_by_line() {
    let readme = "intro\n<!-- quick-start: run by a test -->\n```sh\ncargo xtask deploy   # go\n\n# a comment\nx get y\n```\nafter\n```sh\nnot this\n```\n";
    assert_eq!(
        quick_start(readme).unwrap(),
        ["cargo xtask deploy   # go", "x get y"]
    );
    assert!(quick_start("no marker").is_err());
    assert_eq!(encode("up{a=\"b c\"}"), "up%7Ba%3D%22b%20c%22%7D");
}
