//! The DHT's peer-to-peer protocol: length-prefixed frames carrying one request or
//! response each.
//!
//! ```text
//! offset 0  u32  length of everything after this field (type .. end of body)
//!        4  u8   message type
//!        5  u8   flags: bit 0 = response (1) / request (0); all other bits must be 0
//!        6  u64  request id
//!       14  ...  body
//! ```
//!
//! All integers are big-endian. [`PeerCodec`] (or [`encode_frame`] / [`decode_frame`])
//! turns [`PeerFrame`]s into bytes and back; the layout of every body is in
//! `docs/PROTOCOL.md`. A frame is at most [`MAX_PEER_FRAME_LEN`] bytes; a larger length
//! field is an error as soon as its 4 bytes arrive. Any decode error means the peer is
//! broken or hostile: the caller closes the connection.

use std::fmt;
use std::net::SocketAddr;

use bytes::Bytes;
use dht_id::{KEY_LEN, Key, NodeId};

use crate::api::MAX_VALUE_LEN;

mod body;
mod codec;
mod error;
#[cfg(test)]
mod strategies;

pub use codec::{PeerCodec, decode_frame, encode_frame};
pub use error::PeerCodecError;

/// Version of the peer protocol this crate speaks, sent in [`Hello::version`].
pub const PROTOCOL_VERSION: u16 = 2;
/// Most contacts one NODES message may carry.
pub const MAX_CONTACTS: usize = 64;
/// Length of the frame's length field.
pub const LENGTH_FIELD_LEN: usize = 4;
/// Length of the frame header: length field, type, flags, request id.
pub const PEER_HEADER_LEN: usize = LENGTH_FIELD_LEN + 1 + 1 + 8;
/// Smallest value of the length field: type, flags and request id with an empty body.
pub const MIN_LENGTH_FIELD: usize = PEER_HEADER_LEN - LENGTH_FIELD_LEN;
/// Length of an encoded record without its value: key, lifetime, version,
/// replication, value_len.
pub const RECORD_FIXED_LEN: usize = KEY_LEN + 8 + 8 + 1 + 2;
/// Exact size of the largest frame: a VALUE or STORE carrying a value of
/// [`MAX_VALUE_LEN`] bytes (65,560 bytes).
pub const MAX_PEER_FRAME_LEN: usize = PEER_HEADER_LEN + RECORD_FIXED_LEN + MAX_VALUE_LEN;
/// Bit 0 of the flags byte: the frame is a response.
pub const FLAG_RESPONSE: u8 = 0x01;

/// Message type codes (the byte at offset 4 of a frame).
pub mod msg_type {
    /// HELLO: request or response.
    pub const HELLO: u8 = 1;
    /// PING: request.
    pub const PING: u8 = 2;
    /// PONG: response to PING.
    pub const PONG: u8 = 3;
    /// FIND_NODE: request.
    pub const FIND_NODE: u8 = 4;
    /// NODES: response to FIND_NODE or FIND_VALUE.
    pub const NODES: u8 = 5;
    /// FIND_VALUE: request.
    pub const FIND_VALUE: u8 = 6;
    /// VALUE: response to FIND_VALUE.
    pub const VALUE: u8 = 7;
    /// STORE: request.
    pub const STORE: u8 = 8;
    /// STORE_RESULT: response to STORE.
    pub const STORE_RESULT: u8 = 9;
    /// ERROR: response to any request.
    pub const ERROR: u8 = 10;
    /// REPLICATE: request, answered with STORE_RESULT.
    pub const REPLICATE: u8 = 11;
}

/// One frame: a message with its request id and direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerFrame {
    /// Chosen by the side that sends the request; echoed in the response. Requests and
    /// responses are matched by (request id, response flag), so both sides of one
    /// connection can number their requests independently.
    pub request_id: u64,
    /// Whether the frame is a response (flag bit 0).
    pub is_response: bool,
    /// The message.
    pub message: PeerMessage,
}

impl PeerFrame {
    /// A request frame.
    pub fn request(request_id: u64, message: PeerMessage) -> Self {
        PeerFrame {
            request_id,
            is_response: false,
            message,
        }
    }

    /// A response frame.
    pub fn response(request_id: u64, message: PeerMessage) -> Self {
        PeerFrame {
            request_id,
            is_response: true,
            message,
        }
    }

    /// Length of the encoded frame, length field included.
    pub fn encoded_len(&self) -> usize {
        PEER_HEADER_LEN + body::body_len(&self.message)
    }
}

/// The message carried by a [`PeerFrame`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerMessage {
    /// Opens a connection (dialer: request id 0; acceptor: response id 0).
    Hello(Hello),
    /// Liveness check.
    Ping,
    /// Answer to [`PeerMessage::Ping`].
    Pong,
    /// Asks for the contacts closest to `target`.
    FindNode {
        /// The id looked up.
        target: Key,
    },
    /// Answer to FIND_NODE, or to FIND_VALUE when the value is not held.
    Nodes {
        /// At most [`MAX_CONTACTS`] contacts.
        contacts: Vec<WireContact>,
    },
    /// Asks for the record of `key`, or else the closest contacts.
    FindValue {
        /// The key looked up.
        key: Key,
    },
    /// Answer to FIND_VALUE: the record held.
    Value {
        /// The record.
        record: WireRecord,
    },
    /// Asks the receiver to store a record.
    Store {
        /// The record.
        record: WireRecord,
    },
    /// Asks the receiver to store a record it is among the closest nodes for, as part of
    /// replication or a hand-off (not a new PUT): receivers account it apart from STOREs.
    Replicate {
        /// The record.
        record: WireRecord,
    },
    /// Answer to STORE and REPLICATE.
    StoreResult {
        /// What the receiver did with the record.
        status: StoreStatus,
    },
    /// Answer to any request the receiver will not serve.
    Error {
        /// Why.
        code: ErrorCode,
    },
}

impl PeerMessage {
    /// The message name, for logs and metrics: "HELLO", "PING", "PONG", "FIND_NODE",
    /// "NODES", "FIND_VALUE", "VALUE", "STORE", "REPLICATE", "STORE_RESULT" or "ERROR".
    pub fn name(&self) -> &'static str {
        match self {
            PeerMessage::Hello(_) => "HELLO",
            PeerMessage::Ping => "PING",
            PeerMessage::Pong => "PONG",
            PeerMessage::FindNode { .. } => "FIND_NODE",
            PeerMessage::Nodes { .. } => "NODES",
            PeerMessage::FindValue { .. } => "FIND_VALUE",
            PeerMessage::Value { .. } => "VALUE",
            PeerMessage::Store { .. } => "STORE",
            PeerMessage::Replicate { .. } => "REPLICATE",
            PeerMessage::StoreResult { .. } => "STORE_RESULT",
            PeerMessage::Error { .. } => "ERROR",
        }
    }

    /// The message type code (see [`msg_type`]).
    pub fn type_code(&self) -> u8 {
        match self {
            PeerMessage::Hello(_) => msg_type::HELLO,
            PeerMessage::Ping => msg_type::PING,
            PeerMessage::Pong => msg_type::PONG,
            PeerMessage::FindNode { .. } => msg_type::FIND_NODE,
            PeerMessage::Nodes { .. } => msg_type::NODES,
            PeerMessage::FindValue { .. } => msg_type::FIND_VALUE,
            PeerMessage::Value { .. } => msg_type::VALUE,
            PeerMessage::Store { .. } => msg_type::STORE,
            PeerMessage::Replicate { .. } => msg_type::REPLICATE,
            PeerMessage::StoreResult { .. } => msg_type::STORE_RESULT,
            PeerMessage::Error { .. } => msg_type::ERROR,
        }
    }

    /// Whether the message may travel in a frame with this response flag: PING,
    /// FIND_NODE, FIND_VALUE, STORE and REPLICATE are requests only; PONG, NODES, VALUE,
    /// STORE_RESULT and ERROR responses only; HELLO either.
    pub fn allowed_as(&self, is_response: bool) -> bool {
        codec::direction_allowed(self.type_code(), is_response).unwrap_or(false)
    }
}

/// The first message on a connection, sent by each side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// The sender's protocol version ([`PROTOCOL_VERSION`]).
    pub version: u16,
    /// Which DHT network the sender belongs to; peers of different networks hang up.
    pub network_id: u32,
    /// The sender's node id.
    pub node_id: NodeId,
    /// The address the sender listens on. An unspecified IP (`0.0.0.0` / `::`) means
    /// "the IP you see me connecting from". IPv6 flowinfo and scope id are not carried
    /// (decoded as 0).
    pub listen_addr: SocketAddr,
    /// Proof-of-work nonce for the node id; 0 for now.
    pub pow_nonce: u64,
}

impl Hello {
    /// A HELLO of [`PROTOCOL_VERSION`] with nonce 0.
    pub fn new(network_id: u32, node_id: NodeId, listen_addr: SocketAddr) -> Self {
        Hello {
            version: PROTOCOL_VERSION,
            network_id,
            node_id,
            listen_addr,
            pow_nonce: 0,
        }
    }
}

/// A node as carried in NODES: its id and the address to reach it at. IPv6 flowinfo and
/// scope id are not carried (decoded as 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WireContact {
    /// The node's id.
    pub id: NodeId,
    /// The node's address.
    pub addr: SocketAddr,
}

/// A stored record as carried in VALUE and STORE. Its `Debug` never shows the value
/// bytes, only their length.
#[derive(Clone, PartialEq, Eq)]
pub struct WireRecord {
    /// The key.
    pub key: Key,
    /// The value, 1..=[`MAX_VALUE_LEN`] bytes.
    pub value: Bytes,
    /// How many seconds the record has left to live when it is sent: its writer's TTL,
    /// or what is left of it at the holder that sends it. Relative, so that no clock
    /// enters a record's lifetime (clocks differ; versions tolerate that, expiry need
    /// not); the receiver counts it from its own clock, capped at its own maximum TTL.
    pub lifetime: u64,
    /// Version of the record; a holder keeps the newer one.
    pub version: u64,
    /// Requested number of copies.
    pub replication: u8,
}

impl fmt::Debug for WireRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WireRecord")
            .field("key", &self.key)
            .field("len", &self.value.len())
            .field("lifetime", &self.lifetime)
            .field("version", &self.version)
            .field("replication", &self.replication)
            .finish()
    }
}

/// Outcome of a STORE, carried in STORE_RESULT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum StoreStatus {
    /// The record is stored.
    Stored = 0,
    /// The receiver already holds a newer version and kept it.
    KeptNewer = 1,
    /// The receiver's storage is full.
    Full = 2,
    /// The value is larger than the receiver accepts.
    TooLarge = 3,
    /// The record has already expired.
    Expired = 4,
    /// The receiver refuses the record for another reason (e.g. a limit per peer).
    Refused = 5,
}

impl StoreStatus {
    /// The wire code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The status with this wire code, if any.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => StoreStatus::Stored,
            1 => StoreStatus::KeptNewer,
            2 => StoreStatus::Full,
            3 => StoreStatus::TooLarge,
            4 => StoreStatus::Expired,
            5 => StoreStatus::Refused,
            _ => return None,
        })
    }
}

/// Why a request was answered with ERROR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ErrorCode {
    /// The request is not valid at this point (e.g. anything before HELLO).
    UnexpectedMessage = 1,
    /// The receiver is too busy to answer.
    Overloaded = 2,
    /// The receiver failed internally.
    Internal = 3,
}

impl ErrorCode {
    /// The wire code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The error code with this wire code, if any.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => ErrorCode::UnexpectedMessage,
            2 => ErrorCode::Overloaded,
            3 => ErrorCode::Internal,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert_eq!(PEER_HEADER_LEN, 14);
        assert_eq!(RECORD_FIXED_LEN, 51);
        assert_eq!(MAX_PEER_FRAME_LEN, 65_560);
    }

    #[test]
    fn record_debug_hides_the_value() {
        let record = WireRecord {
            key: Key::from_bytes([0xab; KEY_LEN]),
            value: Bytes::from_static(b"secret-value"),
            lifetime: 1_700_000_000,
            version: 7,
            replication: 3,
        };
        let text = format!("{record:?}");
        assert!(!text.contains("secret"), "{text}");
        assert!(!text.contains("115, 101"), "{text}");
        for needle in [
            "abababab",
            "len: 12",
            "1700000000",
            "version: 7",
            "replication: 3",
        ] {
            assert!(text.contains(needle), "{needle} missing in {text}");
        }
        let frame = PeerFrame::request(1, PeerMessage::Store { record });
        assert!(!format!("{frame:?}").contains("secret"));
    }

    #[test]
    fn codes_roundtrip_and_unknown_codes_are_none() {
        for code in 0..=u8::MAX {
            match StoreStatus::from_code(code) {
                Some(status) => assert_eq!(status.code(), code),
                None => assert!(code > 5),
            }
            match ErrorCode::from_code(code) {
                Some(error) => assert_eq!(error.code(), code),
                None => assert!(code == 0 || code > 3),
            }
        }
    }

    #[test]
    fn names_and_directions() {
        let hello = PeerMessage::Hello(Hello::new(
            1,
            Key::from_bytes([1; KEY_LEN]),
            "0.0.0.0:1".parse().unwrap(),
        ));
        let record = WireRecord {
            key: Key::default(),
            value: Bytes::from_static(b"v"),
            lifetime: 0,
            version: 0,
            replication: 0,
        };
        let cases = [
            (hello, "HELLO", true, true),
            (PeerMessage::Ping, "PING", true, false),
            (PeerMessage::Pong, "PONG", false, true),
            (
                PeerMessage::FindNode {
                    target: Key::default(),
                },
                "FIND_NODE",
                true,
                false,
            ),
            (
                PeerMessage::Nodes { contacts: vec![] },
                "NODES",
                false,
                true,
            ),
            (
                PeerMessage::FindValue {
                    key: Key::default(),
                },
                "FIND_VALUE",
                true,
                false,
            ),
            (
                PeerMessage::Value {
                    record: record.clone(),
                },
                "VALUE",
                false,
                true,
            ),
            (
                PeerMessage::Store {
                    record: record.clone(),
                },
                "STORE",
                true,
                false,
            ),
            (
                PeerMessage::StoreResult {
                    status: StoreStatus::Full,
                },
                "STORE_RESULT",
                false,
                true,
            ),
            (
                PeerMessage::Error {
                    code: ErrorCode::Internal,
                },
                "ERROR",
                false,
                true,
            ),
            (PeerMessage::Replicate { record }, "REPLICATE", true, false),
        ];
        for (i, (msg, name, request, response)) in cases.into_iter().enumerate() {
            assert_eq!(msg.name(), name);
            assert_eq!(usize::from(msg.type_code()), i + 1);
            assert_eq!(msg.allowed_as(false), request, "{name} as request");
            assert_eq!(msg.allowed_as(true), response, "{name} as response");
        }
    }
}
