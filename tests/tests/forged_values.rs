//! A GET meets a hostile node on its way to a key's replicas: the hostile node is near
//! the key (but not among its closest nodes), answers first, and offers a forged value
//! newer than the honest one. The GET must not end on it: values are not signed, and
//! what vouches for one is that the key's closest nodes hold it.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use dht_core::{
    Clock, Environment, Key, MemoryStore, Node, NodeConfig, PutOptions, SimNetwork, TokioClock,
};
use dht_tests::test_config;
use dht_wire::{PeerMessage, WireRecord};

const RTT: Duration = Duration::from_millis(100);
const HONEST: u8 = 24;
const ATTACKER: u8 = 99;
const READER: u8 = 50;

fn host(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, n))
}

async fn start(
    net: &SimNetwork,
    n: u8,
    config: NodeConfig,
    env: Environment,
) -> anyhow::Result<Node> {
    let store = Box::new(MemoryStore::new(config.store_limits.clone()));
    Ok(Node::start_in(config, Arc::new(net.transport(host(n))), store, env).await?)
}

/// Waits (in simulated time) until `node` knows every one of `ids`.
async fn until_known(node: &Node, ids: &[Key]) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    loop {
        let known = node.routing_contacts();
        if ids.iter().all(|id| known.iter().any(|c| c.id == *id)) {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the reader never learned the key's nearest nodes"
        );
        node.find_closest(ids[0]).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_get_does_not_end_on_a_forged_value_from_a_node_outside_the_closest() -> anyhow::Result<()>
{
    // The attacker is 50 times nearer every node than honest nodes are to each other:
    // its answer always arrives first.
    let net = SimNetwork::new(7, 1, 0.0, |a, b| {
        if a == host(ATTACKER) || b == host(ATTACKER) {
            RTT / 50
        } else {
            RTT
        }
    });
    net.authenticate_peers(1);
    let clock = Arc::new(TokioClock::starting_at(1_800_000_000));
    let env = |seed: u8| Environment::simulated(clock.clone(), seed.into());

    let first = start(&net, 1, test_config(&[]), env(1)).await?;
    let entry = first.listen_addr();
    let mut honest = vec![first];
    for n in 2..=HONEST {
        honest.push(start(&net, n, test_config(&[entry]), env(n)).await?);
    }
    let forged: Arc<Mutex<Option<WireRecord>>> = Arc::default();
    let lie = {
        let forged = forged.clone();
        move |request: &PeerMessage| {
            let forged = forged.lock().unwrap_or_else(|e| e.into_inner());
            match (request, forged.as_ref()) {
                (PeerMessage::FindValue { key }, Some(record)) if *key == record.key => {
                    Some(PeerMessage::Value {
                        record: record.clone(),
                    })
                }
                _ => None,
            }
        }
    };
    let attacker = start(
        &net,
        ATTACKER,
        test_config(&[entry]),
        env(ATTACKER).with_responder(Arc::new(lie)),
    )
    .await?;

    // A key whose three closest nodes are honest and whose fourth is the attacker.
    let ids: Vec<Key> = honest.iter().map(Node::id).collect();
    let (key, nearest) = (0u32..)
        .find_map(|i| {
            let key = Key::sha256(&i.to_be_bytes());
            let mut all: Vec<Key> = ids.iter().copied().chain([attacker.id()]).collect();
            all.sort_by_key(|id| id.distance(&key));
            (all[3] == attacker.id()).then(|| (key, all[..5].to_vec()))
        })
        .expect("some key ranks the attacker fourth");

    let writer = honest
        .iter()
        .find(|node| !nearest.contains(&node.id()))
        .expect("24 honest nodes");
    let report = writer
        .put(key, Bytes::from_static(b"honest"), PutOptions::default())
        .await?;
    assert_eq!(report.replicas, 3);
    *forged.lock().unwrap_or_else(|e| e.into_inner()) = Some(WireRecord {
        key,
        value: Bytes::from_static(b"forged"),
        lifetime: 3600,
        // Newer than the honest record: a comparison of versions would pick it.
        version: clock.unix_micros() + 1_000_000,
        replication: 3,
    });

    // A reader that asks the five closest it knows at once: the three replicas, the
    // attacker (whose answer comes first) and one more.
    let reader = start(
        &net,
        READER,
        NodeConfig {
            alpha: 5,
            ..test_config(&[entry])
        },
        env(READER),
    )
    .await?;
    until_known(&reader, &nearest).await?;
    assert!(!reader.holds(&key));
    assert_eq!(reader.get(key).await?.as_deref(), Some(&b"honest"[..]));
    assert!(
        reader.stats().values_held_back >= 1,
        "the attacker's answer reached the reader and was held back"
    );
    assert!(!reader.holds(&key) || reader.get_local(&key).as_deref() != Some(&b"forged"[..]));

    // A key nobody wrote, for which only the attacker offers a value: the GET may
    // return it (held back, it is the best there is), but read repair must not push it
    // onto the key's replicas, where it would look vouched for. Before, it did.
    let (unwritten, replicas) = (1_000_000u32..)
        .find_map(|i| {
            let key = Key::sha256(&i.to_be_bytes());
            let mut all: Vec<Key> = ids.iter().copied().chain([attacker.id()]).collect();
            all.sort_by_key(|id| id.distance(&key));
            (all[3] == attacker.id()).then(|| (key, all[..3].to_vec()))
        })
        .expect("some key ranks the attacker fourth");
    *forged.lock().unwrap_or_else(|e| e.into_inner()) = Some(WireRecord {
        key: unwritten,
        value: Bytes::from_static(b"forged"),
        lifetime: 3600,
        version: clock.unix_micros(),
        replication: 3,
    });
    until_known(&reader, &replicas).await?;
    let _ = reader.get(unwritten).await?;
    // Long past any repair's RPC timeout (simulated time).
    tokio::time::sleep(Duration::from_secs(30)).await;
    for node in honest.iter().filter(|n| replicas.contains(&n.id())) {
        assert!(
            !node.holds(&unwritten),
            "read repair pushed the unvouched value onto replica {}",
            node.id()
        );
    }

    for node in honest.into_iter().chain([attacker, reader]) {
        node.shutdown().await;
    }
    Ok(())
}
