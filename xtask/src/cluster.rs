//! The record of a deployed cluster (`target/deploy/cluster.json`), the table `deploy`
//! prints from it, and the processes of a local cluster: checking that one is alive, and
//! stopping them without ever signalling a process that is not ours. (The containers of
//! a Docker cluster are stopped by `docker_deploy`.)

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// How long a process gets to exit after SIGTERM before it gets SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(10);
/// How often the state of processes is polled.
pub(crate) const POLL: Duration = Duration::from_millis(100);

/// What `target/deploy/cluster.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Cluster {
    /// How the members run. Records written before Docker deployments existed have no
    /// mode: they are local.
    #[serde(default)]
    pub(crate) mode: Mode,
    /// The Docker network and the deployment's name (Docker mode only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) docker: Option<DockerSetup>,
    /// The bootstrap node(s) first, then `node-1`, `node-2`, ...
    pub(crate) nodes: Vec<Member>,
}

/// How the members of a cluster run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Mode {
    /// Processes on this machine.
    #[default]
    Local,
    /// Containers on the local Docker engine.
    Docker,
}

/// What a Docker deployment created besides its containers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DockerSetup {
    /// The deployment's name: the prefix of its container and network names, and the
    /// value of the label `org.voidphone.dht.deployment` on each of them.
    pub(crate) deployment: String,
    /// The private network's name.
    pub(crate) network: String,
    /// Its subnet (IPv4 CIDR).
    pub(crate) subnet: String,
}

/// What a member is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Role {
    /// `dht-bootstrap`.
    Bootstrap,
    /// `dht-node`.
    Node,
}

impl Role {
    /// The name in the table and in cluster.json.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Role::Bootstrap => "bootstrap",
            Role::Node => "node",
        }
    }
}

/// One member of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Member {
    /// `bootstrap`, `bootstrap-<i>` or `node-<i>`; also the name of its folder.
    pub(crate) name: String,
    /// Which binary it runs.
    pub(crate) role: Role,
    /// Its node id (64 hex digits), once its log has said it.
    pub(crate) node_id: Option<String>,
    /// Where its client API listens (none for a bootstrap node), reachable from this
    /// machine.
    pub(crate) api_address: Option<SocketAddr>,
    /// Where it listens for peers.
    pub(crate) p2p_address: SocketAddr,
    /// Where it serves Prometheus metrics at `/metrics`, reachable from this machine
    /// (records written before metrics existed have none).
    #[serde(default)]
    pub(crate) metrics_address: Option<SocketAddr>,
    /// How it runs: a process (its pid and log) or a container (its name).
    #[serde(flatten)]
    pub(crate) runs: Runs,
    /// Its configuration file (absolute). For a process it is on the command line,
    /// which is how `stop` recognises the process; a container has it mounted.
    pub(crate) config: PathBuf,
}

/// How a member runs; in cluster.json its fields sit beside the member's others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum Runs {
    /// A process on this machine.
    Process {
        /// Its process id.
        pid: u32,
        /// Its log file (absolute).
        log: PathBuf,
    },
    /// A container on the local Docker engine.
    Container {
        /// Its name.
        container: String,
    },
}

impl Member {
    /// The process id, for a process.
    pub(crate) fn pid(&self) -> Option<u32> {
        match self.runs {
            Runs::Process { pid, .. } => Some(pid),
            Runs::Container { .. } => None,
        }
    }

    /// The container's name, for a container.
    pub(crate) fn container(&self) -> Option<&str> {
        match &self.runs {
            Runs::Container { container } => Some(container),
            Runs::Process { .. } => None,
        }
    }
}

impl Cluster {
    /// Reads a cluster.json.
    pub(crate) fn load(path: &Path) -> anyhow::Result<Cluster> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let cluster: Cluster = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a cluster record; stop its processes by hand and remove it",
                path.display()
            )
        })?;
        cluster.check().with_context(|| {
            format!(
                "{} is not a consistent cluster record; stop its members by hand and remove it",
                path.display()
            )
        })?;
        Ok(cluster)
    }

    /// Checks that the mode and the members agree: a local cluster has processes only,
    /// a Docker cluster its network and containers only.
    pub(crate) fn check(&self) -> anyhow::Result<()> {
        let expected = match self.mode {
            Mode::Local => {
                anyhow::ensure!(
                    self.docker.is_none(),
                    "a local cluster with a Docker network"
                );
                "a process"
            }
            Mode::Docker => {
                anyhow::ensure!(
                    self.docker.is_some(),
                    "a Docker cluster without its network"
                );
                "a container"
            }
        };
        for member in &self.nodes {
            let matches = match member.runs {
                Runs::Process { .. } => self.mode == Mode::Local,
                Runs::Container { .. } => self.mode == Mode::Docker,
            };
            anyhow::ensure!(matches, "member {} is not {expected}", member.name);
        }
        Ok(())
    }

    /// Writes the record (pretty JSON), replacing the file atomically.
    pub(crate) fn save(&self, path: &Path) -> anyhow::Result<()> {
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
    }
}

/// Whether `pid` is a running process: `/proc/<pid>` exists and its state is not
/// zombie (a dead child that nobody has waited for yet) or dead.
pub(crate) fn is_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat_state(&stat))
        .is_some_and(|state| !matches!(state, 'Z' | 'X' | 'x'))
}

/// The state letter of a `/proc/<pid>/stat` line: the first field after the command
/// name, which is in parentheses and may itself contain spaces and parentheses.
fn stat_state(stat: &str) -> Option<char> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.trim_start().chars().next()
}

/// Whether the process `pid` is the member started with `config`: one of its
/// command-line arguments is exactly that path. A pid reused by another program fails
/// this, so it is never signalled.
fn runs_config(pid: u32, config: &Path) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|cmdline| cmdline_has_arg(&cmdline, config.as_os_str()))
}

fn cmdline_has_arg(cmdline: &[u8], arg: &OsStr) -> bool {
    cmdline.split(|&b| b == 0).any(|a| a == arg.as_bytes())
}

fn signal(pid: u32, signal: &str) -> bool {
    Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Stops the members of `cluster` that still run their own configuration: SIGTERM to
/// all, up to [`TERM_GRACE`] for them to exit, then SIGKILL. Prints one line per
/// member. Fails only when a process survives SIGKILL.
pub(crate) fn stop(cluster: &Cluster) -> anyhow::Result<()> {
    // `Cluster::load` has checked that every member of a local cluster is a process.
    let processes: Vec<(&Member, u32)> = cluster
        .nodes
        .iter()
        .filter_map(|m| Some((m, m.pid()?)))
        .collect();
    let mut signalled = Vec::new();
    for &(member, pid) in &processes {
        let name = &member.name;
        if !is_alive(pid) {
            println!("  {name:<10} pid {pid:<8} was not running");
        } else if !runs_config(pid, &member.config) {
            println!(
                "  {name:<10} pid {pid:<8} is another program now (its command line does not name {}): left alone",
                member.config.display()
            );
        } else if signal(pid, "TERM") {
            signalled.push((member, pid));
        } else {
            println!("  {name:<10} pid {pid:<8} exited before SIGTERM");
        }
    }
    let deadline = Instant::now() + TERM_GRACE;
    let started = Instant::now();
    while signalled.iter().any(|&(_, pid)| is_alive(pid)) && Instant::now() < deadline {
        std::thread::sleep(POLL);
    }
    let mut survivors = Vec::new();
    for (member, pid) in signalled {
        let name = &member.name;
        if !is_alive(pid) {
            println!("  {name:<10} pid {pid:<8} stopped");
            continue;
        }
        // Still ours? (A pid cannot be reused while the process is alive, but check
        // anyway: this is the last line of defence against killing a stranger.)
        if runs_config(pid, &member.config) && signal(pid, "KILL") {
            println!(
                "  {name:<10} pid {pid:<8} ignored SIGTERM for {:.0?}: killed (SIGKILL)",
                started.elapsed()
            );
        }
        survivors.push((member, pid));
    }
    let kill_deadline = Instant::now() + Duration::from_secs(5);
    while survivors.iter().any(|&(_, pid)| is_alive(pid)) && Instant::now() < kill_deadline {
        std::thread::sleep(POLL);
    }
    let alive: Vec<String> = survivors
        .iter()
        .filter(|&&(_, pid)| is_alive(pid))
        .map(|(m, pid)| format!("{} (pid {pid})", m.name))
        .collect();
    anyhow::ensure!(
        alive.is_empty(),
        "still running after SIGKILL: {}",
        alive.join(", ")
    );
    Ok(())
}

/// The table of members `deploy` prints: one line per member; the last column is the
/// pid or the container's name.
pub(crate) fn table(cluster: &Cluster) -> String {
    let last = match cluster.mode {
        Mode::Local => "pid",
        Mode::Docker => "container",
    };
    let row = |cells: [&str; 7]| {
        format!(
            "{:<12} {:<10} {:<16} {:<21} {:<21} {:<21} {}\n",
            cells[0], cells[1], cells[2], cells[3], cells[4], cells[5], cells[6]
        )
    };
    let mut out = row([
        "name",
        "role",
        "node id",
        "p2p address",
        "api address",
        "metrics address",
        last,
    ]);
    let show = |a: Option<SocketAddr>| a.map_or_else(|| "-".to_string(), |a| a.to_string());
    for m in &cluster.nodes {
        let id = m
            .node_id
            .as_deref()
            .map_or("?", |id| id.get(..16).unwrap_or(id));
        let runs = match &m.runs {
            Runs::Process { pid, .. } => pid.to_string(),
            Runs::Container { container } => container.clone(),
        };
        out += &row([
            &m.name,
            m.role.as_str(),
            id,
            &m.p2p_address.to_string(),
            &show(m.api_address),
            &show(m.metrics_address),
            &runs,
        ]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_of_stat_lines() {
        assert_eq!(stat_state("1234 (dht-node) S 1 1234 1234 0"), Some('S'));
        assert_eq!(stat_state("1234 (odd) name) (Z 1 2) Z 1 2"), Some('Z'));
        assert_eq!(stat_state("garbage"), None);
        assert!(is_alive(std::process::id()));
        assert!(!is_alive(u32::MAX));
    }

    #[test]
    fn cmdline_matches_whole_arguments_only() {
        let cmdline = b"/w/target/debug/dht-node\0-c\0/w/target/deploy/node-1/config.toml\0";
        let arg = |s: &str| OsStr::new(s).to_os_string();
        assert!(cmdline_has_arg(
            cmdline,
            &arg("/w/target/deploy/node-1/config.toml")
        ));
        assert!(!cmdline_has_arg(
            cmdline,
            &arg("/w/target/deploy/node-10/config.toml")
        ));
        assert!(!cmdline_has_arg(cmdline, &arg("/w/target/deploy/node-1")));
        assert!(!cmdline_has_arg(b"", &arg("/x")));
    }

    fn process(name: &str, role: Role, pid: u32) -> Member {
        Member {
            name: name.into(),
            role,
            node_id: None,
            api_address: None,
            p2p_address: "127.0.0.1:4000".parse().unwrap(),
            metrics_address: None,
            runs: Runs::Process {
                pid,
                log: format!("/d/{name}/node.log").into(),
            },
            config: format!("/d/{name}/config.toml").into(),
        }
    }

    fn roundtrip(cluster: &Cluster, tag: &str) {
        let dir = std::env::temp_dir().join(format!("xtask-cluster-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("cluster.json");
        cluster.save(&file).unwrap();
        assert_eq!(&Cluster::load(&file).unwrap(), cluster);
        std::fs::write(&file, "{}").unwrap();
        assert!(Cluster::load(&file).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn local_cluster_json_shape_and_roundtrip() {
        let mut node = process("node-1", Role::Node, 11);
        node.node_id = Some("ab".repeat(32));
        node.api_address = Some("127.0.0.1:4002".parse().unwrap());
        node.metrics_address = Some("127.0.0.1:4003".parse().unwrap());
        let cluster = Cluster {
            mode: Mode::Local,
            docker: None,
            nodes: vec![process("bootstrap", Role::Bootstrap, 10), node],
        };
        let json = serde_json::to_value(&cluster).unwrap();
        assert_eq!(json["mode"], "local");
        assert!(json.get("docker").is_none());
        assert_eq!(json["nodes"][0]["role"], "bootstrap");
        assert_eq!(json["nodes"][0]["api_address"], serde_json::Value::Null);
        assert_eq!(json["nodes"][0]["node_id"], serde_json::Value::Null);
        assert_eq!(json["nodes"][1]["api_address"], "127.0.0.1:4002");
        assert_eq!(json["nodes"][1]["metrics_address"], "127.0.0.1:4003");
        assert_eq!(json["nodes"][1]["pid"], 11);
        assert_eq!(json["nodes"][1]["log"], "/d/node-1/node.log");
        assert_eq!(json["nodes"][1]["config"], "/d/node-1/config.toml");
        assert!(json["nodes"][1].get("container").is_none());
        roundtrip(&cluster, "local");
    }

    #[test]
    fn docker_cluster_json_shape_and_roundtrip() {
        let mut node = process("node-1", Role::Node, 0);
        node.runs = Runs::Container {
            container: "dht-0a1b2c-node-1".into(),
        };
        let cluster = Cluster {
            mode: Mode::Docker,
            docker: Some(DockerSetup {
                deployment: "dht-0a1b2c".into(),
                network: "dht-0a1b2c-net".into(),
                subnet: "172.28.0.0/24".into(),
            }),
            nodes: vec![node],
        };
        let json = serde_json::to_value(&cluster).unwrap();
        assert_eq!(json["mode"], "docker");
        assert_eq!(json["docker"]["network"], "dht-0a1b2c-net");
        assert_eq!(json["nodes"][0]["container"], "dht-0a1b2c-node-1");
        assert!(json["nodes"][0].get("pid").is_none());
        assert_eq!(cluster.nodes[0].container(), Some("dht-0a1b2c-node-1"));
        assert_eq!(cluster.nodes[0].pid(), None);
        roundtrip(&cluster, "docker");
    }

    #[test]
    fn reads_records_written_before_docker_and_metrics() {
        let old = r#"{"nodes":[{"name":"bootstrap","role":"bootstrap","node_id":null,
            "api_address":null,"p2p_address":"127.0.0.1:4000","pid":10,
            "config":"/d/bootstrap/config.toml","log":"/d/bootstrap/node.log"}]}"#;
        let cluster: Cluster = serde_json::from_str(old).unwrap();
        cluster.check().unwrap();
        assert_eq!(cluster.mode, Mode::Local);
        assert_eq!(
            cluster.nodes,
            vec![process("bootstrap", Role::Bootstrap, 10)]
        );
    }

    #[test]
    fn mode_and_members_must_agree() {
        let mut cluster = Cluster {
            mode: Mode::Docker,
            docker: None,
            nodes: vec![process("node-1", Role::Node, 11)],
        };
        assert!(cluster.check().is_err(), "docker without its network");
        cluster.docker = Some(DockerSetup {
            deployment: "d".into(),
            network: "n".into(),
            subnet: "172.28.0.0/24".into(),
        });
        let error = cluster.check().unwrap_err().to_string();
        assert_eq!(error, "member node-1 is not a container");
        cluster.mode = Mode::Local;
        assert!(cluster.check().is_err(), "local with a network");
        cluster.docker = None;
        cluster.check().unwrap();
    }

    #[test]
    fn table_lists_every_member() {
        let mut boot = process("bootstrap", Role::Bootstrap, 42);
        boot.node_id = Some("ab".repeat(32));
        let mut node = process("node-1", Role::Node, 43);
        node.api_address = Some("127.0.0.1:9001".parse().unwrap());
        node.metrics_address = Some("127.0.0.1:9002".parse().unwrap());
        let mut cluster = Cluster {
            mode: Mode::Local,
            docker: None,
            nodes: vec![boot, node],
        };
        let table = table(&cluster);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("name") && lines[0].ends_with(" pid"));
        assert!(lines[1].contains("abababababababab ") && lines[1].contains(" - "));
        assert!(lines[1].ends_with(" 42"));
        assert!(lines[2].contains("127.0.0.1:9001") && lines[2].contains("127.0.0.1:9002"));
        assert!(lines[2].ends_with(" 43"));

        cluster.mode = Mode::Docker;
        cluster.nodes[1].runs = Runs::Container {
            container: "dht-0a1b2c-node-1".into(),
        };
        let table = super::table(&cluster);
        assert!(table.lines().next().unwrap().ends_with(" container"));
        assert!(
            table
                .lines()
                .nth(2)
                .unwrap()
                .ends_with(" dht-0a1b2c-node-1")
        );
    }
}
