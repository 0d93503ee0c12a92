//! The byte streams of one established connection: frames read through a buffer that
//! is given back whenever it is empty, and a writer task that batches queued frames into
//! one write.
//!
//! A node keeps dozens of idle connections, so what each one holds matters more than
//! what it costs per frame. tokio-util's `Framed` keeps 8 KiB for reading and 8 KiB for
//! writing per connection for its whole life; here an idle connection holds neither: the
//! read buffer is freed once a frame leaves it empty (the codec reserves what the next
//! frame needs as soon as its length field arrives), and the writer frees its buffer after
//! each write. That costs an allocation per frame and one more read call for a frame's
//! first bytes, against about 2 KiB less per idle connection.

use std::io::Cursor;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use dht_wire::PeerCodec;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Chain, ReadHalf, WriteHalf};
use tokio::sync::mpsc;
use tokio_util::codec::{Encoder, FramedRead};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::conn::QueuedFrame;
use crate::deadline::DeadlineCodec;
use crate::handshake::PeerFramed;
use crate::transport::PeerIo;

/// The writer stops adding queued frames to one write at this many bytes.
const WRITE_BATCH: usize = 64 * 1024;
/// How long closing the write side may take.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The reading side of a connection: first what the handshake had read ahead, then
/// the stream.
pub(crate) type PeerReader =
    FramedRead<Chain<Cursor<Bytes>, ReadHalf<Box<dyn PeerIo>>>, DeadlineCodec<PeerCodec>>;
/// The writing side of a connection, with bytes encoded but not yet written.
pub(crate) struct PeerWriter {
    io: WriteHalf<Box<dyn PeerIo>>,
    buf: BytesMut,
}

/// Splits the connection the handshake framed into its reading and writing sides,
/// keeping whatever the handshake had read ahead or not yet written.
pub(crate) fn split(framed: PeerFramed) -> (PeerReader, PeerWriter) {
    let parts = framed.into_parts();
    let (read, write) = tokio::io::split(parts.io);
    // Copied, so that the handshake's 8 KiB buffers are freed.
    let read_ahead = Cursor::new(Bytes::copy_from_slice(&parts.read_buf));
    let reader = FramedRead::with_capacity(read_ahead.chain(read), parts.codec, 0);
    let buf = BytesMut::from(&parts.write_buf[..]);
    (reader, PeerWriter { io: write, buf })
}

/// Gives back the read buffer once the frames read have left it empty.
pub(crate) fn release_read_buffer(reader: &mut PeerReader) {
    let buf = reader.read_buffer_mut();
    if buf.is_empty() && buf.capacity() > 0 {
        *buf = BytesMut::new();
    }
}

/// Writes queued frames, batching whatever is queued into one write and flush, until
/// the queue closes, a write fails or the connection is closed (which also interrupts
/// a write blocked on a peer that does not read).
pub(crate) async fn write_loop(
    mut writer: PeerWriter,
    mut rx: mpsc::Receiver<QueuedFrame>,
    closed: CancellationToken,
) {
    let mut codec = PeerCodec;
    loop {
        if writer.buf.is_empty() {
            let frame = tokio::select! {
                frame = rx.recv() => frame,
                () = closed.cancelled() => break,
            };
            let Some(frame) = frame else { break };
            if let Err(e) = codec.encode(*frame, &mut writer.buf) {
                debug!(error = %e, "cannot encode a frame");
                break;
            }
        }
        while writer.buf.len() < WRITE_BATCH {
            let Ok(frame) = rx.try_recv() else { break };
            if let Err(e) = codec.encode(*frame, &mut writer.buf) {
                debug!(error = %e, "cannot encode a frame");
                closed.cancel();
                return;
            }
        }
        let PeerWriter { io, buf } = &mut writer;
        let write = async {
            io.write_all(buf).await?;
            io.flush().await
        };
        let written = tokio::select! {
            written = write => written,
            () = closed.cancelled() => break,
        };
        if let Err(e) = written {
            debug!(error = %e, "write failed");
            break;
        }
        // Freed: the next batch allocates what its frames need.
        writer.buf = BytesMut::new();
    }
    closed.cancel();
    let _ = tokio::time::timeout(CLOSE_GRACE, writer.io.shutdown()).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use dht_wire::{PeerFrame, PeerMessage};
    use futures::{SinkExt, StreamExt};
    use tokio_util::codec::Framed;

    #[tokio::test]
    async fn an_idle_reader_holds_no_buffer() {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let (codec, _partial) = DeadlineCodec::new(PeerCodec);
        let framed: PeerFramed = Framed::new(Box::new(ours) as Box<dyn PeerIo>, codec);
        let (mut reader, _writer) = split(framed);
        let mut peer = Framed::new(theirs, PeerCodec);
        let contacts = Vec::new();
        for id in 1..=3 {
            peer.send(PeerFrame::request(id, PeerMessage::Ping))
                .await
                .expect("sent");
        }
        peer.send(PeerFrame::response(4, PeerMessage::Nodes { contacts }))
            .await
            .expect("sent");
        for id in 1..=4 {
            let frame = reader.next().await.expect("a frame").expect("well formed");
            assert_eq!(frame.request_id, id);
            release_read_buffer(&mut reader);
        }
        assert_eq!(
            reader.read_buffer().capacity(),
            0,
            "nothing is held between frames"
        );
    }
}
