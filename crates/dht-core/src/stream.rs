//! The byte streams of one established connection: frames read through a small,
//! self-shrinking buffer, and a writer task that batches queued frames into one write.
//!
//! A node keeps dozens of idle connections, so what each one holds matters more than
//! what it costs per frame. tokio-util's `Framed` keeps 8 KiB for reading and 8 KiB for
//! writing per connection for its whole life; here the reader starts at 1 KiB, the writer
//! encodes into a buffer of its own, and both give back a buffer that a large frame grew.

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

/// Initial capacity of a connection's read buffer and of its writer's buffer. Most
/// frames are far smaller (a NODES answer with 20 contacts is about 1 KiB).
pub(crate) const FRAME_BUFFER: usize = 1024;
/// A buffer grown past this (by a large value) is replaced by a small one once empty.
const KEEP_BUFFER: usize = 16 * 1024;
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
    // Copied, so that the handshake's 8 KiB buffer is freed.
    let read_ahead = Cursor::new(Bytes::copy_from_slice(&parts.read_buf));
    let reader = FramedRead::with_capacity(read_ahead.chain(read), parts.codec, FRAME_BUFFER);
    let mut buf = BytesMut::with_capacity(FRAME_BUFFER.max(parts.write_buf.len()));
    buf.extend_from_slice(&parts.write_buf);
    (reader, PeerWriter { io: write, buf })
}

/// Gives back the read buffer when a large frame grew it and it is empty again.
pub(crate) fn shrink_read_buffer(reader: &mut PeerReader) {
    let buf = reader.read_buffer_mut();
    if buf.is_empty() && buf.capacity() > KEEP_BUFFER {
        *buf = BytesMut::with_capacity(FRAME_BUFFER);
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
        writer.buf.clear();
        if writer.buf.capacity() > KEEP_BUFFER {
            writer.buf = BytesMut::with_capacity(FRAME_BUFFER);
        }
    }
    closed.cancel();
    let _ = tokio::time::timeout(CLOSE_GRACE, writer.io.shutdown()).await;
}
