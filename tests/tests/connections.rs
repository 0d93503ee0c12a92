//! A node's connections stay bounded by its routing table: a connection to a peer the
//! table does not hold (a lookup met it, or it dialled us) is closed after
//! `transient_idle`, while one to a table contact stays warm for `idle_timeout`.

use std::time::Duration;

use dht_core::{Node, TRANSIENT_WARM};
use dht_tests::{init_tracing, test_config, wait_for};

/// A node with k = 1 (and no wide far buckets unless `wide_buckets`), whose table has
/// room for few of the peers joining through it.
async fn hub(transient_idle: Duration) -> anyhow::Result<Node> {
    wide_hub(transient_idle, 0).await
}

async fn wide_hub(transient_idle: Duration, wide_buckets: usize) -> anyhow::Result<Node> {
    Ok(Node::start(dht_core::NodeConfig {
        k: 1,
        wide_buckets,
        alpha: 1,
        min_replication: 1,
        transient_idle,
        idle_timeout: Duration::from_secs(300),
        ..test_config(&[])
    })
    .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_to_peers_outside_the_table_are_closed_soon() -> anyhow::Result<()> {
    init_tracing();
    // k = 1: most of the peers that join through `hub` find their bucket there taken,
    // and wait in a replacement cache instead.
    let hub = hub(Duration::from_millis(500)).await?;
    let mut peers = Vec::new();
    for _ in 0..8 {
        peers.push(Node::start(test_config(&[hub.listen_addr()])).await?);
    }
    assert!(
        wait_for(Duration::from_secs(10), || async {
            hub.open_connections() >= hub.routing_table_len() + 2
        })
        .await
            || hub.routing_table_len() + 2 > peers.len(),
        "the test needs more peers than the hub's table holds: {} connections, {} contacts",
        hub.open_connections(),
        hub.routing_table_len()
    );
    // The peers the table does not hold lose their connection; the contacts keep theirs.
    let contacts = hub.routing_contacts();
    assert!(
        wait_for(Duration::from_secs(10), || async {
            hub.open_connections() <= hub.routing_table_len()
        })
        .await,
        "{} connections for {} contacts",
        hub.open_connections(),
        hub.routing_table_len()
    );
    let stats = hub.stats();
    assert!(stats.connections_idle_closed >= 2);
    assert!(
        stats.connections_opened >= peers.len() as u64,
        "every peer's connection counts as opened: {}",
        stats.connections_opened
    );
    assert!(
        contacts.iter().all(|c| hub.routing_contacts().contains(c)),
        "the table itself did not change"
    );
    for peer in &peers {
        peer.shutdown().await;
    }
    hub.shutdown().await;
    Ok(())
}

/// A wide far bucket's contacts beyond the k most recently seen are table entries, not
/// warm connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_k_contacts_of_a_wide_bucket_keep_their_connection() -> anyhow::Result<()> {
    init_tracing();
    // k = 1, buckets 0 and 1 widened to 4 and 2 contacts.
    let hub = wide_hub(Duration::from_millis(500), 2).await?;
    let mut peers = Vec::new();
    for _ in 0..10 {
        peers.push(Node::start(test_config(&[hub.listen_addr()])).await?);
    }
    let buckets = || {
        hub.status()
            .buckets
            .iter()
            .filter(|b| b.contacts > 0)
            .count()
    };
    assert!(
        wait_for(Duration::from_secs(10), || async {
            hub.routing_table_len() > buckets()
        })
        .await,
        "a wide bucket holds more than k: {} contacts in {} buckets",
        hub.routing_table_len(),
        buckets()
    );
    assert!(
        wait_for(Duration::from_secs(10), || async {
            hub.open_connections() <= buckets()
        })
        .await,
        "{} connections for {} contacts in {} buckets",
        hub.open_connections(),
        hub.routing_table_len(),
        buckets()
    );
    assert!(
        hub.routing_table_len() > buckets(),
        "the contacts stay in the table"
    );
    for peer in &peers {
        peer.shutdown().await;
    }
    hub.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_connections_beyond_the_warm_set_close_before_their_idle_time()
-> anyhow::Result<()> {
    init_tracing();
    // k = 1 and a transient idle time longer than the test: only the warm-set bound can
    // close the connections of the peers the hub's table has no room for.
    let hub = hub(Duration::from_secs(300)).await?;
    let mut peers = Vec::new();
    for _ in 0..TRANSIENT_WARM + 12 {
        peers.push(Node::start(test_config(&[hub.listen_addr()])).await?);
    }
    let bound = || hub.routing_table_len() + TRANSIENT_WARM;
    // The bound is applied as connections come: newcomers keep arriving until the
    // early joiners' connections have been idle long enough to close.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while hub.open_connections() > bound() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} connections for {} contacts",
            hub.open_connections(),
            hub.routing_table_len()
        );
        peers.push(Node::start(test_config(&[hub.listen_addr()])).await?);
        wait_for(Duration::from_millis(300), || async {
            hub.open_connections() <= bound()
        })
        .await;
    }
    assert!(hub.stats().connections_trimmed > 0);
    // The trimmed peers still reach the hub: a request dials it again.
    for peer in &peers {
        assert!(peer.ping(hub.contact()).await.is_ok());
    }
    for peer in &peers {
        peer.shutdown().await;
    }
    hub.shutdown().await;
    Ok(())
}

/// A peer that says HELLO and then sends nothing (a hung process: its kernel keeps the
/// connection up) loses its connection once a request on it has waited its whole
/// timeout; a slow peer that answers something meanwhile keeps it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_of_a_peer_silent_for_a_whole_request_timeout_is_closed()
-> anyhow::Result<()> {
    use dht_tests::raw_peer::{RawPeer, honest_answer};
    use dht_wire::PeerFrame;
    use futures::{SinkExt, StreamExt};

    init_tracing();
    let node = Node::start(dht_core::NodeConfig {
        rpc_timeout: Duration::from_millis(500),
        ..test_config(&[])
    })
    .await?;
    let contact_of = |id| {
        node.routing_contacts()
            .into_iter()
            .find(|c| c.id == id)
            .expect("the peer is in the table")
    };
    let (mut hung, _) = RawPeer::connect(node.listen_addr()).await?;
    // The node pings the hung peer: nothing comes back.
    let ping = node.ping(contact_of(hung.identity.id)).await;
    assert!(matches!(ping, Err(dht_core::RpcError::Timeout)), "{ping:?}");
    assert!(
        hung.closed_within(Duration::from_secs(5)).await,
        "the connection of a silent peer stayed open"
    );
    assert_eq!(node.stats().silent_connections_closed, 1);

    // A peer that answers one of two requests keeps its connection.
    let (mut slow, _) = RawPeer::connect(node.listen_addr()).await?;
    let contact = contact_of(slow.identity.id);
    let pings = tokio::time::timeout(
        Duration::from_secs(5),
        futures::future::join(node.ping(contact), node.ping(contact)),
    );
    let answering = async {
        if let Some(Ok(frame)) = slow.framed.next().await {
            let answer = honest_answer(&frame.message);
            let _ = slow
                .framed
                .send(PeerFrame::response(frame.request_id, answer))
                .await;
        }
        slow
    };
    let (pings, mut slow) = futures::future::join(pings, answering).await;
    let (first, second) = pings?;
    assert!(first.is_ok() != second.is_ok(), "{first:?} {second:?}");
    assert!(
        !slow.closed_within(Duration::from_millis(300)).await,
        "a peer that answered was cut"
    );
    assert_eq!(node.stats().silent_connections_closed, 1);
    node.shutdown().await;
    Ok(())
}
