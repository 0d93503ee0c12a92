//! Hung replicas (processes that stopped answering while their kernels keep the
//! connections up) on a simulated WAN with 100 ms round trips: when every replica of a
//! key but one hangs, a GET still finds the value, within its normal time plus one
//! `lookup_peer_timeout`. Issue 17's in-process case "a silent replica set but one".

use std::time::Duration;

use bytes::Bytes;
use dht_core::PutOptions;
use dht_tests::wan::Wan;
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn a_get_finds_the_one_replica_of_five_that_still_answers() -> anyhow::Result<()> {
    let wan = Wan::start(5, 3, 16).await?;
    let (nodes, reader, other) = (&wan.nodes, &wan.reader, &wan.other);
    let config = reader.config().clone();
    // A key both readers are far from, written by a node far from it too: its five
    // replicas are its five closest nodes.
    let key = wan.key_far_from_readers(&[&nodes[0]]);
    let options = PutOptions {
        ttl: Duration::from_secs(600),
        replication: 5,
    };
    nodes[0].put(key, Bytes::from_static(b"v"), options).await?;
    let replicas: Vec<usize> = wan.holders(&key).into_iter().filter(|&i| i != 0).collect();
    assert_eq!(replicas.len(), 5, "the key's replicas");

    let normal = Instant::now();
    assert_eq!(other.get(key).await?.as_deref(), Some(&b"v"[..]));
    let normal = normal.elapsed();

    // All but the farthest replica hang.
    let hung = &replicas[..4];
    wan.net.silence(hung.iter().map(|&i| wan.host(i)));
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
    wan.net.heal();
    wan.shutdown(&[]).await;
    Ok(())
}
