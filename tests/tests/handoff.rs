//! Hand-off of records to a node newly seen among their closest: it goes on past a
//! recipient's "kept newer" (which speaks of one record only), and stops only for a
//! recipient that keeps failing.

use std::time::Duration;

use bytes::Bytes;
use dht_core::{Key, Node, PutOptions};
use dht_tests::raw_peer::RawPeer;
use dht_tests::{init_tracing, test_config};
use dht_wire::{PeerFrame, PeerMessage, StoreStatus};
use futures::{SinkExt, StreamExt};

#[tokio::test]
async fn a_newcomer_that_holds_some_records_newer_still_gets_the_others() {
    init_tracing();
    let a = Node::start(test_config(&[])).await.expect("a");
    let keys: Vec<Key> = (0..20)
        .map(|i| Key::sha256(format!("handoff/{i}").as_bytes()))
        .collect();
    for key in &keys {
        a.put(*key, Bytes::from_static(b"v"), PutOptions::default())
            .await
            .expect("put");
    }
    // The newcomer is the node's only contact: among the closest to every key.
    let (mut newcomer, _) = RawPeer::connect(a.listen_addr()).await.expect("newcomer");
    let mut offered = Vec::new();
    let handed = tokio::time::timeout(Duration::from_secs(20), async {
        while offered.len() < keys.len() {
            let Some(Ok(frame)) = newcomer.framed.next().await else {
                break;
            };
            if frame.is_response {
                continue;
            }
            let answer = match &frame.message {
                PeerMessage::Replicate { record } => {
                    offered.push(record.key);
                    // It holds newer copies of the first five.
                    let status = if offered.len() <= 5 {
                        StoreStatus::KeptNewer
                    } else {
                        StoreStatus::Stored
                    };
                    PeerMessage::StoreResult { status }
                }
                other => dht_tests::raw_peer::honest_answer(other),
            };
            if newcomer
                .framed
                .send(PeerFrame::response(frame.request_id, answer))
                .await
                .is_err()
            {
                break;
            }
        }
    })
    .await;
    assert!(
        handed.is_ok(),
        "{} of {} records handed",
        offered.len(),
        keys.len()
    );
    offered.sort_unstable();
    offered.dedup();
    assert_eq!(offered.len(), keys.len());
    a.shutdown().await;
}
