//! Tests of the simulated network: delays, loss, partitions, silence and held bytes.
use super::*;
use std::net::Ipv4Addr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn host(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, n))
}

/// 100 ms between any two hosts.
fn network(loss: f64) -> SimNetwork {
    SimNetwork::new(1, 1, loss, |_, _| Duration::from_millis(100))
}

async fn connect(net: &SimNetwork) -> (Connection, Connection) {
    let mut listener = net
        .transport(host(2))
        .listen(SocketAddr::new(host(2), 0))
        .await
        .expect("listen");
    let addr = listener.local_addr();
    let dial = tokio::spawn(net.transport(host(1)).dial(addr, None));
    let inbound = listener.accept().await.expect("accept").upgrade.await;
    (
        dial.await.expect("join").expect("dial"),
        inbound.expect("up"),
    )
}

#[tokio::test(start_paused = true)]
async fn a_dial_costs_a_round_trip_and_bytes_half_of_one() {
    let net = network(0.0);
    let start = Instant::now();
    let (mut a, mut b) = connect(&net).await;
    assert_eq!(start.elapsed(), Duration::from_millis(100), "the dial");
    assert_eq!(b.remote_addr.ip(), host(1));

    let sent = Instant::now();
    a.io.write_all(b"ping").await.expect("write");
    let mut buf = [0u8; 4];
    b.io.read_exact(&mut buf).await.expect("read");
    assert_eq!(&buf, b"ping");
    assert_eq!(sent.elapsed(), Duration::from_millis(50), "one way");
    b.io.write_all(b"pong").await.expect("write");
    a.io.read_exact(&mut buf).await.expect("read");
    assert_eq!(&buf, b"pong");
    assert_eq!(sent.elapsed(), Duration::from_millis(100), "a round trip");

    // Shut down: the other end reads what was in flight, then the end.
    a.io.write_all(b"bye").await.expect("write");
    a.io.shutdown().await.expect("shutdown");
    let mut rest = Vec::new();
    b.io.read_to_end(&mut rest).await.expect("read");
    assert_eq!(rest, b"bye");
    drop(b);
    assert!(a.io.write_all(b"x").await.is_err(), "the reader is gone");
}

#[tokio::test(start_paused = true)]
async fn a_lost_write_arrives_a_retransmission_timeout_later_and_in_order() {
    let net = network(1.0);
    let (mut a, mut b) = connect(&net).await;
    let sent = Instant::now();
    a.io.write_all(b"one").await.expect("write");
    let mut buf = [0u8; 3];
    b.io.read_exact(&mut buf).await.expect("read");
    // 50 ms one way, plus a timeout of two round trips.
    assert_eq!(sent.elapsed(), Duration::from_millis(250));
    assert!(
        net.transport(host(1))
            .dial(SocketAddr::new(host(3), 1), None)
            .await
            .is_err(),
        "nothing listens there"
    );
}

/// Whether a read of one byte from `io` times out within `secs` simulated seconds.
async fn silent_for(io: &mut Box<dyn crate::transport::PeerIo>, secs: u64) -> bool {
    let mut byte = [0u8; 1];
    tokio::time::timeout(Duration::from_secs(secs), io.read(&mut byte))
        .await
        .is_err()
}

#[tokio::test(start_paused = true)]
async fn a_partition_holds_bytes_and_dials_until_the_heal() {
    let net = network(0.0);
    let (mut a, mut b) = connect(&net).await;
    net.partition(|ip| ip == host(1));
    a.io.write_all(b"held").await.expect("a write is accepted");
    a.io.shutdown().await.expect("shutdown");
    assert!(silent_for(&mut b.io, 60).await, "nothing crosses");
    let mut listener = net
        .transport(host(2))
        .listen(SocketAddr::new(host(2), 0))
        .await
        .expect("listen");
    let dial = net.transport(host(1)).dial(listener.local_addr(), None);
    assert!(
        tokio::time::timeout(Duration::from_secs(60), dial)
            .await
            .is_err(),
        "a dial across the partition hangs"
    );
    // Within one side, all is well.
    let local = net.transport(host(2)).dial(listener.local_addr(), None);
    assert!(local.await.is_ok());
    assert!(listener.accept().await.is_ok());

    net.heal();
    let healed = Instant::now();
    let mut rest = Vec::new();
    b.io.read_to_end(&mut rest).await.expect("read");
    assert_eq!(rest, b"held", "the bytes, then the end of the stream");
    // One way plus a retransmission timeout (two round trips, at least 200 ms).
    assert_eq!(healed.elapsed(), Duration::from_millis(250));
}

/// Bytes held longer than TCP retransmits are not delivered at the heal: the sender
/// gave the connection up, and both ends find it reset.
#[tokio::test(start_paused = true)]
async fn a_partition_longer_than_tcp_retransmits_resets_the_connection() {
    let net = network(0.0);
    let (mut a, mut b) = connect(&net).await;
    net.partition(|ip| ip == host(1));
    a.io.write_all(b"held").await.expect("a write is accepted");
    tokio::time::sleep(TCP_GIVE_UP - Duration::from_secs(1)).await;
    a.io.write_all(b"still")
        .await
        .expect("still retransmitting");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(a.io.write_all(b"x").await.is_err(), "the sender gave up");
    net.heal();
    let mut rest = Vec::new();
    let read = b.io.read_to_end(&mut rest).await;
    assert!(read.is_err() && rest.is_empty(), "{read:?} {rest:?}");
}

#[tokio::test(start_paused = true)]
async fn held_pipes_of_closed_connections_are_forgotten() {
    let net = network(0.0);
    let _listener = net
        .transport(host(2))
        .listen(SocketAddr::new(host(2), 0))
        .await
        .expect("listen");
    net.silence([host(2)]);
    for _ in 0..1000 {
        let (mut a, b) = connect(&net).await;
        a.io.write_all(b"held").await.expect("write");
        drop((a, b));
    }
    let held = net.state().held.len();
    assert!(held < 200, "{held} pipes listed for 1 open connection");
}

#[tokio::test(start_paused = true)]
async fn a_silenced_host_accepts_and_then_says_nothing() {
    let net = network(0.0);
    let (mut a, mut b) = connect(&net).await;
    net.silence([host(2)]);
    b.io.write_all(b"lost").await.expect("write");
    assert!(silent_for(&mut a.io, 60).await, "nothing comes back");
    a.io.write_all(b"asked")
        .await
        .expect("writes to it are accepted");
    drop(b);
    assert!(silent_for(&mut a.io, 60).await, "not even a close");
    a.io.write_all(b"again").await.expect("no reset either");

    // A hung process: its kernel completes dials, and nothing more happens.
    let listener = net
        .transport(host(2))
        .listen(SocketAddr::new(host(2), 0))
        .await
        .expect("listen");
    let addr = listener.local_addr();
    let mut hung = net.transport(host(1)).dial(addr, None).await.expect("dial");
    assert!(silent_for(&mut hung.io, 60).await);
    // A vanished host: nothing listens and nothing refuses.
    drop(listener);
    let dial = net.transport(host(1)).dial(addr, None);
    assert!(
        tokio::time::timeout(Duration::from_secs(60), dial)
            .await
            .is_err()
    );
}

#[tokio::test(start_paused = true)]
async fn a_session_ticket_saves_the_tls_round_trip_of_later_dials_to_the_same_peer() {
    let rtt = Duration::from_millis(100);
    // Each dial's time from `dialler` to `host(2)`: TCP's round trip, plus TLS's unless
    // a ticket resumes the session.
    async fn dials(net: &SimNetwork, from: &[(u8, Duration)]) -> Vec<Duration> {
        let mut listener = net
            .transport(host(2))
            .listen(SocketAddr::new(host(2), 0))
            .await
            .expect("listen");
        let addr = listener.local_addr();
        let mut took = Vec::new();
        for &(dialler, wait_before) in from {
            tokio::time::sleep(wait_before).await;
            let start = Instant::now();
            let dial = tokio::spawn(net.transport(host(dialler)).dial(addr, None));
            let inbound = listener.accept().await.expect("accept").upgrade.await;
            let outbound = dial.await.expect("join").expect("dial");
            took.push(start.elapsed());
            drop((inbound.expect("up"), outbound));
        }
        took
    }
    // Host 1 twice, host 3 once, then host 1 again after its ticket expired.
    let plan = [
        (1, Duration::ZERO),
        (1, Duration::ZERO),
        (3, Duration::ZERO),
        (1, TICKET_LIFETIME),
    ];
    let plain = network(0.0);
    plain.authenticate_peers(1);
    assert_eq!(dials(&plain, &plan).await, [rtt * 2; 4], "no tickets");

    let resuming = network(0.0);
    resuming.authenticate_peers(1);
    resuming.resume_sessions();
    assert_eq!(
        dials(&resuming, &plan).await,
        [rtt * 2, rtt, rtt * 2, rtt * 2],
        "a ticket is the dialler's, for one peer, for an hour"
    );
}
