//! A tiny blocking client of the VoidPhone DHT API, just enough to check a deployed
//! node: DHT_GET and DHT_PUT frames built by hand, one answer read back, every read and
//! write under a timeout.
//!
//! Frames: a 4-byte header (size u16, type u16, both big-endian; size counts the
//! header), then the body. DHT_PUT: ttl u16, replication u8, reserved u8, key (32
//! bytes), value. DHT_GET and DHT_FAILURE: key. DHT_SUCCESS: key, value. A PUT gets
//! no answer.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, bail, ensure};

/// Message type of DHT_PUT.
const DHT_PUT: u16 = 650;
/// Message type of DHT_GET.
const DHT_GET: u16 = 651;
/// Message type of DHT_SUCCESS.
const DHT_SUCCESS: u16 = 652;
/// Message type of DHT_FAILURE.
const DHT_FAILURE: u16 = 653;
const HEADER_LEN: usize = 4;
const KEY_LEN: usize = 32;
/// Header, ttl, replication, reserved and key: a PUT without its value.
const PUT_FIXED_LEN: usize = HEADER_LEN + 4 + KEY_LEN;

/// A 256-bit DHT key.
pub(crate) type Key = [u8; KEY_LEN];

/// The server's answer to a DHT_GET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// DHT_SUCCESS: the key was found with this value.
    Success {
        /// The key asked for.
        key: Key,
        /// The stored value.
        value: Vec<u8>,
    },
    /// DHT_FAILURE: the key was not found.
    Failure {
        /// The key asked for.
        key: Key,
    },
}

impl Answer {
    fn key(&self) -> &Key {
        match self {
            Answer::Success { key, .. } | Answer::Failure { key } => key,
        }
    }
}

/// The DHT_GET frame for `key`.
pub(crate) fn get_frame(key: &Key) -> Vec<u8> {
    let mut frame = Vec::with_capacity(HEADER_LEN + KEY_LEN);
    frame.extend_from_slice(&((HEADER_LEN + KEY_LEN) as u16).to_be_bytes());
    frame.extend_from_slice(&DHT_GET.to_be_bytes());
    frame.extend_from_slice(key);
    frame
}

/// The DHT_PUT frame; fails when the value is empty or the frame would not fit the
/// 16-bit size field.
pub(crate) fn put_frame(
    key: &Key,
    value: &[u8],
    ttl: u16,
    replication: u8,
) -> anyhow::Result<Vec<u8>> {
    ensure!(!value.is_empty(), "a DHT_PUT needs a non-empty value");
    let size = u16::try_from(PUT_FIXED_LEN + value.len()).map_err(|_| {
        anyhow::anyhow!(
            "a value of {} bytes does not fit a DHT_PUT (at most {})",
            value.len(),
            usize::from(u16::MAX) - PUT_FIXED_LEN
        )
    })?;
    let mut frame = Vec::with_capacity(usize::from(size));
    frame.extend_from_slice(&size.to_be_bytes());
    frame.extend_from_slice(&DHT_PUT.to_be_bytes());
    frame.extend_from_slice(&ttl.to_be_bytes());
    frame.push(replication);
    frame.push(0);
    frame.extend_from_slice(key);
    frame.extend_from_slice(value);
    Ok(frame)
}

/// Reads one answer (DHT_SUCCESS or DHT_FAILURE): the header, then as many bytes as it
/// says. Anything else is an error.
pub(crate) fn read_answer(reader: &mut impl Read) -> anyhow::Result<Answer> {
    let mut header = [0u8; HEADER_LEN];
    reader
        .read_exact(&mut header)
        .context("reading the answer's header")?;
    let size = usize::from(u16::from_be_bytes([header[0], header[1]]));
    let msg_type = u16::from_be_bytes([header[2], header[3]]);
    let size_ok = match msg_type {
        DHT_SUCCESS => size >= HEADER_LEN + KEY_LEN,
        DHT_FAILURE => size == HEADER_LEN + KEY_LEN,
        other => bail!("expected DHT_SUCCESS or DHT_FAILURE, got message type {other}"),
    };
    ensure!(
        size_ok,
        "message type {msg_type} with impossible size {size}"
    );
    let mut body = vec![0u8; size - HEADER_LEN];
    reader
        .read_exact(&mut body)
        .with_context(|| format!("reading the {size}-byte answer"))?;
    let mut key = [0u8; KEY_LEN];
    key.copy_from_slice(&body[..KEY_LEN]);
    Ok(if msg_type == DHT_SUCCESS {
        Answer::Success {
            key,
            value: body[KEY_LEN..].to_vec(),
        }
    } else {
        Answer::Failure { key }
    })
}

fn connect(addr: SocketAddr, timeout: Duration) -> anyhow::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to the API at {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    Ok(stream)
}

/// Sends a DHT_GET for `key` to the API at `addr` and reads the answer; every step has
/// `timeout`.
pub(crate) fn get(addr: SocketAddr, key: &Key, timeout: Duration) -> anyhow::Result<Answer> {
    let mut stream = connect(addr, timeout)?;
    stream
        .write_all(&get_frame(key))
        .with_context(|| format!("sending DHT_GET to {addr}"))?;
    let answer = read_answer(&mut stream).with_context(|| format!("DHT_GET at {addr}"))?;
    ensure!(
        answer.key() == key,
        "the answer of {addr} is for another key than asked"
    );
    Ok(answer)
}

/// Sends a DHT_PUT to the API at `addr`, then closes its sending side and waits for the
/// server to close the connection: the server has then read the PUT (it stores it in
/// the background; a PUT has no answer).
pub(crate) fn put(
    addr: SocketAddr,
    key: &Key,
    value: &[u8],
    ttl: u16,
    replication: u8,
    timeout: Duration,
) -> anyhow::Result<()> {
    let frame = put_frame(key, value, ttl, replication)?;
    let mut stream = connect(addr, timeout)?;
    stream
        .write_all(&frame)
        .with_context(|| format!("sending DHT_PUT to {addr}"))?;
    stream.shutdown(Shutdown::Write)?;
    let mut buf = [0u8; 64];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => bail!("{addr} answered a DHT_PUT with {n} unexpected bytes"),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // The server may reset instead of closing cleanly; it has read the PUT.
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(()),
            Err(e) => {
                return Err(e).with_context(|| format!("waiting for {addr} to take the DHT_PUT"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_frame_is_header_and_key() {
        let key = [7u8; 32];
        let frame = get_frame(&key);
        assert_eq!(frame.len(), 36);
        assert_eq!(&frame[..4], &[0, 36, 0x02, 0x8b]); // 36, 651
        assert_eq!(&frame[4..], &key);
    }

    #[test]
    fn put_frame_layout() {
        let key = [9u8; 32];
        let frame = put_frame(&key, b"deploy-probe", 600, 3).unwrap();
        assert_eq!(frame.len(), 40 + 12);
        assert_eq!(u16::from_be_bytes([frame[0], frame[1]]), 52);
        assert_eq!(u16::from_be_bytes([frame[2], frame[3]]), 650);
        assert_eq!(u16::from_be_bytes([frame[4], frame[5]]), 600);
        assert_eq!(frame[6], 3);
        assert_eq!(frame[7], 0);
        assert_eq!(&frame[8..40], &key);
        assert_eq!(&frame[40..], b"deploy-probe");
    }

    #[test]
    fn put_frame_bounds() {
        let key = [0u8; 32];
        assert!(put_frame(&key, b"", 600, 3).is_err());
        let largest = vec![1u8; usize::from(u16::MAX) - 40];
        assert_eq!(put_frame(&key, &largest, 1, 1).unwrap().len(), 65535);
        let too_big = vec![1u8; usize::from(u16::MAX) - 39];
        assert!(put_frame(&key, &too_big, 1, 1).is_err());
    }

    #[test]
    fn reads_success_and_failure() {
        let key = [5u8; 32];
        let mut success = vec![0, 39, 0x02, 0x8c];
        success.extend_from_slice(&key);
        success.extend_from_slice(b"abc");
        success.extend_from_slice(b"next message");
        let mut reader = &success[..];
        assert_eq!(
            read_answer(&mut reader).unwrap(),
            Answer::Success {
                key,
                value: b"abc".to_vec()
            }
        );
        assert_eq!(reader, b"next message", "reads exactly one answer");

        let mut failure = vec![0, 36, 0x02, 0x8d];
        failure.extend_from_slice(&key);
        assert_eq!(
            read_answer(&mut &failure[..]).unwrap(),
            Answer::Failure { key }
        );
    }

    #[test]
    fn rejects_bad_answers() {
        let key = [5u8; 32];
        let with = |size: u16, msg_type: u16, body: &[u8]| {
            let mut bytes = size.to_be_bytes().to_vec();
            bytes.extend_from_slice(&msg_type.to_be_bytes());
            bytes.extend_from_slice(body);
            read_answer(&mut &bytes[..])
        };
        assert!(with(36, DHT_GET, &key).is_err(), "a request is no answer");
        assert!(with(37, DHT_FAILURE, &[key.as_slice(), &[1]].concat()).is_err());
        assert!(with(35, DHT_SUCCESS, &key[..31]).is_err());
        assert!(with(40, DHT_SUCCESS, &key).is_err(), "truncated");
        assert!(read_answer(&mut &[0u8, 36, 2][..]).is_err(), "short header");
    }

    #[test]
    fn get_and_put_against_a_fake_server() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            // First connection: a PUT, then EOF.
            let (mut put_conn, _) = listener.accept().unwrap();
            let mut put = Vec::new();
            put_conn.read_to_end(&mut put).unwrap();
            drop(put_conn);
            // Second connection: a GET, answered with the PUT's value.
            let (mut get_conn, _) = listener.accept().unwrap();
            let mut get = [0u8; 36];
            get_conn.read_exact(&mut get).unwrap();
            let mut answer = ((4 + 32 + put.len() - 40) as u16).to_be_bytes().to_vec();
            answer.extend_from_slice(&DHT_SUCCESS.to_be_bytes());
            answer.extend_from_slice(&get[4..]);
            answer.extend_from_slice(&put[40..]);
            get_conn.write_all(&answer).unwrap();
            put
        });
        let key = [3u8; 32];
        let timeout = Duration::from_secs(5);
        put(addr, &key, b"v", 600, 3, timeout).unwrap();
        let answer = get(addr, &key, timeout).unwrap();
        assert_eq!(
            answer,
            Answer::Success {
                key,
                value: b"v".to_vec()
            }
        );
        assert_eq!(
            server.join().unwrap(),
            put_frame(&key, b"v", 600, 3).unwrap()
        );
    }
}
