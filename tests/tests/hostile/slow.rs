//! Slowloris-style clients: idle peer connections, TCP connections that never start
//! TLS, and requests written one byte at a time, on the peer port and the API port.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use dht_api::ApiConfig;
use dht_core::{Key, NodeConfig};
use dht_tests::raw_peer::RawPeer;
use dht_tests::{ApiClient, TestNode, init_tracing, test_config, wait_for};
use dht_wire::{PeerFrame, PeerMessage};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::inputs::{api_get, encode};
use crate::{WAIT, bounded};

/// Idle peer connections.
const IDLE: usize = 500;
/// TCP connections that never start TLS.
const SILENT: usize = 200;
/// Byte-at-a-time connections, on each port.
const SLOW: usize = 100;
/// The pause between two bytes of a byte-at-a-time request.
const BYTE_EVERY: Duration = Duration::from_millis(200);

/// A new peer connects and gets PONG.
async fn new_peer_is_served(addr: SocketAddr) -> anyhow::Result<()> {
    let (mut peer, _) = RawPeer::connect(addr).await.context("a new peer")?;
    let answer = peer.request(PeerMessage::Ping).await?;
    anyhow::ensure!(answer == PeerMessage::Pong, "a new peer got {answer:?}");
    Ok(())
}

/// 4a. 500 peer connections that complete TLS and HELLO and then stay silent are all
///     closed by the idle timeout (1 s) or as transient connections beyond the warm set:
///     `connections_idle_closed` and `connections_trimmed` reach 500 together, every
///     one sees the close, the node's open connections fall back to zero, and a new
///     peer is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_peer_connections_are_closed() -> anyhow::Result<()> {
    init_tracing();
    let config = NodeConfig {
        idle_timeout: Duration::from_secs(1),
        ..test_config(&[])
    };
    let node = TestNode::start(config, false).await?;
    let addr = node.node.listen_addr();
    let peers = bounded(50, 0..IDLE, |_| async move { RawPeer::connect(addr).await }).await;
    let mut idle = Vec::with_capacity(IDLE);
    for peer in peers {
        idle.push(peer.context("an idle peer's handshake")?.0);
    }
    // Each closes either at its idle limit or, while more connections to peers outside
    // the table are open than the warm set keeps, as one of those (which of the two
    // depends on how fast the handshakes came).
    let closed =
        |stats: &dht_core::NodeStats| stats.connections_idle_closed + stats.connections_trimmed;
    let all_closed = wait_for(2 * WAIT, || async {
        let stats = node.node.stats();
        closed(&stats) >= IDLE as u64 && stats.open_connections == 0
    })
    .await;
    let stats = node.node.stats();
    assert!(
        all_closed,
        "idle connections not closed: {} closed as idle, {} beyond the warm set, {} still open",
        stats.connections_idle_closed, stats.connections_trimmed, stats.open_connections
    );
    let seen = bounded(IDLE, idle, |mut peer| async move {
        peer.closed_within(WAIT).await
    })
    .await;
    let missed = seen.iter().filter(|closed| !**closed).count();
    assert_eq!(
        missed, 0,
        "{missed} idle peers did not see their connection closed"
    );
    new_peer_is_served(addr).await?;
    node.stop().await;
    Ok(())
}

/// 4b. 200 TCP connections that never start TLS are cut by the handshake timeout
///     (`connect_timeout` 1 s) and counted in `handshakes_refused`; a peer is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_cut_by_the_handshake_timeout() -> anyhow::Result<()> {
    init_tracing();
    let config = NodeConfig {
        connect_timeout: Duration::from_secs(1),
        ..test_config(&[])
    };
    let node = TestNode::start(config, false).await?;
    let addr = node.node.listen_addr();
    let started = Instant::now();
    let cut = bounded(SILENT, 0..SILENT, |_| async move {
        let mut stream = TcpStream::connect(addr).await?;
        let mut buf = [0u8; 64];
        // The node never writes first: the read ends with the node's close.
        let read = tokio::time::timeout(WAIT, stream.read(&mut buf)).await;
        anyhow::ensure!(read.is_ok(), "not cut within 10 s");
        anyhow::Ok(started.elapsed())
    })
    .await;
    let mut fastest = WAIT;
    for outcome in cut {
        fastest = fastest.min(outcome?);
    }
    // Each was accepted after `started`: none may be cut before the timeout.
    assert!(
        fastest >= Duration::from_millis(950),
        "a silent connection was cut after {fastest:?}, before the handshake timeout"
    );
    let counted = wait_for(WAIT, || async {
        node.node.stats().handshakes_refused >= SILENT as u64
    })
    .await;
    assert!(
        counted,
        "handshakes_refused is {}",
        node.node.stats().handshakes_refused
    );
    new_peer_is_served(addr).await?;
    node.stop().await;
    Ok(())
}

/// What a byte-at-a-time writer saw.
#[derive(Debug)]
struct Slow {
    /// Bytes written before the close was seen.
    written: usize,
    /// Of the message's bytes.
    total: usize,
    /// From the first byte to the close, `None` if no close within 10 s of the end.
    cut_after: Option<Duration>,
}

/// Writes `bytes` one at a time, `BYTE_EVERY` apart, until the other side closes.
async fn byte_at_a_time<S>(stream: S, bytes: Vec<u8>) -> Slow
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let started = Instant::now();
    let closed = async {
        let mut buf = [0u8; 256];
        // No answer can come before the message is whole: anything read is dropped.
        while let Ok(1..) = reader.read(&mut buf).await {}
    };
    tokio::pin!(closed);
    let mut written = 0;
    loop {
        if written < bytes.len() {
            let byte = &bytes[written..=written];
            if writer.write_all(byte).await.is_err() || writer.flush().await.is_err() {
                break;
            }
            written += 1;
        }
        let pause = if written < bytes.len() {
            BYTE_EVERY
        } else {
            WAIT
        };
        tokio::select! {
            () = &mut closed => {
                return Slow { written, total: bytes.len(), cut_after: Some(started.elapsed()) };
            }
            () = tokio::time::sleep(pause) => {
                if written == bytes.len() {
                    return Slow { written, total: bytes.len(), cut_after: None };
                }
            }
        }
    }
    // A failed write: the other side is gone.
    Slow {
        written,
        total: bytes.len(),
        cut_after: Some(started.elapsed()),
    }
}

/// Whether a byte-at-a-time writer was cut well before its message was whole.
fn cut_early(slow: &Slow) -> bool {
    slow.written < slow.total && slow.cut_after.is_some_and(|t| t < Duration::from_secs(5))
}

/// 5. 100 API connections writing a DHT_GET one byte every 200 ms (7 s for the whole)
///    and 100 peer connections writing a FIND_NODE frame the same way after TLS and
///    HELLO (9 s) are all cut long before the end, by the API's `message_deadline` and
///    the node's `frame_deadline` (1 s each); the node counts `message_deadline_cuts`,
///    and a new API client and a new peer are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_at_a_time_requests_are_cut() -> anyhow::Result<()> {
    init_tracing();
    let config = NodeConfig {
        frame_deadline: Duration::from_secs(1),
        ..test_config(&[])
    };
    let api = ApiConfig {
        message_deadline: Duration::from_secs(1),
        ..ApiConfig::default()
    };
    let node = TestNode::start_with_api(config, api).await?;
    let (peer_addr, api_addr) = (node.node.listen_addr(), node.api_addr());
    let peers = bounded(
        25,
        0..SLOW,
        |_| async move { RawPeer::connect(peer_addr).await },
    )
    .await;
    let mut slow_peers = Vec::with_capacity(SLOW);
    for peer in peers {
        slow_peers.push(peer.context("a slow peer's handshake")?.0);
    }
    let find_node = encode(&PeerFrame::request(
        1,
        PeerMessage::FindNode {
            target: Key::sha256(b"hostile/slow"),
        },
    ));
    let get = api_get(&Key::sha256(b"hostile/slow"));
    let api_side = bounded(SLOW, 0..SLOW, |_| {
        let get = get.clone();
        async move {
            match TcpStream::connect(api_addr).await {
                Ok(stream) => byte_at_a_time(stream, get).await,
                Err(_) => Slow {
                    written: 0,
                    total: get.len(),
                    cut_after: None,
                },
            }
        }
    });
    let peer_side = bounded(SLOW, slow_peers, |peer| {
        byte_at_a_time(peer.framed.into_inner(), find_node.clone())
    });
    let (api_side, peer_side) = tokio::join!(api_side, peer_side);
    for (side, outcomes) in [("API", &api_side), ("peer", &peer_side)] {
        let slowest = outcomes.iter().filter_map(|s| s.cut_after).max();
        let most = outcomes.iter().map(|s| s.written).max();
        eprintln!("{side}: slowest cut after {slowest:?}, at most {most:?} bytes written");
        let late: Vec<&Slow> = outcomes.iter().filter(|s| !cut_early(s)).collect();
        assert!(
            late.is_empty(),
            "{} of {SLOW} byte-at-a-time {side} connections were not cut early: {:?}",
            late.len(),
            &late[..late.len().min(5)]
        );
    }
    let cuts = node.node.stats().message_deadline_cuts;
    assert!(cuts >= SLOW as u64, "message_deadline_cuts is {cuts}");
    let mut client = ApiClient::connect(api_addr).await?;
    assert_eq!(client.get(Key::sha256(b"hostile/slow")).await?, None);
    new_peer_is_served(peer_addr).await?;
    node.stop().await;
    Ok(())
}
