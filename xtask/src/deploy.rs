//! `cargo xtask deploy`: a local cluster (one `dht-bootstrap`, N `dht-node`s) on
//! 127.0.0.1, started in the background and checked end to end; and
//! `cargo xtask deploy stop`, for local and Docker clusters alike. (`--docker` hands
//! over to `docker_deploy`.)
//!
//! Everything lives in `target/deploy/`: one folder per process with its
//! `config.toml` and `node.log`, and `cluster.json`, the record `stop` works from.

use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail, ensure};

use crate::cluster::{self, Cluster, Member, Mode, Role, Runs};
use crate::docker_deploy;
use crate::layout::{Layout, api_ports, free_ports, local};
use crate::monitoring;
use crate::overrides::{self, Override};
use crate::progress::Progress;
use crate::startup::{self, ProcessWatch};

/// Usage of the `deploy` command.
pub(crate) const USAGE: &str =
    "  deploy [--nodes N] [--debug | --release] [--set section.key=value]...
      Build dht-node, dht-bootstrap and dht-cli (release; --debug: debug), start one bootstrap node
      and N nodes (default 5, at most 500) on 127.0.0.1 in the background, wait until
      every node has joined and a value PUT through node-1 can be read through every
      other node, then print the cluster. node-1's API is on 127.0.0.1:7401 when that
      port is free (the following nodes get the next free ports), where dht-cli looks.
      Stops an earlier deployment first. Files: target/deploy/ ($DHT_DEPLOY_DIR when
      set): cluster.json, prometheus.yml (a scrape configuration of every member), and
      per process <name>/config.toml and <name>/node.log. Each --set overrides a
      configuration key in every node's file, e.g. --set dht.replicate_interval_secs=10.
      Every member serves /metrics, /healthz, /readyz and a status page (/) on its
      metrics address.
  deploy status
      One line per member of the deployment: up or down, ready, contacts, records and
      bytes stored, API requests served, lookups that succeeded in the last minute (read
      from its metrics). Exits non-zero when a member is down.
  deploy --docker [--nodes N] [--set section.key=value]...
      The same with containers: build the images (as `docker` does), create a private
      network, start 2 bootstrap containers and N node containers on it, with their API
      and metrics ports published on 127.0.0.1.
  deploy stop
      Stop what target/deploy/cluster.json lists and remove it: processes get SIGTERM,
      SIGKILL after 10 s (only processes whose command line still names their config);
      containers are stopped the same way, their logs saved to target/deploy/<name>/
      node.log, and removed with their network.";

/// Default number of `dht-node`s.
const DEFAULT_NODES: usize = 5;
/// Most `dht-node`s one deploy starts.
const MAX_NODES: usize = 500;
/// Most node containers: they share one /24 with the bootstraps (hosts .11 and up).
const MAX_DOCKER_NODES: usize = 240;
/// Whether `deploy` builds and runs the release profile unless told otherwise (see
/// README.md: a cold release build costs little more than a debug build here, and its
/// nodes answer GETs about twice as fast).
const RELEASE_BY_DEFAULT: bool = true;
/// The options of `deploy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Options {
    /// How many `dht-node`s to start.
    pub(crate) nodes: usize,
    /// Build and run the release profile (else debug).
    pub(crate) release: bool,
    /// Run the members in containers.
    pub(crate) docker: bool,
    /// `--set section.key=value` overrides for every configuration file.
    pub(crate) overrides: Vec<Override>,
}

impl Options {
    /// Parses the arguments after `deploy`.
    pub(crate) fn parse(args: &[&str]) -> anyhow::Result<Options> {
        let mut options = Options {
            nodes: DEFAULT_NODES,
            release: RELEASE_BY_DEFAULT,
            docker: false,
            overrides: Vec::new(),
        };
        let mut profile = None;
        let mut args = args.iter();
        while let Some(&arg) = args.next() {
            let count = match arg {
                "--release" | "--debug" => {
                    let release = arg == "--release";
                    ensure!(
                        profile.is_none_or(|p| p == release),
                        "--debug and --release do not go together"
                    );
                    profile = Some(release);
                    options.release = release;
                    continue;
                }
                "--docker" => {
                    options.docker = true;
                    continue;
                }
                "--set" => {
                    let value = args.next().context("--set needs section.key=value")?;
                    options.overrides.push(Override::parse(value)?);
                    continue;
                }
                "--nodes" | "-n" => *args
                    .next()
                    .with_context(|| format!("{arg} needs a number"))?,
                _ => {
                    if let Some(value) = arg.strip_prefix("--set=") {
                        options.overrides.push(Override::parse(value)?);
                        continue;
                    }
                    match arg.strip_prefix("--nodes=") {
                        Some(count) => count,
                        None => bail!("deploy: unexpected argument {arg:?}"),
                    }
                }
            };
            options.nodes = count
                .parse()
                .with_context(|| format!("--nodes {count:?}: not a number"))?;
        }
        ensure!(
            (1..=MAX_NODES).contains(&options.nodes),
            "--nodes must be between 1 and {MAX_NODES}"
        );
        ensure!(
            !options.docker || options.nodes <= MAX_DOCKER_NODES,
            "--docker runs at most {MAX_DOCKER_NODES} nodes (one /24 network)"
        );
        ensure!(
            !(options.docker && profile.is_some()),
            "--debug and --release do not go with --docker: images always hold release builds"
        );
        Ok(options)
    }
}

/// `cargo xtask deploy stop`.
pub(crate) fn stop() -> anyhow::Result<()> {
    let layout = Layout::new()?;
    if !layout.cluster_json().exists() {
        println!(
            "nothing deployed ({} does not exist)",
            layout.show(&layout.cluster_json())
        );
        return Ok(());
    }
    stop_recorded(&layout)
}

/// Stops the cluster of cluster.json, local or Docker, and removes the file.
pub(crate) fn stop_recorded(layout: &Layout) -> anyhow::Result<()> {
    let file = layout.cluster_json();
    let cluster = Cluster::load(&file)?;
    println!("stopping the cluster of {}", layout.show(&file));
    stop_cluster(layout, &cluster)?;
    fs::remove_file(&file).with_context(|| format!("removing {}", file.display()))
}

/// Stops the members of `cluster` the way they run.
fn stop_cluster(layout: &Layout, cluster: &Cluster) -> anyhow::Result<()> {
    match cluster.mode {
        Mode::Local => cluster::stop(cluster),
        Mode::Docker => docker_deploy::stop(layout, cluster),
    }
}

/// One process to start.
struct Plan {
    name: String,
    role: Role,
    p2p: SocketAddr,
    api: Option<SocketAddr>,
    metrics: SocketAddr,
    config: PathBuf,
    log: PathBuf,
}

/// `cargo xtask deploy`.
pub(crate) fn deploy(options: &Options) -> anyhow::Result<()> {
    let layout = Layout::new()?;
    if options.docker {
        // Before stopping an earlier deployment: without an engine, leave it running.
        crate::docker::check_engine("deploy --docker")?;
    }
    if layout.cluster_json().exists() {
        println!("a cluster is deployed already: stopping it first");
        stop_recorded(&layout)?;
    }
    if options.docker {
        crate::docker::build_images(&layout)?;
        let cluster = docker_deploy::deploy(&layout, options)?;
        print_summary(&layout, &cluster);
        return Ok(());
    }
    build(&layout, options.release)?;
    let node_bin = layout.binary(options.release, "dht-node");
    let bootstrap_bin = layout.binary(options.release, "dht-bootstrap");
    for bin in [&node_bin, &bootstrap_bin] {
        ensure!(bin.is_file(), "cargo build made no {}", bin.display());
    }

    // The bootstrap node's p2p and metrics ports, then each node's p2p and metrics; the
    // APIs from 7401 up.
    let ports = free_ports(2 + 2 * options.nodes)?;
    let mut api_ports = api_ports(options.nodes)?;
    let started = Instant::now();
    let mut cluster = Cluster {
        mode: Mode::Local,
        docker: None,
        nodes: Vec::new(),
    };
    let mut watch = ProcessWatch {
        layout: &layout,
        log_offsets: Vec::new(),
    };

    // The bootstrap node first: the nodes pin its id ("<id>@host:port"), which it
    // derives from the host key it creates in its folder on first start.
    let (boot_addr, boot_metrics) = (local(ports[0]), local(ports[1]));
    let boot = write_plan(
        &layout,
        Plan {
            name: "bootstrap".to_string(),
            role: Role::Bootstrap,
            p2p: boot_addr,
            api: None,
            metrics: boot_metrics,
            config: PathBuf::new(),
            log: PathBuf::new(),
        },
        &overrides::apply(
            &bootstrap_config(boot_addr, boot_metrics),
            &options.overrides,
        ),
    )?;
    if let Err(e) = launch(&layout, &mut cluster, &mut watch, &bootstrap_bin, &boot) {
        return Err(abort(&layout, &cluster, e));
    }
    if let Err(e) = startup::wait_ready(&mut watch, &mut cluster, started) {
        return Err(abort(&layout, &cluster, e));
    }
    let Some(boot_id) = cluster.nodes[0].node_id.clone() else {
        return Err(abort(
            &layout,
            &cluster,
            anyhow::anyhow!("the bootstrap node reported no id"),
        ));
    };
    let peer = format!("{boot_id}@{boot_addr}");
    let mut progress = Progress::new("nodes started", options.nodes);
    let apis = api_ports.ports().to_vec();
    for (i, (pair, &api)) in ports[2..].chunks_exact(2).zip(&apis).enumerate() {
        let name = format!("node-{}", i + 1);
        let (p2p, api, metrics) = (local(pair[0]), local(api), local(pair[1]));
        let text = overrides::apply(
            &node_config(&name, p2p, api, metrics, &peer),
            &options.overrides,
        );
        let plan = Plan {
            name,
            role: Role::Node,
            p2p,
            api: Some(api),
            metrics,
            config: PathBuf::new(),
            log: PathBuf::new(),
        };
        api_ports.release(i);
        let launched = write_plan(&layout, plan, &text)
            .and_then(|plan| launch(&layout, &mut cluster, &mut watch, &node_bin, &plan));
        if let Err(e) = launched {
            progress.finish();
            return Err(abort(&layout, &cluster, e));
        }
        progress.inc();
    }
    progress.finish();
    println!(
        "started {} processes; waiting for them to join (at most {} s)",
        cluster.nodes.len(),
        startup::ready_deadline(cluster.nodes.len()).as_secs()
    );
    if let Err(e) = startup::wait_ready(&mut watch, &mut cluster, started) {
        return Err(abort(&layout, &cluster, e));
    }
    let ready = started.elapsed();
    let saved = cluster
        .save(&layout.cluster_json())
        .and_then(|()| monitoring::write_prometheus_config(&layout, &cluster));
    if let Err(e) = saved {
        return Err(abort(&layout, &cluster, e));
    }
    if let Err(e) = startup::probe(&cluster) {
        return Err(abort(&layout, &cluster, e));
    }
    let total = started.elapsed();
    startup::report_up("processes", options.nodes, ready, total);
    print_summary(&layout, &cluster);
    let cli = layout.binary(options.release, "dht-cli");
    println!(
        "try:       {} put greeting 'hello world'; {} get greeting",
        layout.show(&cli),
        layout.show(&cli)
    );
    if !options.release {
        println!(
            "           (a debug build: nodes answer GETs about half as fast as with --release)"
        );
    }
    Ok(())
}

/// Prints the table of members and where to find things.
fn print_summary(layout: &Layout, cluster: &Cluster) {
    println!();
    print!("{}", cluster::table(cluster));
    println!();
    println!("record:    {}", layout.show(&layout.cluster_json()));
    match cluster.mode {
        Mode::Local => println!(
            "logs:      {}",
            layout.show(&layout.deploy.join("<name>").join("node.log"))
        ),
        Mode::Docker => println!(
            "logs:      docker logs <container> (saved to {} by deploy stop)",
            layout.show(&layout.deploy.join("<name>").join("node.log"))
        ),
    }
    if let Some(api) = cluster.nodes.iter().find_map(|m| m.api_address) {
        println!("API:       node-1 at {api} (every node's is in the table)");
    }
    if let Some(metrics) = cluster.nodes.iter().find_map(|m| m.metrics_address) {
        println!("metrics:   http://{metrics}/metrics (every member's is in the table)");
        println!("status:    http://{metrics}/ (a page per member), or cargo xtask deploy status");
    }
    println!(
        "prometheus --config.file={} watches them all",
        layout.show(&layout.deploy.join("prometheus.yml"))
    );
    println!("stop with: cargo xtask deploy stop");
}

/// After a failed start: stops what was started, removes cluster.json and returns the
/// error (with a note if stopping failed too, in which case cluster.json stays).
pub(crate) fn abort(layout: &Layout, cluster: &Cluster, error: anyhow::Error) -> anyhow::Error {
    eprintln!("deploy failed: stopping what it started (logs stay in place)");
    match stop_cluster(layout, cluster) {
        Ok(()) => {
            let _ = fs::remove_file(layout.cluster_json());
            error
        }
        Err(stop_error) => error.context(format!(
            "and stopping the cluster failed ({stop_error:#}); see {}",
            layout.show(&layout.cluster_json())
        )),
    }
}

fn build(layout: &Layout, release: bool) -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut command = Command::new(&cargo);
    command.current_dir(&layout.root).args([
        "build",
        "-p",
        "dht-node",
        "-p",
        "dht-bootstrap",
        "-p",
        "dht-cli",
    ]);
    if release {
        command.arg("--release");
    }
    if let Some(target) = &layout.target_env {
        command.env("CARGO_TARGET_DIR", target);
    }
    let status = command
        .status()
        .with_context(|| format!("running {}", cargo.to_string_lossy()))?;
    ensure!(status.success(), "cargo build failed ({status})");
    Ok(())
}

/// The configuration of the bootstrap node.
fn bootstrap_config(p2p: SocketAddr, metrics: SocketAddr) -> String {
    format!(
        "# generated by cargo xtask deploy: the bootstrap node of a local test cluster.\n\
         # Rewritten by every deploy; configs/bootstrap.toml describes the keys.\n\
         \n\
         [dht]\n\
         p2p_address = \"{p2p}\"\n\
         metrics_address = \"{metrics}\"\n"
    )
}

/// The configuration of one `dht-node`.
fn node_config(
    name: &str,
    p2p: SocketAddr,
    api: SocketAddr,
    metrics: SocketAddr,
    bootstrap: &str,
) -> String {
    format!(
        "# generated by cargo xtask deploy: {name} of a local test cluster.\n\
         # Rewritten by every deploy; configs/node.toml describes the keys.\n\
         \n\
         [dht]\n\
         p2p_address = \"{p2p}\"\n\
         api_address = \"{api}\"\n\
         metrics_address = \"{metrics}\"\n\
         bootstrap_peers = [\"{bootstrap}\"]\n"
    )
}

/// Writes one process's folder and config.toml, and fills in the plan's paths.
fn write_plan(layout: &Layout, mut plan: Plan, text: &str) -> anyhow::Result<Plan> {
    let dir = layout.deploy.join(&plan.name);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    plan.config = dir.join("config.toml");
    fs::write(&plan.config, text).with_context(|| format!("writing {}", plan.config.display()))?;
    plan.log = dir.join("node.log");
    Ok(plan)
}

/// Starts one planned process and records it in cluster.json at once, so that a
/// failed deploy can still be stopped.
fn launch(
    layout: &Layout,
    cluster: &mut Cluster,
    watch: &mut ProcessWatch<'_>,
    bin: &Path,
    plan: &Plan,
) -> anyhow::Result<()> {
    // The log is appended to: only what this run writes counts.
    watch
        .log_offsets
        .push(fs::metadata(&plan.log).map_or(0, |m| m.len()));
    let pid =
        spawn(bin, plan).with_context(|| format!("starting {} ({})", plan.name, bin.display()))?;
    cluster.nodes.push(Member {
        name: plan.name.clone(),
        role: plan.role,
        node_id: None,
        api_address: plan.api,
        p2p_address: plan.p2p,
        metrics_address: Some(plan.metrics),
        runs: Runs::Process {
            pid,
            log: plan.log.clone(),
        },
        config: plan.config.clone(),
    });
    cluster.save(&layout.cluster_json())
}

/// Starts `bin -c <config>` detached: its own process group (a Ctrl-C in the terminal
/// does not reach it), stdin from /dev/null, stdout and stderr appended to its log.
/// It is not waited for: it outlives xtask, and `deploy stop` ends it.
fn spawn(bin: &Path, plan: &Plan) -> anyhow::Result<u32> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&plan.log)
        .with_context(|| format!("opening {}", plan.log.display()))?;
    let mut command = Command::new(bin);
    command
        .arg("-c")
        .arg(&plan.config)
        .current_dir(plan.config.parent().unwrap_or(Path::new("/")))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0);
    if std::env::var_os("RUST_LOG").is_none() {
        command.env("RUST_LOG", "info");
    }
    // Plain-text logs: tracing-subscriber colours its output unless NO_COLOR is set.
    if std::env::var_os("NO_COLOR").is_none() {
        command.env("NO_COLOR", "1");
    }
    let child = command.spawn()?;
    Ok(child.id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        let parse = |args: &[&str]| Options::parse(args);
        assert_eq!(
            parse(&[]).unwrap(),
            Options {
                nodes: 5,
                release: RELEASE_BY_DEFAULT,
                docker: false,
                overrides: Vec::new(),
            }
        );
        assert!(!parse(&["--debug"]).unwrap().release);
        assert!(parse(&["--debug", "--release"]).is_err());
        assert!(parse(&["--release", "--release"]).unwrap().release);
        assert_eq!(
            parse(&["--nodes", "20", "--release"]).unwrap(),
            Options {
                nodes: 20,
                release: true,
                docker: false,
                overrides: Vec::new(),
            }
        );
        assert_eq!(parse(&["--nodes=3"]).unwrap().nodes, 3);
        let set = parse(&["--set", "dht.k=8", "--set=dht.alpha=2"]).unwrap();
        assert_eq!(set.overrides.len(), 2);
        assert!(parse(&["--set"]).is_err());
        assert!(parse(&["--set", "nonsense"]).is_err());
        assert_eq!(parse(&["-n", "1"]).unwrap().nodes, 1);
        assert!(parse(&["--nodes"]).is_err());
        assert!(parse(&["--nodes", "0"]).is_err());
        assert!(parse(&["--nodes", "x"]).is_err());
        assert!(parse(&["--nodes", "500"]).is_ok());
        assert!(parse(&["--nodes", "501"]).is_err());
        assert!(parse(&["--docker", "--nodes", "240"]).is_ok());
        assert!(parse(&["--docker", "--nodes", "241"]).is_err());
        assert!(parse(&["--verbose"]).is_err());
        let docker = parse(&["--docker", "--nodes", "3"]).unwrap();
        assert!(docker.docker && docker.nodes == 3);
        let both = parse(&["--docker", "--release"]).unwrap_err().to_string();
        assert!(both.contains("do not go with --docker"), "{both}");
    }

    #[test]
    fn config_texts() {
        let boot = bootstrap_config(local(7500), local(7501));
        assert!(boot.starts_with("# generated by cargo xtask deploy"));
        assert!(boot.ends_with(
            "\n[dht]\np2p_address = \"127.0.0.1:7500\"\nmetrics_address = \"127.0.0.1:7501\"\n"
        ));
        assert!(!boot.contains("bootstrap_peers") && !boot.contains("hostkey"));

        let peer = format!("{}@127.0.0.1:7500", "ab".repeat(32));
        let node = node_config("node-2", local(7402), local(7401), local(9100), &peer);
        assert!(node.starts_with("# generated by cargo xtask deploy: node-2 "));
        assert!(node.ends_with(
            "\n[dht]\n\
             p2p_address = \"127.0.0.1:7402\"\n\
             api_address = \"127.0.0.1:7401\"\n\
             metrics_address = \"127.0.0.1:9100\"\n\
             bootstrap_peers = [\"abababababababababababababababababababababababababababababababab@127.0.0.1:7500\"]\n"
        ));
        assert!(!node.contains("hostkey"));
        // Every line is a comment, blank, the section or a key.
        for line in node.lines() {
            assert!(
                line.is_empty() || line.starts_with('#') || line == "[dht]" || line.contains(" = "),
                "{line:?}"
            );
        }
    }
}
