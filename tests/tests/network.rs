//! A 32-node network (one bootstrap node, 31 API nodes) on 127.0.0.1: values PUT
//! through one node's API are found through every other's, survive the loss of the
//! accepting node and two replicas, reach nodes that join later, and a second PUT
//! replaces the value everywhere.

use std::time::Duration;

use dht_core::Key;
use dht_tests::{ApiClient, TestNode, api_get, init_tracing, start_network, test_config, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_nodes_put_get_churn_join_and_update() -> anyhow::Result<()> {
    init_tracing();
    let (bootstrap, mut nodes) = start_network(31).await?;
    // Every node knows a good part of the network once joined.
    for n in &nodes {
        assert!(
            n.node.routing_table_len() >= 5,
            "node knows only {} peers",
            n.node.routing_table_len()
        );
    }

    let key = Key::sha256(b"voidphone/test/value");
    let value = b"first value".to_vec();
    let mut a = ApiClient::connect(nodes[0].api_addr()).await?;
    a.put(key, &value, 600, 5).await?;

    // The PUT has no reply; wait until 5 nodes other than A hold a replica.
    let holders_ready = wait_for(Duration::from_secs(10), || async {
        nodes[1..].iter().filter(|n| n.node.holds(&key)).count()
            + usize::from(bootstrap.node.holds(&key))
            >= 5
    })
    .await;
    assert!(holders_ready, "the value did not reach 5 replicas");

    // A GET through every other node's API returns it.
    for n in &nodes[1..] {
        assert_eq!(
            api_get(n.api_addr(), key).await?.as_deref(),
            Some(&value[..]),
            "GET via {}",
            n.node.id()
        );
    }
    // A missing key is a FAILURE.
    let missing = Key::sha256(b"voidphone/test/missing");
    assert_eq!(api_get(nodes[3].api_addr(), missing).await?, None);

    // Shut down A and two of the nodes holding the value.
    let holders: Vec<usize> = (1..nodes.len())
        .filter(|&i| nodes[i].node.holds(&key))
        .collect();
    assert!(holders.len() >= 2);
    let mut down = [0, holders[0], holders[1]];
    down.sort_unstable();
    for &i in down.iter().rev() {
        let gone = nodes.remove(i);
        gone.stop().await;
    }
    for n in &nodes {
        assert_eq!(
            api_get(n.api_addr(), key).await?.as_deref(),
            Some(&value[..]),
            "GET after churn via {}",
            n.node.id()
        );
    }

    // A node that joins after the PUT finds it too.
    let late = TestNode::start(test_config(&[bootstrap.node.listen_addr()]), true).await?;
    assert_eq!(
        api_get(late.api_addr(), key).await?.as_deref(),
        Some(&b"first value"[..])
    );
    nodes.push(late);

    // A second PUT of the same key, through another node, replaces the value everywhere.
    let second = b"second value".to_vec();
    let mut b = ApiClient::connect(nodes[4].api_addr()).await?;
    b.put(key, &second, 600, 5).await?;
    let replaced = wait_for(Duration::from_secs(10), || async {
        nodes.iter().filter(|n| n.node.holds(&key)).count() >= 5
            && api_get(nodes[4].api_addr(), key)
                .await
                .ok()
                .flatten()
                .as_deref()
                == Some(&second[..])
    })
    .await;
    assert!(replaced);
    // Give the replicas time to hold the second value (poll, not sleep).
    for n in &nodes {
        let got = wait_for(Duration::from_secs(10), || async {
            api_get(n.api_addr(), key).await.ok().flatten().as_deref() == Some(&second[..])
        })
        .await;
        assert!(got, "node {} still returns the old value", n.node.id());
    }

    for n in &nodes {
        n.stop().await;
    }
    bootstrap.stop().await;
    Ok(())
}
