//! Real nodes (TLS, proof of work, lookups, upkeep) on a simulated WAN with 100 ms
//! round trips, on tokio's paused time: what a request costs is counted in round trips
//! of simulated time, not in loopback microseconds.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dht_core::{Environment, Key, MemoryStore, Node, PutOptions, SimNetwork, TokioClock};
use dht_tests::{test_config, wait_for};
use tokio::time::Instant;

const RTT: Duration = Duration::from_millis(100);

fn host(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, n))
}

async fn start(net: &SimNetwork, n: u8, bootstrap: &[SocketAddr]) -> anyhow::Result<Node> {
    let config = test_config(bootstrap);
    let store = Box::new(MemoryStore::new(config.store_limits.clone()));
    let env = Environment::simulated(Arc::new(TokioClock::starting_at(1_800_000_000)), n.into());
    Ok(Node::start_in(config, Arc::new(net.transport(host(n))), store, env).await?)
}

#[tokio::test(start_paused = true)]
async fn a_get_across_a_100_ms_wan_costs_round_trips() -> anyhow::Result<()> {
    // TCP's handshake costs a round trip; TLS 1.3 adds its own on the delayed bytes.
    let net = SimNetwork::new(7, 1, 0.0, |_, _| RTT);
    let first = start(&net, 1, &[]).await?;
    let entry = first.listen_addr();
    assert_eq!(
        entry.ip(),
        host(1),
        "the node listens at its host's address"
    );
    let mut nodes = vec![first];
    for n in 2..=8 {
        let joined = Instant::now();
        nodes.push(start(&net, n, &[entry]).await?);
        assert!(
            joined.elapsed() >= 3 * RTT,
            "a join (dial, TLS, HELLO, lookups) took {:?}",
            joined.elapsed()
        );
    }

    let key = Key::sha256(b"across the WAN");
    let put = Instant::now();
    let report = nodes[0]
        .put(key, Bytes::from_static(b"v"), PutOptions::default())
        .await?;
    assert_eq!(report.replicas, 3);
    assert!(
        put.elapsed() >= RTT,
        "a PUT stores remotely: {:?}",
        put.elapsed()
    );

    let reader = nodes
        .iter()
        .find(|node| !node.holds(&key))
        .expect("8 nodes, 4 copies");
    let get = Instant::now();
    assert_eq!(reader.get(key).await?.as_deref(), Some(&b"v"[..]));
    let took = get.elapsed();
    assert!(
        took >= RTT && took <= 10 * RTT,
        "a GET from a node without a copy took {took:?}"
    );
    for node in nodes {
        node.shutdown().await;
    }
    Ok(())
}

/// A node of `config` at host `n`.
async fn start_with(net: &SimNetwork, n: u8, config: dht_core::NodeConfig) -> anyhow::Result<Node> {
    let store = Box::new(MemoryStore::new(config.store_limits.clone()));
    let env = Environment::simulated(Arc::new(TokioClock::starting_at(1_800_000_000)), n.into());
    Ok(Node::start_in(config, Arc::new(net.transport(host(n))), store, env).await?)
}

/// A simulated network that proves peers' keys itself (no TLS cryptography) costs a
/// request what real TLS costs it, and the HELLO's identity checks still run; over a
/// resumed session (0-RTT, no TCP handshake) the first request costs its round trip
/// alone.
#[tokio::test(start_paused = true)]
async fn simulated_authentication_costs_what_tls_costs() -> anyhow::Result<()> {
    let mut first_pings = Vec::new();
    // (connect_rtts, TLS's round trips when simulated; None: real TLS)
    for (connect_rtts, simulated) in [(1, None), (1, Some(1)), (0, Some(0))] {
        let net = SimNetwork::new(7, connect_rtts, 0.0, |_, _| RTT);
        if let Some(tls_rtts) = simulated {
            net.authenticate_peers(tls_rtts);
        }
        let b = start(&net, 2, &[]).await?;
        let a = start(&net, 1, &[]).await?;
        let asked = Instant::now();
        a.ping(b.contact()).await?;
        first_pings.push(asked.elapsed());
        let asked = Instant::now();
        a.ping(b.contact()).await?;
        assert_eq!(asked.elapsed(), RTT, "over the open connection");

        // A node demanding more proof of work than b's id has refuses b.
        let mut strict = test_config(&[]);
        strict.pow_difficulty = 14;
        strict.min_pow_difficulty = 14;
        let c = start_with(&net, 3, strict).await?;
        assert!(c.ping(b.contact()).await.is_err(), "b's id lacks the work");
        for node in [a, b, c] {
            node.shutdown().await;
        }
    }
    // TCP's round trip, TLS's, then the request behind the HELLO; resumed, the request.
    assert_eq!(first_pings, vec![3 * RTT, 3 * RTT, RTT]);
    Ok(())
}

/// A GET whose lookup gave up on the replicas (each slower to answer than the lookup's
/// peer timeout, but within the RPC timeout) still reads their answers: it finds the
/// value instead of reporting none.
#[tokio::test(start_paused = true)]
async fn a_get_waits_for_replicas_slower_than_the_peer_timeout() -> anyhow::Result<()> {
    let slow: Arc<std::sync::Mutex<Vec<IpAddr>>> = Arc::default();
    let delay = {
        let slow = slow.clone();
        move |a: IpAddr, b: IpAddr| {
            let slow = slow.lock().unwrap_or_else(|e| e.into_inner());
            if slow.contains(&a) || slow.contains(&b) {
                6 * RTT
            } else {
                RTT
            }
        }
    };
    let net = SimNetwork::new(7, 1, 0.0, delay);
    let first = start(&net, 1, &[]).await?;
    let entry = first.listen_addr();
    let mut nodes = vec![first];
    for n in 2..=8 {
        nodes.push(start(&net, n, &[entry]).await?);
    }
    let key = Key::sha256(b"slow replicas");
    nodes[0]
        .put(key, Bytes::from_static(b"v"), PutOptions::default())
        .await?;
    // Every holder now answers in 600 ms at best, above the peer timeout (500 ms).
    let holders: Vec<IpAddr> = nodes
        .iter()
        .filter(|node| node.holds(&key))
        .map(|node| node.listen_addr().ip())
        .collect();
    assert!(holders.len() >= 3, "{holders:?}");
    slow.lock()
        .unwrap_or_else(|e| e.into_inner())
        .extend(&holders);
    // A reader with an RPC timeout long enough for a slow holder's cold connection.
    let reader = start_with(
        &net,
        9,
        dht_core::NodeConfig {
            rpc_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            ..test_config(&[entry])
        },
    )
    .await?;
    assert!(!reader.holds(&key));
    assert_eq!(reader.get(key).await?.as_deref(), Some(&b"v"[..]));
    reader.shutdown().await;
    for node in nodes {
        node.shutdown().await;
    }
    Ok(())
}

/// A GET that asks one peer at a time (α = 1) meets the two nodes closest to the key
/// hung (connections open, nothing answered): it waits for each what answers over an
/// open connection take here, not the whole peer timeout (2 s); and once they are known
/// quiet, a FIND_NODE lookup, which waits the whole peer timeout for a peer not known
/// so, does not wait for them either.
#[tokio::test(start_paused = true)]
async fn lookups_wait_for_a_hung_peer_what_answers_take_not_the_whole_timeout() -> anyhow::Result<()>
{
    let net = SimNetwork::new(7, 1, 0.0, |_, _| RTT);
    net.authenticate_peers(1);
    let first = start(&net, 1, &[]).await?;
    let entry = first.listen_addr();
    let mut nodes = vec![first];
    for n in 2..=8 {
        nodes.push(start(&net, n, &[entry]).await?);
    }
    let reader = start_with(
        &net,
        9,
        dht_core::NodeConfig {
            alpha: 1,
            lookup_peer_timeout: Duration::from_secs(2),
            rpc_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            ..test_config(&[entry])
        },
    )
    .await?;
    // The reader has talked to every node over the connection it keeps.
    for node in &nodes {
        reader.ping(node.contact()).await?;
    }
    // A key whose four closest nodes do not include the reader.
    let key = (0u32..)
        .map(|i| Key::sha256(&i.to_be_bytes()))
        .find(|key| {
            let reader_distance = reader.id().distance(key);
            nodes
                .iter()
                .filter(|node| node.id().distance(key) < reader_distance)
                .count()
                >= 4
        })
        .expect("some key");
    nodes[0]
        .put(key, Bytes::from_static(b"v"), PutOptions::default())
        .await?;
    let mut holders: Vec<&Node> = nodes.iter().filter(|node| node.holds(&key)).collect();
    holders.sort_by_key(|node| node.id().distance(&key));
    assert!(holders.len() >= 3 && !reader.holds(&key));
    net.silence(holders[..2].iter().map(|node| node.listen_addr().ip()));

    let get = Instant::now();
    assert_eq!(reader.get(key).await?.as_deref(), Some(&b"v"[..]));
    let took = get.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "two hung peers cost the GET {took:?}"
    );
    let lookup = Instant::now();
    let (closest, _) = reader.find_closest(key).await;
    let took = lookup.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "two peers known quiet cost the lookup {took:?}"
    );
    assert!(
        closest
            .iter()
            .all(|c| c.id != holders[0].id() && c.id != holders[1].id())
    );

    reader.shutdown().await;
    for node in nodes {
        node.shutdown().await;
    }
    Ok(())
}

/// A node cut off until it and the others have removed each other from their tables
/// (its pings fail, theirs to it fail) joins again by itself once the network heals:
/// nobody knows it any more, so without the re-join it would stay alone for good.
#[tokio::test(start_paused = true)]
async fn a_node_cut_off_until_everyone_forgot_it_joins_again_after_the_heal() -> anyhow::Result<()>
{
    let net = SimNetwork::new(7, 1, 0.0, |_, _| RTT);
    net.authenticate_peers(1);
    let config = |bootstrap: &[SocketAddr]| dht_core::NodeConfig {
        liveness_interval: Duration::from_secs(60),
        neighbour_liveness: Duration::from_secs(30),
        ..test_config(bootstrap)
    };
    let first = start_with(&net, 1, config(&[])).await?;
    let entry = first.listen_addr();
    let mut others = vec![first];
    for n in 2..=6 {
        others.push(start_with(&net, n, config(&[entry])).await?);
    }
    let lonely = start_with(&net, 7, config(&[entry])).await?;
    let knows = |node: &Node, id| node.routing_contacts().iter().any(|c| c.id == id);
    assert!(
        wait_for(Duration::from_secs(60), || async {
            lonely.routing_table_len() == others.len()
        })
        .await,
        "joined: {} contacts",
        lonely.routing_table_len()
    );

    net.partition(|ip| ip == host(7));
    let cut = Instant::now();
    let forgotten = wait_for(Duration::from_secs(1800), || async {
        lonely.routing_table_len() == 0 && others.iter().all(|n| !knows(n, lonely.id()))
    })
    .await;
    assert!(
        forgotten,
        "cut off: {} contacts left; known by {} others",
        lonely.routing_table_len(),
        others.iter().filter(|n| knows(n, lonely.id())).count()
    );

    // Longer than TCP retransmits (about 15 minutes): the connections of before are
    // reset at the heal, not resumed with their held bytes.
    tokio::time::sleep_until(cut + Duration::from_secs(1200)).await;
    net.heal();
    let healed = Instant::now();

    let back = wait_for(Duration::from_secs(1800), || async {
        lonely.routing_table_len() == others.len() && others.iter().all(|n| knows(n, lonely.id()))
    })
    .await;
    assert!(
        back,
        "after the heal: {} contacts; known by {} others",
        lonely.routing_table_len(),
        others.iter().filter(|n| knows(n, lonely.id())).count()
    );
    // The re-joins while cut off backed off to at most 10 minutes (plus a quarter).
    let took = healed.elapsed();
    assert!(took <= Duration::from_secs(760), "back after {took:?}");

    lonely.shutdown().await;
    for node in others {
        node.shutdown().await;
    }
    Ok(())
}

/// A GET whose first α contacts are all hung (the three nodes closest to the key, the
/// first the lookup asks; the record is on five) still finds the value, in no more than
/// one lookup peer timeout beyond what the GET costs when nobody hangs.
#[tokio::test(start_paused = true)]
async fn a_get_whose_first_alpha_contacts_all_hang_costs_one_peer_timeout_more()
-> anyhow::Result<()> {
    let net = SimNetwork::new(7, 1, 0.0, |_, _| RTT);
    net.authenticate_peers(1);
    let first = start(&net, 1, &[]).await?;
    let entry = first.listen_addr();
    let mut nodes = vec![first];
    for n in 2..=12 {
        nodes.push(start(&net, n, &[entry]).await?);
    }
    let reader = start(&net, 13, &[entry]).await?;
    for node in &nodes {
        reader.ping(node.contact()).await?;
    }
    let config = reader.config().clone();
    // A key the reader is far from, stored on its five closest nodes.
    let key = (0u32..)
        .map(|i| Key::sha256(&i.to_be_bytes()))
        .find(|key| {
            let mine = reader.id().distance(key);
            nodes.iter().filter(|n| n.id().distance(key) < mine).count() >= 6
        })
        .expect("some key");
    let options = PutOptions {
        ttl: Duration::from_secs(600),
        replication: 5,
    };
    nodes[0].put(key, Bytes::from_static(b"v"), options).await?;
    let mut holders: Vec<&Node> = nodes.iter().filter(|n| n.holds(&key)).collect();
    holders.sort_by_key(|n| n.id().distance(&key));
    assert!(holders.len() >= 5, "{} holders", holders.len());

    // The normal cost, from a reader on another host.
    let other = start(&net, 14, &[entry]).await?;
    for node in &nodes {
        other.ping(node.contact()).await?;
    }
    let normal = Instant::now();
    assert_eq!(other.get(key).await?.as_deref(), Some(&b"v"[..]));
    let normal = normal.elapsed();

    net.silence(holders[..config.alpha].iter().map(|n| n.listen_addr().ip()));
    let get = Instant::now();
    assert_eq!(reader.get(key).await?.as_deref(), Some(&b"v"[..]));
    let took = get.elapsed();
    assert!(
        took <= normal + config.lookup_peer_timeout,
        "with the first {} contacts hung the GET took {took:?} (normally {normal:?}, peer timeout {:?})",
        config.alpha,
        config.lookup_peer_timeout
    );
    reader.shutdown().await;
    other.shutdown().await;
    for node in nodes {
        node.shutdown().await;
    }
    Ok(())
}
