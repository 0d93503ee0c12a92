//! Tests that run a node binary as a child process: free loopback ports, and a child
//! that is killed when dropped, so that a failing test leaves no process behind.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use dht_core::Key;

use crate::{ApiClient, TEST_POW, wait_for};

/// An address on 127.0.0.1 that nothing listens on right now.
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// A port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> u16 {
    free_addr().port()
}

/// A running child, killed (SIGKILL) and reaped when dropped.
pub struct Running(pub Child);

impl Running {
    /// Kills the child with SIGKILL and waits for it.
    pub fn kill(&mut self) {
        self.0.kill().expect("SIGKILL");
        self.0.wait().expect("reaped");
    }

    /// Sends the child `signal` with kill(1), e.g. `"-STOP"` or `"-CONT"`.
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &self.0.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} failed");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `binary -c config args...` with stdout and stderr appended to `log`, and
/// `RUST_LOG` set to `rust_log` (or removed, so that the configuration decides).
pub fn spawn_node(
    binary: &str,
    config: &Path,
    args: &[&str],
    log: &Path,
    rust_log: Option<&str>,
) -> Running {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    let mut command = Command::new(binary);
    command
        .arg("-c")
        .arg(config)
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log file"))
        .stderr(log);
    if let Some(level) = rust_log {
        command.env("RUST_LOG", level);
    }
    Running(command.spawn().expect("the node binary starts"))
}

/// The dht-node binary `cargo test --workspace` built (built here when it is missing).
pub fn node_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let binary = target.join("debug/dht-node");
    if !binary.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let built = Command::new(cargo)
            .args(["build", "-p", "dht-node"])
            .status()
            .expect("cargo runs");
        assert!(built.success(), "building dht-node failed");
    }
    binary
}

/// A dht-node process's files in a folder of its own: its configuration (free ports on
/// 127.0.0.1, the test proof of work, a durable store in `data`), and its log.
pub struct NodeProcess {
    /// The configuration file.
    pub config: PathBuf,
    /// The log the process appends to.
    pub log: PathBuf,
    /// Its API address.
    pub api: SocketAddr,
    /// Its peer address.
    pub p2p: SocketAddr,
    /// Its operations endpoint (`/metrics`).
    pub metrics: SocketAddr,
}

impl NodeProcess {
    /// Writes the configuration of a node in `dir` that joins through `bootstrap`.
    pub fn new(dir: &Path, bootstrap: &[SocketAddr], sync_interval: Duration) -> NodeProcess {
        Self::with_settings(dir, bootstrap, sync_interval, "")
    }

    /// [`NodeProcess::new`] with `settings` (lines of the `[dht]` section) added.
    pub fn with_settings(
        dir: &Path,
        bootstrap: &[SocketAddr],
        sync_interval: Duration,
        settings: &str,
    ) -> NodeProcess {
        std::fs::create_dir_all(dir).expect("node folder");
        let (api, p2p, metrics) = (free_addr(), free_addr(), free_addr());
        let peers: Vec<String> = bootstrap.iter().map(|a| format!("\"{a}\"")).collect();
        let text = format!(
            "hostkey = \"hostkey.pem\"\n\
             [dht]\n\
             p2p_address = \"{p2p}\"\n\
             api_address = \"{api}\"\n\
             metrics_address = \"{metrics}\"\n\
             {settings}\n\
             bootstrap_peers = [{peers}]\n\
             pow_difficulty = {TEST_POW}\n\
             min_pow_difficulty = {TEST_POW}\n\
             [storage]\n\
             backend = \"durable\"\n\
             data_dir = \"data\"\n\
             sync_interval_ms = {sync}\n",
            peers = peers.join(", "),
            sync = sync_interval.as_millis(),
        );
        let config = dir.join("node.toml");
        std::fs::write(&config, text).expect("config");
        NodeProcess {
            config,
            log: dir.join("node.log"),
            api,
            p2p,
            metrics,
        }
    }

    /// The configurations of `n` nodes in folders `node-<i>` of `dir`, each with
    /// `settings`, all joining through the first.
    pub fn network(
        dir: &Path,
        n: usize,
        sync_interval: Duration,
        settings: &str,
    ) -> Vec<NodeProcess> {
        let first = Self::with_settings(&dir.join("node-0"), &[], sync_interval, settings);
        let entry = [first.p2p];
        let mut setups = vec![first];
        for i in 1..n {
            let dir = dir.join(format!("node-{i}"));
            setups.push(Self::with_settings(&dir, &entry, sync_interval, settings));
        }
        setups
    }

    /// Starts the process and waits until its API accepts connections.
    pub async fn start(&self, binary: &Path) -> Running {
        let running = spawn_node(
            binary.to_str().expect("utf-8 path"),
            &self.config,
            &[],
            &self.log,
            None,
        );
        let api = self.api;
        let up = wait_for(Duration::from_secs(60), || async {
            tokio::net::TcpStream::connect(api).await.is_ok()
        })
        .await;
        assert!(
            up,
            "the node's API did not come up (log: {})",
            self.log.display()
        );
        running
    }
}

/// `n` keys named `<prefix>/<i>`, each with the value `value <i>`.
pub fn keys(prefix: &str, n: usize) -> Vec<(Key, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let key = Key::sha256(format!("{prefix}/{i}").as_bytes());
            (key, format!("value {i}").into_bytes())
        })
        .collect()
}

/// PUTs `keys` (TTL an hour, `replication` copies) through the APIs of `nodes` in turn.
pub async fn put_in_turn(nodes: &[NodeProcess], keys: &[(Key, Vec<u8>)], replication: u8) {
    for (i, (key, value)) in keys.iter().enumerate() {
        let mut client = ApiClient::connect(nodes[i % nodes.len()].api)
            .await
            .expect("api");
        client
            .put(*key, value, 3600, replication)
            .await
            .expect("put");
    }
}

/// Whether every one of `keys` is found with its value through the API at `api`.
pub async fn all_found(api: SocketAddr, keys: &[(Key, Vec<u8>)]) -> bool {
    let Ok(mut client) = ApiClient::connect(api).await else {
        return false;
    };
    for (key, value) in keys {
        match client.get(*key).await {
            Ok(Some(got)) if got.as_ref() == value.as_slice() => {}
            _ => return false,
        }
    }
    true
}
