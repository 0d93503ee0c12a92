//! `Node::get_local`, the answer without a lookup that the API server gives inline: a
//! node answers from its own store exactly when it is one of the record's replicas,
//! and otherwise leaves the GET to the network.

use std::time::Duration;

use bytes::Bytes;
use dht_core::{Key, Node, PutOptions};
use dht_tests::{test_config, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_answers_locally_only_for_records_it_replicates() -> anyhow::Result<()> {
    let config = |bootstrap: &[std::net::SocketAddr]| {
        let mut config = test_config(bootstrap);
        config.min_replication = 1;
        config
    };
    let boot = Node::start(config(&[])).await?;
    let a = Node::start(config(&[boot.listen_addr()])).await?;
    assert!(
        wait_for(Duration::from_secs(10), || async {
            a.routing_table_len() == 1 && boot.routing_table_len() == 1
        })
        .await,
        "the two nodes did not meet"
    );

    // A key closer to `boot` than to `a`, stored through `a` with replication 1: `a`
    // keeps a copy but is not its replica, `boot` is.
    let key = (0u32..)
        .map(|i| Key::sha256(&i.to_be_bytes()))
        .find(|k| boot.id().distance(k) < a.id().distance(k))
        .expect("half of all keys qualify");
    let options = PutOptions {
        ttl: Duration::from_secs(600),
        replication: 1,
    };
    let report = a.put(key, Bytes::from_static(b"v"), options).await?;
    assert_eq!(report.replicas, 1);
    assert!(a.holds(&key) && boot.holds(&key));
    assert_eq!(
        a.get_local(&key),
        None,
        "a copy outside the replicas answered"
    );
    assert_eq!(boot.get_local(&key).as_deref(), Some(&b"v"[..]));
    // `a` still answers a GET, through the network.
    assert_eq!(a.get(key).await?.as_deref(), Some(&b"v"[..]));

    // A key this node does not hold.
    assert_eq!(boot.get_local(&Key::sha256(b"missing")), None);
    a.shutdown().await;
    boot.shutdown().await;
    Ok(())
}
