//! The node's settings, with the defaults the configuration reference documents.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use dht_id::NodeId;
use dht_storage::StoreLimits;

use crate::Error;

/// A bootstrap peer: an address, and optionally the node id expected there
/// (`"<64 hex digits>@host:port"`), which authenticating transports check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapPeer {
    /// The node id expected at the address, when given.
    pub id: Option<NodeId>,
    /// `host:port`; host names are resolved when the node joins.
    pub address: String,
}

impl std::str::FromStr for BootstrapPeer {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (id, address) = match s.split_once('@') {
            Some((id, address)) => {
                let id = id
                    .parse::<NodeId>()
                    .map_err(|e| format!("bad node id before '@' in {s:?}: {e}"))?;
                (Some(id), address)
            }
            None => (None, s),
        };
        match address.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0) => {
                Ok(BootstrapPeer {
                    id,
                    address: address.to_string(),
                })
            }
            _ => Err(format!(
                "{s:?} is not \"host:port\" or \"<node id>@host:port\""
            )),
        }
    }
}

impl std::fmt::Display for BootstrapPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.id {
            Some(id) => write!(f, "{id}@{}", self.address),
            None => f.write_str(&self.address),
        }
    }
}

/// Where a node keeps its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageBackend {
    /// In memory: lost when the node stops.
    Memory,
    /// In an encrypted database in `data_dir` (one per node), surviving restarts.
    Durable {
        /// The node's own data folder.
        data_dir: PathBuf,
        /// The storage key; `None`: derived from the host key.
        key: Option<[u8; 32]>,
        /// When commits reach the disk.
        sync: DiskSync,
    },
}

impl StorageBackend {
    /// How long commits may wait for the disk: `None` when each waits for it (or
    /// nothing goes to disk).
    pub fn sync_interval(&self) -> Option<Duration> {
        match self {
            StorageBackend::Durable {
                sync: DiskSync::Within(interval),
                ..
            } => Some(*interval),
            _ => None,
        }
    }
}

/// When a durable store's commits reach the disk. Either way a STORE is acknowledged,
/// and a PUT done here, only once committed, and survives the node's process being
/// killed (`kill -9`): the difference is what a power loss or an OS crash can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskSync {
    /// At every commit (one `fsync` each, 0.4 ms on our test machines, and several
    /// nodes on one disk queue behind each other): a power loss takes nothing that was
    /// acknowledged.
    EveryCommit,
    /// Within this long of a commit, which itself waits for the OS only: a power loss
    /// may take the commits of that last interval from this node (its replicas on other
    /// nodes keep them, and periodic replication brings them back). What replicated
    /// stores usually do (Cassandra's periodic commit log, Redis's `everysec`).
    Within(Duration),
}

/// How long a durable store's commits may wait for the disk by default.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(1);

impl Default for DiskSync {
    fn default() -> Self {
        DiskSync::Within(DEFAULT_SYNC_INTERVAL)
    }
}

/// Everything a [`Node`](crate::Node) needs to know. `Default` gives the documented
/// defaults; see README.md for the matching configuration keys.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The long-term identity key, PKCS#8 PEM (`hostkey`): Ed25519, ECDSA P-256 or RSA
    /// 2048..=4096 bits. Created (Ed25519, owner-only) when missing; its proof of work
    /// is saved beside it as `<hostkey>.pow`. `None`: a fresh key for every start.
    pub hostkey: Option<PathBuf>,
    /// Leading zero bits this node's id must have (`pow_difficulty`, 16): choosing
    /// an id in a given region costs 2^(prefix + difficulty) hashes.
    pub pow_difficulty: u32,
    /// The least difficulty accepted from other nodes (`min_pow_difficulty`, 16).
    pub min_pow_difficulty: u32,
    /// Where peers connect (`p2p_address`).
    pub p2p_address: SocketAddr,
    /// The address announced to peers (`advertise_address`). Default: the listening
    /// address when its IP is specific, else the IP each peer sees plus our port.
    pub advertise_address: Option<SocketAddr>,
    /// Entry nodes contacted at start-up (`bootstrap_peers`).
    pub bootstrap_peers: Vec<BootstrapPeer>,
    /// Nodes with a different network id refuse each other (`network_id`).
    pub network_id: u32,
    /// Bucket size and number of replicas a lookup returns: the paper's k (`k`, 20).
    pub k: usize,
    /// Lookup parallelism: the paper's α (`alpha`, 3).
    pub alpha: usize,
    /// The farthest buckets hold more contacts (`wide_buckets`, 3): bucket `i` below it
    /// holds k·2^(wide_buckets − i), so the far half of the id space holds 8k, the next
    /// quarter 4k, the next eighth 2k (about 300 contacts more with k = 20). A lookup's
    /// first request then lands 3 bits closer to its target: in the simulated 10,000-node
    /// WAN a GET takes about one round trip less (docs/SIMULATION.md). Only the k most
    /// recently seen contacts of a bucket keep a warm connection (`idle_timeout`); the
    /// others cost a table entry. 0 is the paper's table; at most 6.
    pub wide_buckets: usize,
    /// Time allowed for one request to a peer (`rpc_timeout_ms`, 2000 ms).
    pub rpc_timeout: Duration,
    /// After this, a lookup stops waiting for a slow peer and asks another
    /// (`lookup_peer_timeout_ms`, 1000 ms); a late answer still counts. The most a
    /// lookup waits: a GET waits what answers usually take when that is less, and every
    /// lookup waits only briefly for a peer found quiet lately (answer_times.rs).
    pub lookup_peer_timeout: Duration,
    /// Overall deadline of one lookup (`lookup_deadline_ms`, 10000 ms).
    pub lookup_deadline: Duration,
    /// Time to open a connection and exchange HELLOs (`connect_timeout_ms`, 3000 ms).
    pub connect_timeout: Duration,
    /// A contact not heard from for this long is pinged in the background; and one heard
    /// from within it is taken as alive without a ping when a newcomer competes for its
    /// full bucket (`liveness_interval_secs`, 900 s, mainline's 15 minutes). Lookups
    /// report the contacts that fail them, so a dead contact in use goes sooner. A ping
    /// to a contact that does not hold us in its table costs a new TLS connection (the
    /// peer closed it after `transient_idle`): at 500 nodes about half the contacts, so
    /// this interval sets a node's idle CPU (60 s cost 0.63 ms/s per node, docs/BENCHMARKS.md).
    pub liveness_interval: Duration,
    /// The 8 contacts closest to this node, which hold the same records, are pinged
    /// after this long without a word (`neighbour_liveness_secs`, 60 s): a replica that
    /// left is removed within about a minute and its records handed to the node that
    /// takes its place among their closest, without waiting for replication. A
    /// neighbour that pings us counts as heard from, so two neighbours share the cost.
    pub neighbour_liveness: Duration,
    /// A contact that fails this many pings in a row is removed from the routing table,
    /// and the newest contact of its bucket's replacement cache takes its place
    /// (`ping_failures`, 3).
    pub ping_failures: u32,
    /// A bucket without a lookup in its range for this long is refreshed with a lookup
    /// of a random id in it, with up to 25 % jitter (`refresh_interval_secs`, 3600 s).
    pub refresh_interval: Duration,
    /// Every record held is stored again on the `r` closest live nodes to its key this
    /// often, with up to 25 % jitter (`replicate_interval_secs`, 3600 s).
    pub replicate_interval: Duration,
    /// Lower bound of a PUT's TTL (`min_ttl_secs`, 60 s): shorter TTLs are raised.
    pub min_ttl: Duration,
    /// Upper bound of a PUT's TTL (`max_ttl_secs`, 86400 s): longer TTLs are lowered.
    pub max_ttl: Duration,
    /// Lower bound of a PUT's replication (`min_replication`, 3); the upper bound is k.
    pub min_replication: u8,
    /// Bounds of the local record store (`max_records`, `max_bytes`).
    pub store_limits: StoreLimits,
    /// Where records are kept (`[storage]`): in memory (the default of the library), or
    /// durably on disk, encrypted (what `dht-node` uses).
    pub storage: StorageBackend,
    /// Peer connections open at once (`max_connections`, 1024); further inbound
    /// connections are refused.
    pub max_connections: usize,
    /// Requests to one peer waiting for their answers (`max_pending_requests`, 256).
    pub max_pending_requests: usize,
    /// A connection to a routing-table contact (one of the k most recently seen of its
    /// bucket) without traffic for this long is closed
    /// (`idle_timeout_secs`, 1200 s); the next request opens a new one. Above
    /// `liveness_interval`, a contact's liveness pings keep its connection warm.
    pub idle_timeout: Duration,
    /// A connection to a peer that is not in the routing table (met through a lookup,
    /// or that dialled this node) without traffic for this long is closed
    /// (`transient_idle_secs`, 2 s): connections stay bounded by the table. Longer keeps
    /// connections that one side holds for its table and the other no longer uses: at
    /// 500 nodes starting together, 10 s cost a third more memory per node at the peak.
    pub transient_idle: Duration,
    /// A peer frame must arrive whole within this from its first byte
    /// (`frame_deadline_ms`, 10000 ms): byte-at-a-time and stalled peers are cut.
    pub frame_deadline: Duration,
    /// Peer connections from one IP (`max_connections_per_ip`, 32).
    pub max_connections_per_ip: usize,
    /// Whether loopback and private addresses are subject to the per-IP limits and the
    /// routing-table diversity limits (`limit_local_addresses`, false: local networks
    /// of many nodes work).
    pub limit_local_addresses: bool,
    /// Requests one peer may make per second, and in a burst (`peer_requests_per_sec`
    /// 1000, `peer_request_burst` 2000); more are answered "overloaded".
    pub peer_rate: (f64, f64),
    /// Requests all peers of one IP may make per second, and in a burst
    /// (`ip_requests_per_sec` 5000, `ip_request_burst` 10000).
    pub ip_rate: (f64, f64),
    /// Contacts of one network group (IPv4 /24, IPv6 /48) per bucket and per routing
    /// table (`diversity_per_bucket` 2, `diversity_per_table` 10).
    pub diversity: (usize, usize),
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            hostkey: None,
            pow_difficulty: dht_security::pow::DEFAULT_POW_DIFFICULTY,
            min_pow_difficulty: dht_security::pow::DEFAULT_POW_DIFFICULTY,
            p2p_address: SocketAddr::from(([0, 0, 0, 0], 7402)),
            advertise_address: None,
            bootstrap_peers: Vec::new(),
            network_id: DEFAULT_NETWORK_ID,
            k: 20,
            alpha: 3,
            wide_buckets: 3,
            rpc_timeout: Duration::from_millis(2000),
            lookup_peer_timeout: Duration::from_millis(1000),
            lookup_deadline: Duration::from_millis(10_000),
            connect_timeout: Duration::from_millis(3000),
            liveness_interval: Duration::from_secs(900),
            neighbour_liveness: Duration::from_secs(60),
            ping_failures: 3,
            refresh_interval: Duration::from_secs(3600),
            replicate_interval: Duration::from_secs(3600),
            min_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(86_400),
            min_replication: 3,
            store_limits: StoreLimits::default(),
            storage: StorageBackend::Memory,
            max_connections: 1024,
            max_pending_requests: 256,
            idle_timeout: Duration::from_secs(1200),
            transient_idle: Duration::from_secs(2),
            frame_deadline: Duration::from_millis(10_000),
            max_connections_per_ip: 32,
            limit_local_addresses: false,
            peer_rate: (1000.0, 2000.0),
            ip_rate: (5000.0, 10_000.0),
            diversity: (2, 10),
        }
    }
}

/// The largest proof-of-work difficulty a configuration may ask for (2^32 hashes).
pub const MAX_POW_DIFFICULTY: u32 = 32;

/// The largest value of a count limit (connections, requests) a configuration may set.
pub const MAX_LIMIT: usize = 1_000_000;

/// The network id nodes use unless configured otherwise ("VOIP").
pub const DEFAULT_NETWORK_ID: u32 = 0x564f_4950;

impl NodeConfig {
    /// Checks that the values make sense together; the error names the key.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |key: &'static str, reason: String| Err(Error::Config { key, reason });
        if self.k == 0 || self.k > dht_wire::MAX_CONTACTS {
            return bad(
                "k",
                format!("must be 1..={}, got {}", dht_wire::MAX_CONTACTS, self.k),
            );
        }
        if self.alpha == 0 || self.alpha > self.k {
            return bad(
                "alpha",
                format!("must be 1..=k ({}), got {}", self.k, self.alpha),
            );
        }
        if self.wide_buckets > dht_routing::MAX_WIDE_BUCKETS {
            return bad(
                "wide_buckets",
                format!(
                    "must be 0..={}, got {}",
                    dht_routing::MAX_WIDE_BUCKETS,
                    self.wide_buckets
                ),
            );
        }
        if self.min_replication == 0 || usize::from(self.min_replication) > self.k {
            return bad(
                "min_replication",
                format!("must be 1..=k ({}), got {}", self.k, self.min_replication),
            );
        }
        if self.ping_failures == 0 {
            return bad("ping_failures", "must be at least 1".into());
        }
        for (key, value) in [
            ("pow_difficulty", self.pow_difficulty),
            ("min_pow_difficulty", self.min_pow_difficulty),
        ] {
            if value > MAX_POW_DIFFICULTY {
                return bad(
                    key,
                    format!("must be 0..={MAX_POW_DIFFICULTY}, got {value}"),
                );
            }
        }
        if self.min_ttl.is_zero() || self.min_ttl > self.max_ttl {
            return bad(
                "min_ttl_secs",
                format!(
                    "must be at least 1 and at most max_ttl_secs ({}), got {}",
                    self.max_ttl.as_secs(),
                    self.min_ttl.as_secs()
                ),
            );
        }
        for (key, value) in [
            ("rpc_timeout_ms", self.rpc_timeout),
            ("lookup_peer_timeout_ms", self.lookup_peer_timeout),
            ("lookup_deadline_ms", self.lookup_deadline),
            ("connect_timeout_ms", self.connect_timeout),
            ("idle_timeout_secs", self.idle_timeout),
            ("transient_idle_secs", self.transient_idle),
            ("liveness_interval_secs", self.liveness_interval),
            ("neighbour_liveness_secs", self.neighbour_liveness),
            ("refresh_interval_secs", self.refresh_interval),
            ("replicate_interval_secs", self.replicate_interval),
            ("frame_deadline_ms", self.frame_deadline),
        ] {
            if value.is_zero() {
                return bad(key, "must be above 0".into());
            }
        }
        for (key, value) in [
            ("max_connections", self.max_connections),
            ("max_pending_requests", self.max_pending_requests),
            ("max_connections_per_ip", self.max_connections_per_ip),
            ("diversity_per_bucket", self.diversity.0),
            ("diversity_per_table", self.diversity.1),
        ] {
            if value == 0 || value > MAX_LIMIT {
                return bad(key, format!("must be 1..={MAX_LIMIT}, got {value}"));
            }
        }
        for (key, value) in [
            ("peer_requests_per_sec", self.peer_rate.0),
            ("peer_request_burst", self.peer_rate.1),
            ("ip_requests_per_sec", self.ip_rate.0),
            ("ip_request_burst", self.ip_rate.1),
        ] {
            if !value.is_finite() || value <= 0.0 {
                return bad(key, format!("must be a number above 0, got {value}"));
            }
        }
        if self.store_limits.max_value_len < dht_wire::MAX_VALUE_LEN {
            return bad(
                "max_value_len",
                format!(
                    "must be at least the API's largest value, {}",
                    dht_wire::MAX_VALUE_LEN
                ),
            );
        }
        Ok(())
    }

    /// The replication a PUT asking for `hint` copies gets: clamped to
    /// `[min_replication, k]` (raising it is deliberate, for durability).
    pub fn clamp_replication(&self, hint: u8) -> u8 {
        let max = u8::try_from(self.k).unwrap_or(u8::MAX);
        hint.clamp(self.min_replication.min(max), max)
    }

    /// The TTL a PUT asking for `hint` gets: clamped to `[min_ttl, max_ttl]`.
    pub fn clamp_ttl(&self, hint: Duration) -> Duration {
        hint.clamp(self.min_ttl, self.max_ttl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_peer_forms() {
        let plain: BootstrapPeer = "127.0.0.1:7402".parse().unwrap();
        assert_eq!(plain.id, None);
        assert_eq!(plain.address, "127.0.0.1:7402");
        let id = "ab".repeat(32);
        let with_id: BootstrapPeer = format!("{id}@boot.example:7402").parse().unwrap();
        assert_eq!(with_id.id, Some(id.parse().unwrap()));
        assert_eq!(with_id.to_string(), format!("{id}@boot.example:7402"));
        assert!("nohost".parse::<BootstrapPeer>().is_err());
        assert!("host:0".parse::<BootstrapPeer>().is_err());
        assert!("host:99999".parse::<BootstrapPeer>().is_err());
        assert!("zz@host:1".parse::<BootstrapPeer>().is_err());
    }

    #[test]
    fn clamps() {
        let c = NodeConfig::default();
        assert_eq!(c.clamp_replication(0), 3);
        assert_eq!(c.clamp_replication(5), 5);
        assert_eq!(c.clamp_replication(200), 20);
        assert_eq!(c.clamp_ttl(Duration::from_secs(1)), Duration::from_secs(60));
        assert_eq!(
            c.clamp_ttl(Duration::from_secs(1_000_000)),
            Duration::from_secs(86_400)
        );
        assert!(c.validate().is_ok());
        let bad = NodeConfig {
            alpha: 0,
            ..NodeConfig::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(Error::Config { key: "alpha", .. })
        ));
        let too_wide = NodeConfig {
            wide_buckets: dht_routing::MAX_WIDE_BUCKETS + 1,
            ..NodeConfig::default()
        };
        assert!(matches!(
            too_wide.validate(),
            Err(Error::Config {
                key: "wide_buckets",
                ..
            })
        ));
    }
}
