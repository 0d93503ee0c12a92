//! Hung replicas (processes that stopped answering while their kernels keep the
//! connections up) on a simulated WAN with 100 ms round trips: when every replica of a
//! key but one hangs, a GET still finds the value, within its normal time plus one
//! `lookup_peer_timeout`. Issue 17's in-process case "a silent replica set but one".

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dht_core::{Environment, Key, PutOptions, SimNetwork, TokioClock};
use dht_tests::{start_sim_node, test_config};
use tokio::time::Instant;

const RTT: Duration = Duration::from_millis(100);

fn host(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 3, n))
}

fn env(n: u8) -> Environment {
    Environment::simulated(Arc::new(TokioClock::starting_at(1_800_000_000)), n.into())
}

#[tokio::test(start_paused = true)]
async fn a_get_finds_the_one_replica_of_five_that_still_answers() -> anyhow::Result<()> {
    let net = SimNetwork::new(5, 1, 0.0, |_, _| RTT);
    net.authenticate_peers(1);
    let first = start_sim_node(&net, host(1), test_config(&[]), env(1)).await?;
    let entry = first.listen_addr();
    let mut nodes = vec![first];
    for n in 2..=16 {
        nodes.push(start_sim_node(&net, host(n), test_config(&[entry]), env(n)).await?);
    }
    let reader = start_sim_node(&net, host(17), test_config(&[entry]), env(17)).await?;
    let other = start_sim_node(&net, host(18), test_config(&[entry]), env(18)).await?;
    for node in &nodes {
        reader.ping(node.contact()).await?;
        other.ping(node.contact()).await?;
    }
    let config = reader.config().clone();
    // A key both readers are far from, written by a node far from it too: its five
    // replicas are its five closest nodes.
    let key = (0u32..)
        .map(|i| Key::sha256(&i.to_be_bytes()))
        .find(|key| {
            [&reader, &other, &nodes[0]].iter().all(|r| {
                let theirs = r.id().distance(key);
                nodes
                    .iter()
                    .filter(|n| n.id().distance(key) < theirs)
                    .count()
                    >= 6
            })
        })
        .expect("some key");
    let options = PutOptions {
        ttl: Duration::from_secs(600),
        replication: 5,
    };
    nodes[0].put(key, Bytes::from_static(b"v"), options).await?;
    let mut replicas: Vec<usize> = (1..nodes.len()).filter(|&i| nodes[i].holds(&key)).collect();
    replicas.sort_by_key(|&i| nodes[i].id().distance(&key));
    assert_eq!(replicas.len(), 5, "the key's replicas");

    let normal = Instant::now();
    assert_eq!(other.get(key).await?.as_deref(), Some(&b"v"[..]));
    let normal = normal.elapsed();

    // All but the farthest replica hang.
    let hung = &replicas[..4];
    net.silence(hung.iter().map(|&i| host(u8::try_from(i + 1).unwrap_or(0))));
    let get = Instant::now();
    let (found, stats) = reader.get_with_stats(key).await;
    let took = get.elapsed();
    assert_eq!(found?.as_deref(), Some(&b"v"[..]), "{stats:?}");
    assert!(
        took <= normal + config.lookup_peer_timeout,
        "with 4 of 5 replicas hung the GET took {took:?} (normally {normal:?}, peer timeout \
         {:?}): {stats:?}",
        config.lookup_peer_timeout
    );
    net.heal();
    reader.shutdown().await;
    other.shutdown().await;
    for node in nodes {
        node.shutdown().await;
    }
    Ok(())
}
