//! The configuration files shipped in `configs/` load without errors.

use std::path::Path;

use dht_api::Config;

fn shipped(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../configs")
        .join(name)
}

#[test]
fn node_toml_loads_with_documented_values() {
    let config = Config::load(&shipped("node.toml")).expect("configs/node.toml loads");
    assert_eq!(config.api.address, "127.0.0.1:7401".parse().unwrap());
    assert_eq!(config.node.k, 20);
    assert_eq!(config.node.bootstrap_peers.len(), 1);
}

#[test]
fn bootstrap_toml_loads() {
    let config = Config::load(&shipped("bootstrap.toml")).expect("configs/bootstrap.toml loads");
    assert!(config.node.bootstrap_peers.is_empty());
}

#[test]
fn voidphone_ini_loads_only_the_dht_parts() {
    let path = shipped("voidphone.ini");
    let config = Config::load(&path).expect("configs/voidphone.ini loads");
    assert_eq!(config.warnings, Vec::<String>::new());
    assert_eq!(config.api.address, "127.0.0.1:7401".parse().unwrap());
    assert_eq!(config.node.p2p_address, "0.0.0.0:7402".parse().unwrap());
    assert_eq!(config.node.bootstrap_peers.len(), 1);
    assert_eq!(config.node.bootstrap_peers[0].address, "127.0.0.1:7500");
    let folder = path.parent().unwrap();
    assert_eq!(
        config.node.hostkey,
        Some(folder.join("voidphone-hostkey.pem"))
    );
    assert_eq!(
        config.node.storage,
        dht_core::StorageBackend::Durable {
            data_dir: folder.join("voidphone-data"),
            key: None,
            sync: dht_core::DiskSync::default(),
        }
    );
}

#[test]
fn missing_file_names_the_file() {
    let err = Config::load(Path::new("/nonexistent/dht.toml")).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/dht.toml"));
}
