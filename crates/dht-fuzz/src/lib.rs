//! What coverage-guided fuzzing checks on every input it makes, shared by the fuzz
//! targets in `fuzz/` (cargo-fuzz and libFuzzer) and by this crate's tests, which replay
//! the committed corpus and every crash ever found (`fuzz/corpus/<target>/`,
//! `fuzz/regressions/<target>/`) on each `cargo test`.
//!
//! Each check panics when a promise of the codecs breaks; a panic is what the fuzzer
//! reports as a crash. The promises, for bytes from outside the process:
//! - decoding never panics, and an error ends the stream (the caller closes that
//!   connection only);
//! - a stream decodes to the same messages however it is cut into reads;
//! - whatever decodes encodes again, to exactly the length it was read from, and decodes
//!   back to the same message;
//! - a peer's certificate and HELLO are refused with an error, never a panic.
#![deny(missing_docs, unreachable_pub)]

use bytes::BytesMut;
use dht_wire::{ApiMessage, PeerFrame, api::decode_message, decode_frame, encode_frame};

/// The names of the fuzz targets, as in `fuzz/fuzz_targets/<name>.rs`.
pub const TARGETS: [&str; 3] = ["api_stream", "peer_stream", "handshake"];

/// Runs the check of target `name` on `data`; `false` if there is no such target.
pub fn run(name: &str, data: &[u8]) -> bool {
    match name {
        "api_stream" => api_stream(data),
        "peer_stream" => peer_stream(data),
        "handshake" => handshake(data),
        _ => return false,
    }
    true
}

/// The first byte says how the rest is cut into reads (1 to 255 bytes each; 0 means
/// one read of everything); the rest is a byte stream from a client or peer.
fn read_sizes(data: &[u8]) -> (usize, &[u8]) {
    match data.split_first() {
        None => (1, data),
        Some((0, rest)) => (rest.len().max(1), rest),
        Some((&n, rest)) => (usize::from(n), rest),
    }
}

/// Feeds `stream` to `decode` in reads of `chunk` bytes, as a connection would, and
/// returns the messages decoded and each one's encoded length on the wire, up to the
/// first error (after which a connection is closed).
fn decode_stream<T, E>(
    stream: &[u8],
    chunk: usize,
    decode: impl Fn(&mut BytesMut) -> Result<Option<T>, E>,
) -> (Vec<(T, usize)>, bool) {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            let before = buf.len();
            match decode(&mut buf) {
                Ok(Some(message)) => out.push((message, before - buf.len())),
                Ok(None) => {
                    assert_eq!(
                        buf.len(),
                        before,
                        "a decoder that needs more bytes ate some"
                    );
                    break;
                }
                Err(_) => return (out, true),
            }
        }
    }
    (out, false)
}

/// The client API codec on a byte stream.
pub fn api_stream(data: &[u8]) {
    let (chunk, stream) = read_sizes(data);
    let (messages, failed) = decode_stream(stream, chunk, decode_message);
    let (whole, whole_failed) = decode_stream(stream, stream.len().max(1), decode_message);
    assert_eq!(
        messages, whole,
        "the messages depend on how the stream was read"
    );
    assert_eq!(failed, whole_failed);
    for (message, wire_len) in messages {
        api_round_trip(&message, wire_len);
    }
}

/// Checks that `message`, read from `wire_len` bytes, encodes to exactly that many and
/// decodes back to itself; panics if not.
pub fn api_round_trip(message: &ApiMessage, wire_len: usize) {
    let mut encoded = BytesMut::new();
    if let Err(e) = message.encode(&mut encoded) {
        panic!("{message:?} was decoded but does not encode: {e}");
    }
    assert_eq!(encoded.len(), wire_len, "{message:?} changed length");
    assert_eq!(
        message.encoded_len(),
        wire_len,
        "{message:?}: encoded_len is wrong"
    );
    match decode_message(&mut encoded) {
        Ok(Some(again)) => assert_eq!(&again, message, "the message changed on the way back"),
        other => panic!("{message:?} does not decode again: {other:?}"),
    }
    assert!(
        encoded.is_empty(),
        "{message:?} decoded again with bytes left over"
    );
}

/// The peer protocol codec on a byte stream.
pub fn peer_stream(data: &[u8]) {
    let (chunk, stream) = read_sizes(data);
    let (frames, failed) = decode_stream(stream, chunk, decode_frame);
    let (whole, whole_failed) = decode_stream(stream, stream.len().max(1), decode_frame);
    assert_eq!(
        frames, whole,
        "the frames depend on how the stream was read"
    );
    assert_eq!(failed, whole_failed);
    for (frame, wire_len) in frames {
        peer_round_trip(&frame, wire_len);
    }
}

/// Checks that `frame`, read from `wire_len` bytes, encodes to exactly that many and
/// decodes back to itself; panics if not.
pub fn peer_round_trip(frame: &PeerFrame, wire_len: usize) {
    let mut encoded = BytesMut::new();
    if let Err(e) = encode_frame(frame, &mut encoded) {
        panic!("{frame:?} was decoded but does not encode: {e}");
    }
    assert_eq!(encoded.len(), wire_len, "{frame:?} changed length");
    assert_eq!(
        frame.encoded_len(),
        wire_len,
        "{frame:?}: encoded_len is wrong"
    );
    match decode_frame(&mut encoded) {
        Ok(Some(again)) => assert_eq!(&again, frame, "the frame changed on the way back"),
        other => panic!("{frame:?} does not decode again: {other:?}"),
    }
    assert!(
        encoded.is_empty(),
        "{frame:?} decoded again with bytes left over"
    );
}

/// What a connecting peer controls in the handshake: its TLS certificate and its first
/// frame (the HELLO). The first two bytes are the certificate's length; the certificate
/// follows, then the frame stream.
pub fn handshake(data: &[u8]) {
    let (cert, frames) = match data {
        [hi, lo, rest @ ..] => {
            rest.split_at(usize::from(u16::from_be_bytes([*hi, *lo])).min(rest.len()))
        }
        _ => (data, &[][..]),
    };
    let der = rustls::pki_types::CertificateDer::from(cert.to_vec());
    let spki = dht_security::tls::peer_spki(Some(std::slice::from_ref(&der)));
    // The key as a SubjectPublicKeyInfo of its own (what `peer_spki` checks last).
    let _ = dht_security::KeyAlgorithm::of_spki(cert);
    let (hellos, _) = decode_stream(frames, frames.len().max(1), decode_frame);
    for (frame, wire_len) in hellos.into_iter().take(1) {
        peer_round_trip(&frame, wire_len);
        if let (Ok(spki), dht_wire::PeerMessage::Hello(hello)) = (&spki, &frame.message) {
            let proven =
                dht_security::pow::verify_identity(spki, hello.pow_nonce, &hello.node_id, 0);
            let derived = dht_security::pow::derive_node_id(spki, hello.pow_nonce);
            assert_eq!(proven.is_ok(), derived == hello.node_id);
        }
    }
}
