//! proptest strategies for peer messages, shared by the tests of this module.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use bytes::Bytes;
use dht_id::{KEY_LEN, Key};
use proptest::prelude::*;

use super::{
    ErrorCode, Hello, MAX_CONTACTS, PeerFrame, PeerMessage, StoreStatus, WireContact, WireRecord,
};
use crate::api::MAX_VALUE_LEN;

pub(super) fn key() -> impl Strategy<Value = Key> {
    any::<[u8; KEY_LEN]>().prop_map(Key::from_bytes)
}

/// IPv4 and IPv6 addresses (flowinfo and scope 0: they are not carried).
pub(super) fn addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port))),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::from(ip),
            port,
            0,
            0
        ))),
    ]
}

/// Values of 1..=[`MAX_VALUE_LEN`] bytes: mostly short and random, sometimes near the limit.
pub(super) fn value() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), 1..100).prop_map(Bytes::from),
        1 => (any::<u8>(), MAX_VALUE_LEN - 16..=MAX_VALUE_LEN).prop_map(|(b, n)| Bytes::from(vec![b; n])),
    ]
}

pub(super) fn record() -> impl Strategy<Value = WireRecord> {
    (key(), value(), any::<u64>(), any::<u64>(), any::<u8>()).prop_map(
        |(key, value, lifetime, version, replication)| WireRecord {
            key,
            value,
            lifetime,
            version,
            replication,
        },
    )
}

pub(super) fn hello() -> impl Strategy<Value = Hello> {
    (any::<u16>(), any::<u32>(), key(), addr(), any::<u64>()).prop_map(
        |(version, network_id, node_id, listen_addr, pow_nonce)| Hello {
            version,
            network_id,
            node_id,
            listen_addr,
            pow_nonce,
        },
    )
}

pub(super) fn contacts() -> impl Strategy<Value = Vec<WireContact>> {
    proptest::collection::vec(
        (key(), addr()).prop_map(|(id, addr)| WireContact { id, addr }),
        0..=MAX_CONTACTS,
    )
}

fn store_status() -> impl Strategy<Value = StoreStatus> {
    (0u8..=5).prop_filter_map("known status", StoreStatus::from_code)
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    (1u8..=3).prop_filter_map("known code", ErrorCode::from_code)
}

/// Every message type, each with arbitrary contents.
pub(super) fn message() -> impl Strategy<Value = PeerMessage> {
    prop_oneof![
        hello().prop_map(PeerMessage::Hello),
        Just(PeerMessage::Ping),
        Just(PeerMessage::Pong),
        key().prop_map(|target| PeerMessage::FindNode { target }),
        contacts().prop_map(|contacts| PeerMessage::Nodes { contacts }),
        key().prop_map(|key| PeerMessage::FindValue { key }),
        record().prop_map(|record| PeerMessage::Value { record }),
        record().prop_map(|record| PeerMessage::Store { record }),
        record().prop_map(|record| PeerMessage::Replicate { record }),
        store_status().prop_map(|status| PeerMessage::StoreResult { status }),
        error_code().prop_map(|code| PeerMessage::Error { code }),
    ]
}

/// Frames with arbitrary request ids, in every direction their message allows.
pub(super) fn frame() -> impl Strategy<Value = PeerFrame> {
    (any::<u64>(), message(), any::<bool>()).prop_map(|(request_id, message, coin)| {
        let is_response = if message.allowed_as(coin) {
            coin
        } else {
            !coin
        };
        PeerFrame {
            request_id,
            is_response,
            message,
        }
    })
}
