//! Encoding and decoding of message bodies and of the fields they are made of.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use bytes::{BufMut, BytesMut};
use dht_id::{KEY_LEN, Key};

use super::{
    ErrorCode, Hello, MAX_CONTACTS, PeerCodecError, PeerMessage, RECORD_FIXED_LEN, StoreStatus,
    WireContact, WireRecord, msg_type,
};
use crate::api::MAX_VALUE_LEN;
use crate::reader::Reader;

/// Address family byte of IPv4.
const FAMILY_V4: u8 = 4;
/// Address family byte of IPv6.
const FAMILY_V6: u8 = 6;

/// Encoded length of an address: family, IP, port.
fn addr_len(addr: &SocketAddr) -> usize {
    1 + if addr.is_ipv4() { 4 } else { 16 } + 2
}

/// Encoded length of a message body.
pub(super) fn body_len(message: &PeerMessage) -> usize {
    match message {
        PeerMessage::Hello(hello) => 2 + 4 + KEY_LEN + addr_len(&hello.listen_addr) + 8,
        PeerMessage::Ping | PeerMessage::Pong => 0,
        PeerMessage::FindNode { .. } | PeerMessage::FindValue { .. } => KEY_LEN,
        PeerMessage::Nodes { contacts } => {
            1 + contacts
                .iter()
                .map(|c| KEY_LEN + addr_len(&c.addr))
                .sum::<usize>()
        }
        PeerMessage::Value { record }
        | PeerMessage::Store { record }
        | PeerMessage::Replicate { record } => RECORD_FIXED_LEN + record.value.len(),
        PeerMessage::StoreResult { .. } | PeerMessage::Error { .. } => 1,
    }
}

/// Checks what decoding would refuse: empty or too large values, too many contacts.
pub(super) fn check_body(message: &PeerMessage) -> Result<(), PeerCodecError> {
    match message {
        PeerMessage::Nodes { contacts } if contacts.len() > MAX_CONTACTS => {
            Err(PeerCodecError::TooManyContacts(contacts.len()))
        }
        PeerMessage::Value { record }
        | PeerMessage::Store { record }
        | PeerMessage::Replicate { record } => check_value_len(record.value.len()),
        _ => Ok(()),
    }
}

fn check_value_len(len: usize) -> Result<(), PeerCodecError> {
    match len {
        0 => Err(PeerCodecError::EmptyValue),
        1..=MAX_VALUE_LEN => Ok(()),
        _ => Err(PeerCodecError::ValueTooLarge(len)),
    }
}

/// Appends a body that passed [`check_body`].
pub(super) fn put_body(message: &PeerMessage, dst: &mut BytesMut) {
    match message {
        PeerMessage::Hello(hello) => {
            dst.put_u16(hello.version);
            dst.put_u32(hello.network_id);
            dst.put_slice(hello.node_id.as_bytes());
            put_addr(&hello.listen_addr, dst);
            dst.put_u64(hello.pow_nonce);
        }
        PeerMessage::Ping | PeerMessage::Pong => {}
        PeerMessage::FindNode { target: key } | PeerMessage::FindValue { key } => {
            dst.put_slice(key.as_bytes());
        }
        PeerMessage::Nodes { contacts } => {
            // check_body bounds the count by MAX_CONTACTS.
            dst.put_u8(u8::try_from(contacts.len()).unwrap_or(u8::MAX));
            for contact in contacts {
                dst.put_slice(contact.id.as_bytes());
                put_addr(&contact.addr, dst);
            }
        }
        PeerMessage::Value { record }
        | PeerMessage::Store { record }
        | PeerMessage::Replicate { record } => {
            dst.put_slice(record.key.as_bytes());
            dst.put_u64(record.lifetime);
            dst.put_u64(record.version);
            dst.put_u8(record.replication);
            // check_body bounds the length by MAX_VALUE_LEN.
            dst.put_u16(u16::try_from(record.value.len()).unwrap_or(u16::MAX));
            dst.put_slice(&record.value);
        }
        PeerMessage::StoreResult { status } => dst.put_u8(status.code()),
        PeerMessage::Error { code } => dst.put_u8(code.code()),
    }
}

fn put_addr(addr: &SocketAddr, dst: &mut BytesMut) {
    match addr {
        SocketAddr::V4(a) => {
            dst.put_u8(FAMILY_V4);
            dst.put_slice(&a.ip().octets());
        }
        SocketAddr::V6(a) => {
            dst.put_u8(FAMILY_V6);
            dst.put_slice(&a.ip().octets());
        }
    }
    dst.put_u16(addr.port());
}

/// Reads the body of a message of type `msg_type` (a known type). Trailing bytes are left
/// in `r` for the caller to reject.
pub(super) fn read_body(msg_type: u8, r: &mut Reader) -> Result<PeerMessage, PeerCodecError> {
    Ok(match msg_type {
        msg_type::HELLO => PeerMessage::Hello(Hello {
            version: field(r.u16(), "version")?,
            network_id: field(r.u32(), "network_id")?,
            node_id: read_key(r, "node_id")?,
            listen_addr: read_addr(r)?,
            pow_nonce: field(r.u64(), "pow_nonce")?,
        }),
        msg_type::PING => PeerMessage::Ping,
        msg_type::PONG => PeerMessage::Pong,
        msg_type::FIND_NODE => PeerMessage::FindNode {
            target: read_key(r, "target")?,
        },
        msg_type::NODES => {
            let count = usize::from(field(r.u8(), "count")?);
            if count > MAX_CONTACTS {
                return Err(PeerCodecError::TooManyContacts(count));
            }
            let mut contacts = Vec::with_capacity(count);
            for _ in 0..count {
                contacts.push(WireContact {
                    id: read_key(r, "contact id")?,
                    addr: read_addr(r)?,
                });
            }
            PeerMessage::Nodes { contacts }
        }
        msg_type::FIND_VALUE => PeerMessage::FindValue {
            key: read_key(r, "key")?,
        },
        msg_type::VALUE => PeerMessage::Value {
            record: read_record(r)?,
        },
        msg_type::STORE => PeerMessage::Store {
            record: read_record(r)?,
        },
        msg_type::REPLICATE => PeerMessage::Replicate {
            record: read_record(r)?,
        },
        msg_type::STORE_RESULT => {
            let code = field(r.u8(), "status")?;
            let status = StoreStatus::from_code(code).ok_or(PeerCodecError::UnknownStatus(code))?;
            PeerMessage::StoreResult { status }
        }
        msg_type::ERROR => {
            let code = field(r.u8(), "code")?;
            let code = ErrorCode::from_code(code).ok_or(PeerCodecError::UnknownErrorCode(code))?;
            PeerMessage::Error { code }
        }
        other => return Err(PeerCodecError::UnknownType(other)),
    })
}

/// A read field, or [`PeerCodecError::Truncated`] naming it.
fn field<T>(value: Option<T>, name: &'static str) -> Result<T, PeerCodecError> {
    value.ok_or(PeerCodecError::Truncated(name))
}

fn read_key(r: &mut Reader, name: &'static str) -> Result<Key, PeerCodecError> {
    field(r.array(), name).map(Key::from_bytes)
}

fn read_addr(r: &mut Reader) -> Result<SocketAddr, PeerCodecError> {
    let addr = match field(r.u8(), "address family")? {
        FAMILY_V4 => {
            let ip = Ipv4Addr::from(field(r.array::<4>(), "IPv4 address")?);
            SocketAddr::V4(SocketAddrV4::new(ip, field(r.u16(), "port")?))
        }
        FAMILY_V6 => {
            let ip = Ipv6Addr::from(field(r.array::<16>(), "IPv6 address")?);
            SocketAddr::V6(SocketAddrV6::new(ip, field(r.u16(), "port")?, 0, 0))
        }
        other => return Err(PeerCodecError::BadAddressFamily(other)),
    };
    Ok(addr)
}

fn read_record(r: &mut Reader) -> Result<WireRecord, PeerCodecError> {
    let key = read_key(r, "record key")?;
    let lifetime = field(r.u64(), "lifetime")?;
    let version = field(r.u64(), "version")?;
    let replication = field(r.u8(), "replication")?;
    let value_len = usize::from(field(r.u16(), "value_len")?);
    check_value_len(value_len)?;
    let value = field(r.bytes(value_len), "value")?;
    Ok(WireRecord {
        key,
        value,
        lifetime,
        version,
        replication,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn read(msg_type: u8, body: &[u8]) -> Result<(PeerMessage, usize), PeerCodecError> {
        let mut r = Reader::new(Bytes::copy_from_slice(body));
        read_body(msg_type, &mut r).map(|m| (m, r.remaining()))
    }

    #[test]
    fn address_layout() {
        let mut buf = BytesMut::new();
        put_addr(&"1.2.3.4:258".parse().unwrap(), &mut buf);
        assert_eq!(&buf[..], &[4, 1, 2, 3, 4, 1, 2]);
        buf.clear();
        put_addr(&"[::1]:80".parse().unwrap(), &mut buf);
        let mut expected = vec![6];
        expected.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        expected.extend_from_slice(&[0, 80]);
        assert_eq!(&buf[..], &expected[..]);
    }

    #[test]
    fn ipv6_flowinfo_and_scope_are_not_carried() {
        let addr = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 9, 7, 3));
        let mut buf = BytesMut::new();
        put_addr(&addr, &mut buf);
        let mut r = Reader::new(buf.freeze());
        assert_eq!(
            read_addr(&mut r).unwrap(),
            SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 9, 0, 0))
        );
    }

    #[test]
    fn bad_fields() {
        assert!(matches!(
            read(msg_type::STORE_RESULT, &[6]),
            Err(PeerCodecError::UnknownStatus(6))
        ));
        assert!(matches!(
            read(msg_type::ERROR, &[0]),
            Err(PeerCodecError::UnknownErrorCode(0))
        ));
        assert!(matches!(
            read(msg_type::ERROR, &[]),
            Err(PeerCodecError::Truncated("code"))
        ));
        assert!(matches!(
            read(msg_type::NODES, &[65]),
            Err(PeerCodecError::TooManyContacts(65))
        ));
        assert!(matches!(
            read(msg_type::NODES, &[1]),
            Err(PeerCodecError::Truncated("contact id"))
        ));
        let mut contact = vec![1];
        contact.extend_from_slice(&[0; KEY_LEN]);
        contact.push(5);
        assert!(matches!(
            read(msg_type::NODES, &contact),
            Err(PeerCodecError::BadAddressFamily(5))
        ));
        assert!(matches!(read(0, &[]), Err(PeerCodecError::UnknownType(0))));
    }

    #[test]
    fn record_value_length_limits() {
        let record = |value_len: u16, actual: usize| {
            let mut body = vec![0; KEY_LEN + 8 + 8 + 1];
            body.extend_from_slice(&value_len.to_be_bytes());
            body.extend(std::iter::repeat_n(9, actual));
            body
        };
        assert!(matches!(
            read(msg_type::STORE, &record(0, 0)),
            Err(PeerCodecError::EmptyValue)
        ));
        assert!(matches!(
            read(msg_type::VALUE, &record(65_496, 65_496)),
            Err(PeerCodecError::ValueTooLarge(65_496))
        ));
        assert!(matches!(
            read(msg_type::VALUE, &record(3, 2)),
            Err(PeerCodecError::Truncated("value"))
        ));
        let (msg, trailing) = read(msg_type::VALUE, &record(2, 3)).unwrap();
        assert_eq!(trailing, 1, "trailing bytes are left for the frame decoder");
        let PeerMessage::Value { record } = msg else {
            panic!("not a VALUE: {msg:?}")
        };
        assert_eq!(&record.value[..], &[9, 9]);
    }

    #[test]
    fn encoding_checks() {
        let contacts = vec![
            WireContact {
                id: Key::default(),
                addr: "1.1.1.1:1".parse().unwrap()
            };
            MAX_CONTACTS + 1
        ];
        assert!(matches!(
            check_body(&PeerMessage::Nodes { contacts }),
            Err(PeerCodecError::TooManyContacts(65))
        ));
        let record = WireRecord {
            key: Key::default(),
            value: Bytes::new(),
            lifetime: 0,
            version: 0,
            replication: 0,
        };
        assert!(matches!(
            check_body(&PeerMessage::Store { record }),
            Err(PeerCodecError::EmptyValue)
        ));
    }
}
