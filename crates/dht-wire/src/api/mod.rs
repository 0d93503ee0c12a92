//! The VoidPhone DHT client API: DHT_PUT, DHT_GET, DHT_SUCCESS and DHT_FAILURE.
//!
//! Every message starts with a 4-byte header, `size: u16` (the whole message, header
//! included) and `type: u16`, all big-endian:
//!
//! | type | name | body | size |
//! |---|---|---|---|
//! | 650 | DHT_PUT | ttl u16, replication u8, reserved u8, key 32, value | 40 + len(value), value not empty |
//! | 651 | DHT_GET | key 32 | exactly 36 |
//! | 652 | DHT_SUCCESS | key 32, value | 36 + len(value) |
//! | 653 | DHT_FAILURE | key 32 | exactly 36 |
//!
//! [`ApiCodec`] decodes and encodes all four, so it serves both the module's server and
//! a client. A header that cannot start a valid message (size below 4, unknown type, a
//! size impossible for the type) is an error as soon as its 4 bytes arrive; otherwise the
//! decoder waits for the whole message.

use bytes::{BufMut, Bytes, BytesMut};
use dht_id::{KEY_LEN, Key};

mod codec;

pub use codec::{ApiCodec, decode_message};

/// Length of the header every API message starts with (size u16, type u16).
pub const API_HEADER_LEN: usize = 4;
/// Largest API message: the size field is 16 bits.
pub const MAX_API_MESSAGE_LEN: usize = u16::MAX as usize;
/// Length of a DHT_PUT without its value (header, ttl, replication, reserved, key).
pub const PUT_FIXED_LEN: usize = API_HEADER_LEN + 2 + 1 + 1 + KEY_LEN;
/// Length of a DHT_GET or DHT_FAILURE, and of a DHT_SUCCESS without its value.
pub const KEY_MESSAGE_LEN: usize = API_HEADER_LEN + KEY_LEN;
/// Largest value a DHT_PUT can carry (65,495 bytes); also the largest value the DHT
/// stores and the peer protocol carries.
pub const MAX_VALUE_LEN: usize = MAX_API_MESSAGE_LEN - PUT_FIXED_LEN;
/// Largest value a DHT_SUCCESS can carry (65,499 bytes). Values stored through the DHT
/// never exceed [`MAX_VALUE_LEN`].
pub const MAX_SUCCESS_VALUE_LEN: usize = MAX_API_MESSAGE_LEN - KEY_MESSAGE_LEN;

/// Message type of DHT_PUT.
pub const DHT_PUT: u16 = 650;
/// Message type of DHT_GET.
pub const DHT_GET: u16 = 651;
/// Message type of DHT_SUCCESS.
pub const DHT_SUCCESS: u16 = 652;
/// Message type of DHT_FAILURE.
pub const DHT_FAILURE: u16 = 653;

/// One message of the client API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiMessage {
    /// DHT_PUT: store `value` under `key`. No reply is ever sent for a PUT.
    Put {
        /// Requested lifetime in seconds (a hint the module may clamp).
        ttl: u16,
        /// Requested number of copies (a hint the module may clamp).
        replication: u8,
        /// The key.
        key: Key,
        /// The value, 1..=[`MAX_VALUE_LEN`] bytes.
        value: Bytes,
    },
    /// DHT_GET: look up the value of `key`.
    Get {
        /// The key.
        key: Key,
    },
    /// DHT_SUCCESS: the answer to a GET that found a value.
    Success {
        /// The key of the GET, echoed.
        key: Key,
        /// The value found.
        value: Bytes,
    },
    /// DHT_FAILURE: the answer to a GET that found nothing.
    Failure {
        /// The key of the GET, echoed.
        key: Key,
    },
}

impl ApiMessage {
    /// The key the message is about.
    pub fn key(&self) -> &Key {
        match self {
            ApiMessage::Put { key, .. }
            | ApiMessage::Get { key }
            | ApiMessage::Success { key, .. }
            | ApiMessage::Failure { key } => key,
        }
    }

    /// The message type code (650..=653).
    pub fn msg_type(&self) -> u16 {
        match self {
            ApiMessage::Put { .. } => DHT_PUT,
            ApiMessage::Get { .. } => DHT_GET,
            ApiMessage::Success { .. } => DHT_SUCCESS,
            ApiMessage::Failure { .. } => DHT_FAILURE,
        }
    }

    /// Length of the encoded message, header included. Can exceed
    /// [`MAX_API_MESSAGE_LEN`] for a value too large to encode.
    pub fn encoded_len(&self) -> usize {
        match self {
            ApiMessage::Put { value, .. } => PUT_FIXED_LEN + value.len(),
            ApiMessage::Get { .. } | ApiMessage::Failure { .. } => KEY_MESSAGE_LEN,
            ApiMessage::Success { value, .. } => KEY_MESSAGE_LEN + value.len(),
        }
    }

    /// Appends the encoded message to `dst`. Refuses (and writes nothing) a PUT with an
    /// empty value and any value too large for the 16-bit size field.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), ApiError> {
        let value_len = match self {
            ApiMessage::Put { value, .. } if value.is_empty() => return Err(ApiError::EmptyValue),
            ApiMessage::Put { value, .. } | ApiMessage::Success { value, .. } => value.len(),
            ApiMessage::Get { .. } | ApiMessage::Failure { .. } => 0,
        };
        let size =
            u16::try_from(self.encoded_len()).map_err(|_| ApiError::ValueTooLarge(value_len))?;
        dst.reserve(usize::from(size));
        dst.put_u16(size);
        dst.put_u16(self.msg_type());
        match self {
            ApiMessage::Put {
                ttl,
                replication,
                key,
                value,
            } => {
                dst.put_u16(*ttl);
                dst.put_u8(*replication);
                dst.put_u8(0);
                dst.put_slice(key.as_bytes());
                dst.put_slice(value);
            }
            ApiMessage::Get { key } | ApiMessage::Failure { key } => dst.put_slice(key.as_bytes()),
            ApiMessage::Success { key, value } => {
                dst.put_slice(key.as_bytes());
                dst.put_slice(value);
            }
        }
        Ok(())
    }
}

/// Why bytes are not a valid API message, or a message cannot be encoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// Reading from or writing to the connection failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The size field is smaller than the 4-byte header.
    #[error("message size {0} is smaller than the 4-byte header")]
    SizeTooSmall(u16),
    /// The type field is not one of the four API messages.
    #[error("unknown API message type {0}")]
    UnknownType(u16),
    /// The size field is impossible for the message type.
    #[error("API message type {msg_type} cannot have size {size}")]
    WrongSize {
        /// The message type.
        msg_type: u16,
        /// The size field.
        size: u16,
    },
    /// A DHT_PUT without a value (size 40).
    #[error("DHT_PUT with an empty value")]
    EmptyValue,
    /// A value too large to fit in one message (encoding only).
    #[error("a value of {0} bytes does not fit in one API message")]
    ValueTooLarge(usize),
}
