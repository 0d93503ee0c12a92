//! A decoder wrapper that remembers since when a message has been partly received,
//! so that readers can cut connections that send a message byte by byte or stall in
//! the middle of one (the message deadline), without the codec reading any clock of
//! its own beyond tokio's.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use tokio::time::Instant;
use tokio_util::codec::{Decoder, Encoder};

/// Since when the current message has been arriving, shared between a codec and the
/// task that enforces the deadline.
#[derive(Debug)]
pub struct PartialSince {
    epoch: Instant,
    /// Milliseconds after `epoch` (plus one, so that 0 means "no partial message").
    since: AtomicU64,
}

impl PartialSince {
    fn new() -> Self {
        PartialSince {
            epoch: Instant::now(),
            since: AtomicU64::new(0),
        }
    }

    fn mark(&self, partial: bool) {
        if !partial {
            self.since.store(0, Ordering::Relaxed);
        } else if self.since.load(Ordering::Relaxed) == 0 {
            let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
            self.since.store(ms + 1, Ordering::Relaxed);
        }
    }

    /// How long the current message has been arriving; `None` between messages.
    pub fn elapsed(&self) -> Option<Duration> {
        match self.since.load(Ordering::Relaxed) {
            0 => None,
            since => {
                let started = self.epoch + Duration::from_millis(since - 1);
                Some(started.elapsed())
            }
        }
    }

    /// True when a message has been arriving for longer than `deadline`.
    pub fn overdue(&self, deadline: Duration) -> bool {
        self.elapsed().is_some_and(|elapsed| elapsed > deadline)
    }
}

/// Wraps a codec; see [`PartialSince`].
#[derive(Debug)]
pub struct DeadlineCodec<C> {
    inner: C,
    partial: Arc<PartialSince>,
}

impl<C> DeadlineCodec<C> {
    /// Wraps `inner`; the returned handle tells since when a message is partial.
    pub fn new(inner: C) -> (Self, Arc<PartialSince>) {
        let partial = Arc::new(PartialSince::new());
        (
            DeadlineCodec {
                inner,
                partial: partial.clone(),
            },
            partial,
        )
    }
}

impl<C: Decoder> Decoder for DeadlineCodec<C> {
    type Item = C::Item;
    type Error = C::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, Self::Error> {
        let result = self.inner.decode(src);
        if matches!(result, Ok(Some(_))) {
            // A message completed: whatever follows starts a new one now.
            self.partial.mark(false);
        }
        self.partial.mark(!src.is_empty());
        result
    }
}

impl<T, C: Encoder<T>> Encoder<T> for DeadlineCodec<C> {
    type Error = C::Error;

    fn encode(&mut self, item: T, dst: &mut BytesMut) -> Result<(), Self::Error> {
        self.inner.encode(item, dst)
    }
}

/// How often a reader checks its deadlines: a quarter of the shortest one, within
/// 20 ms ..= 1 s.
pub fn check_interval(deadlines: &[Duration]) -> Duration {
    let shortest = deadlines
        .iter()
        .min()
        .copied()
        .unwrap_or(Duration::from_secs(1));
    (shortest / 4).clamp(Duration::from_millis(20), Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_util::codec::LinesCodec;

    #[tokio::test(start_paused = true)]
    async fn partial_messages_are_timed() {
        let (mut codec, partial) = DeadlineCodec::new(LinesCodec::new());
        let mut buf = BytesMut::from("hel");
        assert_eq!(codec.decode(&mut buf).expect("ok"), None);
        assert!(partial.elapsed().is_some());
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(partial.overdue(Duration::from_secs(2)));
        buf.extend_from_slice(b"lo\nwor");
        assert_eq!(
            codec.decode(&mut buf).expect("ok").as_deref(),
            Some("hello")
        );
        // The next message started just now.
        assert!(!partial.overdue(Duration::from_secs(2)));
        assert!(partial.elapsed().is_some());
        buf.extend_from_slice(b"ld\n");
        assert_eq!(
            codec.decode(&mut buf).expect("ok").as_deref(),
            Some("world")
        );
        assert_eq!(codec.decode(&mut buf).expect("ok"), None);
        assert_eq!(partial.elapsed(), None);
    }

    #[test]
    fn check_interval_is_bounded() {
        assert_eq!(
            check_interval(&[Duration::from_secs(10), Duration::from_secs(2)]),
            Duration::from_millis(500)
        );
        assert_eq!(
            check_interval(&[Duration::from_millis(1)]),
            Duration::from_millis(20)
        );
        assert_eq!(check_interval(&[]), Duration::from_millis(250));
    }
}
