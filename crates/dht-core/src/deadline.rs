//! A decoder wrapper that remembers since when a message has been partly received,
//! so that readers can cut connections that send a message byte by byte or stall in
//! the middle of one (the message deadline), without the codec reading any clock of
//! its own beyond tokio's.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::codec::{Decoder, Encoder};

/// Since when the current message has been arriving, shared between a codec and the
/// task that enforces the deadline. The task needs no timer between messages: it sets
/// one when [`PartialSince::started`] tells it a message has begun.
#[derive(Debug)]
pub struct PartialSince {
    epoch: Instant,
    /// Milliseconds after `epoch` (plus one, so that 0 means "no partial message").
    since: AtomicU64,
    started: Notify,
}

impl PartialSince {
    fn new() -> Self {
        PartialSince {
            epoch: Instant::now(),
            since: AtomicU64::new(0),
            started: Notify::new(),
        }
    }

    fn mark(&self, partial: bool) {
        if !partial {
            self.since.store(0, Ordering::Relaxed);
        } else if self.since.load(Ordering::Relaxed) == 0 {
            let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
            self.since.store(ms + 1, Ordering::Relaxed);
            // notify_one keeps a permit when nobody waits: the start is never missed.
            self.started.notify_one();
        }
    }

    /// Resolves when a partial message has begun since the last call (at once if one
    /// began before this call).
    pub async fn started(&self) {
        self.started.notified().await;
    }

    /// When the current message began to arrive; `None` between messages.
    pub fn since(&self) -> Option<Instant> {
        match self.since.load(Ordering::Relaxed) {
            0 => None,
            since => Some(self.epoch + Duration::from_millis(since - 1)),
        }
    }

    /// How long the current message has been arriving; `None` between messages.
    pub fn elapsed(&self) -> Option<Duration> {
        self.since().map(|since| since.elapsed())
    }

    /// When the current message passes `deadline` (a millisecond late, since the start
    /// is kept in milliseconds); `None` between messages.
    pub fn overdue_at(&self, deadline: Duration) -> Option<Instant> {
        self.since()
            .map(|since| since + deadline + Duration::from_millis(1))
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_util::codec::LinesCodec;

    #[tokio::test(start_paused = true)]
    async fn partial_messages_are_timed() {
        use futures::FutureExt;
        let (mut codec, partial) = DeadlineCodec::new(LinesCodec::new());
        assert!(partial.started().now_or_never().is_none());
        let mut buf = BytesMut::from("hel");
        assert_eq!(codec.decode(&mut buf).expect("ok"), None);
        assert!(partial.elapsed().is_some());
        assert!(
            partial.started().now_or_never().is_some(),
            "a start is signalled"
        );
        assert!(partial.started().now_or_never().is_none(), "once");
        assert_eq!(
            partial.overdue_at(Duration::from_secs(2)),
            Some(Instant::now() + Duration::from_millis(2001))
        );
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(partial.overdue(Duration::from_secs(2)));
        buf.extend_from_slice(b"lo\nwor");
        assert_eq!(
            codec.decode(&mut buf).expect("ok").as_deref(),
            Some("hello")
        );
        // The next message started just now.
        assert!(!partial.overdue(Duration::from_secs(2)));
        assert!(partial.started().now_or_never().is_some());
        assert!(partial.elapsed().is_some());
        buf.extend_from_slice(b"ld\n");
        assert_eq!(
            codec.decode(&mut buf).expect("ok").as_deref(),
            Some("world")
        );
        assert_eq!(codec.decode(&mut buf).expect("ok"), None);
        assert_eq!(partial.elapsed(), None);
        assert_eq!(partial.overdue_at(Duration::from_secs(2)), None);
    }
}
