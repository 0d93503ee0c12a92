//! A node under load slows down instead of failing: a request a peer answers
//! "overloaded" (its rate limit) is sent again after a pause, and PUTs beyond the
//! number whose network part may run at once wait for a slot before they start.

use std::time::Duration;

use bytes::Bytes;
use dht_core::{Contact, Key, Node, NodeConfig, PUTS_IN_FLIGHT, PutOptions};
use dht_tests::raw_peer::{RawPeer, honest_answer};
use dht_tests::{test_config, wait_for};
use dht_wire::{ErrorCode, PeerFrame, PeerMessage};
use futures::{SinkExt, StreamExt};

/// Peers get a minute to answer, and many requests may wait for one peer.
fn patient() -> NodeConfig {
    let mut config = test_config(&[]);
    config.min_replication = 1;
    config.rpc_timeout = Duration::from_secs(60);
    config.lookup_peer_timeout = Duration::from_secs(60);
    config.lookup_deadline = Duration::from_secs(120);
    config.max_pending_requests = 4 * PUTS_IN_FLIGHT;
    config
}

/// Where `node` reaches the raw peer: on the connection the peer opened.
fn contact_of(peer: &RawPeer) -> Contact {
    Contact {
        id: peer.identity.id,
        addr: "127.0.0.1:9".parse().expect("literal"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_answered_overloaded_is_sent_again() -> anyhow::Result<()> {
    let node = std::sync::Arc::new(Node::start(patient()).await?);
    let (mut peer, _) = RawPeer::connect(node.listen_addr()).await?;
    let contact = contact_of(&peer);
    let ping = tokio::spawn({
        let node = node.clone();
        async move { node.ping(contact).await }
    });
    // Two refusals, then an answer.
    let mut pings = 0;
    while pings < 3 {
        let frame = tokio::time::timeout(Duration::from_secs(10), peer.framed.next())
            .await?
            .expect("open")?;
        if frame.message != PeerMessage::Ping {
            continue;
        }
        pings += 1;
        let answer = if pings < 3 {
            PeerMessage::Error {
                code: ErrorCode::Overloaded,
            }
        } else {
            PeerMessage::Pong
        };
        peer.framed
            .send(PeerFrame::response(frame.request_id, answer))
            .await?;
    }
    let answered = tokio::time::timeout(Duration::from_secs(10), ping).await??;
    assert!(answered.is_ok(), "{answered:?}");
    node.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puts_beyond_those_in_flight_wait_for_a_slot() -> anyhow::Result<()> {
    let node = Node::start(patient()).await?;
    // The node's only peer, which answers nothing until told.
    let (mut peer, _) = RawPeer::connect(node.listen_addr()).await?;
    assert!(
        wait_for(Duration::from_secs(10), || async {
            node.routing_table_len() == 1
        })
        .await
    );
    let options = PutOptions {
        ttl: Duration::from_secs(600),
        replication: 1,
    };
    let value = Bytes::from_static(b"queued");
    let mut puts = Vec::new();
    for i in 0..PUTS_IN_FLIGHT {
        let key = Key::sha256(&i.to_be_bytes());
        puts.push(node.spawn_put(key, value.clone(), options).await?);
    }
    // Every one of them waits on its lookup's FIND_NODE to the silent peer.
    let mut waiting = Vec::new();
    while waiting.len() < PUTS_IN_FLIGHT {
        let frame = tokio::time::timeout(Duration::from_secs(10), peer.framed.next())
            .await?
            .expect("open")?;
        if !frame.is_response {
            waiting.push(frame);
        }
    }
    // So one more does not start (within a generous moment: it would start at once).
    let extra = Key::sha256(b"one too many");
    let blocked = tokio::time::timeout(
        Duration::from_millis(300),
        node.spawn_put(extra, value.clone(), options),
    )
    .await;
    assert!(blocked.is_err(), "a PUT started beyond those in flight");

    // The peer answers: the lookups end, their slots free up, and the extra PUT goes.
    let answering = tokio::spawn(async move {
        for frame in waiting {
            let answer = honest_answer(&frame.message);
            peer.framed
                .send(PeerFrame::response(frame.request_id, answer))
                .await?;
        }
        while let Some(Ok(frame)) = peer.framed.next().await {
            if !frame.is_response {
                let answer = honest_answer(&frame.message);
                peer.framed
                    .send(PeerFrame::response(frame.request_id, answer))
                    .await?;
            }
        }
        anyhow::Ok(())
    });
    let extra_put = tokio::time::timeout(
        Duration::from_secs(10),
        node.spawn_put(extra, value, options),
    )
    .await??;
    let report = tokio::time::timeout(Duration::from_secs(10), extra_put).await??;
    assert_eq!(report.replicas, 1);
    for put in puts {
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(10), put)
                .await??
                .replicas,
            1
        );
    }
    node.shutdown().await;
    answering.abort();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_that_answers_only_overloaded_leaves_the_table() -> anyhow::Result<()> {
    let mut config = test_config(&[]);
    config.liveness_interval = Duration::from_millis(200);
    config.ping_failures = 2;
    let node = Node::start(config).await?;
    let (mut peer, _) = RawPeer::connect(node.listen_addr()).await?;
    assert!(
        wait_for(Duration::from_secs(10), || async {
            node.routing_table_len() == 1
        })
        .await
    );
    // Every request is refused as over the rate limit, however often it comes back.
    let refusing = tokio::spawn(async move {
        while let Some(Ok(frame)) = peer.framed.next().await {
            if frame.is_response {
                continue;
            }
            let refusal = PeerMessage::Error {
                code: ErrorCode::Overloaded,
            };
            if peer
                .framed
                .send(PeerFrame::response(frame.request_id, refusal))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    assert!(
        wait_for(Duration::from_secs(20), || async {
            node.routing_table_len() == 0
        })
        .await,
        "a contact that serves nobody kept its place"
    );
    node.shutdown().await;
    refusing.abort();
    Ok(())
}

/// Issue 18, attack 5: four API clients sending PUTs as fast as they can held every one
/// of the node's PUT slots (64 per connection, 256 in all), and another module's PUT
/// waited behind them. Each connection now holds at most `PUTS_PER_CONNECTION` (32).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_busy_api_clients_leave_put_slots_for_another() -> anyhow::Result<()> {
    use dht_api::{ApiConfig, PUTS_PER_CONNECTION};
    use dht_tests::{ApiClient, TestNode};

    let node = TestNode::start_with_api(patient(), ApiConfig::default()).await?;
    // The node's only peer, which answers nothing: every PUT's lookup waits on it.
    let (mut peer, _) = RawPeer::connect(node.node.listen_addr()).await?;
    assert!(
        wait_for(Duration::from_secs(10), || async {
            node.node.routing_table_len() == 1
        })
        .await
    );
    let mut busy = Vec::new();
    for c in 0..4u32 {
        let mut client = ApiClient::connect(node.api_addr()).await?;
        for i in 0..64u32 {
            let key = Key::sha256(format!("busy/{c}/{i}").as_bytes());
            client.put(key, b"v", 600, 1).await?;
        }
        busy.push(client);
    }
    // The busy clients' PUTs start, up to their share each.
    let mut lookups = 0;
    while lookups < 4 * PUTS_PER_CONNECTION {
        let frame = tokio::time::timeout(Duration::from_secs(10), peer.framed.next())
            .await?
            .expect("open")?;
        lookups += usize::from(!frame.is_response);
    }
    let mut other = ApiClient::connect(node.api_addr()).await?;
    let mine = Key::sha256(b"another module's PUT");
    other.put(mine, b"v", 600, 1).await?;
    let started = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match peer.framed.next().await {
                Some(Ok(frame)) => {
                    if let PeerMessage::FindNode { target } = frame.message {
                        if target == mine {
                            return true;
                        }
                    }
                }
                _ => return false,
            }
        }
    })
    .await;
    assert_eq!(
        started.ok(),
        Some(true),
        "another client's PUT did not start while four busy clients held slots"
    );
    drop(busy);
    node.stop().await;
    Ok(())
}
