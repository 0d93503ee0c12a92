//! Byte-exact codecs of the VoidPhone DHT client API ([`api`]) and of the DHT's
//! peer-to-peer protocol ([`peer`]).
//!
//! Both codecs implement tokio-util's [`Decoder`](tokio_util::codec::Decoder) and
//! [`Encoder`](tokio_util::codec::Encoder) so they plug into `Framed` streams, but the
//! crate owns no runtime, no sockets, no timers and never reads the clock. Every input is
//! treated as hostile: decoding never panics, reports a malformed header as soon as the
//! header bytes arrive (without waiting for a body that may never come), and never
//! buffers more than one maximum-size message. A decode error is a value
//! ([`ApiError`], [`PeerCodecError`]); the caller closes the connection.
//!
//! The byte layouts are documented in `docs/PROTOCOL.md`.
#![deny(missing_docs, rustdoc::broken_intra_doc_links, unreachable_pub)]

pub mod api;
pub mod peer;
mod reader;

pub use api::{
    API_HEADER_LEN, ApiCodec, ApiError, ApiMessage, DHT_FAILURE, DHT_GET, DHT_PUT, DHT_SUCCESS,
    MAX_API_MESSAGE_LEN, MAX_VALUE_LEN,
};
pub use peer::{
    ErrorCode, Hello, MAX_CONTACTS, MAX_PEER_FRAME_LEN, PROTOCOL_VERSION, PeerCodec,
    PeerCodecError, PeerFrame, PeerMessage, StoreStatus, WireContact, WireRecord, decode_frame,
    encode_frame,
};
