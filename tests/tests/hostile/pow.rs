//! A NODES answer full of contacts whose ids lack proof of work.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use dht_core::{Key, NodeConfig, NodeId};
use dht_security::pow;
use dht_tests::raw_peer::{PeerIdentity, RawPeer};
use dht_tests::{TestNode, init_tracing, test_config, wait_for};
use dht_wire::{PeerFrame, PeerMessage, WireContact};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpListener;

use crate::{WAIT, seeded_rng};

/// The proof of work node A asks of its peers.
const DIFFICULTY: u32 = 8;
/// Contacts in the hostile answer.
const CONTACTS: usize = 20;

/// 6. Node A (minimum difficulty 8) knows one peer, P. A lookup asks P, which answers
///    NODES with 20 contacts whose ids have fewer than 8 bits of work, at addresses
///    where listeners wait. A discards the whole answer: none of the ids ever enters
///    its routing table or the lookup's result, none of the addresses is dialled,
///    `contacts_rejected_pow` counts it, and P leaves A's routing table and loses its
///    connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_without_proof_of_work_are_discarded_with_their_sender() -> anyhow::Result<()> {
    init_tracing();
    let mut rng = seeded_rng("nodes_without_proof_of_work_are_discarded_with_their_sender");
    let a = TestNode::start(
        NodeConfig {
            pow_difficulty: DIFFICULTY,
            min_pow_difficulty: DIFFICULTY,
            ..test_config(&[])
        },
        false,
    )
    .await?;
    let a = a.node.clone();
    let identity = PeerIdentity::with_difficulty(DIFFICULTY)?;
    let hello = identity.hello();
    let (mut p, _) = RawPeer::connect_as(a.listen_addr(), identity, hello).await?;
    let p_id = p.identity.id;
    let in_table = wait_for(WAIT, || async {
        a.routing_contacts().iter().any(|c| c.id == p_id)
    })
    .await;
    assert!(in_table, "A did not put P in its routing table");

    // Ids without the work, at addresses that would notice a dial.
    let mut listeners = Vec::with_capacity(CONTACTS);
    let mut bad = Vec::with_capacity(CONTACTS);
    while bad.len() < CONTACTS {
        let id = Key::random(&mut rng);
        if pow::pow_bits(&id) < DIFFICULTY {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            bad.push(WireContact {
                id,
                addr: listener.local_addr()?,
            });
            listeners.push(listener);
        }
    }
    let bad_ids: Vec<NodeId> = bad.iter().map(|c| c.id).collect();

    // Watch A's routing table for the whole exchange.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = tokio::spawn({
        let (a, stop, bad_ids) = (a.clone(), stop.clone(), bad_ids.clone());
        async move {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                for c in a.routing_contacts() {
                    if bad_ids.contains(&c.id) && !seen.contains(&c.id) {
                        seen.push(c.id);
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            seen
        }
    });
    let target = Key::random(&mut rng);
    let lookup = tokio::spawn({
        let a = a.clone();
        async move { a.find_closest(target).await }
    });
    // P answers A's FIND_NODE with the contacts.
    let request = tokio::time::timeout(WAIT, p.framed.next())
        .await
        .context("A sent no request to P")?;
    let request_id = match request {
        Some(Ok(PeerFrame {
            request_id,
            is_response: false,
            message: PeerMessage::FindNode { target: t },
        })) if t == target => request_id,
        other => bail!("expected A's FIND_NODE of the target, got {other:?}"),
    };
    p.framed
        .send(PeerFrame::response(
            request_id,
            PeerMessage::Nodes { contacts: bad },
        ))
        .await?;
    let (found, _) = tokio::time::timeout(WAIT, lookup)
        .await
        .context("the lookup did not end")??;
    stop.store(true, Ordering::Relaxed);
    let seen = watcher.await?;

    assert!(
        seen.is_empty(),
        "ids without proof of work entered A's routing table: {seen:?}"
    );
    assert!(
        found.iter().all(|c| !bad_ids.contains(&c.id)),
        "the lookup returned ids without proof of work: {found:?}"
    );
    for listener in &listeners {
        let dialled = tokio::time::timeout(Duration::from_millis(20), listener.accept()).await;
        assert!(
            dialled.is_err(),
            "A dialled {} of a contact without proof of work",
            listener.local_addr()?
        );
    }
    let stats = a.stats();
    assert!(
        stats.contacts_rejected_pow >= 1,
        "contacts_rejected_pow not counted: {stats:?}"
    );
    assert!(
        stats.peers_penalised >= 1,
        "peers_penalised not counted: {stats:?}"
    );
    assert!(
        !a.routing_contacts().iter().any(|c| c.id == p_id),
        "P is still in A's routing table"
    );
    assert!(p.closed_within(WAIT).await, "A kept P's connection open");
    a.shutdown().await;
    Ok(())
}
