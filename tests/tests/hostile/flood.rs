//! Limits per source address: a request flood from one address at ten times its rate,
//! and more connections from one address than `max_connections_per_ip`. The flooder
//! connects from 127.0.0.2, "another host" on loopback, with `limit_local_addresses`.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use dht_core::NodeConfig;
use dht_tests::raw_peer::RawPeer;
use dht_tests::{TestNode, init_tracing, test_config};
use dht_wire::{ErrorCode, PeerFrame, PeerMessage};
use futures::{SinkExt, StreamExt};

use crate::WAIT;

/// The address the hostile peer connects from.
const FLOODER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
/// Requests per second one address may make, and its burst.
const RATE: f64 = 50.0;
/// Requests the flooder sends: ten times the rate, within about a second.
const FLOOD: usize = 500;
/// Batches the flood is sent in, 100 ms apart.
const BATCHES: usize = 10;

/// PINGs every 50 ms until `stop` (20 a second, below the rate); returns the peer and
/// how many PONGs came back, failing on any other answer.
async fn well_behaved(
    mut peer: RawPeer,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<(usize, RawPeer)> {
    let mut pongs = 0;
    while !stop.load(Ordering::Relaxed) {
        match peer.request(PeerMessage::Ping).await? {
            PeerMessage::Pong => pongs += 1,
            other => bail!("the well-behaved peer's PING {pongs} was answered {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok((pongs, peer))
}

/// 3a. With `ip_rate` (50/s, burst 50) and a very high per-peer rate, a peer at
///     127.0.0.2 sends 500 pipelined PINGs within about a second. At most the burst plus
///     the rate times the elapsed time are answered PONG, the rest ERROR Overloaded
///     (counted in `requests_rate_limited`), and a peer at 127.0.0.1 pinging within its
///     own rate gets every PONG meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_flood_from_one_address_is_answered_overloaded() -> anyhow::Result<()> {
    init_tracing();
    let config = NodeConfig {
        limit_local_addresses: true,
        ip_rate: (RATE, RATE),
        peer_rate: (1e6, 1e6),
        ..test_config(&[])
    };
    let node = TestNode::start(config, false).await?;
    let addr = node.node.listen_addr();
    let (good, _) = RawPeer::connect(addr).await?;
    let (flooder, _) = RawPeer::connect_from(FLOODER, addr)
        .await
        .context("connecting from 127.0.0.2 (is the whole of 127/8 on loopback?)")?;
    let stop = Arc::new(AtomicBool::new(false));
    let good = tokio::spawn(well_behaved(good, stop.clone()));

    let (mut sink, mut answers) = flooder.framed.split();
    let started = Instant::now();
    let sender = tokio::spawn(async move {
        let per_batch = FLOOD / BATCHES;
        for batch in 0..BATCHES {
            for i in 0..per_batch {
                let id = u64::try_from(batch * per_batch + i + 1).expect("small");
                sink.feed(PeerFrame::request(id, PeerMessage::Ping)).await?;
            }
            sink.flush().await?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::Ok(sink)
    });
    let (mut pongs, mut overloaded) = (0usize, 0usize);
    for n in 0..FLOOD {
        match tokio::time::timeout(WAIT, answers.next()).await {
            Ok(Some(Ok(PeerFrame {
                is_response: true,
                message,
                ..
            }))) => match message {
                PeerMessage::Pong => pongs += 1,
                PeerMessage::Error {
                    code: ErrorCode::Overloaded,
                } => overloaded += 1,
                other => bail!("flood answer {n} is {other:?}"),
            },
            other => bail!("flood answer {n}: {other:?}"),
        }
    }
    let elapsed = started.elapsed();
    let _sink = sender.await??;
    stop.store(true, Ordering::Relaxed);
    let (good_pongs, _good) = good.await??;

    let allowed = RATE + RATE * elapsed.as_secs_f64() + 5.0;
    eprintln!(
        "flood of {FLOOD} in {elapsed:?}: {pongs} PONG (at most {allowed:.0} allowed), \
         {overloaded} overloaded; the well-behaved peer got {good_pongs} PONG"
    );
    assert_eq!(pongs + overloaded, FLOOD);
    assert!(
        (pongs as f64) <= allowed,
        "{pongs} PONG in {elapsed:?}: more than burst + rate x time ({allowed:.0})"
    );
    assert!(
        pongs >= RATE as usize,
        "only {pongs} PONG: the burst of {RATE} was not honoured"
    );
    assert!(
        overloaded >= FLOOD / 2,
        "only {overloaded} of {FLOOD} requests refused"
    );
    assert!(
        good_pongs >= 5,
        "the well-behaved peer got only {good_pongs} PONG during the flood"
    );
    let limited = node.node.stats().requests_rate_limited;
    assert_eq!(
        limited, overloaded as u64,
        "requests_rate_limited counts {limited}, the flooder saw {overloaded}"
    );
    node.stop().await;
    Ok(())
}

/// 3b. With `max_connections_per_ip` 4, four peers at 127.0.0.2 are let in and served,
///     a fifth is closed before HELLO (counted in `connections_refused_ip`), a peer at
///     127.0.0.1 is let in; once one of the four leaves, 127.0.0.2 may connect again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifth_connection_from_one_address_is_refused() -> anyhow::Result<()> {
    init_tracing();
    let config = NodeConfig {
        limit_local_addresses: true,
        max_connections_per_ip: 4,
        ..test_config(&[])
    };
    let node = TestNode::start(config, false).await?;
    let addr = node.node.listen_addr();
    let mut held = Vec::new();
    for i in 0..4 {
        let (peer, _) = RawPeer::connect_from(FLOODER, addr)
            .await
            .with_context(|| format!("connection {} from 127.0.0.2", i + 1))?;
        held.push(peer);
    }
    assert!(
        RawPeer::connect_from(FLOODER, addr).await.is_err(),
        "a fifth connection from 127.0.0.2 was let in"
    );
    assert!(
        node.node.stats().connections_refused_ip >= 1,
        "connections_refused_ip not counted"
    );
    let (mut local, _) = RawPeer::connect(addr).await.context("from 127.0.0.1")?;
    assert!(matches!(
        local.request(PeerMessage::Ping).await?,
        PeerMessage::Pong
    ));
    for peer in &mut held {
        assert!(matches!(
            peer.request(PeerMessage::Ping).await?,
            PeerMessage::Pong
        ));
    }
    // One of the four leaves: its slot comes back.
    let mut leaving = held.pop().expect("four held");
    leaving.close_write().await?;
    assert!(
        leaving.closed_within(WAIT).await,
        "the node kept a closed connection"
    );
    let end = tokio::time::Instant::now() + WAIT;
    let mut again = loop {
        match RawPeer::connect_from(FLOODER, addr).await {
            Ok((peer, _)) => break peer,
            Err(e) if tokio::time::Instant::now() >= end => {
                bail!("127.0.0.2 cannot connect again after one of its peers left: {e:#}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    assert!(matches!(
        again.request(PeerMessage::Ping).await?,
        PeerMessage::Pong
    ));
    node.stop().await;
    Ok(())
}
