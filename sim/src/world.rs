//! The simulated world: the network, the clock, and every node ever started on it, with
//! what happens to nodes (they join, leave, vanish, hang, are cut off).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use dht_core::{
    BootstrapPeer, Clock, Environment, Key, MemoryStore, Node, NodeConfig, Responder, SimNetwork,
    TokioClock, WanModel,
};
use futures::future::join_all;
use rand::Rng;
use rand::rngs::StdRng;

use crate::Options;

/// UNIX time at the start of every simulated run.
const EPOCH: u64 = 1_800_000_000;
/// Nodes started at once while the network forms.
const START_BATCH: usize = 100;
/// Nodes near a key whose stores count as its replicas (the routing table's k).
pub(crate) const NEAREST: usize = 20;

/// What became of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fate {
    /// It runs and answers.
    Live,
    /// It runs but answers nothing (a hung process).
    Silent,
    /// It left: shut down, or vanished without a word.
    Gone,
    /// An attacker's node (the `eclipse` scenario): it runs, and lies.
    Hostile,
}

/// An attacker's node: its identity (host key seed, nonce) and its lies.
#[derive(Clone)]
pub(crate) struct Attacker {
    pub(crate) key_seed: [u8; 32],
    pub(crate) nonce: u64,
    pub(crate) responder: Arc<Responder>,
}

/// A node of the world.
pub(crate) struct Member {
    pub(crate) node: Arc<Node>,
    pub(crate) ip: IpAddr,
    pub(crate) fate: Fate,
}

/// The network and its nodes.
pub(crate) struct World {
    pub(crate) net: SimNetwork,
    starter: Starter,
    /// Every node started, in the order it finished starting.
    pub(crate) members: Vec<Member>,
    /// The next host's number.
    next_host: usize,
    pub(crate) rng: StdRng,
}

/// What starting a node takes (cheap to clone, for starts in the background).
#[derive(Clone)]
pub(crate) struct Starter {
    net: SimNetwork,
    clock: Arc<dyn Clock>,
    options: Options,
}

/// The address of host `i`: 10.0.0.1 and up.
fn host(i: usize) -> IpAddr {
    let i = u32::try_from(i).unwrap_or(u32::MAX - 1);
    IpAddr::V4(Ipv4Addr::from(0x0a00_0001_u32.saturating_add(i)))
}

impl Starter {
    /// Starts the node of host `i`, joining through `bootstrap`.
    async fn start(
        self,
        i: usize,
        bootstrap: Option<SocketAddr>,
        attacker: Option<Attacker>,
    ) -> anyhow::Result<Member> {
        let ip = host(i);
        let config = NodeConfig {
            p2p_address: SocketAddr::new(ip, 0),
            bootstrap_peers: bootstrap
                .map(|addr| BootstrapPeer {
                    id: None,
                    address: addr.to_string(),
                })
                .into_iter()
                .collect(),
            pow_difficulty: self.options.pow,
            min_pow_difficulty: self.options.pow,
            ..NodeConfig::default()
        };
        let store = Box::new(MemoryStore::new(config.store_limits.clone()));
        // A seed per node, drawn from the run's: its key, its id, its upkeep jitter.
        let seed = self
            .options
            .seed
            .wrapping_mul(1_000_003)
            .wrapping_add(i as u64);
        let mut env = Environment::simulated(self.clock.clone(), seed);
        let mut fate = Fate::Live;
        if let Some(attacker) = attacker {
            env = env
                .with_identity(attacker.key_seed, attacker.nonce)
                .with_responder(attacker.responder);
            fate = Fate::Hostile;
        }
        let transport = Arc::new(self.net.transport(ip));
        let node = Node::start_in(config, transport, store, env).await?;
        Ok(Member {
            node: Arc::new(node),
            ip,
            fate,
        })
    }
}

impl World {
    /// A network of `options.nodes` nodes, formed the way a real one is: each node
    /// joins through one that started before it, in batches.
    pub(crate) async fn form(options: &Options, rng: StdRng) -> anyhow::Result<World> {
        anyhow::ensure!(options.nodes >= 2, "a network needs at least 2 nodes");
        let wan = WanModel::new(options.seed);
        let net = SimNetwork::new(
            options.seed,
            options.connect_rtts,
            options.loss,
            move |a, b| wan.rtt(a, b),
        );
        if !options.real_tls {
            net.authenticate_peers(options.tls_rtts);
            if options.resume {
                net.resume_sessions();
            }
        }
        let mut world = World {
            starter: Starter {
                net: net.clone(),
                clock: Arc::new(TokioClock::starting_at(EPOCH)),
                options: options.clone(),
            },
            net,
            members: Vec::with_capacity(options.nodes),
            next_host: 1,
            rng,
        };
        let first = world.starter.clone().start(0, None, None).await?;
        world.members.push(first);
        while world.members.len() < options.nodes {
            let batch = (options.nodes - world.members.len()).min(START_BATCH);
            let starts: Vec<_> = (0..batch).map(|_| world.starting()).collect();
            for member in join_all(starts).await {
                world.members.push(member?);
            }
        }
        Ok(world)
    }

    /// The start of a new node on a new host, joining through a random live node, to
    /// be awaited (or spawned) by the caller.
    pub(crate) fn starting(
        &mut self,
    ) -> impl std::future::Future<Output = anyhow::Result<Member>> + Send + use<> {
        self.starting_as(None)
    }

    /// [`World::starting`], of an attacker's node when `attacker` is given.
    pub(crate) fn starting_as(
        &mut self,
        attacker: Option<Attacker>,
    ) -> impl std::future::Future<Output = anyhow::Result<Member>> + Send + use<> {
        let entry = self.entry();
        let host = self.next_host;
        self.next_host += 1;
        self.starter.clone().start(host, Some(entry), attacker)
    }

    /// The address of a random live node, to join through.
    fn entry(&mut self) -> SocketAddr {
        let i = self.pick(|m| m.fate == Fate::Live);
        self.members[i].node.listen_addr()
    }

    /// A random member that `wanted` accepts (there must be one).
    pub(crate) fn pick(&mut self, wanted: impl Fn(&Member) -> bool) -> usize {
        let candidates: Vec<usize> = (0..self.members.len())
            .filter(|&i| wanted(&self.members[i]))
            .collect();
        candidates[self.rng.gen_range(0..candidates.len())]
    }

    /// The simulated wall clock, UNIX microseconds.
    pub(crate) fn now_micros(&self) -> u64 {
        self.starter.clock.unix_micros()
    }

    /// Indices of the members that run and answer.
    pub(crate) fn live(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.members.len()).filter(|&i| self.members[i].fate == Fate::Live)
    }

    /// Member `i` leaves: it shuts down (its peers see its connections close), or,
    /// when `vanish`, its host drops off the network without a word first (its peers'
    /// requests time out and its address stops answering dials). The shutdown runs in
    /// the background.
    pub(crate) fn depart(&mut self, i: usize, vanish: bool) {
        let member = &mut self.members[i];
        if vanish {
            self.net.silence([member.ip]);
        }
        member.fate = Fate::Gone;
        let node = member.node.clone();
        tokio::spawn(async move { node.shutdown().await });
    }

    /// Members `hung` stop answering without closing anything.
    pub(crate) fn hang(&mut self, hung: &[usize]) {
        self.net.silence(hung.iter().map(|&i| self.members[i].ip));
        for &i in hung {
            self.members[i].fate = Fate::Silent;
        }
    }

    /// Live members holding `key`, among the [`NEAREST`] live members to it.
    pub(crate) fn replicas(&self, key: &Key) -> usize {
        let mut near: Vec<_> = self
            .live()
            .map(|i| (self.members[i].node.id().distance(key), i))
            .collect();
        let n = NEAREST.min(near.len());
        if n == 0 {
            return 0;
        }
        near.select_nth_unstable(n - 1);
        near[..n]
            .iter()
            .filter(|(_, i)| self.members[*i].node.holds(key))
            .count()
    }

    /// Attacker's nodes among the [`NEAREST`] running nodes to `key`.
    pub(crate) fn hostile_near(&self, key: &Key) -> usize {
        let mut near: Vec<_> = (0..self.members.len())
            .filter(|&i| matches!(self.members[i].fate, Fate::Live | Fate::Hostile))
            .map(|i| (self.members[i].node.id().distance(key), i))
            .collect();
        near.sort();
        near.iter()
            .take(NEAREST)
            .filter(|(_, i)| self.members[*i].fate == Fate::Hostile)
            .count()
    }

    /// Shuts every running node down.
    pub(crate) async fn shutdown(&self) {
        for member in &self.members {
            if member.fate != Fate::Gone {
                member.node.shutdown().await;
            }
        }
    }
}
