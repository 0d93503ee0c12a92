//! `cargo xtask deploy --docker`: the cluster of `deploy` in containers, and stopping
//! it.
//!
//! A deployment has a name, `dht-<6 hex digits>`, that prefixes its network
//! (`<name>-net`) and containers (`<name>-bootstrap-1`, `<name>-node-1`, ...) and is
//! the value of the label `org.voidphone.dht.deployment` on each of them. The network
//! gets a free /24 subnet and every container a fixed address in it: configurations
//! name peers by IP, because a static glibc cannot resolve host names in an empty
//! image. Inside its container a member binds 0.0.0.0 and advertises its container IP;
//! API and metrics ports are published on 127.0.0.1. `stop` removes exactly the
//! recorded containers and network, after checking that each still carries the
//! deployment's label.

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, bail};

use crate::cluster::{Cluster, DockerSetup, Member, Mode, Role, Runs};
use crate::deploy::{Options, abort};
use crate::docker::{
    self, BOOTSTRAP_IMAGE, DEPLOYMENT_LABEL, LABEL, NODE_IMAGE, container_log, docker,
};
use crate::layout::{Layout, api_ports, free_ports, local};
use crate::overrides;
use crate::startup::{self, Watch};

/// The peer port inside every container.
const P2P_PORT: u16 = 7402;
/// The API port inside a node's container.
const API_PORT: u16 = 7401;
/// The metrics port inside every container.
const METRICS_PORT: u16 = 9100;
/// Where the configuration is mounted in a container.
const CONFIG_IN_CONTAINER: &str = "/config/node.toml";
/// Seconds a container gets to stop after SIGTERM before it gets SIGKILL.
const STOP_GRACE_SECS: &str = "10";
/// Bootstrap containers per deployment: a node can join while either answers.
const BOOTSTRAPS: usize = 2;

/// Deploys from the images [`docker::build_images`] made: network, bootstrap
/// containers one after the other (each pins the ids of those before it), then the
/// nodes; waits until all are up and the probe value can be read through every node.
/// Returns the cluster, recorded in cluster.json. On failure, stops what it started.
pub(crate) fn deploy(layout: &Layout, options: &Options) -> anyhow::Result<Cluster> {
    let deployment = format!("dht-{}", docker::random_hex(6));
    let network = format!("{deployment}-net");
    let labels = [
        format!("{LABEL}=1"),
        format!("{DEPLOYMENT_LABEL}={deployment}"),
    ];
    fs::create_dir_all(&layout.deploy)
        .with_context(|| format!("creating {}", layout.deploy.display()))?;
    let started = Instant::now();
    let subnet = create_network(&network, &labels)?;
    println!("network {network} ({subnet}) created");
    let mut cluster = Cluster {
        mode: Mode::Docker,
        docker: Some(DockerSetup {
            deployment: deployment.clone(),
            network,
            subnet: subnet.to_string(),
        }),
        nodes: Vec::new(),
    };
    if let Err(e) = cluster.save(&layout.cluster_json()) {
        return Err(abort(layout, &cluster, e));
    }
    let mut watch = ContainerWatch {
        label: labels[1].clone(),
        running: HashSet::new(),
    };
    match start_members(layout, options, &mut cluster, &mut watch, subnet, started) {
        Ok(()) => Ok(cluster),
        Err(e) => Err(abort(layout, &cluster, e)),
    }
}

/// Everything of [`deploy`] after the network: containers, waiting, the probe.
fn start_members(
    layout: &Layout,
    options: &Options,
    cluster: &mut Cluster,
    watch: &mut ContainerWatch,
    subnet: Subnet,
    started: Instant,
) -> anyhow::Result<()> {
    // Host ports: each bootstrap's metrics, then each node's metrics; the APIs from
    // 7401 up, as for local deployments.
    let ports = free_ports(BOOTSTRAPS + options.nodes)?;
    let mut api_ports = api_ports(options.nodes)?;
    let mut peers = Vec::new();
    for (i, &metrics) in ports[..BOOTSTRAPS].iter().enumerate() {
        let spec = Spec {
            name: format!("bootstrap-{}", i + 1),
            role: Role::Bootstrap,
            ip: subnet.host(2 + i as u32),
            api: None,
            metrics,
        };
        start_container(layout, options, cluster, &spec, &peers)?;
        startup::wait_ready(watch, cluster, started)?;
        let member = cluster.nodes.last().context("no member was recorded")?;
        let id = member
            .node_id
            .as_deref()
            .with_context(|| format!("{} reported no id", member.name))?;
        peers.push(format!("{id}@{}", member.p2p_address));
    }
    let apis = api_ports.ports().to_vec();
    for (i, (&metrics, &api)) in ports[BOOTSTRAPS..].iter().zip(&apis).enumerate() {
        let spec = Spec {
            name: format!("node-{}", i + 1),
            role: Role::Node,
            ip: subnet.host(10 + i as u32 + 1),
            api: Some(api),
            metrics,
        };
        api_ports.release(i);
        start_container(layout, options, cluster, &spec, &peers)?;
    }
    println!(
        "started {} containers; waiting for them to join (at most {} s)",
        cluster.nodes.len(),
        startup::ready_deadline(cluster.nodes.len()).as_secs()
    );
    startup::wait_ready(watch, cluster, started)?;
    let ready = started.elapsed();
    cluster.save(&layout.cluster_json())?;
    crate::monitoring::write_prometheus_config(layout, cluster)?;
    startup::probe(cluster)?;
    let total = started.elapsed();
    startup::report_up("containers", options.nodes, ready, total);
    Ok(())
}

/// One container to start.
struct Spec {
    /// The member's name (`bootstrap-1`, `node-1`, ...).
    name: String,
    /// What it runs: the bootstrap or the node image.
    role: Role,
    /// Its address on the deployment's network.
    ip: Ipv4Addr,
    /// The host port its API is published on (nodes only).
    api: Option<u16>,
    /// The host port its metrics are published on.
    metrics: u16,
}

/// Writes the member's configuration, starts its container and records it in
/// cluster.json at once, so that a failed deploy can still be stopped.
fn start_container(
    layout: &Layout,
    options: &Options,
    cluster: &mut Cluster,
    spec: &Spec,
    peers: &[String],
) -> anyhow::Result<()> {
    let setup = cluster.docker.as_ref().context("not a Docker cluster")?;
    let container = format!("{}-{}", setup.deployment, spec.name);
    let dir = layout.deploy.join(&spec.name);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let config = dir.join("config.toml");
    let text = container_config(&spec.name, spec.ip, spec.api.is_some(), peers);
    fs::write(&config, overrides::apply(&text, &options.overrides))
        .with_context(|| format!("writing {}", config.display()))?;

    let mount = format!("{}:{CONFIG_IN_CONTAINER}:ro", config.display());
    let ip = spec.ip.to_string();
    let mut args: Vec<String> = [
        "run",
        "--detach",
        "--name",
        &container,
        "--network",
        &setup.network,
        "--ip",
        &ip,
        "--stop-timeout",
        STOP_GRACE_SECS,
        "--volume",
        &mount,
        "--publish",
        &format!("127.0.0.1:{}:{METRICS_PORT}", spec.metrics),
    ]
    .map(str::to_string)
    .to_vec();
    for label in [
        format!("{LABEL}=1"),
        format!("{DEPLOYMENT_LABEL}={}", setup.deployment),
    ] {
        args.extend(["--label".to_string(), label]);
    }
    if let Some(api) = spec.api {
        args.extend([
            "--publish".to_string(),
            format!("127.0.0.1:{api}:{API_PORT}"),
        ]);
    }
    if let Ok(filter) = std::env::var("RUST_LOG") {
        args.extend(["--env".to_string(), format!("RUST_LOG={filter}")]);
    }
    let image = match spec.role {
        Role::Bootstrap => BOOTSTRAP_IMAGE,
        Role::Node => NODE_IMAGE,
    };
    args.extend([image.tag, "-c", CONFIG_IN_CONTAINER].map(str::to_string));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    docker(&args).with_context(|| format!("starting {}", spec.name))?;
    cluster.nodes.push(Member {
        name: spec.name.clone(),
        role: spec.role,
        node_id: None,
        api_address: spec.api.map(local),
        p2p_address: SocketAddr::from((spec.ip, P2P_PORT)),
        metrics_address: Some(local(spec.metrics)),
        runs: Runs::Container { container },
        config,
    });
    cluster.save(&layout.cluster_json())
}

/// The configuration of a member in a container: it binds every interface of its
/// container, advertises its container IP, keeps its key and records in the writable
/// `/data`, and pins the ids of `peers` ("<id>@ip:port").
fn container_config(name: &str, ip: Ipv4Addr, api: bool, peers: &[String]) -> String {
    let mut text = format!(
        "# generated by cargo xtask deploy --docker: {name} of a Docker test cluster,\n\
         # mounted read-only at {CONFIG_IN_CONTAINER}. configs/node.toml describes the keys.\n\
         hostkey = \"/data/hostkey.pem\"\n\
         \n\
         [dht]\n\
         p2p_address = \"0.0.0.0:{P2P_PORT}\"\n\
         advertise_address = \"{ip}:{P2P_PORT}\"\n"
    );
    if api {
        text += &format!("api_address = \"0.0.0.0:{API_PORT}\"\n");
    }
    text += &format!("metrics_address = \"0.0.0.0:{METRICS_PORT}\"\n");
    if !peers.is_empty() {
        let quoted: Vec<String> = peers.iter().map(|p| format!("\"{p}\"")).collect();
        text += &format!("bootstrap_peers = [{}]\n", quoted.join(", "));
    }
    text += "\n[storage]\ndata_dir = \"/data/db\"\n";
    text
}

/// The [`Watch`] of a deployment's containers: which run (one `docker ps` per round)
/// and what they logged (`docker logs`).
struct ContainerWatch {
    /// `org.voidphone.dht.deployment=<deployment>`.
    label: String,
    /// The names of the deployment's running containers, as of the last refresh.
    running: HashSet<String>,
}

impl Watch for ContainerWatch {
    fn refresh(&mut self, _cluster: &Cluster) -> anyhow::Result<()> {
        self.running = containers(&self.label, false)?;
        Ok(())
    }

    fn running(&self, _index: usize, member: &Member) -> bool {
        member.container().is_some_and(|c| self.running.contains(c))
    }

    fn log(&self, _index: usize, member: &Member) -> String {
        member.container().map(container_log).unwrap_or_default()
    }

    fn describe(&self, member: &Member) -> String {
        format!("container {}", member.container().unwrap_or("?"))
    }

    fn log_source(&self, member: &Member) -> String {
        format!("docker logs {}", member.container().unwrap_or("?"))
    }
}

/// The names of the containers that carry `label` (`key=value`): running ones, or all.
pub(crate) fn containers(label: &str, all: bool) -> anyhow::Result<HashSet<String>> {
    let filter = format!("label={label}");
    let mut args = vec!["ps", "--filter", &filter, "--format", "{{.Names}}"];
    if all {
        args.push("--all");
    }
    Ok(docker(&args)?.lines().map(str::to_string).collect())
}

/// The names of the networks that carry `label` (`key=value`).
pub(crate) fn networks(label: &str) -> anyhow::Result<HashSet<String>> {
    let filter = format!("label={label}");
    let names = docker(&[
        "network",
        "ls",
        "--filter",
        &filter,
        "--format",
        "{{.Name}}",
    ])?;
    Ok(names.lines().map(str::to_string).collect())
}

/// Stops a Docker cluster: its recorded containers that still carry the deployment's
/// label get SIGTERM (SIGKILL after 10 s), their logs are saved beside their
/// configuration as node.log, and they are removed; then the recorded network. Members
/// already gone are reported and skipped.
pub(crate) fn stop(layout: &Layout, cluster: &Cluster) -> anyhow::Result<()> {
    let setup = cluster
        .docker
        .as_ref()
        .context("the record names no Docker network")?;
    let label = format!("{DEPLOYMENT_LABEL}={}", setup.deployment);
    let present = containers(&label, true)?;
    let mut ours = Vec::new();
    for member in &cluster.nodes {
        let Some(container) = member.container() else {
            continue;
        };
        if present.contains(container) {
            ours.push((member, container));
        } else {
            println!("  {:<12} container {container} was gone", member.name);
        }
    }
    if !ours.is_empty() {
        let mut args = vec!["stop", "--time", STOP_GRACE_SECS];
        args.extend(ours.iter().map(|&(_, c)| c));
        // A container that vanished meanwhile fails this; `rm --force` below settles it.
        if let Err(e) = docker(&args) {
            eprintln!("  {e:#}");
        }
        for &(member, container) in &ours {
            save_log(layout, member, container);
        }
        let mut args = vec!["rm", "--force", "--volumes"];
        args.extend(ours.iter().map(|&(_, c)| c));
        docker(&args)?;
        for (member, container) in ours {
            println!(
                "  {:<12} container {container} stopped and removed",
                member.name
            );
        }
    }
    if networks(&label)?.contains(&setup.network) {
        docker(&["network", "rm", &setup.network])?;
        println!("  network {} removed", setup.network);
    } else {
        println!("  network {} was gone", setup.network);
    }
    Ok(())
}

/// Writes what a container logged to `node.log` beside its configuration; a failure is
/// reported and otherwise ignored (stopping matters more).
fn save_log(layout: &Layout, member: &Member, container: &str) {
    let file = member
        .config
        .parent()
        .unwrap_or(Path::new("."))
        .join("node.log");
    if let Err(e) = fs::write(&file, container_log(container)) {
        eprintln!(
            "  {}: cannot save its log to {}: {e}",
            member.name,
            layout.show(&file)
        );
    }
}

/// An IPv4 subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Subnet {
    base: u32,
    prefix: u8,
}

impl Subnet {
    /// Parses `a.b.c.d/n`; none for anything else (IPv6 among them).
    fn parse(text: &str) -> Option<Subnet> {
        let (ip, prefix) = text.trim().split_once('/')?;
        let ip: Ipv4Addr = ip.parse().ok()?;
        let prefix: u8 = prefix.parse().ok().filter(|&p| p <= 32)?;
        Some(Subnet::new(u32::from(ip), prefix))
    }

    fn new(base: u32, prefix: u8) -> Subnet {
        let subnet = Subnet { base, prefix };
        Subnet {
            base: base & subnet.mask(),
            prefix,
        }
    }

    fn mask(self) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0)
    }

    /// Whether the two share an address.
    fn overlaps(self, other: Subnet) -> bool {
        let mask = self.mask() & other.mask();
        self.base & mask == other.base & mask
    }

    /// The `n`-th address of the subnet.
    fn host(self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.base | (n & !self.mask()))
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

/// Creates the deployment's network on the first /24 of 172.28.0.0/14 (starting at a
/// random one) that overlaps no Docker network and no route of this machine.
fn create_network(name: &str, labels: &[String]) -> anyhow::Result<Subnet> {
    let used = used_subnets()?;
    let start = u32::from_str_radix(&docker::random_hex(4), 16).unwrap_or(0);
    let first = u32::from(Ipv4Addr::new(172, 28, 0, 0));
    let candidates = (0..1024u32)
        .map(|i| Subnet::new(first + (((start + i) % 1024) << 8), 24))
        .filter(|c| !used.iter().any(|u| u.overlaps(*c)));
    let mut last_error = None;
    // Another deployment may take a subnet between our look and our create: try again.
    for subnet in candidates.take(5) {
        let subnet_arg = subnet.to_string();
        let mut args = vec![
            "network",
            "create",
            "--driver",
            "bridge",
            "--subnet",
            &subnet_arg,
        ];
        for label in labels {
            args.extend(["--label", label]);
        }
        args.push(name);
        match docker(&args) {
            Ok(_) => return Ok(subnet),
            Err(e) if format!("{e}").contains("overlap") => last_error = Some(e),
            Err(e) => return Err(e.context(format!("creating the network {name}"))),
        }
    }
    match last_error {
        Some(e) => Err(e.context(format!("creating the network {name}: no free subnet"))),
        None => bail!("creating the network {name}: every /24 of 172.28.0.0/14 is in use"),
    }
}

/// The IPv4 subnets of Docker's networks and of this machine's routes.
fn used_subnets() -> anyhow::Result<Vec<Subnet>> {
    let ids = docker(&["network", "ls", "--quiet"])?;
    let mut args = vec![
        "network",
        "inspect",
        "--format",
        "{{range .IPAM.Config}}{{.Subnet}} {{end}}",
    ];
    args.extend(ids.lines().map(str::trim).filter(|id| !id.is_empty()));
    let mut used: Vec<Subnet> = docker(&args)?
        .split_whitespace()
        .filter_map(Subnet::parse)
        .collect();
    if let Ok(routes) = fs::read_to_string("/proc/net/route") {
        used.extend(route_subnets(&routes));
    }
    Ok(used)
}

/// The destinations of `/proc/net/route` (hexadecimal, in the machine's byte order),
/// without the default route.
fn route_subnets(routes: &str) -> Vec<Subnet> {
    routes
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // The kernel prints the address's bytes read as a native u32.
            let address = |field: &str| -> Option<Ipv4Addr> {
                let value = u32::from_str_radix(field, 16).ok()?;
                Some(Ipv4Addr::from(value.to_ne_bytes()))
            };
            let destination = address(fields.get(1)?)?;
            let mask = address(fields.get(7)?)?;
            let prefix = u32::from(mask).leading_ones() as u8;
            (prefix > 0).then(|| Subnet::new(u32::from(destination), prefix))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets() {
        let a = Subnet::parse("172.28.5.0/24").unwrap();
        assert_eq!(a.to_string(), "172.28.5.0/24");
        assert_eq!(a.host(2), Ipv4Addr::new(172, 28, 5, 2));
        assert_eq!(a.host(111), Ipv4Addr::new(172, 28, 5, 111));
        assert!(a.overlaps(Subnet::parse("172.16.0.0/12").unwrap()));
        assert!(a.overlaps(Subnet::parse("172.28.5.128/25").unwrap()));
        assert!(!a.overlaps(Subnet::parse("172.28.6.0/24").unwrap()));
        assert!(!a.overlaps(Subnet::parse("172.17.0.0/16").unwrap()));
        assert!(a.overlaps(Subnet::parse("0.0.0.0/0").unwrap()));
        assert_eq!(
            Subnet::parse("10.1.2.3/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(Subnet::parse("fd00::/64"), None);
        assert_eq!(Subnet::parse("10.0.0.0/33"), None);
        assert_eq!(Subnet::parse("10.0.0.0"), None);
    }

    #[test]
    fn routes_of_proc_net_route() {
        // The header, the default route, docker0 (172.17.0.0/16), eth0 (192.0.2.0/24).
        let routes = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n\
            eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
            docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n\
            eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        let subnets: Vec<String> = route_subnets(routes)
            .iter()
            .map(|s| s.to_string())
            .collect();
        if cfg!(target_endian = "little") {
            assert_eq!(subnets, ["172.17.0.0/16", "192.0.2.0/24"]);
        }
        assert_eq!(route_subnets("Iface\tDestination\n garbage\n"), []);
    }

    #[test]
    fn container_configuration() {
        let peers = [format!("{}@172.28.5.2:7402", "ab".repeat(32))];
        let text = container_config("node-1", Ipv4Addr::new(172, 28, 5, 11), true, &peers);
        let parsed: toml::Table = toml::from_str(&text).expect("valid TOML");
        assert_eq!(parsed["hostkey"].as_str(), Some("/data/hostkey.pem"));
        let dht = parsed["dht"].as_table().unwrap();
        assert_eq!(dht["p2p_address"].as_str(), Some("0.0.0.0:7402"));
        assert_eq!(dht["advertise_address"].as_str(), Some("172.28.5.11:7402"));
        assert_eq!(dht["api_address"].as_str(), Some("0.0.0.0:7401"));
        assert_eq!(dht["metrics_address"].as_str(), Some("0.0.0.0:9100"));
        assert_eq!(dht["bootstrap_peers"][0].as_str(), Some(peers[0].as_str()));
        assert_eq!(parsed["storage"]["data_dir"].as_str(), Some("/data/db"));

        let boot = container_config("bootstrap-1", Ipv4Addr::new(172, 28, 5, 2), false, &[]);
        let parsed: toml::Table = toml::from_str(&boot).expect("valid TOML");
        let dht = parsed["dht"].as_table().unwrap();
        assert!(!dht.contains_key("api_address") && !dht.contains_key("bootstrap_peers"));
        // Overrides land in their sections, as in local mode.
        let tuned = overrides::apply(&boot, &[overrides::Override::parse("dht.k=8").unwrap()]);
        let parsed: toml::Table = toml::from_str(&tuned).expect("valid TOML");
        assert_eq!(parsed["dht"]["k"].as_integer(), Some(8));
        assert_eq!(parsed["storage"]["data_dir"].as_str(), Some("/data/db"));
    }
}
