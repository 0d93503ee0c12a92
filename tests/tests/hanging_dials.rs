//! A dial that hangs (a host that vanished: its node is gone and nothing answers, not
//! even a refusal, so the TCP connect never completes) must not hold a lookup's slot
//! past the lookup's per-peer deadline: the lookup keeps α requests in flight on other
//! peers, and a GET whose first α + 1 contacts all vanished costs at most two
//! `lookup_peer_timeout`s more than usual (one per round of hung dials), not a
//! `connect_timeout`. Simulated WAN, 100 ms round trips.

use std::time::Duration;

use bytes::Bytes;
use dht_core::PutOptions;
use dht_tests::wan::Wan;
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn dials_to_vanished_hosts_cost_a_get_peer_timeouts_not_connect_timeouts()
-> anyhow::Result<()> {
    let wan = Wan::start(9, 2, 12).await?;
    let (nodes, reader, other) = (&wan.nodes, &wan.reader, &wan.other);
    let config = reader.config().clone();
    assert!(config.connect_timeout >= 3 * config.lookup_peer_timeout);
    // A key both readers are far from, stored on its five closest nodes.
    let key = wan.key_far_from_readers(&[]);
    let options = PutOptions {
        ttl: Duration::from_secs(600),
        replication: 5,
    };
    nodes[0].put(key, Bytes::from_static(b"v"), options).await?;
    let holders = wan.holders(&key);
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
    wan.net.silence(vanished.iter().map(|&i| wan.host(i)));
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
    wan.shutdown(&vanished).await;
    Ok(())
}
