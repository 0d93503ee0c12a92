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

/// One of the two codecs under test: the client API's messages or the peer protocol's
/// frames, as a stream decoder and an encoder that must agree with each other.
pub trait Wire: std::fmt::Debug + PartialEq + Sized {
    /// What the decoder fails with.
    type Error: std::fmt::Debug + std::fmt::Display;
    /// Decodes one item from the front of `buf`: `None` if more bytes are needed.
    fn decode(buf: &mut BytesMut) -> Result<Option<Self>, Self::Error>;
    /// Appends the item's encoding to `buf`.
    fn encode(&self, buf: &mut BytesMut) -> Result<(), Self::Error>;
    /// The length of the item's encoding.
    fn encoded_len(&self) -> usize;
}

impl Wire for ApiMessage {
    type Error = dht_wire::ApiError;
    fn decode(buf: &mut BytesMut) -> Result<Option<Self>, Self::Error> {
        decode_message(buf)
    }
    fn encode(&self, buf: &mut BytesMut) -> Result<(), Self::Error> {
        ApiMessage::encode(self, buf)
    }
    fn encoded_len(&self) -> usize {
        ApiMessage::encoded_len(self)
    }
}

impl Wire for PeerFrame {
    type Error = dht_wire::PeerCodecError;
    fn decode(buf: &mut BytesMut) -> Result<Option<Self>, Self::Error> {
        decode_frame(buf)
    }
    fn encode(&self, buf: &mut BytesMut) -> Result<(), Self::Error> {
        encode_frame(self, buf)
    }
    fn encoded_len(&self) -> usize {
        PeerFrame::encoded_len(self)
    }
}

/// The client API codec on a byte stream.
pub fn api_stream(data: &[u8]) {
    stream::<ApiMessage>(data);
}

/// The peer protocol codec on a byte stream.
pub fn peer_stream(data: &[u8]) {
    stream::<PeerFrame>(data);
}

/// Codec `W` on a byte stream: the same items however it is read, each one a round trip.
fn stream<W: Wire>(data: &[u8]) {
    let (chunk, stream) = read_sizes(data);
    let (items, failed) = decode_stream(stream, chunk, W::decode);
    let (whole, whole_failed) = decode_stream(stream, stream.len().max(1), W::decode);
    assert_eq!(items, whole, "the items depend on how the stream was read");
    assert_eq!(failed, whole_failed);
    for (item, wire_len) in items {
        round_trip(&item, wire_len);
    }
}

/// Checks that `item`, read from `wire_len` bytes, encodes to exactly that many and
/// decodes back to itself; panics if not.
pub fn round_trip<W: Wire>(item: &W, wire_len: usize) {
    let mut encoded = BytesMut::new();
    if let Err(e) = item.encode(&mut encoded) {
        panic!("{item:?} was decoded but does not encode: {e}");
    }
    assert_eq!(encoded.len(), wire_len, "{item:?} changed length");
    assert_eq!(
        item.encoded_len(),
        wire_len,
        "{item:?}: encoded_len is wrong"
    );
    match W::decode(&mut encoded) {
        Ok(Some(again)) => assert_eq!(&again, item, "the item changed on the way back"),
        other => panic!("{item:?} does not decode again: {other:?}"),
    }
    assert!(
        encoded.is_empty(),
        "{item:?} decoded again with bytes left over"
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
        round_trip(&frame, wire_len);
        if let (Ok(spki), dht_wire::PeerMessage::Hello(hello)) = (&spki, &frame.message) {
            let proven =
                dht_security::pow::verify_identity(spki, hello.pow_nonce, &hello.node_id, 0);
            let derived = dht_security::pow::derive_node_id(spki, hello.pow_nonce);
            assert_eq!(proven.is_ok(), derived == hello.node_id);
        }
    }
}
