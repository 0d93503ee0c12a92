//! The peer port under a thousand malformed inputs, twenty-five connections at a time:
//! garbage that is not TLS, and malformed frames after a valid TLS and HELLO exchange,
//! while a well-behaved peer is served throughout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{bail, ensure};
use dht_core::{Key, NodeConfig, NodeId};
use dht_tests::raw_peer::RawPeer;
use dht_tests::{TestNode, init_tracing, test_config, wait_for};
use dht_wire::PeerMessage;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::inputs::{Ending, PeerCase, PeerExpect, not_tls, peer_case};
use crate::{ConnectionSampler, WAIT, bounded, seeded_rng};

/// Connections that are not TLS.
const NOT_TLS: usize = 300;
/// Malformed frames after a valid handshake.
const FRAMES: usize = 700;
/// Hostile connections open at once.
const AT_ONCE: usize = 25;
/// The node's connection limit in this test.
const MAX_CONNECTIONS: usize = 128;

/// Writes garbage that is not TLS, closes our side; `Ok` when the node closes too.
async fn send_not_tls(addr: SocketAddr, what: &'static str, bytes: Vec<u8>) -> Result<(), String> {
    let fail = |why: String| Err(format!("{what}: {why}"));
    let mut stream = match TcpStream::connect(addr).await {
        Ok(stream) => stream,
        Err(e) => return fail(format!("connect: {e}")),
    };
    let _ = stream.write_all(&bytes).await;
    let _ = stream.shutdown().await;
    let read_to_end = async {
        let mut buf = [0u8; 4096];
        while let Ok(1..) = stream.read(&mut buf).await {}
    };
    match tokio::time::timeout(WAIT, read_to_end).await {
        Ok(()) => Ok(()),
        Err(_) => fail("the node did not close the connection within 10 s".into()),
    }
}

/// Connects (TLS and HELLO), sends the case; returns the peer's id when the node
/// closed the connection as it must.
async fn send_frame(addr: SocketAddr, case: PeerCase) -> Result<(NodeId, PeerExpect), String> {
    let shown = &case.bytes[..case.bytes.len().min(48)];
    let fail = |why: String| Err(format!("{} {shown:02x?}: {why}", case.what));
    let connected = if case.pipelined {
        RawPeer::connect_pipelined(addr, &case.bytes).await
    } else {
        RawPeer::connect(addr).await
    };
    let mut peer = match connected {
        Ok((peer, _)) => peer,
        Err(e) => return fail(format!("the handshake failed: {e:#}")),
    };
    if !case.pipelined {
        // The node may close before reading everything: a failed write is no failure.
        let _ = peer.write_raw(&case.bytes).await;
    }
    if case.ending == Ending::CloseWrite {
        let _ = peer.close_write().await;
    }
    if !peer.closed_within(WAIT).await {
        return fail("the node did not close the connection within 10 s".into());
    }
    Ok((peer.identity.id, case.expect))
}

/// PING and FIND_NODE in turn, 5 ms apart, until `stop`: every one answered
/// correctly. Returns the rounds done, and the peer (still connected).
async fn well_behaved(
    mut peer: RawPeer,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<(usize, RawPeer)> {
    let mut rounds = 0;
    while !stop.load(Ordering::Relaxed) {
        match peer.request(PeerMessage::Ping).await? {
            PeerMessage::Pong => {}
            other => bail!("PING answered with {other:?}"),
        }
        let target = Key::sha256(format!("hostile/peer/{rounds}").as_bytes());
        match peer.request(PeerMessage::FindNode { target }).await? {
            PeerMessage::Nodes { contacts } => {
                ensure!(
                    contacts.iter().all(|c| c.id != peer.identity.id),
                    "NODES lists the asker"
                );
            }
            other => bail!("FIND_NODE answered with {other:?}"),
        }
        rounds += 1;
        // Well within the per-peer rate, so that every answer must be a real one.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok((rounds, peer))
}

/// 2. A thousand malformed inputs on the peer port: 300 connections of garbage that is
///    not TLS (random bytes, a peer frame in plain TCP, a TLS record of garbage, HTTP),
///    and 700 connections that complete TLS and HELLO, then send bit-flipped or
///    truncated frames, lengths above the cap or below the header, unknown types, wrong
///    direction flags, answers to requests never sent, bad headers in the same write
///    as the HELLO. The node closes every one,
///    counts each (`handshakes_refused`, `frames_malformed`, `frames_unsolicited`,
///    `message_deadline_cuts`, `peers_penalised`), never holds more than
///    `max_connections`, keeps none of the offending peers in its routing table and
///    serves a well-behaved peer throughout; at the end only that peer is connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_malformed_peer_inputs() -> anyhow::Result<()> {
    init_tracing();
    let mut rng = seeded_rng("a_thousand_malformed_peer_inputs");
    let config = NodeConfig {
        max_connections: MAX_CONNECTIONS,
        frame_deadline: Duration::from_millis(500),
        connect_timeout: Duration::from_secs(1),
        ..test_config(&[])
    };
    let node = TestNode::start(config, false).await?;
    let addr = node.node.listen_addr();
    let sampler = ConnectionSampler::start(node.node.clone());
    let (good, _) = RawPeer::connect(addr).await?;
    let good_id = good.identity.id;
    let stop = Arc::new(AtomicBool::new(false));
    let good = tokio::spawn(well_behaved(good, stop.clone()));

    let garbage: Vec<_> = (0..NOT_TLS).map(|i| not_tls(i, &mut rng)).collect();
    let frames: Vec<PeerCase> = (0..FRAMES).map(|i| peer_case(i, &mut rng)).collect();
    let not_tls_outcomes = bounded(AT_ONCE, garbage, |(what, bytes)| {
        send_not_tls(addr, what, bytes)
    })
    .await;
    let frame_outcomes = bounded(AT_ONCE, frames, |case| send_frame(addr, case)).await;
    stop.store(true, Ordering::Relaxed);
    let (rounds, mut good) = good.await??;
    let most_open = sampler.finish().await;

    let mut failures: Vec<String> = not_tls_outcomes
        .into_iter()
        .filter_map(Result::err)
        .collect();
    let mut closed = Vec::new();
    for outcome in frame_outcomes {
        match outcome {
            Ok(done) => closed.push(done),
            Err(e) => failures.push(e),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} hostile connections were not handled:\n{}",
        failures.len(),
        NOT_TLS + FRAMES,
        failures.join("\n")
    );
    assert!(
        rounds >= 10,
        "only {rounds} rounds of the well-behaved peer during the flood"
    );
    assert!(
        most_open <= MAX_CONNECTIONS,
        "{most_open} connections open at once, max_connections is {MAX_CONNECTIONS}"
    );
    let expected = |kind| closed.iter().filter(|(_, e)| *e == kind).count() as u64;
    let (malformed, unsolicited, cut) = (
        expected(PeerExpect::Malformed),
        expected(PeerExpect::Unsolicited),
        expected(PeerExpect::DeadlineCut),
    );
    let stats = node.node.stats();
    eprintln!("{stats:#?}\nmost connections open at once: {most_open}; good peer rounds: {rounds}");
    assert!(
        stats.handshakes_refused >= NOT_TLS as u64,
        "handshakes_refused {} < {NOT_TLS}",
        stats.handshakes_refused
    );
    assert!(
        stats.frames_malformed >= malformed,
        "frames_malformed {} < {malformed}",
        stats.frames_malformed
    );
    assert!(
        stats.frames_unsolicited >= unsolicited,
        "frames_unsolicited {} < {unsolicited}",
        stats.frames_unsolicited
    );
    assert!(
        stats.message_deadline_cuts >= cut,
        "message_deadline_cuts {} < {cut}",
        stats.message_deadline_cuts
    );
    assert!(
        stats.frames_malformed + stats.frames_unsolicited + stats.message_deadline_cuts
            <= FRAMES as u64,
        "more connections closed for a frame than there were hostile ones: {stats:?}"
    );
    assert!(
        stats.peers_penalised >= malformed + unsolicited,
        "peers_penalised {} < {}",
        stats.peers_penalised,
        malformed + unsolicited
    );
    // None of the peers that broke the protocol is in the routing table; the
    // well-behaved one is.
    let table = node.node.routing_contacts();
    let kept: Vec<String> = closed
        .iter()
        .filter(|(id, expect)| {
            *expect != PeerExpect::DeadlineCut && table.iter().any(|c| c.id == *id)
        })
        .map(|(id, expect)| format!("{} ({expect:?})", id.short()))
        .collect();
    assert!(
        kept.is_empty(),
        "{} penalised peers are still in the routing table: {kept:?}",
        kept.len()
    );
    assert!(
        table.iter().any(|c| c.id == good_id),
        "the well-behaved peer is not in the routing table"
    );
    // Every hostile connection is gone: only the well-behaved peer's remains.
    let settled = wait_for(WAIT, || async { node.node.stats().open_connections <= 1 }).await;
    assert!(
        settled,
        "{} connections still open at the end",
        node.node.stats().open_connections
    );
    assert!(
        matches!(good.request(PeerMessage::Ping).await?, PeerMessage::Pong),
        "the well-behaved peer is no longer served"
    );
    node.stop().await;
    Ok(())
}

/// 2b. An honest peer whose connection ends abruptly (its process dies: TCP closes
///     without a TLS close_notify) broke no rule of the protocol: the node counts no
///     malformed frame, penalises nobody, and keeps the peer in its routing table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abrupt_disconnect_is_not_a_protocol_violation() -> anyhow::Result<()> {
    init_tracing();
    let node = TestNode::start(test_config(&[]), false).await?;
    let (mut peer, _) = RawPeer::connect(node.node.listen_addr()).await?;
    let id = peer.identity.id;
    assert!(matches!(
        peer.request(PeerMessage::Ping).await?,
        PeerMessage::Pong
    ));
    // Dropped without closing TLS: what the node sees when a peer's process is killed.
    drop(peer);
    let gone = wait_for(WAIT, || async { node.node.stats().open_connections == 0 }).await;
    assert!(gone, "the node kept the dead connection");
    let stats = node.node.stats();
    assert_eq!(
        (stats.frames_malformed, stats.peers_penalised),
        (0, 0),
        "a lost connection was counted as a malformed frame and the peer penalised"
    );
    assert!(
        node.node.routing_contacts().iter().any(|c| c.id == id),
        "the peer left the routing table because its connection ended"
    );
    node.stop().await;
    Ok(())
}
