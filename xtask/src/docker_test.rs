//! `cargo xtask docker-test`: the images and `deploy --docker` checked end to end on the
//! local Docker engine. It deploys 5 nodes in containers (in `target/docker-test/`, so a
//! deployment of `cargo xtask deploy` is left alone), PUTs through node-1, GETs through
//! node-3, stops node-2's container and still GETs through node-4, starts it again and
//! GETs through it; cuts the deployment in two (node-1 and node-2 against the others,
//! iptables DROP rules in the DOCKER-USER chain), PUTs a key through each half, checks
//! that each half reads its own key and not the other's, keeps the halves apart until
//! each has forgotten the other (no contact of the other half left in any routing
//! table; the deployment's upkeep runs in seconds for this), heals and checks that both
//! halves read both keys; checks every member's `/metrics`, then stops the deployment
//! and checks that nothing labelled with it remains. It cleans up on failure too (the
//! partition's rules included).
//!
//! It is not part of `cargo test --workspace`, which must pass on machines without
//! Docker; `.ci/run` runs it, and without an engine it fails with a one-line reason.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

use crate::api_probe;
use crate::cluster::{Cluster, Member};
use crate::deploy::{self, Options};
use crate::docker::{self, DEPLOYMENT_LABEL, docker};
use crate::docker_deploy;
use crate::http;
use crate::layout::Layout;
use crate::overrides::Override;
use crate::partition::{self, Partition};
use crate::startup::{self, API_TIMEOUT};

/// Usage of the `docker-test` command.
pub(crate) const USAGE: &str = "  docker-test
      Build the images, deploy 5 nodes with --docker (files in target/docker-test/), PUT
      through node-1, GET through node-3, stop node-2's container and GET through
      node-4, start it again and GET through it, partition the deployment in two until
      each half has forgotten the other, and heal it (keys PUT on each side found from
      both after the heal), check every
      member's /metrics, then stop the deployment and check that nothing of it remains.
      Needs a Docker engine, and root for the partition's iptables rules.";

/// How long a value may take to be readable through a node.
const GET_DEADLINE: Duration = Duration::from_secs(30);
/// How long a key PUT on one side of a partition may take, after the heal, to be found
/// from the other.
const HEAL_DEADLINE: Duration = Duration::from_secs(120);
/// How long the halves of a partition may take to forget each other (every contact of
/// the other half gone from every routing table).
const FORGET_DEADLINE: Duration = Duration::from_secs(120);
/// Upkeep in seconds rather than minutes, so that the partition can last until each
/// half has forgotten the other (with the defaults that takes a quarter of an hour).
const UPKEEP: [&str; 4] = [
    "dht.neighbour_liveness_secs=2",
    "dht.liveness_interval_secs=5",
    "dht.ping_failures=2",
    "dht.rpc_timeout_ms=1000",
];
/// How long a restarted container may take to answer a GET with the value.
const RESTART_DEADLINE: Duration = Duration::from_secs(60);
/// The value the test stores.
const VALUE: &[u8] = b"docker-test value";

/// `cargo xtask docker-test`.
pub(crate) fn command() -> anyhow::Result<()> {
    docker::check_engine("docker-test")?;
    let layout = Layout::with_deploy_dir("docker-test")?;
    let mut steps = Steps::default();
    if layout.cluster_json().exists() {
        steps.run("stop the deployment an earlier run left", || {
            deploy::stop_recorded(&layout)
        })?;
    }
    steps.run("build the images", || docker::build_images(&layout))?;
    let options = Options {
        nodes: 5,
        release: false,
        docker: true,
        overrides: UPKEEP
            .iter()
            .map(|set| Override::parse(set))
            .collect::<anyhow::Result<_>>()?,
    };
    // A failed deploy has stopped what it started.
    let cluster = steps.run("deploy 5 nodes in containers", || {
        docker_deploy::deploy(&layout, &options)
    })?;
    let checked = scenario(&cluster, &mut steps);
    if checked.is_err() {
        eprintln!("docker-test failed: stopping the deployment");
    }
    let stopped = steps.run("deploy stop", || deploy::stop_recorded(&layout));
    let clean = steps.run("check that nothing of the deployment remains", || {
        nothing_left(&cluster)
    });
    steps.print();
    checked?;
    stopped?;
    clean?;
    println!("docker-test passed in {:.1} s", steps.total().as_secs_f64());
    Ok(())
}

/// The checks between deploying and stopping.
fn scenario(cluster: &Cluster, steps: &mut Steps) -> anyhow::Result<()> {
    let key = startup::random_key(3);
    let node = |name: &str| -> anyhow::Result<(&Member, SocketAddr)> {
        let member = cluster
            .nodes
            .iter()
            .find(|m| m.name == name)
            .with_context(|| format!("the deployment has no {name}"))?;
        let api = member
            .api_address
            .with_context(|| format!("{name} has no API"))?;
        Ok((member, api))
    };
    let (_, api1) = node("node-1")?;
    let (node2, api2) = node("node-2")?;
    let (_, api3) = node("node-3")?;
    let (_, api4) = node("node-4")?;
    let container2 = node2.container().context("node-2 is not a container")?;

    steps.run("PUT through node-1", || {
        api_probe::put(api1, &key, VALUE, 3600, 3, API_TIMEOUT)
    })?;
    steps.run("GET through node-3 finds it", || {
        read(api3, &key, GET_DEADLINE)
    })?;
    steps.run("docker stop node-2", || {
        docker(&["stop", "--time", "10", container2]).map(drop)
    })?;
    steps.run("GET through node-4 still finds it", || {
        read(api4, &key, GET_DEADLINE)
    })?;
    steps.run("docker start node-2", || {
        docker(&["start", container2]).map(drop)
    })?;
    steps.run("GET through the restarted node-2 finds it", || {
        read(api2, &key, RESTART_DEADLINE)
    })?;
    partition_and_heal(cluster, steps)?;
    steps.run("every member serves /metrics", || {
        for member in &cluster.nodes {
            let address = member
                .metrics_address
                .with_context(|| format!("{} has no metrics address", member.name))?;
            check_metrics(address).with_context(|| format!("{}'s metrics", member.name))?;
        }
        Ok(())
    })
}

/// A member of a half of the partition: its container's IP, its API and its metrics.
type HalfMember = (IpAddr, Option<SocketAddr>, SocketAddr);

/// Cuts the deployment in two halves (node-1 and node-2; the other members) with
/// iptables DROP rules between their containers, PUTs a key through each half, checks
/// that each half reads its own key and not the other's, waits until each half has
/// forgotten the other (every contact of the other half gone from every routing table),
/// heals, and checks that both keys are found from both halves.
fn partition_and_heal(cluster: &Cluster, steps: &mut Steps) -> anyhow::Result<()> {
    let mut west = Vec::new();
    let mut east = Vec::new();
    for member in &cluster.nodes {
        let container = member
            .container()
            .with_context(|| format!("{} is not a container", member.name))?;
        let ip = partition::container_ip(container)?;
        let api = member.api_address;
        let metrics = member
            .metrics_address
            .with_context(|| format!("{} has no metrics address", member.name))?;
        if member.name == "node-1" || member.name == "node-2" {
            west.push((ip, api, metrics));
        } else {
            east.push((ip, api, metrics));
        }
    }
    let api_of = |half: &[HalfMember]| -> anyhow::Result<SocketAddr> {
        half.iter()
            .find_map(|(_, api, _)| *api)
            .context("a half of the partition has no node with an API")
    };
    let (west_api, east_api) = (api_of(&west)?, api_of(&east)?);
    let ips = |half: &[HalfMember]| half.iter().map(|(ip, _, _)| *ip).collect::<Vec<_>>();
    let split = steps.run(
        "partition: node-1 and node-2 cut off from the others",
        || Partition::split(&ips(&west), &ips(&east)),
    )?;
    let (west_key, east_key) = (startup::random_key(5), startup::random_key(6));
    steps.run(
        "during the split, a PUT through each half reads back on its side",
        || {
            api_probe::put(west_api, &west_key, VALUE, 3600, 3, API_TIMEOUT)?;
            api_probe::put(east_api, &east_key, VALUE, 3600, 3, API_TIMEOUT)?;
            read(west_api, &west_key, GET_DEADLINE)?;
            read(east_api, &east_key, GET_DEADLINE)
        },
    )?;
    steps.run(
        "during the split, neither half finds the other's key",
        || {
            for (api, key) in [(west_api, &east_key), (east_api, &west_key)] {
                let answer = api_probe::get(api, key, API_TIMEOUT)?;
                ensure!(
                    matches!(answer, api_probe::Answer::Failure { .. }),
                    "{api} found a key of the other half"
                );
            }
            Ok(())
        },
    )?;
    steps.run(
        "the partition lasts until each half has forgotten the other",
        || {
            let deadline = Instant::now() + FORGET_DEADLINE;
            for (half, own) in [(&west, west.len()), (&east, east.len())] {
                for (_, _, metrics) in half.iter() {
                    wait_for_contacts(*metrics, own - 1, deadline)?;
                }
            }
            Ok(())
        },
    )?;
    steps.run("heal the partition", || split.heal())?;
    steps.run(
        "after the heal, both keys are found from both halves",
        || {
            for api in [west_api, east_api] {
                read(api, &west_key, HEAL_DEADLINE)?;
                read(api, &east_key, HEAL_DEADLINE)?;
            }
            Ok(())
        },
    )
}

/// Polls the metrics at `address` until its routing table holds exactly `contacts`.
fn wait_for_contacts(
    address: SocketAddr,
    contacts: usize,
    deadline: Instant,
) -> anyhow::Result<()> {
    let mut last = None;
    loop {
        let answer = http::get(address, "/metrics", API_TIMEOUT);
        last = answer
            .ok()
            .and_then(|a| {
                a.body.lines().find_map(|line| {
                    let value = line.strip_prefix("dht_routing_table_contacts ")?;
                    value.trim().parse::<f64>().ok()
                })
            })
            .or(last);
        if last == Some(contacts as f64) {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "{address}: the routing table holds {last:?} contacts, not {contacts}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// GETs `key` through `api` until the answer is [`VALUE`].
fn read(api: SocketAddr, key: &api_probe::Key, within: Duration) -> anyhow::Result<()> {
    startup::poll_value(api, key, VALUE, Instant::now() + within)
        .map_err(|last| anyhow::anyhow!("not found through {api} within {within:?}: {last}"))
}

/// Fetches `http://<address>/metrics` and checks that it is Prometheus text.
fn check_metrics(address: SocketAddr) -> anyhow::Result<()> {
    let answer = http::get(address, "/metrics", API_TIMEOUT)?;
    ensure!(
        answer.status == 200,
        "GET /metrics at {address} answered {}",
        answer.status
    );
    if !answer.body.contains("# TYPE ") {
        bail!("GET /metrics at {address} answered no metrics");
    }
    Ok(())
}

/// Fails unless the engine has no container and no network of the deployment left.
fn nothing_left(cluster: &Cluster) -> anyhow::Result<()> {
    let setup = cluster.docker.as_ref().context("not a Docker cluster")?;
    let label = format!("{DEPLOYMENT_LABEL}={}", setup.deployment);
    let mut left: Vec<String> = docker_deploy::containers(&label, true)?
        .into_iter()
        .map(|c| format!("container {c}"))
        .collect();
    left.extend(
        docker_deploy::networks(&label)?
            .into_iter()
            .map(|n| format!("network {n}")),
    );
    left.sort();
    ensure!(
        left.is_empty(),
        "still there after deploy stop: {}",
        left.join(", ")
    );
    Ok(())
}

/// The steps of the test with their times, printed as they finish and at the end.
#[derive(Default)]
struct Steps {
    done: Vec<(String, Duration, bool)>,
}

impl Steps {
    /// Runs one step, printing its name before and its outcome and time after.
    fn run<T>(
        &mut self,
        name: &str,
        step: impl FnOnce() -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        println!("--- {name}");
        let started = Instant::now();
        let result = step();
        let took = started.elapsed();
        let outcome = if result.is_ok() { "ok" } else { "FAILED" };
        println!("--- {name}: {outcome} in {:.2} s", took.as_secs_f64());
        self.done.push((name.to_string(), took, result.is_ok()));
        result
    }

    fn total(&self) -> Duration {
        self.done.iter().map(|(_, took, _)| *took).sum()
    }

    /// The table of steps and times.
    fn print(&self) {
        println!();
        for (name, took, ok) in &self.done {
            let outcome = if *ok { "ok" } else { "FAILED" };
            println!("  {:>7.2} s  {outcome:<6}  {name}", took.as_secs_f64());
        }
        println!("  {:>7.2} s  total", self.total().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    #[test]
    fn steps_record_outcomes_and_times() {
        let mut steps = Steps::default();
        assert_eq!(steps.run("one", || Ok(1)).unwrap(), 1);
        let failed: anyhow::Result<()> = steps.run("two", || bail!("no"));
        assert_eq!(failed.unwrap_err().to_string(), "no");
        let outcomes: Vec<(&str, bool)> = steps
            .done
            .iter()
            .map(|(name, _, ok)| (name.as_str(), *ok))
            .collect();
        assert_eq!(outcomes, [("one", true), ("two", false)]);
        assert!(steps.total() >= steps.done[0].1);
    }

    #[test]
    fn metrics_check_against_a_fake_server() {
        let serve = |answer: &'static str| {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let address = listener.local_addr().unwrap();
            let server = std::thread::spawn(move || {
                let (mut conn, _) = listener.accept().unwrap();
                let mut request = Vec::new();
                let mut byte = [0u8; 1];
                while !request.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap() == 1 {
                    request.push(byte[0]);
                }
                conn.write_all(answer.as_bytes()).unwrap();
                String::from_utf8_lossy(&request).into_owned()
            });
            (address, server)
        };
        let (address, server) =
            serve("HTTP/1.1 200 OK\r\n\r\n# TYPE dht_peers gauge\ndht_peers 3\n# EOF\n");
        check_metrics(address).unwrap();
        assert!(
            server
                .join()
                .unwrap()
                .starts_with("GET /metrics HTTP/1.1\r\n")
        );
        let (address, server) = serve("HTTP/1.1 404 Not Found\r\n\r\n");
        assert!(
            check_metrics(address)
                .unwrap_err()
                .to_string()
                .contains("404")
        );
        server.join().unwrap();
        let (address, server) = serve("HTTP/1.1 200 OK\r\n\r\nnothing\n");
        assert!(check_metrics(address).is_err());
        server.join().unwrap();
    }

    /// The files under docker/ that no build reads: the Compose network and its
    /// configurations must agree with each other and with what the images expect.
    #[test]
    fn compose_files_agree() {
        let docker = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker");
        let compose = std::fs::read_to_string(docker.join("compose.yaml")).unwrap();
        assert!(compose.contains("- subnet: 172.31.74.0/24"));
        let mut members = 0;
        for entry in std::fs::read_dir(docker.join("compose")).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            let config: toml::Table = toml::from_str(&text).expect("valid TOML");
            assert_eq!(
                config["hostkey"].as_str(),
                Some("/data/hostkey.pem"),
                "{name}"
            );
            assert_eq!(config["storage"]["data_dir"].as_str(), Some("/data/db"));
            let dht = config["dht"].as_table().unwrap();
            assert_eq!(dht["p2p_address"].as_str(), Some("0.0.0.0:7402"), "{name}");
            assert_eq!(dht["metrics_address"].as_str(), Some("0.0.0.0:9100"));
            let advertised = dht["advertise_address"].as_str().unwrap();
            let ip = advertised.strip_suffix(":7402").unwrap();
            assert!(ip.starts_with("172.31.74."), "{name}: {ip}");
            // The service of the same name has that address and mounts this file.
            let service = compose
                .split_once(&format!("\n  {name}:\n"))
                .unwrap_or_else(|| panic!("no service {name}"))
                .1;
            // Up to the next line indented less than a service's keys.
            let service: String = service
                .lines()
                .take_while(|l| l.starts_with("    "))
                .map(|l| format!("{}\n", l.trim()))
                .collect();
            assert!(service.contains(&format!("ipv4_address: {ip}\n")), "{name}");
            assert!(service.contains(&format!("./compose/{name}.toml:/config/node.toml:ro")));
            let peers = dht.get("bootstrap_peers").and_then(|p| p.as_array());
            let is_node = name.starts_with("node-");
            assert_eq!(dht.contains_key("api_address"), is_node, "{name}");
            if is_node {
                assert!(service.contains("image: voidphone-dht-node:latest"));
                let peers: Vec<&str> = peers.unwrap().iter().filter_map(|p| p.as_str()).collect();
                assert_eq!(peers, ["172.31.74.2:7402", "172.31.74.3:7402"], "{name}");
            } else {
                assert!(service.contains("image: voidphone-dht-bootstrap:latest"));
            }
            members += 1;
        }
        assert_eq!(members, 7, "2 bootstrap nodes and 5 nodes");
    }

    #[test]
    fn dockerfiles_are_scratch_images_of_an_unprivileged_user() {
        let docker = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker");
        for image in [docker::NODE_IMAGE, docker::BOOTSTRAP_IMAGE] {
            let file = docker.join(format!("{}.Dockerfile", image.binary));
            let text = std::fs::read_to_string(&file).unwrap();
            let lines: Vec<&str> = text
                .lines()
                .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
                .collect();
            assert_eq!(lines[0], "FROM scratch", "{}", file.display());
            assert!(lines.contains(&"USER 10001:10001"));
            assert!(lines.contains(&"COPY --chown=10001:10001 data/ /data/"));
            assert!(lines.contains(&format!("COPY {0} /{0}", image.binary).as_str()));
            assert!(lines.contains(&format!("ENTRYPOINT [\"/{}\"]", image.binary).as_str()));
        }
    }
}
