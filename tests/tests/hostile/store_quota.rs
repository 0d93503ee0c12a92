//! One peer, with its own key and proof of work, tries to fill a node's store: STOREs
//! until its quota refuses them, then REPLICATEs of keys next to its own id (which make
//! it their closest node). Issue 18, attack 1: the REPLICATEs were counted as
//! replication, which the quota never refused, and filled the store to its limit; the
//! node's own PUTs then failed with "store full". A REPLICATE now counts as replication
//! only when the node would choose the sender as a replica beside itself.

use std::time::Duration;

use bytes::Bytes;
use dht_core::{Key, Node, NodeConfig, PutOptions, StoreLimits};
use dht_tests::raw_peer::{PeerIdentity, RawPeer};
use dht_tests::{init_tracing, test_config, wait_for};
use dht_wire::{PeerMessage, StoreStatus, WireRecord};

const MAX_RECORDS: usize = 1000;

/// A key next to `id`: its last two bytes replaced by `n`.
fn next_to(id: &Key, n: u16) -> Key {
    let mut bytes = *id.as_bytes();
    bytes[30..].copy_from_slice(&n.to_be_bytes());
    Key::from_bytes(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicates_of_keys_next_to_the_senders_id_cannot_fill_the_store() -> anyhow::Result<()> {
    init_tracing();
    let victim = Node::start(NodeConfig {
        store_limits: StoreLimits {
            max_records: MAX_RECORDS,
            ..StoreLimits::default()
        },
        ..test_config(&[])
    })
    .await?;
    let mut honest = Vec::new();
    for _ in 0..8 {
        honest.push(Node::start(test_config(&[victim.listen_addr()])).await?);
    }
    assert!(
        wait_for(super::WAIT, || async { victim.routing_table_len() == 8 }).await,
        "the honest nodes did not join"
    );
    // An attacker whose id has at least three honest nodes closer to it than the
    // victim: the victim is not among the closest nodes of keys next to that id.
    let attacker = loop {
        let identity = PeerIdentity::new()?;
        let closer = honest
            .iter()
            .filter(|n| n.id().distance(&identity.id) < victim.id().distance(&identity.id))
            .count();
        if closer >= 3 {
            break identity;
        }
    };
    let attacker_id = attacker.id;
    let hello = attacker.hello();
    let (mut peer, _) = RawPeer::connect_as(victim.listen_addr(), attacker, hello).await?;
    let lifetime = 600;
    let record = |key: Key| WireRecord {
        key,
        value: Bytes::from_static(b"junk"),
        lifetime,
        version: 1,
        replication: 3,
    };
    let mut stored = 0;
    for n in 0..MAX_RECORDS as u16 {
        let answer = peer
            .request(PeerMessage::Store {
                record: record(next_to(&attacker_id, n)),
            })
            .await?;
        match answer {
            PeerMessage::StoreResult {
                status: StoreStatus::Stored,
            } => stored += 1,
            _ => break,
        }
    }
    let mut replicated = 0;
    for n in MAX_RECORDS as u16..2 * MAX_RECORDS as u16 {
        let answer = peer
            .request(PeerMessage::Replicate {
                record: record(next_to(&attacker_id, n)),
            })
            .await?;
        if answer
            == (PeerMessage::StoreResult {
                status: StoreStatus::Stored,
            })
        {
            replicated += 1;
        }
    }
    let held = victim.stats().stored_records;
    eprintln!(
        "{stored} STOREs and {replicated} REPLICATEs accepted; {held} of {MAX_RECORDS} records held"
    );
    assert!(
        held < MAX_RECORDS,
        "one peer filled the store: {stored} STOREs and {replicated} REPLICATEs accepted, {held} records held"
    );
    assert!(replicated <= 100, "{replicated} REPLICATEs accepted");
    // The node's own PUT is kept.
    let report = victim
        .put(
            Key::sha256(b"mine"),
            Bytes::from_static(b"v"),
            PutOptions {
                ttl: Duration::from_secs(600),
                replication: 3,
            },
        )
        .await?;
    assert!(report.stored_locally, "the node's own PUT was not kept");
    for node in honest {
        node.shutdown().await;
    }
    victim.shutdown().await;
    Ok(())
}
