//! Framing: the 14-byte frame header, the length limit and the tokio-util codec.

use bytes::{BufMut, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::body::{body_len, check_body, put_body, read_body};
use super::{
    FLAG_RESPONSE, LENGTH_FIELD_LEN, MAX_PEER_FRAME_LEN, MIN_LENGTH_FIELD, PEER_HEADER_LEN,
    PeerCodecError, PeerFrame, msg_type,
};
use crate::reader::Reader;

/// Whether a message of type `code` may be sent with this response flag; `None` for an
/// unknown type.
pub(super) fn direction_allowed(code: u8, is_response: bool) -> Option<bool> {
    match code {
        msg_type::HELLO => Some(true),
        msg_type::PING
        | msg_type::FIND_NODE
        | msg_type::FIND_VALUE
        | msg_type::STORE
        | msg_type::REPLICATE => Some(!is_response),
        msg_type::PONG
        | msg_type::NODES
        | msg_type::VALUE
        | msg_type::STORE_RESULT
        | msg_type::ERROR => Some(is_response),
        _ => None,
    }
}

/// Checks the type and flags bytes; returns the response flag.
fn check_type_and_flags(code: u8, flags: u8) -> Result<bool, PeerCodecError> {
    let is_response = flags & FLAG_RESPONSE != 0;
    match direction_allowed(code, is_response) {
        None => Err(PeerCodecError::UnknownType(code)),
        Some(_) if flags & !FLAG_RESPONSE != 0 => Err(PeerCodecError::BadFlags(flags)),
        Some(false) => Err(PeerCodecError::WrongDirection {
            msg_type: code,
            is_response,
        }),
        Some(true) => Ok(is_response),
    }
}

/// Appends the encoded frame to `dst`. Refuses (and writes nothing) what decoding would
/// refuse: a message in the wrong direction, an empty or too large value, more than
/// [`MAX_CONTACTS`](super::MAX_CONTACTS) contacts.
pub fn encode_frame(frame: &PeerFrame, dst: &mut BytesMut) -> Result<(), PeerCodecError> {
    let code = frame.message.type_code();
    let flags = if frame.is_response { FLAG_RESPONSE } else { 0 };
    check_type_and_flags(code, flags)?;
    check_body(&frame.message)?;
    let body = body_len(&frame.message);
    let length = body + MIN_LENGTH_FIELD;
    if PEER_HEADER_LEN + body > MAX_PEER_FRAME_LEN {
        return Err(PeerCodecError::FrameTooLarge(length));
    }
    let length_field = u32::try_from(length).map_err(|_| PeerCodecError::FrameTooLarge(length))?;
    dst.reserve(PEER_HEADER_LEN + body);
    dst.put_u32(length_field);
    dst.put_u8(code);
    dst.put_u8(flags);
    dst.put_u64(frame.request_id);
    put_body(&frame.message, dst);
    Ok(())
}

/// Decodes one frame from the front of `src`, removing its bytes.
///
/// `Ok(None)` means more bytes are needed; capacity for the rest of the frame (never more
/// than [`MAX_PEER_FRAME_LEN`]) is reserved. A length field out of range is an error as
/// soon as its 4 bytes are in `src`, an unknown type or invalid flags as soon as 6 bytes
/// are; the body is checked once the whole frame is there.
pub fn decode_frame(src: &mut BytesMut) -> Result<Option<PeerFrame>, PeerCodecError> {
    let [l0, l1, l2, l3, ref rest @ ..] = src[..] else {
        src.reserve(LENGTH_FIELD_LEN - src.len());
        return Ok(None);
    };
    let length = usize::try_from(u32::from_be_bytes([l0, l1, l2, l3])).unwrap_or(usize::MAX);
    if length > MAX_PEER_FRAME_LEN - LENGTH_FIELD_LEN {
        return Err(PeerCodecError::FrameTooLarge(length));
    }
    if length < MIN_LENGTH_FIELD {
        return Err(PeerCodecError::FrameTooShort(length));
    }
    if let [code, flags, ..] = *rest {
        check_type_and_flags(code, flags)?;
    }
    let total = LENGTH_FIELD_LEN + length;
    if src.len() < total {
        src.reserve(total - src.len());
        return Ok(None);
    }
    let mut r = Reader::new(src.split_to(total).freeze());
    let header = r
        .array::<PEER_HEADER_LEN>()
        .ok_or(PeerCodecError::Truncated("header"))?;
    let [_, _, _, _, code, flags, id @ ..] = header;
    let is_response = check_type_and_flags(code, flags)?;
    let message = read_body(code, &mut r)?;
    if r.remaining() > 0 {
        return Err(PeerCodecError::TrailingBytes(r.remaining()));
    }
    Ok(Some(PeerFrame {
        request_id: u64::from_be_bytes(id),
        is_response,
        message,
    }))
}

/// tokio-util codec of the peer protocol; see [`encode_frame`] and [`decode_frame`].
#[derive(Debug, Default, Clone, Copy)]
pub struct PeerCodec;

impl Decoder for PeerCodec {
    type Item = PeerFrame;
    type Error = PeerCodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<PeerFrame>, PeerCodecError> {
        decode_frame(src)
    }
}

impl Encoder<PeerFrame> for PeerCodec {
    type Error = PeerCodecError;

    fn encode(&mut self, item: PeerFrame, dst: &mut BytesMut) -> Result<(), PeerCodecError> {
        encode_frame(&item, dst)
    }
}

impl Encoder<&PeerFrame> for PeerCodec {
    type Error = PeerCodecError;

    fn encode(&mut self, item: &PeerFrame, dst: &mut BytesMut) -> Result<(), PeerCodecError> {
        encode_frame(item, dst)
    }
}

#[cfg(test)]
mod tests {
    use super::super::strategies::{self, frame};
    use super::super::{Hello, MAX_CONTACTS, PeerMessage, WireRecord};
    use super::*;
    use bytes::Bytes;
    use dht_id::Key;
    use futures::{SinkExt, StreamExt};
    use proptest::prelude::*;
    use tokio_util::codec::{FramedRead, FramedWrite};

    fn encode(frame: &PeerFrame) -> BytesMut {
        let mut buf = BytesMut::new();
        encode_frame(frame, &mut buf).unwrap();
        buf
    }

    /// Decodes everything in `bytes`, stopping at the first error or incomplete frame.
    fn decode_all(bytes: &[u8]) -> (Vec<PeerFrame>, Option<PeerCodecError>) {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        loop {
            match PeerCodec.decode(&mut buf) {
                Ok(Some(frame)) => out.push(frame),
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e)),
            }
        }
    }

    /// Roundtrip, length, byte-at-a-time feeding (every truncation point) of one frame.
    fn check_frame(frame: &PeerFrame) -> Result<(), TestCaseError> {
        let buf = encode(frame);
        prop_assert_eq!(buf.len(), frame.encoded_len());
        prop_assert!(buf.len() <= MAX_PEER_FRAME_LEN);
        prop_assert_eq!(
            u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize,
            buf.len() - 4
        );
        let mut src = BytesMut::new();
        for (i, byte) in buf.iter().enumerate() {
            src.put_u8(*byte);
            let decoded = PeerCodec.decode(&mut src).unwrap();
            if i + 1 < buf.len() {
                prop_assert!(
                    decoded.is_none(),
                    "complete after {} of {} bytes",
                    i + 1,
                    buf.len()
                );
            } else {
                prop_assert_eq!(decoded.as_ref(), Some(frame));
            }
        }
        prop_assert!(src.is_empty());
        Ok(())
    }

    /// Flips bits and rewrites the length field of an encoded frame: never panics, and
    /// whatever still decodes re-encodes to the same bytes.
    fn check_perturbed(
        frame: &PeerFrame,
        flips: &[prop::sample::Index],
        length: u32,
    ) -> Result<(), TestCaseError> {
        let buf = encode(frame);
        let mut flipped = buf.clone();
        for (i, flip) in flips.iter().enumerate() {
            flipped[flip.index(buf.len())] ^= 1 << (i % 8);
        }
        check_reencode(&flipped)?;
        let mut relength = buf.clone();
        relength[..4].copy_from_slice(&length.to_be_bytes());
        check_reencode(&relength)
    }

    /// hickory-style: frames decoded from `bytes` re-encode to exactly the bytes they came
    /// from (the encoding is canonical) and so decode to equal frames.
    fn check_reencode(bytes: &[u8]) -> Result<(), TestCaseError> {
        let (frames, _) = decode_all(bytes);
        let mut offset = 0;
        for frame in frames {
            let again = encode(&frame);
            prop_assert_eq!(&again[..], &bytes[offset..offset + again.len()]);
            offset += again.len();
            prop_assert_eq!(decode_all(&again).0, vec![frame]);
        }
        Ok(())
    }

    fn frames_of(message: impl Strategy<Value = PeerMessage>) -> impl Strategy<Value = PeerFrame> {
        (any::<u64>(), message, any::<bool>()).prop_map(|(id, message, coin)| {
            let is_response = if message.allowed_as(coin) {
                coin
            } else {
                !coin
            };
            PeerFrame {
                request_id: id,
                is_response,
                message,
            }
        })
    }

    macro_rules! per_type {
        ($($name:ident => $strategy:expr;)*) => {
            proptest! {
                $(
                    #[test]
                    fn $name(
                        frame in frames_of($strategy),
                        flips in proptest::collection::vec(any::<prop::sample::Index>(), 1..4),
                        length in any::<u32>(),
                    ) {
                        check_frame(&frame)?;
                        check_perturbed(&frame, &flips, length)?;
                    }
                )*
            }
        };
    }

    per_type! {
        hello => strategies::hello().prop_map(PeerMessage::Hello);
        ping => Just(PeerMessage::Ping);
        pong => Just(PeerMessage::Pong);
        find_node => strategies::key().prop_map(|target| PeerMessage::FindNode { target });
        nodes => strategies::contacts().prop_map(|contacts| PeerMessage::Nodes { contacts });
        find_value => strategies::key().prop_map(|key| PeerMessage::FindValue { key });
        value => strategies::record().prop_map(|record| PeerMessage::Value { record });
        store => strategies::record().prop_map(|record| PeerMessage::Store { record });
        replicate => strategies::record().prop_map(|record| PeerMessage::Replicate { record });
        store_result => strategies::message().prop_filter("STORE_RESULT", |m| matches!(m, PeerMessage::StoreResult { .. }));
        error => strategies::message().prop_filter("ERROR", |m| matches!(m, PeerMessage::Error { .. }));
    }

    proptest! {
        #[test]
        fn several_frames_in_one_buffer(frames in proptest::collection::vec(frame(), 1..6)) {
            let mut buf = BytesMut::new();
            for frame in &frames {
                PeerCodec.encode(frame, &mut buf).unwrap();
            }
            let (decoded, err) = decode_all(&buf);
            prop_assert!(err.is_none());
            prop_assert_eq!(decoded, frames);
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            check_reencode(&bytes)?;
        }

        #[test]
        fn random_bodies_reencode_to_an_equal_frame(
            code in 0u8..=11,
            flags in prop_oneof![4 => 0u8..=1, 1 => any::<u8>()],
            id in any::<u64>(),
            body in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            // A correct length and header before random bytes, so that some of them parse.
            let mut buf = BytesMut::new();
            buf.put_u32(u32::try_from(body.len() + MIN_LENGTH_FIELD).unwrap());
            buf.put_u8(code);
            buf.put_u8(flags);
            buf.put_u64(id);
            buf.extend_from_slice(&body);
            check_reencode(&buf)?;
        }
    }

    fn header(length: u32, code: u8, flags: u8) -> BytesMut {
        let mut buf = BytesMut::new();
        buf.put_u32(length);
        buf.put_u8(code);
        buf.put_u8(flags);
        buf
    }

    #[test]
    fn length_out_of_range_is_detected_from_four_bytes() {
        let limit = (MAX_PEER_FRAME_LEN - LENGTH_FIELD_LEN) as u32;
        for length in [limit + 1, u32::MAX] {
            let mut src = BytesMut::from(&length.to_be_bytes()[..]);
            let err = PeerCodec.decode(&mut src).unwrap_err();
            assert!(
                matches!(err, PeerCodecError::FrameTooLarge(n) if n == length as usize),
                "{err:?}"
            );
            assert!(
                src.capacity() < MAX_PEER_FRAME_LEN,
                "nothing reserved for a refused frame"
            );
        }
        for length in [0, 9] {
            let mut src = BytesMut::from(&u32::to_be_bytes(length)[..]);
            assert!(
                matches!(PeerCodec.decode(&mut src), Err(PeerCodecError::FrameTooShort(n)) if n == length as usize)
            );
        }
        // The limit itself waits for the body, with room reserved for exactly one frame.
        let mut src = BytesMut::from(&limit.to_be_bytes()[..]);
        assert!(PeerCodec.decode(&mut src).unwrap().is_none());
        assert!(src.capacity() >= MAX_PEER_FRAME_LEN);
    }

    #[test]
    fn largest_value_frame_is_max_peer_frame_len() {
        let value: Bytes = (0..crate::MAX_VALUE_LEN).map(|i| (i % 256) as u8).collect();
        let record = WireRecord {
            key: Key::sha256(b"k"),
            value,
            lifetime: u64::MAX,
            version: 1,
            replication: 20,
        };
        for frame in [
            PeerFrame::response(
                u64::MAX,
                PeerMessage::Value {
                    record: record.clone(),
                },
            ),
            PeerFrame::request(
                0,
                PeerMessage::Store {
                    record: record.clone(),
                },
            ),
        ] {
            let buf = encode(&frame);
            assert_eq!(buf.len(), MAX_PEER_FRAME_LEN);
            assert_eq!(decode_all(&buf).0, vec![frame]);
        }
        let mut big = record;
        big.value = Bytes::from(vec![1; crate::MAX_VALUE_LEN + 1]);
        let mut dst = BytesMut::new();
        let err = encode_frame(
            &PeerFrame::request(1, PeerMessage::Store { record: big }),
            &mut dst,
        )
        .unwrap_err();
        assert!(matches!(err, PeerCodecError::ValueTooLarge(n) if n == crate::MAX_VALUE_LEN + 1));
        assert!(dst.is_empty(), "nothing written on error");
    }

    #[test]
    fn header_errors_are_detected_from_six_bytes() {
        type Check = fn(&PeerCodecError) -> bool;
        let cases: [(u8, u8, Check); 7] = [
            (0, 0, |e| matches!(e, PeerCodecError::UnknownType(0))),
            (12, 1, |e| matches!(e, PeerCodecError::UnknownType(12))),
            (msg_type::PING, 2, |e| {
                matches!(e, PeerCodecError::BadFlags(2))
            }),
            (msg_type::HELLO, 0x81, |e| {
                matches!(e, PeerCodecError::BadFlags(0x81))
            }),
            (msg_type::PING, 1, |e| {
                matches!(
                    e,
                    PeerCodecError::WrongDirection {
                        msg_type: 2,
                        is_response: true
                    }
                )
            }),
            (msg_type::STORE, 1, |e| {
                matches!(
                    e,
                    PeerCodecError::WrongDirection {
                        msg_type: 8,
                        is_response: true
                    }
                )
            }),
            (msg_type::NODES, 0, |e| {
                matches!(
                    e,
                    PeerCodecError::WrongDirection {
                        msg_type: 5,
                        is_response: false
                    }
                )
            }),
        ];
        for (code, flags, expected) in cases {
            let mut src = header(1000, code, flags);
            let err = PeerCodec.decode(&mut src).unwrap_err();
            assert!(expected(&err), "type {code} flags {flags}: {err:?}");
        }
    }

    #[test]
    fn wrong_direction_is_refused_both_ways() {
        let hello = Hello::new(7, Key::sha256(b"n"), "0.0.0.0:4000".parse().unwrap());
        for frame in [
            PeerFrame::request(1, PeerMessage::Hello(hello)),
            PeerFrame::response(0, PeerMessage::Hello(hello)),
        ] {
            assert_eq!(decode_all(&encode(&frame)).0, vec![frame]);
        }
        let mut dst = BytesMut::new();
        for frame in [
            PeerFrame::response(1, PeerMessage::Ping),
            PeerFrame::request(1, PeerMessage::Pong),
            PeerFrame::response(
                1,
                PeerMessage::FindValue {
                    key: Key::default(),
                },
            ),
            PeerFrame::request(1, PeerMessage::Nodes { contacts: vec![] }),
        ] {
            let err = encode_frame(&frame, &mut dst).unwrap_err();
            assert!(
                matches!(err, PeerCodecError::WrongDirection { .. }),
                "{err:?}"
            );
            // Flip the flag of the correct encoding: the decoder refuses it.
            let mut buf = encode(&PeerFrame {
                is_response: !frame.is_response,
                ..frame.clone()
            });
            buf[5] ^= FLAG_RESPONSE;
            assert!(matches!(
                decode_all(&buf).1,
                Some(PeerCodecError::WrongDirection { .. })
            ));
        }
        assert!(dst.is_empty());
    }

    #[test]
    fn exact_bytes_of_a_ping_and_body_errors() {
        let buf = encode(&PeerFrame::request(
            0x0102_0304_0506_0708,
            PeerMessage::Ping,
        ));
        assert_eq!(&buf[..], &[0, 0, 0, 10, 2, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
        let mut trailing = buf.clone();
        trailing[3] = 11;
        trailing.put_u8(0);
        assert!(matches!(
            decode_all(&trailing).1,
            Some(PeerCodecError::TrailingBytes(1))
        ));
        let mut short = header(10, msg_type::FIND_NODE, 0);
        short.put_u64(1);
        assert!(matches!(
            decode_all(&short).1,
            Some(PeerCodecError::Truncated("target"))
        ));
        let mut too_many = BytesMut::new();
        let contacts = vec![
            super::super::WireContact {
                id: Key::default(),
                addr: "[::]:0".parse().unwrap()
            };
            MAX_CONTACTS + 1
        ];
        let err = encode_frame(
            &PeerFrame::response(1, PeerMessage::Nodes { contacts }),
            &mut too_many,
        )
        .unwrap_err();
        assert!(matches!(err, PeerCodecError::TooManyContacts(65)));
        assert!(too_many.is_empty());
    }

    #[tokio::test]
    async fn through_a_duplex_stream() {
        let (a, b) = tokio::io::duplex(100);
        let hello = Hello::new(1, Key::sha256(b"a"), "[::]:7000".parse().unwrap());
        let record = WireRecord {
            key: Key::sha256(b"k"),
            value: Bytes::from(vec![3; 20_000]),
            lifetime: 5,
            version: 2,
            replication: 3,
        };
        let frames = vec![
            PeerFrame::request(0, PeerMessage::Hello(hello)),
            PeerFrame::request(
                1,
                PeerMessage::Store {
                    record: record.clone(),
                },
            ),
            PeerFrame::response(9, PeerMessage::Value { record }),
            PeerFrame::request(2, PeerMessage::Ping),
        ];
        let sent = frames.clone();
        let writer = tokio::spawn(async move {
            let mut sink = FramedWrite::new(a, PeerCodec);
            for frame in &sent {
                sink.send(frame).await.unwrap();
            }
        });
        let received: Vec<_> = FramedRead::new(b, PeerCodec)
            .map(Result::unwrap)
            .collect()
            .await;
        writer.await.unwrap();
        assert_eq!(received, frames);
    }
}
