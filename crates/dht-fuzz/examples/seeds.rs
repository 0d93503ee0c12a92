//! Writes the seed inputs of the fuzz targets into `fuzz/corpus/<target>/seed-*`: one
//! valid stream of every API message, every peer message, and a handshake (a real
//! certificate and a HELLO whose id the certificate's key proves), so that the fuzzer
//! starts from the shapes a node really reads.
//!
//! `cargo run -p dht-fuzz --example seeds`

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use dht_security::HostKey;
use dht_wire::{
    ApiMessage, ErrorCode, Hello, PeerFrame, PeerMessage, StoreStatus, WireContact, WireRecord,
    encode_frame,
};

fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

fn write(target: &str, name: &str, read_size: u8, stream: &[u8]) -> std::io::Result<()> {
    let dir = corpus(target);
    std::fs::create_dir_all(&dir)?;
    let mut data = vec![read_size];
    data.extend_from_slice(stream);
    std::fs::write(dir.join(format!("seed-{name}")), data)
}

fn frame(frame: &PeerFrame) -> BytesMut {
    let mut buf = BytesMut::new();
    if let Err(e) = encode_frame(frame, &mut buf) {
        panic!("{frame:?}: {e}");
    }
    buf
}

fn main() -> std::io::Result<()> {
    let key = dht_id::Key::from_bytes([7; 32]);
    let value = Bytes::from_static(b"a value of some bytes");
    let api = [
        (
            "put",
            ApiMessage::Put {
                ttl: 3600,
                replication: 3,
                key,
                value: value.clone(),
            },
        ),
        ("get", ApiMessage::Get { key }),
        (
            "success",
            ApiMessage::Success {
                key,
                value: value.clone(),
            },
        ),
        ("failure", ApiMessage::Failure { key }),
    ];
    let mut all = BytesMut::new();
    for (name, message) in &api {
        let mut buf = BytesMut::new();
        message.encode(&mut buf).map_err(std::io::Error::other)?;
        write("api_stream", name, 0, &buf)?;
        all.extend_from_slice(&buf);
    }
    write("api_stream", "all-in-reads-of-7", 7, &all)?;

    let id = dht_id::NodeId::from_bytes([9; 32]);
    let v4: SocketAddr = "192.0.2.1:4000".parse().map_err(std::io::Error::other)?;
    let v6: SocketAddr = "[2001:db8::1]:4000"
        .parse()
        .map_err(std::io::Error::other)?;
    let record = WireRecord {
        key,
        value,
        lifetime: 3600,
        version: 3,
        replication: 3,
    };
    let peer = [
        (
            "hello",
            PeerFrame::request(0, PeerMessage::Hello(Hello::new(1, id, v4))),
        ),
        ("ping", PeerFrame::request(1, PeerMessage::Ping)),
        ("pong", PeerFrame::response(1, PeerMessage::Pong)),
        (
            "find-node",
            PeerFrame::request(2, PeerMessage::FindNode { target: key }),
        ),
        (
            "nodes",
            PeerFrame::response(
                2,
                PeerMessage::Nodes {
                    contacts: vec![WireContact { id, addr: v4 }, WireContact { id, addr: v6 }],
                },
            ),
        ),
        (
            "find-value",
            PeerFrame::request(3, PeerMessage::FindValue { key }),
        ),
        (
            "value",
            PeerFrame::response(
                3,
                PeerMessage::Value {
                    record: record.clone(),
                },
            ),
        ),
        (
            "store",
            PeerFrame::request(
                4,
                PeerMessage::Store {
                    record: record.clone(),
                },
            ),
        ),
        (
            "replicate",
            PeerFrame::request(5, PeerMessage::Replicate { record }),
        ),
        (
            "store-result",
            PeerFrame::response(
                4,
                PeerMessage::StoreResult {
                    status: StoreStatus::KeptNewer,
                },
            ),
        ),
        (
            "error",
            PeerFrame::response(
                6,
                PeerMessage::Error {
                    code: ErrorCode::Overloaded,
                },
            ),
        ),
    ];
    let mut all = BytesMut::new();
    for (name, message) in &peer {
        let buf = frame(message);
        write("peer_stream", name, 0, &buf)?;
        all.extend_from_slice(&buf);
    }
    write("peer_stream", "all-in-reads-of-5", 5, &all)?;

    let host = HostKey::ed25519_from_seed(&[3; 32]).map_err(std::io::Error::other)?;
    let (cert, _) = host.certificate().map_err(std::io::Error::other)?;
    let nonce = 11;
    let mut hello = Hello::new(
        1,
        dht_security::pow::derive_node_id(host.spki_der(), nonce),
        v6,
    );
    hello.pow_nonce = nonce;
    let cert_len = u16::try_from(cert.len()).map_err(std::io::Error::other)?;
    let mut data = cert_len.to_be_bytes().to_vec();
    data.extend_from_slice(&cert);
    data.extend_from_slice(&frame(&PeerFrame::response(0, PeerMessage::Hello(hello))));
    let dir = corpus("handshake");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("seed-ed25519-hello"), data)
}
