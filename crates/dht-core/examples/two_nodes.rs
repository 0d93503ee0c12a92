//! Two DHT nodes in one program: the second joins through the first, stores a value,
//! and the first finds it.
//!
//! Run with `cargo run -p dht-core --example two_nodes`.

use std::time::Duration;

use bytes::Bytes;
use dht_core::{BootstrapPeer, Key, Node, NodeConfig, PutOptions};

#[tokio::main]
async fn main() -> Result<(), dht_core::Error> {
    let loopback = "127.0.0.1:0".parse().expect("a literal address");

    // The first node has nobody to join: it is the network.
    let first = Node::start(NodeConfig {
        p2p_address: loopback,
        ..NodeConfig::default()
    })
    .await?;

    // The second joins through the first.
    let second = Node::start(NodeConfig {
        p2p_address: loopback,
        bootstrap_peers: vec![BootstrapPeer {
            id: Some(first.id()),
            address: first.listen_addr().to_string(),
        }],
        ..NodeConfig::default()
    })
    .await?;
    println!("first  {} on {}", first.id(), first.listen_addr());
    println!("second {} on {}", second.id(), second.listen_addr());

    let key = Key::sha256(b"example/greeting");
    let report = second
        .put(
            key,
            Bytes::from_static(b"hello from the second node"),
            PutOptions {
                ttl: Duration::from_secs(600),
                replication: 3,
            },
        )
        .await?;
    println!(
        "stored with replication {} ({} remote copy acknowledged)",
        report.replication, report.replicas
    );

    match first.get(key).await? {
        Some(value) => println!("first node found: {}", String::from_utf8_lossy(&value)),
        None => println!("first node found nothing"),
    }
    assert!(first.get(Key::sha256(b"example/missing")).await?.is_none());

    second.shutdown().await;
    first.shutdown().await;
    Ok(())
}
