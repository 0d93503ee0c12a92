//! A network partition between Docker containers for `cargo xtask docker-test`: packets
//! between the containers of two halves dropped in both directions by iptables rules in
//! the DOCKER-USER chain (which Docker consults before its own rules for traffic between
//! containers), and removed at the heal, or when the [`Partition`] is dropped, so that
//! a failing test leaves no rule behind.

use std::net::IpAddr;
use std::process::Command;

use anyhow::{Context, bail};

use crate::docker::docker;

/// The DROP rules of one partition; removed when dropped.
pub(crate) struct Partition {
    rules: Vec<(IpAddr, IpAddr)>,
}

/// The IP of `container` on its (only) network.
pub(crate) fn container_ip(container: &str) -> anyhow::Result<IpAddr> {
    let text = docker(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
        container,
    ])?;
    let first = text.split_whitespace().next().unwrap_or_default();
    first
        .parse()
        .with_context(|| format!("container {container} has no IP (docker inspect: {text:?})"))
}

fn iptables(action: &str, from: IpAddr, to: IpAddr) -> anyhow::Result<()> {
    let output = Command::new("iptables")
        .args([
            action,
            "DOCKER-USER",
            "-s",
            &from.to_string(),
            "-d",
            &to.to_string(),
            "-j",
            "DROP",
        ])
        .output()
        .context("running iptables (docker-test's partition needs it, as root)")?;
    if !output.status.success() {
        bail!(
            "iptables {action} DOCKER-USER -s {from} -d {to} -j DROP failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

impl Partition {
    /// Drops every packet between a container of `west` and one of `east`.
    pub(crate) fn split(west: &[IpAddr], east: &[IpAddr]) -> anyhow::Result<Partition> {
        let mut partition = Partition { rules: Vec::new() };
        for &w in west {
            for &e in east {
                for (from, to) in [(w, e), (e, w)] {
                    iptables("-I", from, to)?;
                    partition.rules.push((from, to));
                }
            }
        }
        Ok(partition)
    }

    /// Removes the rules: the halves see each other again.
    pub(crate) fn heal(mut self) -> anyhow::Result<()> {
        let rules = std::mem::take(&mut self.rules);
        for (from, to) in rules {
            iptables("-D", from, to)?;
        }
        Ok(())
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        for (from, to) in std::mem::take(&mut self.rules) {
            if let Err(e) = iptables("-D", from, to) {
                eprintln!("docker-test: could not remove a partition rule: {e:#}");
            }
        }
    }
}
