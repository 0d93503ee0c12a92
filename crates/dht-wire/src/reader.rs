//! A bounds-checked reader over a received message: every read returns `None` instead of
//! panicking when the message is too short, so the codecs can turn a shortfall into an
//! error naming the field.

use bytes::Bytes;

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

    /// The next `n` bytes, without copying.
    pub(crate) fn bytes(&mut self, n: usize) -> Option<Bytes> {
        (n <= self.buf.len()).then(|| self.buf.split_to(n))
    }

    /// Everything not read yet, without copying.
    pub(crate) fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
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
}
