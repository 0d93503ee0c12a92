//! A network cut in two halves for longer than it takes each side to forget the other
//! entirely heals by itself: the contacts each node removed for not answering are pinged
//! with backoff, the first that answers brings its side back, and keys PUT on each side
//! during the split are found from both sides within two refresh intervals of the heal.
//! Neither side loses enough of its table to re-join, and refreshes within a side only
//! ever meet that side: without those pings the halves would stay apart for good.
//! Simulated WAN (100 ms round trips) on tokio's paused time.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dht_core::{
    Environment, Key, MemoryStore, Node, NodeConfig, PutOptions, SimNetwork, TokioClock,
};
use dht_tests::{test_config, wait_for};

const RTT: Duration = Duration::from_millis(100);
const NODES: u8 = 12;

fn host(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, n))
}

/// Hosts 1 to 6 are one side, 7 to 12 the other.
fn west(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V4(v4) if v4.octets()[3] <= NODES / 2)
}

fn config(bootstrap: &[SocketAddr]) -> NodeConfig {
    NodeConfig {
        liveness_interval: Duration::from_secs(60),
        neighbour_liveness: Duration::from_secs(30),
        ..test_config(bootstrap)
    }
}

async fn start(net: &SimNetwork, n: u8, bootstrap: &[SocketAddr]) -> anyhow::Result<Node> {
    let config = config(bootstrap);
    let store = Box::new(MemoryStore::new(config.store_limits.clone()));
    let env = Environment::simulated(Arc::new(TokioClock::starting_at(1_800_000_000)), n.into());
    Ok(Node::start_in(config, Arc::new(net.transport(host(n))), store, env).await?)
}

#[tokio::test(start_paused = true)]
async fn halves_that_forgot_each_other_find_each_other_after_the_heal() -> anyhow::Result<()> {
    let net = SimNetwork::new(7, 1, 0.0, |_, _| RTT);
    net.authenticate_peers(1);
    let first = start(&net, 1, &[]).await?;
    let entry = first.listen_addr();
    let mut nodes = vec![first];
    for n in 2..=NODES {
        nodes.push(start(&net, n, &[entry]).await?);
    }
    let all = nodes.len() - 1;
    assert!(
        wait_for(Duration::from_secs(120), || async {
            nodes.iter().all(|n| n.routing_table_len() == all)
        })
        .await,
        "the network did not form"
    );
    let side = |node: &Node| west(node.listen_addr().ip());
    let across = |node: &Node| {
        let mine = side(node);
        node.routing_contacts()
            .iter()
            .filter(|c| west(c.addr.ip()) != mine)
            .count()
    };

    net.partition(west);
    let forgotten = wait_for(Duration::from_secs(1800), || async {
        nodes.iter().all(|n| across(n) == 0)
    })
    .await;
    assert!(forgotten, "the halves did not forget each other");
    // Each side PUTs keys of its own during the split.
    let options = PutOptions {
        ttl: Duration::from_secs(6 * 3600),
        replication: 3,
    };
    let mut keys = Vec::new();
    for (i, node) in nodes.iter().enumerate().step_by(3) {
        let key = Key::sha256(format!("split/{i}").as_bytes());
        node.put(key, Bytes::from(format!("value {i}")), options)
            .await?;
        keys.push((key, format!("value {i}")));
    }
    // Longer than TCP retransmits: the old connections are reset at the heal.
    tokio::time::sleep(Duration::from_secs(1200)).await;
    net.heal();

    let refresh = nodes[0].config().refresh_interval;
    let rejoined = wait_for(refresh * 2, || async {
        nodes.iter().all(|n| across(n) > 0)
    })
    .await;
    assert!(
        rejoined,
        "after two refresh intervals, {} nodes still know nobody across",
        nodes.iter().filter(|n| across(n) == 0).count()
    );
    for node in &nodes {
        for (key, value) in &keys {
            assert_eq!(
                node.get(*key).await?.as_deref(),
                Some(value.as_bytes()),
                "a key of the split, read after the heal"
            );
        }
    }
    for node in nodes {
        node.shutdown().await;
    }
    Ok(())
}
