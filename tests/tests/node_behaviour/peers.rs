//! Connections: the tie-break of simultaneous dials, handshake refusals, hostile frames,
//! connection limits and shutdown with PUTs in flight or stuck peers.

use super::*;
use std::net::{IpAddr, Ipv4Addr};

#[tokio::test]
async fn simultaneous_dials_leave_one_connection() {
    let net = MemoryNetwork::new();
    let start = |net: &MemoryNetwork| {
        let c = config(&[]);
        let store = Box::new(MemoryStore::new(c.store_limits.clone()));
        Node::start_with(c, Arc::new(net.transport()), store)
    };
    let a = start(&net).await.expect("a");
    let b = start(&net).await.expect("b");
    // Both dial each other at the same time.
    let (ra, rb) = tokio::join!(a.ping(b.contact()), b.ping(a.contact()));
    ra.expect("a pings b");
    rb.expect("b pings a");
    assert_eq!(a.connected_peers(), 1);
    assert_eq!(b.connected_peers(), 1);
    // The duplicate (if any) closes once idle; exactly one connection remains.
    assert!(
        wait_for(Duration::from_secs(10), || a.open_connections() == 1
            && b.open_connections() == 1)
        .await,
        "open connections: a {}, b {}",
        a.open_connections(),
        b.open_connections()
    );
    // And it works both ways.
    a.ping(b.contact()).await.expect("a pings b again");
    b.ping(a.contact()).await.expect("b pings a again");
    assert_eq!((a.open_connections(), b.open_connections()), (1, 1));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn other_network_id_and_wrong_expected_id_are_refused() {
    let a = Node::start(config(&[])).await.expect("a");
    let other_net = Node::start(NodeConfig {
        network_id: DEFAULT_NETWORK_ID + 1,
        ..config(&[peer_of(&a)])
    })
    .await
    .expect("b starts even if it cannot join");
    assert_eq!(other_net.routing_table_len(), 0);
    assert_eq!(a.routing_table_len(), 0);

    let wrong_id = Node::start(config(&[BootstrapPeer {
        id: Some(Key::sha256(b"not a's id")),
        address: a.listen_addr().to_string(),
    }]))
    .await
    .expect("c starts");
    assert_eq!(wrong_id.routing_table_len(), 0);

    let right_id = Node::start(config(&[BootstrapPeer {
        id: Some(a.id()),
        address: a.listen_addr().to_string(),
    }]))
    .await
    .expect("d starts");
    assert!(right_id.routing_contacts().iter().any(|c| c.id == a.id()));
    for n in [&a, &other_net, &wrong_id, &right_id] {
        n.shutdown().await;
    }
}

#[tokio::test]
async fn garbage_closes_only_that_connection() {
    let a = Node::start(config(&[])).await.expect("a");
    // Garbage instead of a TLS handshake: the node may answer with a TLS alert, then
    // it closes the connection.
    let mut raw = TcpStream::connect(a.listen_addr()).await.expect("connect");
    raw.write_all(&[0xff; 64]).await.expect("write");
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = [0u8; 256];
        loop {
            match tokio::io::AsyncReadExt::read(&mut raw, &mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "connection not closed");

    // A valid peer that then sends a malformed frame (unknown type 99) is cut off too.
    let (mut peer, _) = RawPeer::connect(a.listen_addr()).await.expect("handshake");
    assert_eq!(
        peer.request(PeerMessage::Ping).await.expect("pong"),
        PeerMessage::Pong
    );
    peer.framed
        .get_mut()
        .write_all(&[0, 0, 0, 10, 99, 0, 0, 0, 0, 0, 0, 0, 0, 1])
        .await
        .expect("write");
    let next = tokio::time::timeout(Duration::from_secs(5), peer.framed.next())
        .await
        .expect("closed in time");
    assert!(next.is_none() || matches!(next, Some(Err(_))));

    // The node still serves everyone else.
    let b = Node::start(config(&[peer_of(&a)])).await.expect("b");
    b.ping(a.contact()).await.expect("a still answers");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn shutdown_finishes_puts_in_flight() {
    let a = Arc::new(Node::start(config(&[])).await.expect("a"));
    let mut others = Vec::new();
    for _ in 0..4 {
        others.push(Node::start(config(&[peer_of(&a)])).await.expect("peer"));
    }
    let key = Key::sha256(b"in flight");
    let put = tokio::spawn({
        let a = a.clone();
        async move {
            a.put(
                key,
                Bytes::from_static(b"v"),
                PutOptions {
                    ttl: Duration::from_secs(600),
                    replication: 3,
                },
            )
            .await
        }
    });
    // Once the PUT is under way (stored locally), shut the node down.
    assert!(wait_for(Duration::from_secs(5), || a.holds(&key)).await);
    a.shutdown().await;
    let report = put.await.expect("join").expect("the PUT completed");
    assert_eq!(report.replicas, 3);
    assert_eq!(others.iter().filter(|n| n.holds(&key)).count(), 3);
    for n in &others {
        n.shutdown().await;
    }
}

#[tokio::test]
async fn a_peer_that_never_reads_cannot_block_shutdown() {
    let a = Node::start(config(&[])).await.expect("a");
    let key = Key::sha256(b"big");
    a.put(
        key,
        Bytes::from(vec![7u8; 60_000]),
        PutOptions {
            ttl: Duration::from_secs(600),
            replication: 3,
        },
    )
    .await
    .expect("put");
    let (mut peer, _) = RawPeer::connect(a.listen_addr()).await.expect("handshake");
    // 600 requests whose answers (36 MB) fill every buffer; the peer reads none.
    for id in 1..=600 {
        peer.framed
            .feed(PeerFrame::request(id, PeerMessage::FindValue { key }))
            .await
            .expect("queue request");
    }
    SinkExt::<PeerFrame>::flush(&mut peer.framed)
        .await
        .expect("send requests");
    tokio::time::timeout(Duration::from_secs(15), a.shutdown())
        .await
        .expect("shutdown finished although the peer does not read");
    drop(peer);
}

#[tokio::test]
async fn at_max_connections_the_least_recently_used_idle_one_makes_room() {
    let a = Node::start(NodeConfig {
        max_connections: 2,
        ..config(&[])
    })
    .await
    .expect("a");
    let mut others = Vec::new();
    for _ in 0..4 {
        others.push(Node::start(config(&[])).await.expect("peer"));
    }
    for other in &others {
        a.ping(other.contact())
            .await
            .expect("a reaches every peer, closing idle connections as needed");
        assert!(a.open_connections() <= 2, "{} open", a.open_connections());
    }
    a.shutdown().await;
    for other in &others {
        other.shutdown().await;
    }
}

#[tokio::test]
async fn one_network_group_gets_a_limited_share_of_the_routing_table() {
    // With the local exemption off, 127.0.0.0/24 is one group like any public /24.
    let a = Node::start(NodeConfig {
        limit_local_addresses: true,
        ..config(&[])
    })
    .await
    .expect("a");
    let mut peers = Vec::new();
    for _ in 0..14 {
        peers.push(RawPeer::connect(a.listen_addr()).await.expect("peer").0);
    }
    let (per_bucket, per_table) = a.config().diversity;
    let contacts = a.routing_contacts();
    assert!(
        contacts.len() <= per_table,
        "{} contacts of one /24",
        contacts.len()
    );
    assert!(contacts.len() >= per_bucket.min(14));
    // With the exemption (the default), local peers are not limited.
    let b = Node::start(config(&[])).await.expect("b");
    for _ in 0..14 {
        peers.push(RawPeer::connect(b.listen_addr()).await.expect("peer").0);
    }
    assert_eq!(b.routing_table_len(), 14);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn an_advertised_ip_is_not_believed() {
    let a = Node::start(config(&[])).await.expect("a");
    let identity = dht_tests::raw_peer::PeerIdentity::new().expect("identity");
    let mut hello = identity.hello();
    hello.listen_addr = "10.9.8.7:4567".parse().expect("literal");
    let id = identity.id;
    let (_peer, _) = RawPeer::connect_as(a.listen_addr(), identity, hello)
        .await
        .expect("handshake");
    let contact = a
        .routing_contacts()
        .into_iter()
        .find(|c| c.id == id)
        .expect("in the table");
    assert_eq!(
        contact.addr,
        "127.0.0.1:4567".parse().expect("literal"),
        "the seen IP with the advertised port"
    );
    a.shutdown().await;
}

#[tokio::test]
async fn bare_tcp_connects_cannot_evict_authenticated_peers() {
    // k = 1: of four peers of one bucket, the table holds one; the others' connections
    // are the only ones a newcomer may take.
    let a = Node::start(NodeConfig {
        max_connections: 4,
        k: 1,
        wide_buckets: 0,
        alpha: 1,
        min_replication: 1,
        ..config(&[])
    })
    .await
    .expect("a");
    let bucket = |id: &Key| a.id().bucket_index(id);
    let first = dht_tests::raw_peer::PeerIdentity::new().expect("identity");
    let mut identities = vec![first];
    while identities.len() < 4 {
        let identity = dht_tests::raw_peer::PeerIdentity::new().expect("identity");
        if bucket(&identity.id) == bucket(&identities[0].id) {
            identities.push(identity);
        }
    }
    let mut peers = Vec::new();
    for identity in identities {
        let hello = identity.hello();
        let (peer, _) = RawPeer::connect_as(a.listen_addr(), identity, hello)
            .await
            .expect("peer");
        peers.push(peer);
    }
    assert_eq!(a.stats().open_connections, 4);
    let contact = a.routing_contacts()[0].id;
    assert_eq!(a.routing_table_len(), 1);
    // Connections that never start TLS take places of the handshake reserve only.
    let mut bare = Vec::new();
    for _ in 0..20 {
        bare.push(TcpStream::connect(a.listen_addr()).await.expect("connect"));
    }
    for peer in &mut peers {
        assert_eq!(
            peer.request(PeerMessage::Ping)
                .await
                .expect("still connected"),
            PeerMessage::Pong
        );
    }
    assert_eq!(a.stats().connections_evicted, 0);
    // A newcomer that proves itself gets a place, closing the idlest connection that is
    // not the table contact's.
    let (mut newcomer, _) = RawPeer::connect(a.listen_addr()).await.expect("newcomer");
    assert_eq!(
        newcomer.request(PeerMessage::Ping).await.expect("served"),
        PeerMessage::Pong
    );
    assert_eq!(a.stats().connections_evicted, 1);
    let table_peer = peers
        .iter_mut()
        .find(|p| p.identity.id == contact)
        .expect("the table contact");
    assert_eq!(
        table_peer
            .request(PeerMessage::Ping)
            .await
            .expect("the table contact keeps its connection"),
        PeerMessage::Pong
    );
    drop(bare);
    a.shutdown().await;
}

/// Issue 18, attack 4: ids cost only their proof of work, and each newcomer admitted
/// through the handshake reserve closed the least recently used idle connection: a flood
/// of newcomers from one network closed every connection of everyone else's that was not
/// a routing-table contact's. Now a newcomer closes one of the largest network prefix
/// (its own, once that is the largest).
#[tokio::test]
async fn newcomers_from_one_network_cannot_evict_everyone_elses_connections() {
    let a = Node::start(NodeConfig {
        max_connections: 10,
        k: 1,
        wide_buckets: 0,
        alpha: 1,
        min_replication: 1,
        ..config(&[])
    })
    .await
    .expect("a");
    // Nine peers, each from a /24 of its own (on loopback, 127.0.N.1).
    let mut honest = Vec::new();
    for n in 0..9u8 {
        let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 10 + n, 1));
        let (peer, _) = RawPeer::connect_from(ip, a.listen_addr())
            .await
            .expect("honest peer");
        honest.push(peer);
    }
    assert_eq!(a.stats().open_connections, 9);
    let contacts: Vec<Key> = a.routing_contacts().iter().map(|c| c.id).collect();
    let others = honest
        .iter()
        .filter(|p| !contacts.contains(&p.identity.id))
        .count();
    assert!(
        others >= 4,
        "only {others} of 9 peers are not table contacts"
    );
    // Forty newcomers from one /24, one after the other, each kept open if let in.
    let mut flood = Vec::new();
    for n in 0..40u8 {
        let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 99, 1 + n));
        if let Ok((mut peer, _)) = RawPeer::connect_from(ip, a.listen_addr()).await {
            if peer.request(PeerMessage::Ping).await.is_ok() {
                flood.push(peer);
            }
        }
    }
    // The network's share: it took one honest connection, then its newcomers replaced
    // each other (or, with no connection of theirs to close, were refused).
    assert!(!flood.is_empty(), "no newcomer of the flood was let in");
    let mut kept = 0;
    for peer in honest.iter_mut() {
        if !contacts.contains(&peer.identity.id)
            && matches!(peer.request(PeerMessage::Ping).await, Ok(PeerMessage::Pong))
        {
            kept += 1;
        }
    }
    // Before: 0 (each newcomer closed the idlest connection: the honest ones first).
    assert!(
        kept + 1 >= others,
        "{kept} of the {others} honest peers outside the table kept their connection"
    );
    a.shutdown().await;
}

/// Issue 18, attack 3: bare TCP connects that never start TLS held every connection
/// slot and every place of the handshake reserve until `connect_timeout`, and every
/// newcomer was refused for as long as the flood went on. The oldest unfinished
/// handshake is now shed for a newcomer.
#[tokio::test]
async fn a_flood_of_bare_connects_cannot_lock_a_newcomer_out() {
    let a = Node::start(NodeConfig {
        max_connections: 4,
        connect_timeout: Duration::from_secs(30),
        ..config(&[])
    })
    .await
    .expect("a");
    // Four slots and the 64 places of the reserve, all held by bare connects.
    let mut bare = Vec::new();
    for _ in 0..(4 + 64) {
        bare.push(TcpStream::connect(a.listen_addr()).await.expect("connect"));
    }
    let (mut newcomer, _) = RawPeer::connect(a.listen_addr())
        .await
        .expect("a newcomer is let in");
    assert_eq!(
        newcomer.request(PeerMessage::Ping).await.expect("served"),
        PeerMessage::Pong
    );
    assert!(a.stats().handshakes_shed >= 1);
    drop(bare);
    a.shutdown().await;
}
