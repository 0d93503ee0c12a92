//! A small network on the simulated WAN (memory transport, simulated time), the setup
//! of the tests of silent and vanished peers: nodes joined through the first, and two
//! readers that know every one of them.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use dht_core::{Environment, Key, Node, SimNetwork, TokioClock};

use crate::{start_sim_node, test_config};

/// Every round trip of the network.
pub const RTT: Duration = Duration::from_millis(100);

/// Nodes on hosts `10.0.<subnet>.1..=n`, joined through the first, and two readers on
/// the next two hosts that have pinged each of them (so both hold all in their tables).
pub struct Wan {
    /// The simulated network (to silence hosts and heal).
    pub net: SimNetwork,
    /// The nodes, `nodes[i]` on [`Wan::host`]`(i)`.
    pub nodes: Vec<Node>,
    /// The reader whose GETs a test measures.
    pub reader: Node,
    /// Another reader, for the normal cost of a GET.
    pub other: Node,
    subnet: u8,
}

impl Wan {
    /// Starts `n` nodes and the two readers; `seed` seeds the network's randomness.
    pub async fn start(seed: u64, subnet: u8, n: u8) -> anyhow::Result<Wan> {
        let net = SimNetwork::new(seed, 1, 0.0, |_, _| RTT);
        net.authenticate_peers(1);
        let ip = |n: u8| IpAddr::V4(Ipv4Addr::new(10, 0, subnet, n));
        let env = |n: u8| {
            Environment::simulated(Arc::new(TokioClock::starting_at(1_800_000_000)), n.into())
        };
        let first = start_sim_node(&net, ip(1), test_config(&[]), env(1)).await?;
        let entry = first.listen_addr();
        let mut nodes = vec![first];
        for h in 2..=n {
            nodes.push(start_sim_node(&net, ip(h), test_config(&[entry]), env(h)).await?);
        }
        let reader = start_sim_node(&net, ip(n + 1), test_config(&[entry]), env(n + 1)).await?;
        let other = start_sim_node(&net, ip(n + 2), test_config(&[entry]), env(n + 2)).await?;
        for node in &nodes {
            reader.ping(node.contact()).await?;
            other.ping(node.contact()).await?;
        }
        Ok(Wan {
            net,
            nodes,
            reader,
            other,
            subnet,
        })
    }

    /// The host of `nodes[i]`.
    pub fn host(&self, i: usize) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(
            10,
            0,
            self.subnet,
            u8::try_from(i + 1).unwrap_or(0),
        ))
    }

    /// The first of the keys `sha256(0u32)`, `sha256(1u32)`, ... that the readers (and
    /// `also`) are far from: at least six nodes are closer to it than each of them.
    pub fn key_far_from_readers(&self, also: &[&Node]) -> Key {
        (0u32..)
            .map(|i| Key::sha256(&i.to_be_bytes()))
            .find(|key| {
                [&self.reader, &self.other]
                    .into_iter()
                    .chain(also.iter().copied())
                    .all(|r| {
                        let theirs = r.id().distance(key);
                        let closer = self.nodes.iter().filter(|n| n.id().distance(key) < theirs);
                        closer.count() >= 6
                    })
            })
            .expect("some key")
    }

    /// The indices of the nodes holding `key`, closest first.
    pub fn holders(&self, key: &Key) -> Vec<usize> {
        let mut holders: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].holds(key))
            .collect();
        holders.sort_by_key(|&i| self.nodes[i].id().distance(key));
        holders
    }

    /// Shuts every node down but those of `gone` (already shut down).
    pub async fn shutdown(self, gone: &[usize]) {
        self.reader.shutdown().await;
        self.other.shutdown().await;
        for (i, node) in self.nodes.into_iter().enumerate() {
            if !gone.contains(&i) {
                node.shutdown().await;
            }
        }
    }
}
