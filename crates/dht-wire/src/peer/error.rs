//! Errors of the peer codec.

use super::{MAX_CONTACTS, MAX_PEER_FRAME_LEN, MIN_LENGTH_FIELD};
use crate::api::MAX_VALUE_LEN;

/// Why bytes are not a valid peer frame, or a frame cannot be encoded. Any decode error
/// means the connection is closed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerCodecError {
    /// Reading from or writing to the connection failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The length field (given) exceeds the largest possible frame.
    #[error("frame length field {0} exceeds the limit of {limit}", limit = MAX_PEER_FRAME_LEN - super::LENGTH_FIELD_LEN)]
    FrameTooLarge(usize),
    /// The length field (given) is below the fixed header (type, flags, request id).
    #[error("frame length field {0} is below the minimum of {MIN_LENGTH_FIELD}")]
    FrameTooShort(usize),
    /// The message type is not a known peer message.
    #[error("unknown peer message type {0}")]
    UnknownType(u8),
    /// A flag bit other than bit 0 (response) is set.
    #[error("invalid flags byte {0:#04x}: only bit 0 may be set")]
    BadFlags(u8),
    /// A request-only message sent as a response or vice versa.
    #[error("peer message type {msg_type} is not allowed as a {}", if *is_response { "response" } else { "request" })]
    WrongDirection {
        /// The message type.
        msg_type: u8,
        /// The frame's response flag.
        is_response: bool,
    },
    /// The body ends inside the named field.
    #[error("frame body ends inside field `{0}`")]
    Truncated(&'static str),
    /// The body is followed by this many unexpected bytes.
    #[error("{0} unexpected bytes after the frame body")]
    TrailingBytes(usize),
    /// An address family byte other than 4 or 6.
    #[error("invalid address family {0} (expected 4 or 6)")]
    BadAddressFamily(u8),
    /// A NODES message with more than [`MAX_CONTACTS`] contacts.
    #[error("{0} contacts in NODES, at most {MAX_CONTACTS} allowed")]
    TooManyContacts(usize),
    /// A record with an empty value.
    #[error("record with an empty value")]
    EmptyValue,
    /// A record value longer than [`MAX_VALUE_LEN`].
    #[error("record value of {0} bytes exceeds the limit of {MAX_VALUE_LEN}")]
    ValueTooLarge(usize),
    /// An unknown STORE_RESULT status code.
    #[error("unknown store status {0}")]
    UnknownStatus(u8),
    /// An unknown ERROR code.
    #[error("unknown error code {0}")]
    UnknownErrorCode(u8),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_clear() {
        let cases = [
            (
                PeerCodecError::FrameTooLarge(70_000),
                "frame length field 70000 exceeds the limit of 65556",
            ),
            (
                PeerCodecError::FrameTooShort(3),
                "frame length field 3 is below the minimum of 10",
            ),
            (
                PeerCodecError::BadFlags(0x81),
                "invalid flags byte 0x81: only bit 0 may be set",
            ),
            (
                PeerCodecError::WrongDirection {
                    msg_type: 2,
                    is_response: true,
                },
                "peer message type 2 is not allowed as a response",
            ),
            (
                PeerCodecError::Truncated("value"),
                "frame body ends inside field `value`",
            ),
            (
                PeerCodecError::TooManyContacts(65),
                "65 contacts in NODES, at most 64 allowed",
            ),
            (
                PeerCodecError::ValueTooLarge(65_496),
                "record value of 65496 bytes exceeds the limit of 65495",
            ),
        ];
        for (err, text) in cases {
            assert_eq!(err.to_string(), text);
        }
    }
}
