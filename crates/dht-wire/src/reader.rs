//! A bounds-checked reader over a received message: every read returns `None` instead of
//! panicking when the message is too short, so the codecs can turn a shortfall into an
//! error naming the field.

use bytes::{Buf, Bytes};

/// Reads big-endian fields from the front of a message.
pub(crate) struct Reader {
    buf: Bytes,
}

impl Reader {
    /// A reader over `buf`.
    pub(crate) fn new(buf: Bytes) -> Self {
        Reader { buf }
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// The next `n` bytes, copied: a value that is kept (in a record store, say) must not
    /// keep alive the whole receive buffer it arrived in, which a slice would (a 100-byte
    /// value pinned a connection's 1 KiB buffer, or a 64 KiB one after a large frame).
    pub(crate) fn bytes(&mut self, n: usize) -> Option<Bytes> {
        let copy = Bytes::copy_from_slice(self.buf.get(..n)?);
        self.buf.advance(n);
        Some(copy)
    }

    /// Skips the next `n` bytes; false (and nothing skipped) when fewer remain.
    pub(crate) fn skip(&mut self, n: usize) -> bool {
        let enough = n <= self.buf.len();
        if enough {
            self.buf.advance(n);
        }
        enough
    }

    /// Everything not read yet, copied (see [`Reader::bytes`]).
    pub(crate) fn rest(&mut self) -> Bytes {
        let copy = Bytes::copy_from_slice(&self.buf);
        self.buf.clear();
        copy
    }

    /// The next `N` bytes as an array.
    pub(crate) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let array: [u8; N] = self.buf.get(..N)?.try_into().ok()?;
        self.buf = self.buf.slice(N..);
        Some(array)
    }

    /// The next byte.
    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|[b]| b)
    }

    /// The next big-endian `u16`.
    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_be_bytes)
    }

    /// The next big-endian `u32`.
    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_be_bytes)
    }

    /// The next big-endian `u64`.
    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_be_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_big_endian_and_stops_at_the_end() {
        let mut r = Reader::new(Bytes::from_static(&[
            1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
        ]));
        assert_eq!(r.u8(), Some(1));
        assert_eq!(r.u16(), Some(0x0203));
        assert_eq!(r.u32(), Some(0x0405_0607));
        assert_eq!(r.remaining(), 7);
        assert_eq!(r.u64(), None, "a failed read consumes nothing");
        assert_eq!(r.remaining(), 7);
        assert_eq!(r.bytes(8), None);
        assert_eq!(r.bytes(2).as_deref(), Some(&[8u8, 9][..]));
        assert_eq!(r.rest().as_ref(), &[10, 11, 12, 13, 14]);
        assert_eq!(r.u8(), None);
        assert_eq!(r.bytes(0).as_deref(), Some(&[][..]));
    }

    #[test]
    fn skips_only_what_is_there() {
        let mut r = Reader::new(Bytes::from_static(&[1, 2, 3]));
        assert!(!r.skip(4));
        assert_eq!(r.remaining(), 3);
        assert!(r.skip(2));
        assert_eq!(r.u8(), Some(3));
    }

    #[test]
    fn values_do_not_share_the_received_buffer() {
        let received = Bytes::from(vec![7u8; 1024]);
        let mut r = Reader::new(received.clone());
        let value = r.bytes(100).expect("long enough");
        let rest = r.rest();
        assert_eq!(rest.len(), 924);
        // A slice of `received` would share its allocation, which is still alive here.
        assert!(value.is_unique(), "the value has an allocation of its own");
        assert!(rest.is_unique(), "so has the rest");
        drop(r);
        assert!(received.is_unique(), "nothing read from it keeps it alive");
    }
}
