//! A dial that hangs (a host that vanished: its node is gone and nothing answers, not
//! even a refusal, so the TCP connect never completes) must not hold a lookup's slot
//! past the lookup's per-peer deadline: the lookup keeps α requests in flight on other
//! peers, and a GET whose first α + 1 contacts all vanished costs at most two
//! `lookup_peer_timeout`s more than usual (one per round of hung dials), not a
//! `connect_timeout`. Simulated WAN, 100 ms round trips.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dht_core::{Environment, Key, PutOptions, SimNetwork, TokioClock};
use dht_tests::{start_sim_node, test_config};
use tokio::time::Instant;

const RTT: Duration = Duration::from_millis(100);

fn host(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 2, n))
}

fn env(n: u8) -> Environment {
    Environment::simulated(Arc::new(TokioClock::starting_at(1_800_000_000)), n.into())
}

#[tokio::test(start_paused = true)]
async fn dials_to_vanished_hosts_cost_a_get_peer_timeouts_not_connect_timeouts()
-> anyhow::Result<()> {
    let net = SimNetwork::new(9, 1, 0.0, |_, _| RTT);
    net.authenticate_peers(1);
    let first = start_sim_node(&net, host(1), test_config(&[]), env(1)).await?;
    let entry = first.listen_addr();
    let mut nodes = vec![first];
    for n in 2..=12 {
        nodes.push(start_sim_node(&net, host(n), test_config(&[entry]), env(n)).await?);
    }
    let reader = start_sim_node(&net, host(13), test_config(&[entry]), env(13)).await?;
    let other = start_sim_node(&net, host(14), test_config(&[entry]), env(14)).await?;
    for node in &nodes {
        reader.ping(node.contact()).await?;
        other.ping(node.contact()).await?;
    }
    let config = reader.config().clone();
    assert!(config.connect_timeout >= 3 * config.lookup_peer_timeout);
    // A key both readers are far from, stored on its five closest nodes.
    let key = (0u32..)
        .map(|i| Key::sha256(&i.to_be_bytes()))
        .find(|key| {
            [&reader, &other].iter().all(|r| {
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
    let mut holders: Vec<usize> = (0..nodes.len()).filter(|&i| nodes[i].holds(&key)).collect();
    holders.sort_by_key(|&i| nodes[i].id().distance(&key));
    assert!(holders.len() >= 5, "{} holders", holders.len());

    // The normal cost, through a reader on another host.
    let normal = Instant::now();
    assert_eq!(other.get(key).await?.as_deref(), Some(&b"v"[..]));
    let normal = normal.elapsed();

    // The α + 1 closest holders vanish: their nodes stop (closing the reader's
    // connections to them) and their hosts answer nothing from then on, so the reader,
    // which still has them in its table, must dial them, and those dials hang. Its
    // first α requests all go to vanished hosts.
    let vanished: Vec<usize> = holders[..=config.alpha].to_vec();
    for &i in &vanished {
        nodes[i].shutdown().await;
    }
    net.silence(
        vanished
            .iter()
            .map(|&i| host(u8::try_from(i + 1).unwrap_or(0))),
    );
    let table = reader.routing_contacts();
    assert!(
        vanished
            .iter()
            .all(|&i| table.iter().any(|c| c.id == nodes[i].id())),
        "the reader still counts on the vanished holders"
    );
    let get = Instant::now();
    let (found, stats) = reader.get_with_stats(key).await;
    let took = get.elapsed();
    assert_eq!(found?.as_deref(), Some(&b"v"[..]));
    assert!(
        stats.contacted >= stats.succeeded + config.alpha,
        "the vanished holders were asked: {stats:?}"
    );
    assert!(
        took <= normal + 2 * config.lookup_peer_timeout,
        "with the first {} contacts' dials hanging the GET took {took:?} (normally {normal:?}, \
         peer timeout {:?}, connect timeout {:?})",
        config.alpha,
        config.lookup_peer_timeout,
        config.connect_timeout
    );
    reader.shutdown().await;
    other.shutdown().await;
    for (i, node) in nodes.into_iter().enumerate() {
        if !vanished.contains(&i) {
            node.shutdown().await;
        }
    }
    Ok(())
}
