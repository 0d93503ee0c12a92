//! Where xtask's commands find and put things: the workspace, the cargo target folder,
//! a deployment's folder, and free ports for what they start.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use anyhow::Context;

/// The variable that moves a deployment's folder away from `<target>/deploy`.
pub(crate) const DEPLOY_DIR_ENV: &str = "DHT_DEPLOY_DIR";
/// VoidPhone's API port, which `dht-cli` and other modules try by default.
pub(crate) const DEFAULT_API_PORT: u16 = 7401;

/// Where things are: the workspace, the cargo target folder and the deployment folder.
pub(crate) struct Layout {
    /// The workspace root.
    pub(crate) root: PathBuf,
    /// `CARGO_TARGET_DIR`, made absolute, when set: passed on to the cargo builds xtask
    /// runs, so that they use the same folder as the cargo that runs xtask.
    pub(crate) target_env: Option<PathBuf>,
    /// The cargo target folder.
    pub(crate) target: PathBuf,
    /// The deployment's folder: its cluster.json and one folder per member.
    pub(crate) deploy: PathBuf,
}

impl Layout {
    /// The layout of `cargo xtask deploy`: the deployment lives in `<target>/deploy`, or
    /// in `$DHT_DEPLOY_DIR` when set (relative to the current folder), which `dht-cli`
    /// reads too: a second deployment beside the first, e.g. for a test.
    pub(crate) fn new() -> anyhow::Result<Layout> {
        let mut layout = Layout::with_deploy_dir("deploy")?;
        if let Some(dir) = std::env::var_os(DEPLOY_DIR_ENV).filter(|d| !d.is_empty()) {
            layout.deploy = std::env::current_dir()?.join(dir);
        }
        Ok(layout)
    }

    /// A layout whose deployment lives in `<target>/<name>`, so that a test deployment
    /// never touches the one `cargo xtask deploy` made.
    pub(crate) fn with_deploy_dir(name: &str) -> anyhow::Result<Layout> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("xtask has no parent folder")?
            .to_path_buf();
        let target_env = match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) if !dir.is_empty() => Some(std::env::current_dir()?.join(dir)),
            _ => None,
        };
        let target = target_env.clone().unwrap_or_else(|| root.join("target"));
        let deploy = target.join(name);
        Ok(Layout {
            root,
            target_env,
            target,
            deploy,
        })
    }

    /// The record of the deployment.
    pub(crate) fn cluster_json(&self) -> PathBuf {
        self.deploy.join("cluster.json")
    }

    /// A binary of the normal (host, dynamically linked) build.
    pub(crate) fn binary(&self, release: bool, name: &str) -> PathBuf {
        self.target
            .join(if release { "release" } else { "debug" })
            .join(name)
    }

    /// `path` relative to the workspace root when inside it, for messages.
    pub(crate) fn show<'a>(&self, path: &'a Path) -> std::path::Display<'a> {
        path.strip_prefix(&self.root).unwrap_or(path).display()
    }
}

/// `n` distinct free TCP ports on 127.0.0.1: each from a listener on port 0, all kept
/// open until every port is chosen.
pub(crate) fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
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

/// Ports held for the API servers of a deployment: each stays bound (so that another
/// deployment starting meanwhile skips it) until its node is about to start.
pub(crate) struct HeldPorts {
    held: Vec<Option<TcpListener>>,
    ports: Vec<u16>,
}

impl HeldPorts {
    /// The ports, in order.
    pub(crate) fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// Frees port `index` for the process about to bind it.
    pub(crate) fn release(&mut self, index: usize) {
        if let Some(held) = self.held.get_mut(index) {
            held.take();
        }
    }
}

/// `n` free ports on 127.0.0.1 for the API servers of a deployment: 7401 (VoidPhone's
/// default, where `dht-cli` looks first) and up, skipping ports in use, so that the first
/// node listens where clients expect it whenever that port is free.
pub(crate) fn api_ports(n: usize) -> anyhow::Result<HeldPorts> {
    ports_from(DEFAULT_API_PORT, n)
}

/// `n` free ports on 127.0.0.1 from `first` up, held until released.
fn ports_from(first: u16, n: usize) -> anyhow::Result<HeldPorts> {
    let mut held = Vec::with_capacity(n);
    let mut ports = Vec::with_capacity(n);
    let mut port = first;
    while held.len() < n {
        if let Ok(listener) = TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            held.push(Some(listener));
            ports.push(port);
        }
        port = port
            .checked_add(1)
            .with_context(|| format!("no {n} free ports from {first} up"))?;
    }
    Ok(HeldPorts { held, ports })
}

/// `127.0.0.1:port`.
pub(crate) fn local(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn held_ports_are_skipped_until_released() {
        // Far from 7401, so that a deployment starting meanwhile is not disturbed.
        let mut first = ports_from(47_401, 3).unwrap();
        let ports = first.ports().to_vec();
        assert!(ports[0] >= 47_401);
        assert!(ports.windows(2).all(|w| w[0] < w[1]), "{ports:?}");
        // Held ports are in use: a second choice skips them, until one is released.
        let second = ports_from(ports[0], 1).unwrap();
        assert!(!ports.contains(&second.ports()[0]));
        drop(second);
        first.release(1);
        assert!(TcpListener::bind((Ipv4Addr::LOCALHOST, ports[1])).is_ok());
        assert!(TcpListener::bind((Ipv4Addr::LOCALHOST, ports[0])).is_err());
    }

    #[test]
    fn deploy_folders() {
        let deploy = Layout::with_deploy_dir("deploy").unwrap();
        assert!(deploy.cluster_json().ends_with("deploy/cluster.json"));
        let test = Layout::with_deploy_dir("docker-test").unwrap();
        assert!(test.cluster_json().ends_with("docker-test/cluster.json"));
        assert_eq!(deploy.target, test.target);
        assert_eq!(
            deploy.show(&deploy.root.join("a/b")).to_string(),
            "a/b",
            "paths in the workspace are shown relative to it"
        );
    }
}
