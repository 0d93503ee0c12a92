//! The configuration file of `dht-node` and `dht-bootstrap`: TOML, or the VoidPhone
//! shared INI file when its name ends in `.ini`.
//!
//! ```toml
//! hostkey = "hostkey.pem"          # optional: this is the default, beside the file
//! [dht]
//! p2p_address = "127.0.0.1:7402"
//! api_address = "127.0.0.1:7401"
//! bootstrap_peers = ["127.0.0.1:7500"]
//! ```
//! Every key of `[dht]` but the two addresses has a default; README.md lists them.
//! Every error names the file, the key and the reason. Unknown keys are errors in TOML;
//! in the INI file, which other modules share, they are warnings ([`Config::warnings`]).
//!
//! Both formats are deserialised into the same structs (`FileConfig`), so every key,
//! its type, its default and its checks are written once, here; `ini.rs` only turns INI
//! text into what those structs ask for.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dht_core::{BootstrapPeer, DiskSync, MAX_LIMIT, NodeConfig, StorageBackend, StoreLimits};
use serde::Deserialize;

use crate::server::ApiConfig;

/// The host key file used when a configuration names none, beside the file.
pub const DEFAULT_HOSTKEY: &str = "hostkey.pem";

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for our keys (the message names key and line).
    #[error("{file}: {message}")]
    Parse {
        /// The file.
        file: PathBuf,
        /// The parser's message, with the key and position.
        message: String,
    },
    /// A key has a value the node cannot use.
    #[error("{file}: key `{key}`: {reason}")]
    Invalid {
        /// The file.
        file: PathBuf,
        /// The key, with its section (`dht.k`).
        key: String,
        /// Why.
        reason: String,
    },
}

/// Everything a configuration file says.
#[derive(Debug, Clone)]
pub struct Config {
    /// Settings of the DHT node.
    pub node: NodeConfig,
    /// Settings of the client API server (unused by `dht-bootstrap`).
    pub api: ApiConfig,
    /// Where Prometheus metrics are served at `/metrics` (`metrics_address`); none by
    /// default.
    pub metrics_address: Option<SocketAddr>,
    /// How the process logs (`log_level`, `log_format`).
    pub log: LogConfig,
    /// What was read but ignored, one line each, naming the file (unknown keys of the
    /// INI file's `[dht]` and `[storage]`). Logged once logging is set up; always empty
    /// for TOML, which refuses unknown keys.
    pub warnings: Vec<String>,
}

/// How a node process logs: the `log_level` and `log_format` keys of `[dht]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogConfig {
    /// A tracing filter (`info`, `dht_core=debug,info`); `RUST_LOG` overrides it.
    /// `None`: `info`.
    pub level: Option<String>,
    /// Human-readable lines or JSON objects; `--log-format` overrides it.
    pub format: LogFormat,
}

/// The shape of log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event (the default).
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("must be \"text\" or \"json\", got {other:?}")),
        }
    }
}

/// A configuration file as written: the global `hostkey`, `[dht]` and `[storage]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    hostkey: Option<PathBuf>,
    dht: DhtSection,
    storage: Option<StorageSection>,
}

/// The `[storage]` section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StorageSection {
    backend: Option<String>,
    data_dir: Option<PathBuf>,
    storage_key: Option<String>,
    sync_interval_ms: Option<u64>,
}

/// The `[dht]` section. Defaults come from [`NodeConfig::default`] and
/// [`ApiConfig::default`], so they are written down once.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DhtSection {
    p2p_address: SocketAddr,
    api_address: Option<SocketAddr>,
    advertise_address: Option<SocketAddr>,
    #[serde(default)]
    bootstrap_peers: Vec<String>,
    network_id: Option<u32>,
    k: Option<usize>,
    alpha: Option<usize>,
    wide_buckets: Option<usize>,
    rpc_timeout_ms: Option<u64>,
    lookup_peer_timeout_ms: Option<u64>,
    lookup_deadline_ms: Option<u64>,
    connect_timeout_ms: Option<u64>,
    liveness_interval_secs: Option<u64>,
    neighbour_liveness_secs: Option<u64>,
    ping_failures: Option<u32>,
    refresh_interval_secs: Option<u64>,
    replicate_interval_secs: Option<u64>,
    min_ttl_secs: Option<u64>,
    max_ttl_secs: Option<u64>,
    min_replication: Option<u8>,
    max_records: Option<usize>,
    max_bytes: Option<usize>,
    max_connections: Option<usize>,
    max_pending_requests: Option<usize>,
    pow_difficulty: Option<u32>,
    min_pow_difficulty: Option<u32>,
    get_deadline_ms: Option<u64>,
    message_deadline_ms: Option<u64>,
    idle_timeout_secs: Option<u64>,
    transient_idle_secs: Option<u64>,
    frame_deadline_ms: Option<u64>,
    max_connections_per_ip: Option<usize>,
    limit_local_addresses: Option<bool>,
    peer_requests_per_sec: Option<f64>,
    peer_request_burst: Option<f64>,
    ip_requests_per_sec: Option<f64>,
    ip_request_burst: Option<f64>,
    diversity_per_bucket: Option<usize>,
    diversity_per_table: Option<usize>,
    max_api_connections: Option<usize>,
    max_requests_per_connection: Option<usize>,
    metrics_address: Option<SocketAddr>,
    log_level: Option<String>,
    log_format: Option<String>,
}

impl Config {
    /// Reads and checks a configuration file: the VoidPhone INI file when the name ends
    /// in `.ini` (in any case), TOML otherwise. Relative paths inside it (the hostkey, the
    /// data folder) are taken relative to the file's folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        let is_ini = path
            .extension()
            .is_some_and(|ext| ext.eq_ignore_ascii_case("ini"));
        if is_ini {
            Self::parse_ini(&text, path)
        } else {
            Self::parse(&text, path)
        }
    }

    /// Parses TOML configuration text; `path` is used in errors and to resolve relative
    /// paths.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let file: FileConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            file: path.to_path_buf(),
            message: e.to_string().trim_end().replace('\n', "\n  "),
        })?;
        Self::from_file(file, path, Vec::new())
    }

    /// Parses the VoidPhone shared INI file: the global `hostkey`, and the `[dht]` and
    /// `[storage]` sections with the same keys as in TOML; other sections are other
    /// modules' and skipped. Unknown keys of `[dht]` and `[storage]` become
    /// [`Config::warnings`]. `path` is used in errors and to resolve relative paths.
    pub fn parse_ini(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let (file, unknown) =
            crate::ini::from_str::<FileConfig>(text).map_err(|e| match (e.key, e.position) {
                (Some(key), _) => ConfigError::Invalid {
                    file: path.to_path_buf(),
                    key,
                    reason: e.reason,
                },
                (None, Some((line, column))) => ConfigError::Parse {
                    file: path.to_path_buf(),
                    message: format!("line {line}, column {column}: {}", e.reason),
                },
                (None, None) => ConfigError::Parse {
                    file: path.to_path_buf(),
                    message: e.reason,
                },
            })?;
        let warnings = unknown
            .iter()
            .map(|key| format!("{}: unknown key `{key}` ignored", path.display()))
            .collect();
        Self::from_file(file, path, warnings)
    }

    /// Checks the file's values and turns them into the node's settings, with defaults.
    fn from_file(
        file: FileConfig,
        path: &Path,
        warnings: Vec<String>,
    ) -> Result<Config, ConfigError> {
        let invalid = |key: &str, reason: String| ConfigError::Invalid {
            file: path.to_path_buf(),
            key: key.to_string(),
            reason,
        };
        let d = file.dht;
        let defaults = NodeConfig::default();
        let ms = |v: Option<u64>, default: Duration| v.map_or(default, Duration::from_millis);
        let secs = |v: Option<u64>, default: Duration| v.map_or(default, Duration::from_secs);
        let mut bootstrap_peers = Vec::with_capacity(d.bootstrap_peers.len());
        for entry in &d.bootstrap_peers {
            let peer: BootstrapPeer = entry
                .parse()
                .map_err(|reason| invalid("dht.bootstrap_peers", reason))?;
            bootstrap_peers.push(peer);
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let storage = storage_backend(file.storage, path, base)
            .map_err(|(key, reason)| invalid(key, reason))?;
        let default_limits = StoreLimits::default();
        let node = NodeConfig {
            // Without a `hostkey` key, the key lives beside the file (created when missing).
            hostkey: Some(match file.hostkey {
                Some(h) if h.is_relative() => base.join(h),
                Some(h) => h,
                None => base.join(DEFAULT_HOSTKEY),
            }),
            pow_difficulty: d.pow_difficulty.unwrap_or(defaults.pow_difficulty),
            min_pow_difficulty: d.min_pow_difficulty.unwrap_or(defaults.min_pow_difficulty),
            p2p_address: d.p2p_address,
            advertise_address: d.advertise_address,
            bootstrap_peers,
            network_id: d.network_id.unwrap_or(defaults.network_id),
            k: d.k.unwrap_or(defaults.k),
            alpha: d.alpha.unwrap_or(defaults.alpha),
            wide_buckets: d.wide_buckets.unwrap_or(defaults.wide_buckets),
            rpc_timeout: ms(d.rpc_timeout_ms, defaults.rpc_timeout),
            lookup_peer_timeout: ms(d.lookup_peer_timeout_ms, defaults.lookup_peer_timeout),
            lookup_deadline: ms(d.lookup_deadline_ms, defaults.lookup_deadline),
            connect_timeout: ms(d.connect_timeout_ms, defaults.connect_timeout),
            liveness_interval: secs(d.liveness_interval_secs, defaults.liveness_interval),
            neighbour_liveness: secs(d.neighbour_liveness_secs, defaults.neighbour_liveness),
            ping_failures: d.ping_failures.unwrap_or(defaults.ping_failures),
            refresh_interval: secs(d.refresh_interval_secs, defaults.refresh_interval),
            replicate_interval: secs(d.replicate_interval_secs, defaults.replicate_interval),
            min_ttl: secs(d.min_ttl_secs, defaults.min_ttl),
            max_ttl: secs(d.max_ttl_secs, defaults.max_ttl),
            min_replication: d.min_replication.unwrap_or(defaults.min_replication),
            storage,
            store_limits: StoreLimits {
                max_records: d.max_records.unwrap_or(default_limits.max_records),
                max_bytes: d.max_bytes.unwrap_or(default_limits.max_bytes),
                ..default_limits
            },
            max_connections: d.max_connections.unwrap_or(defaults.max_connections),
            max_pending_requests: d
                .max_pending_requests
                .unwrap_or(defaults.max_pending_requests),
            idle_timeout: secs(d.idle_timeout_secs, defaults.idle_timeout),
            transient_idle: secs(d.transient_idle_secs, defaults.transient_idle),
            frame_deadline: ms(d.frame_deadline_ms, defaults.frame_deadline),
            max_connections_per_ip: d
                .max_connections_per_ip
                .unwrap_or(defaults.max_connections_per_ip),
            limit_local_addresses: d
                .limit_local_addresses
                .unwrap_or(defaults.limit_local_addresses),
            peer_rate: (
                d.peer_requests_per_sec.unwrap_or(defaults.peer_rate.0),
                d.peer_request_burst.unwrap_or(defaults.peer_rate.1),
            ),
            ip_rate: (
                d.ip_requests_per_sec.unwrap_or(defaults.ip_rate.0),
                d.ip_request_burst.unwrap_or(defaults.ip_rate.1),
            ),
            diversity: (
                d.diversity_per_bucket.unwrap_or(defaults.diversity.0),
                d.diversity_per_table.unwrap_or(defaults.diversity.1),
            ),
        };
        node.validate().map_err(|e| match e {
            dht_core::Error::Config { key, reason } => invalid(&format!("dht.{key}"), reason),
            other => invalid("dht", other.to_string()),
        })?;
        let api_defaults = ApiConfig::default();
        let api = ApiConfig {
            address: d.api_address.unwrap_or(api_defaults.address),
            get_deadline: ms(d.get_deadline_ms, api_defaults.get_deadline),
            message_deadline: ms(d.message_deadline_ms, api_defaults.message_deadline),
            max_connections: d
                .max_api_connections
                .unwrap_or(api_defaults.max_connections),
            max_requests_per_connection: d
                .max_requests_per_connection
                .unwrap_or(api_defaults.max_requests_per_connection),
        };
        if api.get_deadline.is_zero() {
            return Err(invalid("dht.get_deadline_ms", "must be above 0".into()));
        }
        if api.message_deadline.is_zero() {
            return Err(invalid("dht.message_deadline_ms", "must be above 0".into()));
        }
        for (key, value) in [
            ("dht.max_api_connections", api.max_connections),
            (
                "dht.max_requests_per_connection",
                api.max_requests_per_connection,
            ),
        ] {
            if value == 0 || value > MAX_LIMIT {
                return Err(invalid(
                    key,
                    format!("must be 1..={MAX_LIMIT}, got {value}"),
                ));
            }
        }
        let format = match d.log_format.as_deref() {
            None => LogFormat::default(),
            Some(f) => f
                .parse()
                .map_err(|reason| invalid("dht.log_format", reason))?,
        };
        if let Some(level) = &d.log_level {
            crate::logs::check_filter(level).map_err(|reason| invalid("dht.log_level", reason))?;
        }
        Ok(Config {
            node,
            api,
            metrics_address: d.metrics_address,
            log: LogConfig {
                level: d.log_level,
                format,
            },
            warnings,
        })
    }
}

/// The `[storage]` section as the node's setting: durable by default, in the folder
/// `<config file name without extension>-data` beside the file, so that two nodes with
/// their own configuration files never share one.
fn storage_backend(
    section: Option<StorageSection>,
    path: &Path,
    base: &Path,
) -> Result<StorageBackend, (&'static str, String)> {
    let section = section.unwrap_or(StorageSection {
        backend: None,
        data_dir: None,
        storage_key: None,
        sync_interval_ms: None,
    });
    match section.backend.as_deref().unwrap_or("durable") {
        "memory" => return Ok(StorageBackend::Memory),
        "durable" => {}
        other => {
            return Err((
                "storage.backend",
                format!("must be \"durable\" or \"memory\", got {other:?}"),
            ));
        }
    }
    let data_dir = match section.data_dir {
        Some(dir) if dir.is_relative() => base.join(dir),
        Some(dir) => dir,
        None => {
            let stem = path
                .file_stem()
                .map_or_else(|| "dht".into(), |s| s.to_string_lossy().into_owned());
            base.join(format!("{stem}-data"))
        }
    };
    let key = match section.storage_key {
        None => None,
        Some(hex) => Some(
            hex.parse::<dht_core::Key>()
                .map(|k| k.to_bytes())
                .map_err(|e| {
                    (
                        "storage.storage_key",
                        format!("64 hex digits expected: {e}"),
                    )
                })?,
        ),
    };
    let sync = match section.sync_interval_ms {
        None => DiskSync::default(),
        Some(0) => DiskSync::EveryCommit,
        Some(ms) if ms <= MAX_SYNC_INTERVAL_MS => DiskSync::Within(Duration::from_millis(ms)),
        Some(ms) => {
            return Err((
                "storage.sync_interval_ms",
                format!("must be 0 (every commit) to {MAX_SYNC_INTERVAL_MS} ms, got {ms}"),
            ));
        }
    };
    Ok(StorageBackend::Durable {
        data_dir,
        key,
        sync,
    })
}

/// The longest `[storage] sync_interval_ms` accepted: what a power loss may take.
const MAX_SYNC_INTERVAL_MS: u64 = 60_000;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/dht/node.toml"))
    }

    #[test]
    fn minimal_file_gets_defaults() {
        let c = parse("[dht]\np2p_address = \"127.0.0.1:7402\"\n").unwrap();
        assert_eq!(c.node.k, 20);
        assert_eq!(c.api.address, "127.0.0.1:7401".parse().unwrap());
        assert!(c.node.bootstrap_peers.is_empty());
        assert_eq!(c.node.hostkey, Some(PathBuf::from("/etc/dht/hostkey.pem")));
        assert_eq!(
            c.node.storage,
            StorageBackend::Durable {
                data_dir: PathBuf::from("/etc/dht/node-data"),
                key: None,
                sync: DiskSync::Within(Duration::from_secs(1)),
            }
        );
        let every =
            parse("[dht]\np2p_address = \"127.0.0.1:1\"\n[storage]\nsync_interval_ms = 0\n")
                .unwrap();
        assert!(matches!(
            every.node.storage,
            StorageBackend::Durable {
                sync: DiskSync::EveryCommit,
                ..
            }
        ));
        let bad =
            parse("[dht]\np2p_address = \"127.0.0.1:1\"\n[storage]\nsync_interval_ms = 600000\n")
                .unwrap_err()
                .to_string();
        assert!(bad.contains("storage.sync_interval_ms"), "{bad}");
        let memory =
            parse("[dht]\np2p_address = \"127.0.0.1:1\"\n[storage]\nbackend = \"memory\"\n")
                .unwrap();
        assert_eq!(memory.node.storage, StorageBackend::Memory);
        let bad = parse("[dht]\np2p_address = \"127.0.0.1:1\"\n[storage]\nbackend = \"tape\"\n")
            .unwrap_err()
            .to_string();
        assert!(bad.contains("storage.backend"), "{bad}");
        let bad_key =
            parse("[dht]\np2p_address = \"127.0.0.1:1\"\n[storage]\nstorage_key = \"xy\"\n")
                .unwrap_err()
                .to_string();
        assert!(bad_key.contains("storage.storage_key"), "{bad_key}");
    }

    #[test]
    fn full_file() {
        let id = "cd".repeat(32);
        let c = parse(&format!(
            r#"hostkey = "keys/host.pem"
[dht]
p2p_address = "0.0.0.0:7402"
api_address = "127.0.0.1:7501"
advertise_address = "192.0.2.7:7402"
bootstrap_peers = ["10.0.0.1:7402", "{id}@boot:7402"]
k = 8
alpha = 2
wide_buckets = 1
neighbour_liveness_secs = 5
rpc_timeout_ms = 500
min_ttl_secs = 1
get_deadline_ms = 1500
"#
        ))
        .unwrap();
        assert_eq!(c.node.k, 8);
        assert_eq!(c.node.alpha, 2);
        assert_eq!(c.node.wide_buckets, 1);
        assert_eq!(c.node.neighbour_liveness, Duration::from_secs(5));
        assert_eq!(c.node.rpc_timeout, Duration::from_millis(500));
        assert_eq!(c.node.bootstrap_peers.len(), 2);
        assert_eq!(c.node.bootstrap_peers[1].id, Some(id.parse().unwrap()));
        assert_eq!(
            c.node.hostkey,
            Some(PathBuf::from("/etc/dht/keys/host.pem"))
        );
        assert_eq!(c.api.get_deadline, Duration::from_millis(1500));
    }

    #[test]
    fn errors_name_file_key_and_reason() {
        let unknown = parse("[dht]\np2p_address = \"127.0.0.1:1\"\nfoo = 1\n")
            .unwrap_err()
            .to_string();
        assert!(unknown.contains("/etc/dht/node.toml"), "{unknown}");
        assert!(unknown.contains("foo"), "{unknown}");

        let missing = parse("[dht]\nk = 3\n").unwrap_err().to_string();
        assert!(missing.contains("p2p_address"), "{missing}");

        let bad_type = parse("[dht]\np2p_address = \"127.0.0.1:1\"\nk = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(bad_type.contains("k = \"x\""), "{bad_type}");

        let bad_addr = parse("[dht]\np2p_address = \"nowhere\"\n")
            .unwrap_err()
            .to_string();
        assert!(bad_addr.contains("p2p_address"), "{bad_addr}");

        let invalid = parse("[dht]\np2p_address = \"127.0.0.1:1\"\nalpha = 0\n")
            .unwrap_err()
            .to_string();
        assert!(invalid.contains("dht.alpha"), "{invalid}");
        assert!(invalid.contains("must be"), "{invalid}");

        let peer = parse("[dht]\np2p_address = \"127.0.0.1:1\"\nbootstrap_peers = [\"nope\"]\n")
            .unwrap_err()
            .to_string();
        assert!(peer.contains("dht.bootstrap_peers"), "{peer}");
    }
}
