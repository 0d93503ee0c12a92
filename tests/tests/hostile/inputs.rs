//! Generators of hostile input: malformed API messages and malformed peer frames,
//! each with what the client does after writing it and what the node must do.
//!
//! API messages are built by hand (big-endian fields). Peer frames start from valid
//! frames of the codec; a mutated frame is kept only when the codec itself refuses it
//! at its first frame, so that every case is known to be malformed.

use bytes::BytesMut;
use dht_core::Key;
use dht_wire::peer::msg_type;
use dht_wire::{
    DHT_FAILURE, DHT_GET, DHT_PUT, DHT_SUCCESS, ErrorCode, MAX_PEER_FRAME_LEN, PeerFrame,
    PeerMessage, StoreStatus, WireContact, WireRecord, decode_frame, encode_frame,
};
use rand::Rng;
use rand::rngs::StdRng;

/// What a hostile client does once its bytes are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Closes its sending side and waits for the server to close.
    CloseWrite,
    /// Keeps the connection open and waits for the server to close it.
    Hold,
}

/// One malformed input for the API port.
#[derive(Debug, Clone)]
pub(crate) struct ApiCase {
    pub(crate) what: &'static str,
    pub(crate) bytes: Vec<u8>,
    pub(crate) ending: Ending,
    /// A valid GET sent before the garbage: its answer must arrive before the close.
    pub(crate) answered: Option<Key>,
}

fn random_bytes(rng: &mut StdRng, len: usize) -> Vec<u8> {
    (0..len).map(|_| rng.r#gen()).collect()
}

/// Random bytes, as many as a random pick from `lens`.
fn random_bytes_in(rng: &mut StdRng, lens: std::ops::Range<usize>) -> Vec<u8> {
    let len = rng.gen_range(lens);
    random_bytes(rng, len)
}

fn api_header(size: u16, msg_type: u16) -> Vec<u8> {
    let mut bytes = size.to_be_bytes().to_vec();
    bytes.extend_from_slice(&msg_type.to_be_bytes());
    bytes
}

/// A DHT_GET.
pub(crate) fn api_get(key: &Key) -> Vec<u8> {
    let mut bytes = api_header(36, DHT_GET);
    bytes.extend_from_slice(key.as_bytes());
    bytes
}

fn api_put(key: &Key, value: &[u8]) -> Vec<u8> {
    let size = u16::try_from(40 + value.len()).expect("short value");
    let mut bytes = api_header(size, DHT_PUT);
    bytes.extend_from_slice(&600u16.to_be_bytes());
    bytes.extend_from_slice(&[3, 0]);
    bytes.extend_from_slice(key.as_bytes());
    bytes.extend_from_slice(value);
    bytes
}

/// A message only the server may send: DHT_SUCCESS or DHT_FAILURE.
fn api_server_only(rng: &mut StdRng) -> Vec<u8> {
    let key = Key::random(rng);
    if rng.gen_bool(0.5) {
        let value = random_bytes_in(rng, 0..64);
        let size = u16::try_from(36 + value.len()).expect("short value");
        let mut bytes = api_header(size, DHT_SUCCESS);
        bytes.extend_from_slice(key.as_bytes());
        bytes.extend_from_slice(&value);
        bytes
    } else {
        let mut bytes = api_header(36, DHT_FAILURE);
        bytes.extend_from_slice(key.as_bytes());
        bytes
    }
}

/// A valid client request: a GET or a PUT of a short random value.
fn api_request(rng: &mut StdRng) -> Vec<u8> {
    let key = Key::random(rng);
    if rng.gen_bool(0.5) {
        api_get(&key)
    } else {
        let value = random_bytes_in(rng, 1..100);
        api_put(&key, &value)
    }
}

/// Malformed API input number `i` (the kind cycles with `i`).
pub(crate) fn api_case(i: usize, rng: &mut StdRng) -> ApiCase {
    let case = |what, bytes, ending| ApiCase {
        what,
        bytes,
        ending,
        answered: None,
    };
    match i % 10 {
        0 => {
            let len = rng.gen_range(1..=200);
            case("random bytes", random_bytes(rng, len), Ending::CloseWrite)
        }
        1 => {
            // May still be valid: the client closes its side, so the server ends anyway.
            let mut bytes = if rng.gen_bool(0.7) {
                api_request(rng)
            } else {
                api_server_only(rng)
            };
            for _ in 0..rng.gen_range(1..=3) {
                let at = rng.gen_range(0..bytes.len());
                bytes[at] ^= 1 << rng.gen_range(0..8);
            }
            case("bit flips of a valid message", bytes, Ending::CloseWrite)
        }
        2 | 9 => {
            let mut bytes = api_request(rng);
            bytes.truncate(rng.gen_range(1..bytes.len()));
            if i % 10 == 2 {
                case("a truncated message, then silence", bytes, Ending::Hold)
            } else {
                case("a truncated message, then EOF", bytes, Ending::CloseWrite)
            }
        }
        3 => {
            let mut bytes = api_header(rng.gen_range(0..4), rng.r#gen());
            let tail = rng.gen_range(0..40);
            bytes.extend(random_bytes(rng, tail));
            case("a size field below 4", bytes, Ending::Hold)
        }
        4 => {
            // The largest size the 16-bit field can hold; the body never comes.
            let mut bytes = api_header(u16::MAX, DHT_PUT);
            let tail = rng.gen_range(0..100);
            bytes.extend(random_bytes(rng, tail));
            case("a size at the cap, body missing", bytes, Ending::Hold)
        }
        5 => {
            let msg_type = loop {
                let t: u16 = rng.r#gen();
                if !(DHT_PUT..=DHT_FAILURE).contains(&t) {
                    break t;
                }
            };
            let mut bytes = api_header(36, msg_type);
            bytes.extend(random_bytes(rng, 32));
            case("an unknown message type", bytes, Ending::Hold)
        }
        6 => case(
            "a message only the server sends",
            api_server_only(rng),
            Ending::Hold,
        ),
        7 => {
            let key = Key::random(rng);
            let (size, msg_type) = match rng.gen_range(0..4) {
                0 => (rng.gen_range(37..=100), DHT_GET),
                1 => (rng.gen_range(4..36), DHT_FAILURE),
                2 => (40, DHT_PUT),
                _ => (rng.gen_range(4..40), DHT_PUT),
            };
            let mut bytes = api_header(size, msg_type);
            bytes.extend_from_slice(key.as_bytes());
            bytes.extend(random_bytes(rng, 100));
            bytes.truncate(usize::from(size).max(4));
            case("a size wrong for its type", bytes, Ending::Hold)
        }
        _ => {
            let key = Key::random(rng);
            let mut bytes = api_get(&key);
            bytes.extend(api_header(2, DHT_GET));
            ApiCase {
                what: "a valid GET, then garbage",
                bytes,
                ending: Ending::Hold,
                answered: Some(key),
            }
        }
    }
}

/// What the node must do with a peer frame, and count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PeerExpect {
    /// Close the connection: `frames_malformed`, `peers_penalised`.
    Malformed,
    /// Close the connection: `frames_unsolicited`, `peers_penalised`.
    Unsolicited,
    /// Cut the connection after `frame_deadline`: `message_deadline_cuts`.
    DeadlineCut,
}

/// One hostile input for the peer port, sent after a valid TLS and HELLO exchange.
#[derive(Debug, Clone)]
pub(crate) struct PeerCase {
    pub(crate) what: &'static str,
    pub(crate) bytes: Vec<u8>,
    pub(crate) ending: Ending,
    pub(crate) expect: PeerExpect,
    /// Sent in the same write as the HELLO, before the node's HELLO arrives.
    pub(crate) pipelined: bool,
}

pub(crate) fn encode(frame: &PeerFrame) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode_frame(frame, &mut buf).expect("a valid frame");
    buf.to_vec()
}

/// A frame with any header, the length field computed from `body` unless given.
fn raw_frame(length: Option<u32>, code: u8, flags: u8, id: u64, body: &[u8]) -> Vec<u8> {
    let length = length.unwrap_or_else(|| u32::try_from(10 + body.len()).expect("short body"));
    let mut bytes = length.to_be_bytes().to_vec();
    bytes.push(code);
    bytes.push(flags);
    bytes.extend_from_slice(&id.to_be_bytes());
    bytes.extend_from_slice(body);
    bytes
}

/// A valid request frame: PING, FIND_NODE, FIND_VALUE or STORE.
fn peer_request(rng: &mut StdRng) -> Vec<u8> {
    let message = match rng.gen_range(0..4) {
        0 => PeerMessage::Ping,
        1 => PeerMessage::FindNode {
            target: Key::random(rng),
        },
        2 => PeerMessage::FindValue {
            key: Key::random(rng),
        },
        _ => PeerMessage::Store {
            record: WireRecord {
                key: Key::random(rng),
                value: random_bytes_in(rng, 1..64).into(),
                lifetime: u64::MAX,
                version: rng.r#gen(),
                replication: 3,
            },
        },
    };
    encode(&PeerFrame::request(rng.r#gen(), message))
}

/// True when the codec refuses the first frame of `bytes`.
fn refused(bytes: &[u8]) -> bool {
    decode_frame(&mut BytesMut::from(bytes)).is_err()
}

/// True when `bytes` is a strict prefix of a frame: the codec waits for more.
fn incomplete(bytes: &[u8]) -> bool {
    matches!(decode_frame(&mut BytesMut::from(bytes)), Ok(None))
}

/// Malformed peer input number `i` (the kind cycles with `i`).
pub(crate) fn peer_case(i: usize, rng: &mut StdRng) -> PeerCase {
    let malformed = |what, bytes: Vec<u8>| {
        assert!(refused(&bytes), "generator bug: {what} is not malformed");
        PeerCase {
            what,
            bytes,
            ending: Ending::Hold,
            expect: PeerExpect::Malformed,
            pipelined: false,
        }
    };
    let max_length = u32::try_from(MAX_PEER_FRAME_LEN - 4).expect("fits");
    match i % 10 {
        0 => loop {
            let mut bytes = peer_request(rng);
            for _ in 0..rng.gen_range(1..=3) {
                let at = rng.gen_range(0..bytes.len());
                bytes[at] ^= 1 << rng.gen_range(0..8);
            }
            if refused(&bytes) {
                break malformed("bit flips of a valid frame", bytes);
            }
        },
        1 | 2 => {
            let mut bytes = peer_request(rng);
            bytes.truncate(rng.gen_range(1..bytes.len()));
            assert!(incomplete(&bytes), "generator bug: truncation decodes");
            if i % 10 == 1 {
                PeerCase {
                    what: "a truncated frame, then EOF",
                    bytes,
                    ending: Ending::CloseWrite,
                    expect: PeerExpect::Malformed,
                    pipelined: false,
                }
            } else {
                PeerCase {
                    what: "a truncated frame, then silence",
                    bytes,
                    ending: Ending::Hold,
                    expect: PeerExpect::DeadlineCut,
                    pipelined: false,
                }
            }
        }
        3 => {
            let length = rng.gen_range(max_length + 1..=u32::MAX);
            let body = random_bytes_in(rng, 0..30);
            malformed(
                "a length above the cap",
                raw_frame(Some(length), msg_type::PING, 0, 1, &body),
            )
        }
        4 => {
            let length = rng.gen_range(0..10);
            malformed(
                "a length below the header",
                raw_frame(Some(length), msg_type::PING, 0, 1, &[]),
            )
        }
        5 => {
            let code = if rng.gen_bool(0.2) {
                0
            } else {
                rng.gen_range(11..=u8::MAX)
            };
            let body = random_bytes_in(rng, 0..40);
            malformed(
                "an unknown message type",
                raw_frame(None, code, rng.gen_range(0..2), rng.r#gen(), &body),
            )
        }
        6 => {
            let (what, code, flags, body) = match rng.gen_range(0..3) {
                0 => (
                    "a request flagged as a response",
                    msg_type::FIND_NODE,
                    1,
                    random_bytes(rng, 32),
                ),
                1 => ("a response sent as a request", msg_type::PONG, 0, vec![]),
                _ => (
                    "flag bits other than the response bit",
                    msg_type::PING,
                    rng.gen_range(1..=127u8) << 1,
                    vec![],
                ),
            };
            malformed(what, raw_frame(None, code, flags, rng.r#gen(), &body))
        }
        7 => {
            let message = match rng.gen_range(0..4) {
                0 => PeerMessage::Pong,
                1 => PeerMessage::Nodes {
                    contacts: vec![WireContact {
                        id: Key::random(rng),
                        addr: "127.0.0.1:9".parse().expect("literal"),
                    }],
                },
                2 => PeerMessage::Error {
                    code: ErrorCode::Overloaded,
                },
                _ => PeerMessage::StoreResult {
                    status: StoreStatus::Stored,
                },
            };
            PeerCase {
                what: "an answer to a request never sent",
                bytes: encode(&PeerFrame::response(rng.r#gen(), message)),
                ending: Ending::Hold,
                expect: PeerExpect::Unsolicited,
                pipelined: false,
            }
        }
        8 => loop {
            let len = rng.gen_range(4..=200);
            let bytes = random_bytes(rng, len);
            if refused(&bytes) {
                break malformed("random bytes", bytes);
            }
        },
        _ => {
            // A bad header right behind the HELLO: it is already in the node's buffer
            // when the handshake ends.
            let inner = peer_case(rng.gen_range(3..=6), rng);
            PeerCase {
                what: "a malformed frame in the HELLO's write",
                pipelined: true,
                ..inner
            }
        }
    }
}

/// Garbage for the peer port that is not TLS: the handshake must fail.
pub(crate) fn not_tls(i: usize, rng: &mut StdRng) -> (&'static str, Vec<u8>) {
    match i % 4 {
        0 => {
            let len = rng.gen_range(1..=300);
            ("random bytes", random_bytes(rng, len))
        }
        1 => ("a peer frame in plain TCP", peer_request(rng)),
        2 => {
            // A TLS handshake record header whose body is garbage.
            let mut bytes = vec![0x16, 0x03, 0x01, 0x00, rng.gen_range(5..=200)];
            bytes.extend(random_bytes_in(rng, 0..200));
            ("a TLS record of garbage", bytes)
        }
        _ => (
            "an HTTP request",
            b"GET / HTTP/1.1\r\nHost: dht\r\n\r\n".to_vec(),
        ),
    }
}
