//! The VoidPhone API contract (docs: voidphone-dht-api.md), case by case, against real
//! nodes on 127.0.0.1: a PUT gets no reply, a GET gets SUCCESS or FAILURE carrying the
//! key, requests may be split over reads, batched in one read, pipelined and sent from
//! many clients at once, malformed input closes only its own connection (after the
//! answers to the valid requests before it), the reserved byte, TTL and replication are
//! hints, and a GET is answered by its deadline even when no peer ever answers.
//!
//! Raw messages are built by hand (big-endian fields) so that the tests do not depend on
//! the codec they check.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use bytes::Bytes;
use dht_api::{ApiConfig, ApiServer};
use dht_core::{Key, Node};
use dht_tests::raw_peer::RawPeer;
use dht_tests::{ApiClient, TestNode, api_get, init_tracing, start_network, test_config, wait_for};
use dht_wire::{ApiMessage, DHT_FAILURE, DHT_GET, DHT_PUT};
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod raw;
use raw::*;

/// 1. A PUT gets no reply: once the PUT is done everywhere, the first message read back
///    is the answer to the GET sent after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_gets_no_reply() -> anyhow::Result<()> {
    init_tracing();
    let (bootstrap, nodes) = start_network(3).await?;
    let k = key("no-reply");
    let mut client = ApiClient::connect(nodes[0].api_addr()).await?;
    client.put(k, b"no reply for me", 600, 3).await?;
    assert!(wait_held(&nodes[0].node, k).await, "the PUT was not stored");
    // The PUT's work (STOREs to the replicas) is over: a reply would have been sent.
    let replicated = wait_for(WAIT, || async {
        remote_holders(&bootstrap, &nodes, 0, &k) >= 3
    })
    .await;
    assert!(replicated, "the PUT did not reach 3 replicas");

    // A GET of another key: its FAILURE must be the first message.
    let missing = key("no-reply/missing");
    client.send(ApiMessage::Get { key: missing }).await?;
    assert_eq!(
        client.recv().await?,
        ApiMessage::Failure { key: missing },
        "the first message after a PUT is not the answer to the next GET"
    );
    // And the GET of the PUT's key answers SUCCESS with the value.
    client.send(ApiMessage::Get { key: k }).await?;
    assert_eq!(
        client.recv().await?,
        ApiMessage::Success {
            key: k,
            value: Bytes::from_static(b"no reply for me"),
        }
    );
    stop_all(bootstrap, nodes).await;
    Ok(())
}

/// 1b. Requests of one connection are handled in sequence: a GET sent right after a PUT
///     of the same key, on the same connection, sees the value (the node stores a PUT
///     locally at once), on a lone node and on a node with peers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_right_after_put_on_the_same_connection_sees_the_value() -> anyhow::Result<()> {
    init_tracing();
    let (bootstrap, nodes) = start_network(3).await?;
    let alone = TestNode::start(test_config(&[]), true).await?;
    let mut misses = Vec::new();
    for (name, addr) in [
        ("lone node", alone.api_addr()),
        ("node with peers", nodes[0].api_addr()),
    ] {
        let mut client = ApiClient::connect(addr).await?;
        for i in 0..20 {
            let k = key(&format!("put-then-get/{name}/{i}"));
            client.put(k, b"just put", 600, 3).await?;
            match client.get(k).await? {
                Some(value) => assert_eq!(&value[..], b"just put"),
                None => misses.push(format!("{name} #{i}")),
            }
        }
    }
    assert!(
        misses.is_empty(),
        "{} of 40 GETs sent right after the PUT on the same connection answered FAILURE: {misses:?}",
        misses.len()
    );
    alone.stop().await;
    stop_all(bootstrap, nodes).await;
    Ok(())
}

/// 2. A GET of a missing key answers DHT_FAILURE carrying the key, byte-exact: in a
///    network, and on a single node without peers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_of_missing_key_is_failure_with_the_key() -> anyhow::Result<()> {
    init_tracing();
    let (bootstrap, nodes) = start_network(3).await?;
    let alone = TestNode::start(test_config(&[]), true).await?;
    let addrs: Vec<SocketAddr> = nodes
        .iter()
        .map(TestNode::api_addr)
        .chain([alone.api_addr()])
        .collect();
    for (i, addr) in addrs.into_iter().enumerate() {
        let missing = key(&format!("missing/{i}"));
        let mut stream = TcpStream::connect(addr).await?;
        stream
            .write_all(&raw_key_message(DHT_GET, &missing))
            .await?;
        let mut answer = [0u8; 36];
        tokio::time::timeout(WAIT, stream.read_exact(&mut answer))
            .await
            .context("no answer in time")??;
        assert_eq!(
            answer[..],
            raw_key_message(DHT_FAILURE, &missing)[..],
            "answer of API {addr}"
        );
        // Through the client too (the key is echoed).
        assert_eq!(api_get(addr, missing).await?, None);
    }
    alone.stop().await;
    stop_all(bootstrap, nodes).await;
    Ok(())
}

/// 3. The largest value (65,495 bytes cycling through every byte value) is stored and
///    read back byte-exact, through the accepting node and through others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn largest_value_with_every_byte_roundtrips() -> anyhow::Result<()> {
    init_tracing();
    let (bootstrap, nodes) = start_network(3).await?;
    let k = key("largest");
    let value: Vec<u8> = (0..MAX_VALUE).map(|i| (i % 256) as u8).collect();
    let mut client = ApiClient::connect(nodes[0].api_addr()).await?;
    // Sent raw: a 65,535-byte message.
    let put = raw_put(3600, 3, 0, &k, &value);
    assert_eq!(put.len(), 65_535);
    client.stream().write_all(&put).await?;
    assert!(wait_held(&nodes[0].node, k).await, "the PUT was not stored");
    assert_eq!(client.get(k).await?.as_deref(), Some(&value[..]));

    for n in &nodes[1..] {
        let found = wait_for(WAIT, || async {
            api_get(n.api_addr(), k).await.ok().flatten().as_deref() == Some(&value[..])
        })
        .await;
        assert!(found, "the value is not found through {}", n.node.id());
        // The SUCCESS, byte by byte: size 65,531, type 652, key, value.
        let mut stream = TcpStream::connect(n.api_addr()).await?;
        stream.write_all(&raw_key_message(DHT_GET, &k)).await?;
        let mut answer = vec![0u8; 36 + MAX_VALUE];
        tokio::time::timeout(WAIT, stream.read_exact(&mut answer))
            .await
            .context("no answer in time")??;
        assert!(answer == raw_success(&k, &value), "SUCCESS not byte-exact");
    }
    stop_all(bootstrap, nodes).await;
    Ok(())
}

/// 4. A PUT and then a GET, each delivered one byte at a time, work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_split_into_single_bytes() -> anyhow::Result<()> {
    init_tracing();
    let node = TestNode::start(test_config(&[]), true).await?;
    let k = key("byte-by-byte");
    let mut client = ApiClient::connect(node.api_addr()).await?;
    write_one_byte_at_a_time(client.stream(), &raw_put(600, 3, 0, &k, b"slowly")).await?;
    assert!(
        wait_held(&node.node, k).await,
        "the split PUT was not stored"
    );
    write_one_byte_at_a_time(client.stream(), &raw_key_message(DHT_GET, &k)).await?;
    assert_eq!(
        client.recv().await?,
        ApiMessage::Success {
            key: k,
            value: Bytes::from_static(b"slowly"),
        }
    );
    let missing = key("byte-by-byte/missing");
    write_one_byte_at_a_time(client.stream(), &raw_key_message(DHT_GET, &missing)).await?;
    assert_eq!(client.recv().await?, ApiMessage::Failure { key: missing });
    node.stop().await;
    Ok(())
}

/// 5. Three PUTs and three GETs in one write are all handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_requests_in_one_write() -> anyhow::Result<()> {
    init_tracing();
    let node = TestNode::start(test_config(&[]), true).await?;
    let mut client = ApiClient::connect(node.api_addr()).await?;
    // Two values stored beforehand, so the GETs in the batch have a known answer.
    let (old_a, old_b) = (key("batch/old-a"), key("batch/old-b"));
    client.put(old_a, b"old a", 600, 3).await?;
    client.put(old_b, b"old b", 600, 3).await?;
    assert!(wait_held(&node.node, old_a).await && wait_held(&node.node, old_b).await);

    let new: Vec<Key> = (0..3).map(|i| key(&format!("batch/new-{i}"))).collect();
    let missing = key("batch/missing");
    let mut batch = Vec::new();
    for (put, get) in new.iter().zip([old_a, old_b, missing]) {
        batch.extend(raw_put(600, 3, 0, put, put.as_bytes()));
        batch.extend(raw_key_message(DHT_GET, &get));
    }
    client.stream().write_all(&batch).await?;

    let answers = read_answers(&mut client, 3).await?;
    assert_eq!(
        answers.get(&old_a),
        Some(&ApiMessage::Success {
            key: old_a,
            value: Bytes::from_static(b"old a"),
        })
    );
    assert_eq!(
        answers.get(&old_b),
        Some(&ApiMessage::Success {
            key: old_b,
            value: Bytes::from_static(b"old b"),
        })
    );
    assert_eq!(
        answers.get(&missing),
        Some(&ApiMessage::Failure { key: missing })
    );
    // The three PUTs were stored, and sent nothing back: the next answers read are
    // those of the next GETs.
    for k in &new {
        assert!(wait_held(&node.node, *k).await, "batched PUT not stored");
        assert_eq!(client.get(*k).await?.as_deref(), Some(&k.as_bytes()[..]));
    }
    node.stop().await;
    Ok(())
}

/// 6. Fifty GETs pipelined on one connection before anything is read: exactly fifty
///    answers, matched by key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_pipelined_gets_matched_by_key() -> anyhow::Result<()> {
    init_tracing();
    let (bootstrap, nodes) = start_network(3).await?;
    let a = &nodes[0];
    let keys: Vec<Key> = (0..50).map(|i| key(&format!("pipelined/{i}"))).collect();
    let value = |k: &Key| Bytes::copy_from_slice(&k.as_bytes()[..8]);
    let mut client = ApiClient::connect(a.api_addr()).await?;
    for k in keys.iter().step_by(2) {
        client.put(*k, &value(k), 600, 3).await?;
    }
    for k in keys.iter().step_by(2) {
        assert!(wait_held(&a.node, *k).await, "PUT not stored");
    }

    for k in &keys {
        client
            .stream()
            .write_all(&raw_key_message(DHT_GET, k))
            .await?;
    }
    let answers = read_answers(&mut client, keys.len()).await?;
    for (i, k) in keys.iter().enumerate() {
        let expected = if i % 2 == 0 {
            ApiMessage::Success {
                key: *k,
                value: value(k),
            }
        } else {
            ApiMessage::Failure { key: *k }
        };
        assert_eq!(answers.get(k), Some(&expected), "answer for GET {i}");
    }
    // Nothing more than the fifty answers: the next message answers the next GET.
    let last = key("pipelined/last");
    assert_eq!(client.get(last).await?, None);
    stop_all(bootstrap, nodes).await;
    Ok(())
}

/// 7. Twenty clients at once, spread over three API nodes, each PUT then GET.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_clients() -> anyhow::Result<()> {
    init_tracing();
    let (bootstrap, nodes) = start_network(3).await?;
    const CLIENTS: usize = 20;
    let start = Arc::new(tokio::sync::Barrier::new(CLIENTS));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..CLIENTS {
        let n = &nodes[i % nodes.len()];
        let (node, addr, start) = (n.node.clone(), n.api_addr(), start.clone());
        tasks.spawn(async move {
            let mut client = ApiClient::connect(addr).await?;
            let (k, missing) = (
                key(&format!("client/{i}")),
                key(&format!("client/{i}/none")),
            );
            let value = format!("value of client {i}").into_bytes();
            start.wait().await;
            client.put(k, &value, 600, 3).await?;
            ensure!(wait_held(&node, k).await, "client {i}: PUT not stored");
            let got = client.get(k).await?;
            ensure!(got.as_deref() == Some(&value[..]), "client {i} got {got:?}");
            ensure!(
                client.get(missing).await?.is_none(),
                "client {i}: missing key found"
            );
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    stop_all(bootstrap, nodes).await;
    Ok(())
}

/// 8. Each kind of malformed input closes its connection, after the answers to the
///    valid requests sent before it on that connection; other connections (open before,
///    or opened after) keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_closes_only_its_connection() -> anyhow::Result<()> {
    init_tracing();
    let (bootstrap, nodes) = start_network(3).await?;
    let a = &nodes[0];
    let stored = key("malformed/stored");
    let mut bystander = ApiClient::connect(a.api_addr()).await?;
    bystander.put(stored, b"still here", 600, 3).await?;
    assert!(wait_held(&a.node, stored).await, "PUT not stored");

    let k = key("malformed/k");
    let mut unknown_type = header(36, 700);
    unknown_type.extend_from_slice(k.as_bytes());
    let mut get_37 = header(37, DHT_GET);
    get_37.extend_from_slice(k.as_bytes());
    get_37.push(0);
    let mut put_40 = header(40, DHT_PUT);
    put_40.extend_from_slice(&[0, 60, 3, 0]);
    put_40.extend_from_slice(k.as_bytes());
    let mut put_39 = header(39, DHT_PUT);
    put_39.extend_from_slice(&[0, 60, 3, 0]);
    put_39.extend_from_slice(&k.as_bytes()[..31]);
    let cases: [(&str, Vec<u8>); 8] = [
        ("size 3", header(3, DHT_GET)),
        ("size 0", header(0, DHT_PUT)),
        ("unknown type 700", unknown_type),
        ("GET of size 37", get_37),
        ("PUT of size 40 (empty value)", put_40),
        ("PUT of size 39", put_39),
        ("DHT_SUCCESS from a client", raw_success(&k, b"answer")),
        (
            "DHT_FAILURE from a client",
            raw_key_message(DHT_FAILURE, &k),
        ),
    ];
    for (i, (case, bad)) in cases.into_iter().enumerate() {
        // Two valid GETs (one answered at once, one after a network lookup) and a
        // valid PUT before the bad message, all in one write.
        let missing = key(&format!("malformed/missing/{i}"));
        let put_key = key(&format!("malformed/put/{i}"));
        let mut bytes = raw_key_message(DHT_GET, &stored);
        bytes.extend(raw_key_message(DHT_GET, &missing));
        bytes.extend(raw_put(600, 3, 0, &put_key, b"before the bad one"));
        bytes.extend(bad);
        let mut client = ApiClient::connect(a.api_addr()).await?;
        client.stream().write_all(&bytes).await?;
        let answers = read_answers(&mut client, 2)
            .await
            .with_context(|| format!("{case}: the valid requests before it"))?;
        assert_eq!(
            answers.get(&stored),
            Some(&ApiMessage::Success {
                key: stored,
                value: Bytes::from_static(b"still here"),
            }),
            "{case}"
        );
        assert_eq!(
            answers.get(&missing),
            Some(&ApiMessage::Failure { key: missing }),
            "{case}"
        );
        assert!(
            client.is_closed_by_server().await,
            "{case}: the connection stays open"
        );
        assert!(
            wait_held(&a.node, put_key).await,
            "{case}: the PUT before it was not stored"
        );
        // A new connection works, and so does the one open all along.
        assert_eq!(
            api_get(a.api_addr(), stored).await?.as_deref(),
            Some(&b"still here"[..]),
            "{case}: new connection"
        );
        assert_eq!(
            bystander.get(stored).await?.as_deref(),
            Some(&b"still here"[..]),
            "{case}: other connection"
        );
    }
    stop_all(bootstrap, nodes).await;
    Ok(())
}

/// 9. The reserved byte of a PUT is ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_reserved_byte_is_ignored() -> anyhow::Result<()> {
    init_tracing();
    let node = TestNode::start(test_config(&[]), true).await?;
    let k = key("reserved");
    let mut client = ApiClient::connect(node.api_addr()).await?;
    client
        .stream()
        .write_all(&raw_put(600, 3, 0xff, &k, b"reserved ignored"))
        .await?;
    assert!(
        wait_held(&node.node, k).await,
        "PUT with reserved 0xff not stored"
    );
    assert_eq!(
        client.get(k).await?.as_deref(),
        Some(&b"reserved ignored"[..])
    );
    node.stop().await;
    Ok(())
}

/// 10. TTL and replication are hints the node clamps up: a PUT with TTL 1 and
///     replication 0 is still readable after its TTL, and has at least min_replication
///     (3) replicas besides the accepting node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_and_replication_are_clamped_up() -> anyhow::Result<()> {
    init_tracing();
    let (bootstrap, nodes) = start_network(5).await?;
    let a = &nodes[0];
    assert_eq!(a.node.config().min_ttl, Duration::from_secs(60));
    assert_eq!(a.node.config().min_replication, 3);
    let k = key("hints");
    let mut client = ApiClient::connect(a.api_addr()).await?;
    let sent = Instant::now();
    client.put(k, b"short-lived?", 1, 0).await?;
    assert!(wait_held(&a.node, k).await, "PUT not stored");
    let replicated = wait_for(WAIT, || async {
        remote_holders(&bootstrap, &nodes, 0, &k) >= 3
    })
    .await;
    assert!(
        replicated,
        "replication 0 not raised to 3: {} remote holders",
        remote_holders(&bootstrap, &nodes, 0, &k)
    );

    // Past the 1 s TTL asked for (expiry has a 1 s granularity): poll the clock.
    let past_ttl = wait_for(WAIT, || async {
        sent.elapsed() >= Duration::from_millis(2100)
    })
    .await;
    assert!(past_ttl);
    assert!(a.node.holds(&k), "the accepting node dropped the value");
    assert!(
        remote_holders(&bootstrap, &nodes, 0, &k) >= 3,
        "replicas dropped the value after 1 s"
    );
    assert_eq!(client.get(k).await?.as_deref(), Some(&b"short-lived?"[..]));
    assert_eq!(
        api_get(nodes[4].api_addr(), k).await?.as_deref(),
        Some(&b"short-lived?"[..])
    );
    stop_all(bootstrap, nodes).await;
    Ok(())
}

/// 11b. The same with a peer that completes the HELLO and then never answers, so that
///      the node's own lookup would wait for a minute: the API still answers FAILURE
///      by its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_deadline_with_a_silent_peer() -> anyhow::Result<()> {
    init_tracing();
    let slow = Duration::from_secs(60);
    let config = dht_core::NodeConfig {
        rpc_timeout: slow,
        lookup_peer_timeout: slow,
        lookup_deadline: slow,
        ..test_config(&[])
    };
    let node = Arc::new(Node::start(config).await?);

    // The silent peer dials the node, says HELLO, and then only reads.
    let (mut peer, _) = RawPeer::connect(node.listen_addr()).await?;
    let silent = tokio::spawn(async move { while peer.framed.next().await.is_some() {} });
    assert!(
        wait_for(WAIT, || async { node.routing_table_len() == 1 }).await,
        "the silent peer did not enter the routing table"
    );
    let missing = key("deadline/silent-peer");
    // Without a deadline, the node's own GET hangs on the silent peer.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), node.get(missing))
            .await
            .is_err(),
        "the node's GET did not wait for the silent peer"
    );

    let api_config = ApiConfig {
        address: "127.0.0.1:0".parse()?,
        get_deadline: Duration::from_millis(1),
        ..ApiConfig::default()
    };
    let api = ApiServer::bind(api_config, node.clone()).await?;
    let asked = Instant::now();
    assert_eq!(api_get(api.local_addr(), missing).await?, None);
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "FAILURE came late"
    );
    api.shutdown().await;
    node.shutdown().await;
    silent.abort();
    Ok(())
}

/// A client that half-closes its side after its requests still gets every answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_reach_a_client_that_half_closed() -> anyhow::Result<()> {
    init_tracing();
    let node = TestNode::start(test_config(&[]), true).await?;
    let k = key("half-close");
    let mut setup = ApiClient::connect(node.api_addr()).await?;
    setup.put(k, b"half", 600, 3).await?;
    assert!(wait_held(&node.node, k).await, "PUT not stored");

    let missing = key("half-close/missing");
    let mut stream = TcpStream::connect(node.api_addr()).await?;
    let mut bytes = raw_key_message(DHT_GET, &k);
    bytes.extend(raw_key_message(DHT_GET, &missing));
    stream.write_all(&bytes).await?;
    stream.shutdown().await?;
    let mut answers = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut answers))
        .await
        .context("the server neither answered nor closed")??;
    let success = raw_success(&k, b"half");
    let failure = raw_key_message(DHT_FAILURE, &missing);
    let in_order = [success.clone(), failure.clone()].concat();
    let reversed = [failure, success].concat();
    assert!(
        answers == in_order || answers == reversed,
        "got {} bytes: {answers:?}",
        answers.len()
    );
    node.stop().await;
    Ok(())
}
