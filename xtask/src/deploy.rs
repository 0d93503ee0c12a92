//! `cargo xtask deploy`: a local cluster (one `dht-bootstrap`, N `dht-node`s) on
//! 127.0.0.1, started in the background and checked end to end; and
//! `cargo xtask deploy stop`.
//!
//! Everything lives in `target/deploy/`: one folder per process with its
//! `config.toml` and `node.log`, and `cluster.json`, the record `stop` works from.

use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail, ensure};

use crate::cluster::{self, Cluster, Member, Role};
use crate::overrides::{self, Override};
use crate::startup;

/// Usage of the `deploy` command.
pub(crate) const USAGE: &str = "  deploy [--nodes N] [--release] [--set section.key=value]...
      Build dht-node and dht-bootstrap, start one bootstrap node and N nodes (default 5)
      on 127.0.0.1 in the background, wait until every node has joined and a value PUT
      through node-1 can be read through every other node, then print the cluster.
      Stops an earlier deployment first. Files: target/deploy/ (cluster.json, and per
      process <name>/config.toml and <name>/node.log). Each --set overrides a
      configuration key in every node's file, e.g. --set dht.replicate_interval_secs=10.
  deploy stop
      Stop the processes listed in target/deploy/cluster.json (SIGTERM, SIGKILL after
      10 s; only processes whose command line still names their config) and remove it.";

/// Default number of `dht-node`s.
const DEFAULT_NODES: usize = 5;
/// Most `dht-node`s one deploy starts.
const MAX_NODES: usize = 100;
/// The options of `deploy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Options {
    /// How many `dht-node`s to start.
    pub(crate) nodes: usize,
    /// Build and run the release profile.
    pub(crate) release: bool,
    /// `--set section.key=value` overrides for every configuration file.
    pub(crate) overrides: Vec<Override>,
}

impl Options {
    /// Parses the arguments after `deploy`.
    pub(crate) fn parse(args: &[&str]) -> anyhow::Result<Options> {
        let mut options = Options {
            nodes: DEFAULT_NODES,
            release: false,
            overrides: Vec::new(),
        };
        let mut args = args.iter();
        while let Some(&arg) = args.next() {
            let count = match arg {
                "--release" => {
                    options.release = true;
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
        Ok(options)
    }
}

/// Where things are: the workspace, the cargo target folder and the deploy folder.
pub(crate) struct Layout {
    root: PathBuf,
    /// `CARGO_TARGET_DIR`, made absolute, when set.
    target_env: Option<PathBuf>,
    target: PathBuf,
    deploy: PathBuf,
}

impl Layout {
    fn new() -> anyhow::Result<Layout> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("xtask has no parent folder")?
            .to_path_buf();
        let target_env = match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) if !dir.is_empty() => Some(std::env::current_dir()?.join(dir)),
            _ => None,
        };
        let target = target_env.clone().unwrap_or_else(|| root.join("target"));
        let deploy = target.join("deploy");
        Ok(Layout {
            root,
            target_env,
            target,
            deploy,
        })
    }

    fn cluster_json(&self) -> PathBuf {
        self.deploy.join("cluster.json")
    }

    fn binary(&self, release: bool, name: &str) -> PathBuf {
        self.target
            .join(if release { "release" } else { "debug" })
            .join(name)
    }

    /// `path` relative to the workspace root when inside it, for messages.
    pub(crate) fn show<'a>(&self, path: &'a Path) -> std::path::Display<'a> {
        path.strip_prefix(&self.root).unwrap_or(path).display()
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

/// Stops the cluster of cluster.json and removes the file.
fn stop_recorded(layout: &Layout) -> anyhow::Result<()> {
    let file = layout.cluster_json();
    let cluster = Cluster::load(&file)?;
    println!("stopping the cluster of {}", layout.show(&file));
    cluster::stop(&cluster)?;
    fs::remove_file(&file).with_context(|| format!("removing {}", file.display()))
}

/// One process to start.
struct Plan {
    name: String,
    role: Role,
    p2p: SocketAddr,
    api: Option<SocketAddr>,
    config: PathBuf,
    log: PathBuf,
}

/// `cargo xtask deploy`.
pub(crate) fn deploy(options: &Options) -> anyhow::Result<()> {
    let layout = Layout::new()?;
    if layout.cluster_json().exists() {
        println!("a cluster is deployed already: stopping it first");
        stop_recorded(&layout)?;
    }
    build(&layout, options.release)?;
    let node_bin = layout.binary(options.release, "dht-node");
    let bootstrap_bin = layout.binary(options.release, "dht-bootstrap");
    for bin in [&node_bin, &bootstrap_bin] {
        ensure!(bin.is_file(), "cargo build made no {}", bin.display());
    }

    let ports = free_ports(1 + 2 * options.nodes)?;
    let started = Instant::now();
    let mut cluster = Cluster { nodes: Vec::new() };
    let mut log_offsets = Vec::new();

    // The bootstrap node first: the nodes pin its id ("<id>@host:port"), which it
    // derives from the host key it creates in its folder on first start.
    let boot_addr = local(ports[0]);
    let boot = write_plan(
        &layout,
        "bootstrap",
        Role::Bootstrap,
        boot_addr,
        None,
        &overrides::apply(&bootstrap_config(boot_addr), &options.overrides),
    )?;
    if let Err(e) = launch(
        &layout,
        &mut cluster,
        &mut log_offsets,
        &bootstrap_bin,
        &boot,
    ) {
        return Err(abort(&layout, &cluster, e));
    }
    if let Err(e) = startup::wait_ready(&layout, &mut cluster, &log_offsets, started) {
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
    for (i, pair) in ports[1..].chunks_exact(2).enumerate() {
        let name = format!("node-{}", i + 1);
        let (p2p, api) = (local(pair[0]), local(pair[1]));
        let text = overrides::apply(&node_config(&name, p2p, api, &peer), &options.overrides);
        let plan = write_plan(&layout, &name, Role::Node, p2p, Some(api), &text);
        let launched =
            plan.and_then(|plan| launch(&layout, &mut cluster, &mut log_offsets, &node_bin, &plan));
        if let Err(e) = launched {
            return Err(abort(&layout, &cluster, e));
        }
    }
    println!(
        "started {} processes; waiting for them to join (at most {} s)",
        cluster.nodes.len(),
        startup::READY_DEADLINE.as_secs()
    );
    if let Err(e) = startup::wait_ready(&layout, &mut cluster, &log_offsets, started) {
        return Err(abort(&layout, &cluster, e));
    }
    let ready = started.elapsed();
    if let Err(e) = cluster.save(&layout.cluster_json()) {
        return Err(abort(&layout, &cluster, e));
    }
    if let Err(e) = startup::probe(&cluster) {
        return Err(abort(&layout, &cluster, e));
    }
    let total = started.elapsed();
    println!(
        "cluster up in {:.2} s: processes ready, nodes joined and APIs answering after {:.2} s; \
         the probe value PUT through node-1 was read back through {} {:.2} s later",
        total.as_secs_f64(),
        ready.as_secs_f64(),
        if options.nodes > 1 {
            "every other node"
        } else {
            "node-1"
        },
        (total - ready).as_secs_f64()
    );
    println!();
    print!("{}", table(&cluster));
    println!();
    println!("record:    {}", layout.show(&layout.cluster_json()));
    println!(
        "logs:      {}",
        layout.show(&layout.deploy.join("<name>").join("node.log"))
    );
    if let Some(api) = cluster.nodes.iter().find_map(|m| m.api_address) {
        println!("API:       node-1 at {api} (every node's is in the table)");
    }
    println!("stop with: cargo xtask deploy stop");
    Ok(())
}

/// After a failed start: stops what was started, removes cluster.json and returns the
/// error (with a note if stopping failed too, in which case cluster.json stays).
fn abort(layout: &Layout, cluster: &Cluster, error: anyhow::Error) -> anyhow::Error {
    eprintln!("deploy failed: stopping what it started (logs stay in place)");
    match cluster::stop(cluster) {
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
    command
        .current_dir(&layout.root)
        .args(["build", "-p", "dht-node", "-p", "dht-bootstrap"]);
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

/// `n` distinct free TCP ports on 127.0.0.1: each from a listener on port 0, all kept
/// open until every port is chosen.
fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<std::io::Result<Vec<_>>>()
        .context("choosing free ports")?;
    let ports = listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<std::io::Result<Vec<_>>>()?;
    drop(listeners);
    Ok(ports)
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// The configuration of the bootstrap node.
fn bootstrap_config(p2p: SocketAddr) -> String {
    format!(
        "# generated by cargo xtask deploy: the bootstrap node of a local test cluster.\n\
         # Rewritten by every deploy; configs/bootstrap.toml describes the keys.\n\
         \n\
         [dht]\n\
         p2p_address = \"{p2p}\"\n"
    )
}

/// The configuration of one `dht-node`.
fn node_config(name: &str, p2p: SocketAddr, api: SocketAddr, bootstrap: &str) -> String {
    format!(
        "# generated by cargo xtask deploy: {name} of a local test cluster.\n\
         # Rewritten by every deploy; configs/node.toml describes the keys.\n\
         \n\
         [dht]\n\
         p2p_address = \"{p2p}\"\n\
         api_address = \"{api}\"\n\
         bootstrap_peers = [\"{bootstrap}\"]\n"
    )
}

/// Writes one process's folder and config.toml.
fn write_plan(
    layout: &Layout,
    name: &str,
    role: Role,
    p2p: SocketAddr,
    api: Option<SocketAddr>,
    text: &str,
) -> anyhow::Result<Plan> {
    let dir = layout.deploy.join(name);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let config = dir.join("config.toml");
    fs::write(&config, text).with_context(|| format!("writing {}", config.display()))?;
    Ok(Plan {
        name: name.to_string(),
        role,
        p2p,
        api,
        config,
        log: dir.join("node.log"),
    })
}

/// Starts one planned process and records it in cluster.json at once, so that a
/// failed deploy can still be stopped.
fn launch(
    layout: &Layout,
    cluster: &mut Cluster,
    log_offsets: &mut Vec<u64>,
    bin: &Path,
    plan: &Plan,
) -> anyhow::Result<()> {
    // The log is appended to: only what this run writes counts.
    log_offsets.push(fs::metadata(&plan.log).map_or(0, |m| m.len()));
    let pid =
        spawn(bin, plan).with_context(|| format!("starting {} ({})", plan.name, bin.display()))?;
    cluster.nodes.push(Member {
        name: plan.name.clone(),
        role: plan.role,
        node_id: None,
        api_address: plan.api,
        p2p_address: plan.p2p,
        pid,
        config: plan.config.clone(),
        log: plan.log.clone(),
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

/// The table of members printed at the end.
fn table(cluster: &Cluster) -> String {
    let mut out = format!(
        "{:<10} {:<10} {:<16} {:<21} {:<21} {}\n",
        "name", "role", "node id", "p2p address", "api address", "pid"
    );
    for m in &cluster.nodes {
        let id = m
            .node_id
            .as_deref()
            .map_or("?", |id| id.get(..16).unwrap_or(id));
        let api = m
            .api_address
            .map_or_else(|| "-".to_string(), |a| a.to_string());
        out += &format!(
            "{:<10} {:<10} {:<16} {:<21} {:<21} {}\n",
            m.name,
            m.role.as_str(),
            id,
            m.p2p_address.to_string(),
            api,
            m.pid
        );
    }
    out
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
                release: false,
                overrides: Vec::new(),
            }
        );
        assert_eq!(
            parse(&["--nodes", "20", "--release"]).unwrap(),
            Options {
                nodes: 20,
                release: true,
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
        assert!(parse(&["--nodes", "101"]).is_err());
        assert!(parse(&["--verbose"]).is_err());
    }

    #[test]
    fn config_texts() {
        let boot = bootstrap_config(local(7500));
        assert!(boot.starts_with("# generated by cargo xtask deploy"));
        assert!(boot.ends_with("\n[dht]\np2p_address = \"127.0.0.1:7500\"\n"));
        assert!(!boot.contains("bootstrap_peers") && !boot.contains("hostkey"));

        let peer = format!("{}@127.0.0.1:7500", "ab".repeat(32));
        let node = node_config("node-2", local(7402), local(7401), &peer);
        assert!(node.starts_with("# generated by cargo xtask deploy: node-2 "));
        assert!(node.ends_with(
            "\n[dht]\n\
             p2p_address = \"127.0.0.1:7402\"\n\
             api_address = \"127.0.0.1:7401\"\n\
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

    #[test]
    fn ports_are_distinct() {
        let ports = free_ports(41).unwrap();
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), 41);
        assert!(ports.iter().all(|&p| p != 0));
    }

    #[test]
    fn table_lists_every_member() {
        let member = |name: &str, role, api: Option<u16>, id: Option<String>| Member {
            name: name.into(),
            role,
            node_id: id,
            api_address: api.map(local),
            p2p_address: local(9000),
            pid: 42,
            config: "/c".into(),
            log: "/l".into(),
        };
        let cluster = Cluster {
            nodes: vec![
                member("bootstrap", Role::Bootstrap, None, Some("ab".repeat(32))),
                member("node-1", Role::Node, Some(9001), None),
            ],
        };
        let table = table(&cluster);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("name"));
        assert!(lines[1].contains("abababababababab ") && lines[1].contains(" - "));
        assert!(lines[2].contains("127.0.0.1:9001") && lines[2].ends_with("42"));
    }
}
