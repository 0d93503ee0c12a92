//! The VoidPhone shared INI file gives the same configuration as TOML with the same
//! values, skips other modules' sections, warns about unknown `[dht]` keys and names the
//! file, key and reason of every error.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dht_api::{Config, LogFormat};
use dht_core::StorageBackend;

/// Every key of `[dht]` and `[storage]`, none at its default.
const EVERY_KEY: &str = r#"
hostkey = "keys/host.pem"

[dht]
p2p_address = "0.0.0.0:7702"
api_address = "127.0.0.1:7701"
advertise_address = "192.0.2.7:7702"
bootstrap_peers = ["10.0.0.1:7402", "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd@boot.example:7402"]
network_id = 42
k = 8
alpha = 2
rpc_timeout_ms = 1500
lookup_peer_timeout_ms = 700
lookup_deadline_ms = 9000
connect_timeout_ms = 2500
liveness_interval_secs = 30
ping_failures = 5
refresh_interval_secs = 1800
replicate_interval_secs = 900
min_ttl_secs = 30
max_ttl_secs = 7200
min_replication = 4
max_records = 5000
max_bytes = 1048576
max_connections = 200
max_pending_requests = 64
pow_difficulty = 8
min_pow_difficulty = 6
get_deadline_ms = 4000
message_deadline_ms = 8000
idle_timeout_secs = 120
frame_deadline_ms = 6000
max_connections_per_ip = 8
limit_local_addresses = true
peer_requests_per_sec = 12.5
peer_request_burst = 40.0
ip_requests_per_sec = 300.0
ip_request_burst = 600.0
diversity_per_bucket = 3
diversity_per_table = 12
max_api_connections = 100
max_requests_per_connection = 16
metrics_address = "127.0.0.1:9100"
log_level = "dht_core=debug,info"
log_format = "json"

[storage]
backend = "durable"
data_dir = "/var/lib/dht"
storage_key = "abababababababababababababababababababababababababababababababab"
"#;

/// The same values written as VoidPhone INI: plain text, lists as words.
fn to_ini(toml_text: &str) -> String {
    fn plain(value: &toml::Value) -> String {
        match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Array(items) => items.iter().map(plain).collect::<Vec<_>>().join(", "),
            other => other.to_string(),
        }
    }
    let table: toml::Table = toml::from_str(toml_text).expect("valid TOML");
    let mut ini = String::from("; written from TOML\n");
    for (key, value) in &table {
        if !value.is_table() {
            ini.push_str(&format!("{key} = {}\n", plain(value)));
        }
    }
    for (name, value) in &table {
        if let toml::Value::Table(section) = value {
            ini.push_str(&format!("\n[{name}]\n"));
            for (key, value) in section {
                ini.push_str(&format!("{key} = {}\n", plain(value)));
            }
        }
    }
    ini
}

fn ini(text: &str) -> Result<Config, String> {
    Config::parse_ini(text, Path::new("/etc/voidphone/peer.ini")).map_err(|e| e.to_string())
}

fn error(text: &str) -> String {
    ini(text).expect_err("the file is refused")
}

#[test]
fn every_key_reads_the_same_as_in_toml() {
    let from_toml = Config::parse(EVERY_KEY, Path::new("/etc/voidphone/peer.toml")).unwrap();
    let from_ini = ini(&to_ini(EVERY_KEY)).unwrap();
    // Every field, compared whole (same file stem, so the same default data folder).
    assert_eq!(format!("{from_ini:?}"), format!("{from_toml:?}"));
    // And the values are the file's, not defaults, for each kind of type.
    let node = &from_ini.node;
    assert_eq!(node.rpc_timeout, Duration::from_millis(1500));
    assert_eq!(node.replicate_interval, Duration::from_secs(900));
    assert!(node.limit_local_addresses);
    assert_eq!(node.peer_rate, (12.5, 40.0));
    assert_eq!(node.min_replication, 4);
    assert_eq!(node.bootstrap_peers.len(), 2);
    assert_eq!(node.bootstrap_peers[1].address, "boot.example:7402");
    assert!(node.bootstrap_peers[1].id.is_some());
    assert_eq!(
        node.hostkey,
        Some(PathBuf::from("/etc/voidphone/keys/host.pem"))
    );
    assert!(matches!(
        &node.storage,
        StorageBackend::Durable { data_dir, key: Some(_), .. } if data_dir == Path::new("/var/lib/dht")
    ));
    assert_eq!(from_ini.api.get_deadline, Duration::from_millis(4000));
    assert_eq!(
        from_ini.metrics_address,
        Some("127.0.0.1:9100".parse().unwrap())
    );
    assert_eq!(from_ini.log.format, LogFormat::Json);
    assert_eq!(from_ini.log.level.as_deref(), Some("dht_core=debug,info"));
    assert!(from_ini.warnings.is_empty());
}

#[test]
fn shipped_node_toml_reads_the_same_as_ini() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let text = std::fs::read_to_string(dir.join("node.toml")).unwrap();
    let from_toml = Config::parse(&text, &dir.join("node.toml")).unwrap();
    let from_ini = Config::parse_ini(&to_ini(&text), &dir.join("node.ini")).unwrap();
    assert_eq!(format!("{from_ini:?}"), format!("{from_toml:?}"));
}

#[test]
fn other_modules_sections_and_global_keys_are_skipped() {
    let config = ini("hostkey = /keys/peer.pem\n\
         log_file = /var/log/voidphone.log\n\
         [gossip]\ncache_size = 50\nk = not a number\napi_address = nowhere\n\
         [dht]\np2p_address = 127.0.0.1:7402\nk = 10\n\
         [onion]\nhops = 2\n[DHT]\nk = x\n")
    .unwrap();
    assert_eq!(config.node.k, 10);
    assert_eq!(config.node.hostkey, Some(PathBuf::from("/keys/peer.pem")));
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
}

#[test]
fn unknown_dht_keys_are_warnings_naming_file_and_key() {
    let config = ini(
        "[dht]\np2p_address = 127.0.0.1:7402\ncleanup_interval = 86400\n\
         [storage]\nencryption_key = 1234\n",
    )
    .unwrap();
    assert_eq!(
        config.warnings,
        [
            "/etc/voidphone/peer.ini: unknown key `dht.cleanup_interval` ignored",
            "/etc/voidphone/peer.ini: unknown key `storage.encryption_key` ignored",
        ]
    );
    // TOML keeps refusing them.
    let toml = Config::parse(
        "[dht]\np2p_address = \"127.0.0.1:7402\"\ncleanup_interval = 86400\n",
        Path::new("/etc/dht/node.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(toml.contains("cleanup_interval"), "{toml}");
}

#[test]
fn bad_values_name_file_key_value_and_reason() {
    let k = error("[dht]\np2p_address = 127.0.0.1:7402\nk = twenty\n");
    assert_eq!(
        k,
        "/etc/voidphone/peer.ini: key `dht.k`: \"twenty\": expected a whole number, 0 or more"
    );
    let replication = error("[dht]\np2p_address = 127.0.0.1:7402\nmin_replication = 300\n");
    assert!(
        replication.contains("`dht.min_replication`"),
        "{replication}"
    );
    assert!(replication.contains("from 0 to 255"), "{replication}");
    let flag = error("[dht]\np2p_address = 127.0.0.1:7402\nlimit_local_addresses = maybe\n");
    assert!(flag.contains("`dht.limit_local_addresses`"), "{flag}");
    assert!(flag.contains("true or false"), "{flag}");
    let rate = error("[dht]\np2p_address = 127.0.0.1:7402\npeer_requests_per_sec = fast\n");
    assert!(rate.contains("`dht.peer_requests_per_sec`"), "{rate}");
    assert!(rate.contains("expected a number"), "{rate}");
    let addr = error("[dht]\np2p_address = nowhere\n");
    assert!(addr.contains("`dht.p2p_address`: \"nowhere\""), "{addr}");
    let peer = error("[dht]\np2p_address = 127.0.0.1:7402\nbootstrap_peers = a:1 nope\n");
    assert!(peer.contains("`dht.bootstrap_peers`"), "{peer}");
    // The checks after reading are the TOML ones.
    let alpha = error("[dht]\np2p_address = 127.0.0.1:7402\nalpha = 0\n");
    assert!(alpha.contains("`dht.alpha`: must be"), "{alpha}");
    let backend = error("[dht]\np2p_address = 127.0.0.1:7402\n[storage]\nbackend = tape\n");
    assert!(backend.contains("`storage.backend`"), "{backend}");
    let twice = error("[dht]\np2p_address = 127.0.0.1:7402\nk = 8\nK = 9\n");
    assert!(twice.contains("`dht.k`: set more than once"), "{twice}");
}

#[test]
fn missing_section_or_address_is_a_clear_error() {
    assert_eq!(
        error("hostkey = a.pem\n[gossip]\np2p_address = 127.0.0.1:1\n"),
        "/etc/voidphone/peer.ini: key `dht`: the file has no [dht] section"
    );
    assert_eq!(
        error("[dht]\napi_address = 127.0.0.1:7401\n"),
        "/etc/voidphone/peer.ini: key `dht.p2p_address`: required, but missing"
    );
}

#[test]
fn syntax_errors_give_the_line() {
    assert_eq!(
        error("[dht]\np2p_address = 127.0.0.1:7402\n[broken\nk = 3\n"),
        "/etc/voidphone/peer.ini: line 3, column 1: section header \"[broken\" has no closing `]`"
    );
    assert_eq!(
        error("[dht]\np2p_address = 127.0.0.1:7402\nk 3\n\n"),
        "/etc/voidphone/peer.ini: line 3, column 1: expected `key = value`, a [section] or a comment, found \"k 3\""
    );
    let missing_key = error("[dht]\np2p_address = 127.0.0.1:7402\n= 3\n");
    assert!(
        missing_key.starts_with("/etc/voidphone/peer.ini: line 3, column 2: missing key"),
        "{missing_key}"
    );
    let quote = error("[dht]\np2p_address = 127.0.0.1:7402\nlog_level = \"info\nk = 3\n");
    assert!(quote.contains("a quote is not closed"), "{quote}");
}

#[test]
fn hostkey_is_relative_to_the_file() {
    let relative = ini("hostkey = keys/peer.pem\n[dht]\np2p_address = 127.0.0.1:1\n").unwrap();
    assert_eq!(
        relative.node.hostkey,
        Some(PathBuf::from("/etc/voidphone/keys/peer.pem"))
    );
    let absent = ini("[dht]\np2p_address = 127.0.0.1:1\n").unwrap();
    assert_eq!(
        absent.node.hostkey,
        Some(PathBuf::from("/etc/voidphone/hostkey.pem"))
    );
    // The default data folder is named after the INI file too.
    assert_eq!(
        absent.node.storage,
        StorageBackend::Durable {
            data_dir: PathBuf::from("/etc/voidphone/peer-data"),
            key: None,
            sync: dht_core::DiskSync::default(),
        }
    );
}

#[test]
fn ini_conventions() {
    let config = ini("# comment\n; comment\nHostKey: \"C:\\keys\\peer.pem\"\n\
         [dht]\nP2P_Address: 127.0.0.1:7402\nadvertise_address =\n\
         limit_local_addresses = Yes\nbootstrap_peers =\n  10.0.0.1:1,\n  10.0.0.2:2 10.0.0.3:3\n")
    .unwrap();
    assert_eq!(config.node.p2p_address, "127.0.0.1:7402".parse().unwrap());
    // Backslashes are kept; a path that is not absolute here is joined to the folder.
    assert!(
        config
            .node
            .hostkey
            .as_ref()
            .is_some_and(|h| h.ends_with("C:\\keys\\peer.pem")),
        "{:?}",
        config.node.hostkey
    );
    assert_eq!(config.node.advertise_address, None);
    assert!(config.node.limit_local_addresses);
    let peers: Vec<_> = config
        .node
        .bootstrap_peers
        .iter()
        .map(|p| p.address.as_str())
        .collect();
    assert_eq!(peers, ["10.0.0.1:1", "10.0.0.2:2", "10.0.0.3:3"]);
}

#[test]
fn load_picks_the_format_by_extension() {
    let dir = std::env::temp_dir().join(format!("dht-ini-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ini_text = "[dht]\np2p_address = 127.0.0.1:7402\nk = 7\n";
    std::fs::write(dir.join("peer.INI"), ini_text).unwrap();
    assert_eq!(Config::load(&dir.join("peer.INI")).unwrap().node.k, 7);
    // The same text is not TOML (unquoted address).
    std::fs::write(dir.join("peer.conf"), ini_text).unwrap();
    let err = Config::load(&dir.join("peer.conf"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("peer.conf"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
