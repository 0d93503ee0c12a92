//! The record of a deployed cluster (`target/deploy/cluster.json`) and the processes it
//! names: checking that one is alive, and stopping them without ever signalling a
//! process that is not ours.

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
    /// The bootstrap node first, then `node-1`, `node-2`, ...
    pub(crate) nodes: Vec<Member>,
}

/// What a member process is.
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

/// One process of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Member {
    /// `bootstrap` or `node-<i>`; also the name of its folder.
    pub(crate) name: String,
    /// Which binary it runs.
    pub(crate) role: Role,
    /// Its node id (64 hex digits), once its log has said it.
    pub(crate) node_id: Option<String>,
    /// Where its client API listens (none for the bootstrap node).
    pub(crate) api_address: Option<SocketAddr>,
    /// Where it listens for peers.
    pub(crate) p2p_address: SocketAddr,
    /// Its process id.
    pub(crate) pid: u32,
    /// Its configuration file (absolute); it is on the process's command line, which
    /// is how `stop` recognises the process.
    pub(crate) config: PathBuf,
    /// Its log file (absolute).
    pub(crate) log: PathBuf,
}

impl Cluster {
    /// Reads a cluster.json.
    pub(crate) fn load(path: &Path) -> anyhow::Result<Cluster> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a cluster record; stop its processes by hand and remove it",
                path.display()
            )
        })
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
    let mut signalled = Vec::new();
    for member in &cluster.nodes {
        let (name, pid) = (&member.name, member.pid);
        if !is_alive(pid) {
            println!("  {name:<10} pid {pid:<8} was not running");
        } else if !runs_config(pid, &member.config) {
            println!(
                "  {name:<10} pid {pid:<8} is another program now (its command line does not name {}): left alone",
                member.config.display()
            );
        } else if signal(pid, "TERM") {
            signalled.push(member);
        } else {
            println!("  {name:<10} pid {pid:<8} exited before SIGTERM");
        }
    }
    let deadline = Instant::now() + TERM_GRACE;
    let started = Instant::now();
    while signalled.iter().any(|m| is_alive(m.pid)) && Instant::now() < deadline {
        std::thread::sleep(POLL);
    }
    let mut survivors = Vec::new();
    for member in signalled {
        let (name, pid) = (&member.name, member.pid);
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
        survivors.push(member);
    }
    let kill_deadline = Instant::now() + Duration::from_secs(5);
    while survivors.iter().any(|m| is_alive(m.pid)) && Instant::now() < kill_deadline {
        std::thread::sleep(POLL);
    }
    let alive: Vec<String> = survivors
        .iter()
        .filter(|m| is_alive(m.pid))
        .map(|m| format!("{} (pid {})", m.name, m.pid))
        .collect();
    anyhow::ensure!(
        alive.is_empty(),
        "still running after SIGKILL: {}",
        alive.join(", ")
    );
    Ok(())
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

    #[test]
    fn cluster_json_shape_and_roundtrip() {
        let cluster = Cluster {
            nodes: vec![
                Member {
                    name: "bootstrap".into(),
                    role: Role::Bootstrap,
                    node_id: None,
                    api_address: None,
                    p2p_address: "127.0.0.1:4000".parse().unwrap(),
                    pid: 10,
                    config: "/d/bootstrap/config.toml".into(),
                    log: "/d/bootstrap/node.log".into(),
                },
                Member {
                    name: "node-1".into(),
                    role: Role::Node,
                    node_id: Some("ab".repeat(32)),
                    api_address: Some("127.0.0.1:4002".parse().unwrap()),
                    p2p_address: "127.0.0.1:4001".parse().unwrap(),
                    pid: 11,
                    config: "/d/node-1/config.toml".into(),
                    log: "/d/node-1/node.log".into(),
                },
            ],
        };
        let json = serde_json::to_value(&cluster).unwrap();
        assert_eq!(json["nodes"][0]["role"], "bootstrap");
        assert_eq!(json["nodes"][0]["api_address"], serde_json::Value::Null);
        assert_eq!(json["nodes"][0]["node_id"], serde_json::Value::Null);
        assert_eq!(json["nodes"][1]["api_address"], "127.0.0.1:4002");
        assert_eq!(json["nodes"][1]["pid"], 11);
        assert_eq!(json["nodes"][1]["config"], "/d/node-1/config.toml");

        let dir = std::env::temp_dir().join(format!("xtask-cluster-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("cluster.json");
        cluster.save(&file).unwrap();
        assert_eq!(Cluster::load(&file).unwrap(), cluster);
        std::fs::write(&file, "{}").unwrap();
        assert!(Cluster::load(&file).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
