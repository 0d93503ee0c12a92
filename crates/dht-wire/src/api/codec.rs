//! Decoding with early header checks, and the tokio-util codec.

use bytes::BytesMut;
use dht_id::Key;
use tokio_util::codec::{Decoder, Encoder};

use super::{
    API_HEADER_LEN, ApiError, ApiMessage, DHT_FAILURE, DHT_GET, DHT_PUT, DHT_SUCCESS,
    KEY_MESSAGE_LEN, PUT_FIXED_LEN,
};
use crate::reader::Reader;

/// Checks a header: `Ok` when `size` is possible for `msg_type`.
fn check_header(size: u16, msg_type: u16) -> Result<(), ApiError> {
    if usize::from(size) < API_HEADER_LEN {
        return Err(ApiError::SizeTooSmall(size));
    }
    let len = usize::from(size);
    let ok = match msg_type {
        DHT_PUT if len == PUT_FIXED_LEN => return Err(ApiError::EmptyValue),
        DHT_PUT => len > PUT_FIXED_LEN,
        DHT_GET | DHT_FAILURE => len == KEY_MESSAGE_LEN,
        DHT_SUCCESS => len >= KEY_MESSAGE_LEN,
        other => return Err(ApiError::UnknownType(other)),
    };
    if ok {
        Ok(())
    } else {
        Err(ApiError::WrongSize { msg_type, size })
    }
}

/// Decodes one message from the front of `src`, removing its bytes.
///
/// `Ok(None)` means more bytes are needed (capacity for the rest is reserved). A bad
/// header is an error as soon as its 4 bytes (for a size below 4: 2 bytes) are in `src`.
pub fn decode_message(src: &mut BytesMut) -> Result<Option<ApiMessage>, ApiError> {
    if let [hi, lo, ..] = src[..] {
        let size = u16::from_be_bytes([hi, lo]);
        if usize::from(size) < API_HEADER_LEN {
            return Err(ApiError::SizeTooSmall(size));
        }
    }
    let [s0, s1, t0, t1, ..] = src[..] else {
        src.reserve(API_HEADER_LEN - src.len());
        return Ok(None);
    };
    let (size, msg_type) = (u16::from_be_bytes([s0, s1]), u16::from_be_bytes([t0, t1]));
    check_header(size, msg_type)?;
    let len = usize::from(size);
    if src.len() < len {
        src.reserve(len - src.len());
        return Ok(None);
    }
    let mut r = Reader::new(src.split_to(len).freeze());
    let wrong = || ApiError::WrongSize { msg_type, size };
    if !r.skip(API_HEADER_LEN) {
        return Err(wrong());
    }
    let message = match msg_type {
        DHT_PUT => {
            let ttl = r.u16().ok_or_else(wrong)?;
            let replication = r.u8().ok_or_else(wrong)?;
            let _reserved = r.u8().ok_or_else(wrong)?;
            let key = Key::from_bytes(r.array().ok_or_else(wrong)?);
            ApiMessage::Put {
                ttl,
                replication,
                key,
                value: r.rest(),
            }
        }
        DHT_GET => ApiMessage::Get {
            key: Key::from_bytes(r.array().ok_or_else(wrong)?),
        },
        DHT_SUCCESS => {
            let key = Key::from_bytes(r.array().ok_or_else(wrong)?);
            ApiMessage::Success {
                key,
                value: r.rest(),
            }
        }
        DHT_FAILURE => ApiMessage::Failure {
            key: Key::from_bytes(r.array().ok_or_else(wrong)?),
        },
        other => return Err(ApiError::UnknownType(other)),
    };
    Ok(Some(message))
}

/// tokio-util codec of the client API; see [`decode_message`] and [`ApiMessage::encode`].
#[derive(Debug, Default, Clone, Copy)]
pub struct ApiCodec;

impl Decoder for ApiCodec {
    type Item = ApiMessage;
    type Error = ApiError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<ApiMessage>, ApiError> {
        decode_message(src)
    }
}

impl Encoder<ApiMessage> for ApiCodec {
    type Error = ApiError;

    fn encode(&mut self, item: ApiMessage, dst: &mut BytesMut) -> Result<(), ApiError> {
        item.encode(dst)
    }
}

impl Encoder<&ApiMessage> for ApiCodec {
    type Error = ApiError;

    fn encode(&mut self, item: &ApiMessage, dst: &mut BytesMut) -> Result<(), ApiError> {
        item.encode(dst)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{MAX_API_MESSAGE_LEN, MAX_SUCCESS_VALUE_LEN, MAX_VALUE_LEN};
    use super::*;
    use bytes::{BufMut, Bytes};
    use dht_id::KEY_LEN;
    use futures::{SinkExt, StreamExt};
    use proptest::prelude::*;
    use tokio_util::codec::{FramedRead, FramedWrite};

    fn key() -> impl Strategy<Value = Key> {
        any::<[u8; KEY_LEN]>().prop_map(Key::from_bytes)
    }

    /// Values of 1..=max bytes: mostly short and random, sometimes near the limit.
    fn value(max: usize) -> impl Strategy<Value = Bytes> {
        prop_oneof![
            4 => proptest::collection::vec(any::<u8>(), 1..200).prop_map(Bytes::from),
            1 => (any::<u8>(), max - 16..=max).prop_map(|(b, n)| Bytes::from(vec![b; n])),
        ]
    }

    fn message() -> impl Strategy<Value = ApiMessage> {
        prop_oneof![
            (any::<u16>(), any::<u8>(), key(), value(MAX_VALUE_LEN)).prop_map(
                |(ttl, replication, key, value)| ApiMessage::Put {
                    ttl,
                    replication,
                    key,
                    value
                }
            ),
            key().prop_map(|key| ApiMessage::Get { key }),
            (
                key(),
                prop_oneof![Just(Bytes::new()), value(MAX_SUCCESS_VALUE_LEN)]
            )
                .prop_map(|(key, value)| ApiMessage::Success { key, value }),
            key().prop_map(|key| ApiMessage::Failure { key }),
        ]
    }

    fn encode(msg: &ApiMessage) -> BytesMut {
        let mut buf = BytesMut::new();
        msg.encode(&mut buf).unwrap();
        buf
    }

    /// Decodes everything in `bytes`, stopping at the first error or incomplete message.
    fn decode_all(bytes: &[u8]) -> (Vec<ApiMessage>, Option<ApiError>) {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        loop {
            match ApiCodec.decode(&mut buf) {
                Ok(Some(msg)) => out.push(msg),
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e)),
            }
        }
    }

    /// Header of `size` bytes and type `msg_type`.
    fn header(size: u16, msg_type: u16) -> BytesMut {
        let mut buf = BytesMut::new();
        buf.put_u16(size);
        buf.put_u16(msg_type);
        buf
    }

    proptest! {
        #[test]
        fn roundtrip_and_length(msg in message()) {
            let buf = encode(&msg);
            prop_assert_eq!(buf.len(), msg.encoded_len());
            prop_assert_eq!(usize::from(u16::from_be_bytes([buf[0], buf[1]])), buf.len());
            prop_assert_eq!(u16::from_be_bytes([buf[2], buf[3]]), msg.msg_type());
            let mut src = buf.clone();
            prop_assert_eq!(ApiCodec.decode(&mut src).unwrap(), Some(msg));
            prop_assert!(src.is_empty());
        }

        #[test]
        fn several_messages_in_one_buffer(msgs in proptest::collection::vec(message(), 1..6)) {
            let mut buf = BytesMut::new();
            for msg in &msgs {
                ApiCodec.encode(msg, &mut buf).unwrap();
            }
            let (decoded, err) = decode_all(&buf);
            prop_assert!(err.is_none());
            prop_assert_eq!(decoded, msgs);
        }

        #[test]
        fn truncation_waits_for_more(msg in message(), cut in any::<prop::sample::Index>()) {
            let buf = encode(&msg);
            let cut = cut.index(buf.len());
            let mut src = BytesMut::from(&buf[..cut]);
            prop_assert!(ApiCodec.decode(&mut src).unwrap().is_none());
            prop_assert_eq!(src.len(), cut, "nothing consumed");
            src.extend_from_slice(&buf[cut..]);
            prop_assert_eq!(ApiCodec.decode(&mut src).unwrap(), Some(msg));
        }

        #[test]
        fn bit_flips_never_panic(msg in message(), flips in proptest::collection::vec(any::<prop::sample::Index>(), 1..4)) {
            let mut buf = encode(&msg);
            for (i, flip) in flips.iter().enumerate() {
                let at = flip.index(buf.len());
                buf[at] ^= 1 << (i % 8);
            }
            let _ = decode_all(&buf);
        }

        #[test]
        fn random_size_fields_never_panic(msg in message(), size in any::<u16>()) {
            let mut buf = encode(&msg);
            buf[..2].copy_from_slice(&size.to_be_bytes());
            let _ = decode_all(&buf);
        }

        #[test]
        fn random_bytes_reencode_to_an_equal_message(bytes in proptest::collection::vec(any::<u8>(), 0..128), msg_type in DHT_PUT..=DHT_FAILURE) {
            // Random bytes behind a plausible header, so that some of them parse.
            let mut buf = header(u16::try_from(bytes.len() + API_HEADER_LEN).unwrap(), msg_type);
            buf.extend_from_slice(&bytes);
            for input in [&buf[..], &bytes[..]] {
                let (decoded, _) = decode_all(input);
                for msg in decoded {
                    let again = encode(&msg);
                    prop_assert_eq!(again.len(), msg.encoded_len());
                    prop_assert_eq!(decode_all(&again).0, vec![msg]);
                }
            }
        }
    }

    #[test]
    fn malformed_headers_are_errors_from_the_header_alone() {
        type Check = fn(&ApiError) -> bool;
        let cases: [(u16, u16, Check); 9] = [
            (3, DHT_GET, |e| matches!(e, ApiError::SizeTooSmall(3))),
            (0, DHT_PUT, |e| matches!(e, ApiError::SizeTooSmall(0))),
            (36, 649, |e| matches!(e, ApiError::UnknownType(649))),
            (36, 654, |e| matches!(e, ApiError::UnknownType(654))),
            (37, DHT_GET, |e| {
                matches!(
                    e,
                    ApiError::WrongSize {
                        msg_type: DHT_GET,
                        size: 37
                    }
                )
            }),
            (35, DHT_FAILURE, |e| {
                matches!(
                    e,
                    ApiError::WrongSize {
                        msg_type: DHT_FAILURE,
                        size: 35
                    }
                )
            }),
            (35, DHT_SUCCESS, |e| {
                matches!(
                    e,
                    ApiError::WrongSize {
                        msg_type: DHT_SUCCESS,
                        size: 35
                    }
                )
            }),
            (40, DHT_PUT, |e| matches!(e, ApiError::EmptyValue)),
            (39, DHT_PUT, |e| {
                matches!(
                    e,
                    ApiError::WrongSize {
                        msg_type: DHT_PUT,
                        size: 39
                    }
                )
            }),
        ];
        for (size, msg_type, expected) in cases {
            let mut src = header(size, msg_type);
            let err = ApiCodec.decode(&mut src).unwrap_err();
            assert!(expected(&err), "size {size} type {msg_type}: {err:?}");
        }
        // A size below the header is detected from the size field alone.
        let mut src = BytesMut::from(&[0u8, 2][..]);
        assert!(matches!(
            ApiCodec.decode(&mut src),
            Err(ApiError::SizeTooSmall(2))
        ));
        // Valid headers wait for their body.
        for (size, msg_type) in [
            (36, DHT_GET),
            (36, DHT_FAILURE),
            (36, DHT_SUCCESS),
            (41, DHT_PUT),
            (65535, DHT_PUT),
        ] {
            let mut src = header(size, msg_type);
            assert!(
                ApiCodec.decode(&mut src).unwrap().is_none(),
                "size {size} type {msg_type}"
            );
            assert!(
                src.capacity() >= usize::from(size),
                "capacity reserved for the body"
            );
        }
    }

    #[test]
    fn largest_value_with_every_byte_roundtrips() {
        let value: Bytes = (0..MAX_VALUE_LEN).map(|i| (i % 256) as u8).collect();
        let put = ApiMessage::Put {
            ttl: 3600,
            replication: 5,
            key: Key::sha256(b"k"),
            value: value.clone(),
        };
        let buf = encode(&put);
        assert_eq!(buf.len(), MAX_API_MESSAGE_LEN);
        assert_eq!(decode_all(&buf).0, vec![put]);
        let success = ApiMessage::Success {
            key: Key::sha256(b"k"),
            value,
        };
        assert_eq!(decode_all(&encode(&success)).0, vec![success]);
    }

    #[test]
    fn encoding_refuses_what_decoding_refuses() {
        let key = Key::sha256(b"k");
        let mut dst = BytesMut::new();
        let empty = ApiMessage::Put {
            ttl: 1,
            replication: 1,
            key,
            value: Bytes::new(),
        };
        assert!(matches!(empty.encode(&mut dst), Err(ApiError::EmptyValue)));
        let big = ApiMessage::Put {
            ttl: 1,
            replication: 1,
            key,
            value: Bytes::from(vec![0; MAX_VALUE_LEN + 1]),
        };
        assert!(
            matches!(big.encode(&mut dst), Err(ApiError::ValueTooLarge(n)) if n == MAX_VALUE_LEN + 1)
        );
        let big = ApiMessage::Success {
            key,
            value: Bytes::from(vec![0; MAX_SUCCESS_VALUE_LEN + 1]),
        };
        assert!(matches!(
            big.encode(&mut dst),
            Err(ApiError::ValueTooLarge(_))
        ));
        assert!(dst.is_empty(), "nothing written on error");
        // An empty SUCCESS value is allowed both ways.
        let empty = ApiMessage::Success {
            key,
            value: Bytes::new(),
        };
        assert_eq!(decode_all(&encode(&empty)).0, vec![empty]);
    }

    #[test]
    fn exact_bytes_and_reserved_byte_ignored() {
        let key = Key::from_bytes([7; KEY_LEN]);
        let put = ApiMessage::Put {
            ttl: 0x0102,
            replication: 3,
            key,
            value: Bytes::from_static(b"hi"),
        };
        let buf = encode(&put);
        let mut expected = vec![0, 42, 0x02, 0x8a, 0x01, 0x02, 3, 0];
        expected.extend_from_slice(&[7; KEY_LEN]);
        expected.extend_from_slice(b"hi");
        assert_eq!(&buf[..], &expected[..]);
        let mut dirty = buf.clone();
        dirty[7] = 0xff;
        assert_eq!(decode_all(&dirty).0, vec![put]);
    }

    #[test]
    fn split_into_single_bytes() {
        let msgs = [
            ApiMessage::Get {
                key: Key::sha256(b"a"),
            },
            ApiMessage::Put {
                ttl: 9,
                replication: 2,
                key: Key::sha256(b"b"),
                value: Bytes::from_static(b"value"),
            },
            ApiMessage::Failure {
                key: Key::sha256(b"c"),
            },
        ];
        let mut all = BytesMut::new();
        for msg in &msgs {
            msg.encode(&mut all).unwrap();
        }
        let mut src = BytesMut::new();
        let mut decoded = Vec::new();
        for byte in all {
            src.put_u8(byte);
            if let Some(msg) = ApiCodec.decode(&mut src).unwrap() {
                decoded.push(msg);
            }
        }
        assert_eq!(decoded, msgs);
        assert!(src.is_empty());
    }

    #[tokio::test]
    async fn through_a_duplex_stream() {
        let (client, server) = tokio::io::duplex(64);
        let msgs = vec![
            ApiMessage::Put {
                ttl: 1,
                replication: 1,
                key: Key::sha256(b"x"),
                value: Bytes::from(vec![5; 10_000]),
            },
            ApiMessage::Get {
                key: Key::sha256(b"x"),
            },
            ApiMessage::Success {
                key: Key::sha256(b"x"),
                value: Bytes::from(vec![5; 10_000]),
            },
        ];
        let sent = msgs.clone();
        let writer = tokio::spawn(async move {
            let mut sink = FramedWrite::new(client, ApiCodec);
            for msg in sent {
                sink.send(msg).await.unwrap();
            }
        });
        let received: Vec<_> = FramedRead::new(server, ApiCodec)
            .map(Result::unwrap)
            .collect()
            .await;
        writer.await.unwrap();
        assert_eq!(received, msgs);
    }
}
