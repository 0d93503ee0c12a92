//! `dht-bench echo`: the ceiling of the throughput measurement on this machine. A
//! server that speaks the VoidPhone API codec and answers every DHT_GET at once with
//! DHT_SUCCESS and a fixed 100-byte value, doing nothing else (no store, no routing
//! table, no metrics). The driver runs it as a process of its own, as the measured
//! node runs in a worker, and measures it with the same client, in the same run.

use std::net::SocketAddr;

use anyhow::Context;
use bytes::Bytes;
use dht_wire::{ApiCodec, ApiMessage};
use futures::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_util::codec::Framed;

/// Serves on a free port of 127.0.0.1 until stdin closes; the first line on stdout is
/// the address.
pub async fn run() -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the echo server")?;
    let addr: SocketAddr = listener.local_addr()?;
    let mut stdout = tokio::io::stdout();
    stdout.write_all(format!("{addr}\n").as_bytes()).await?;
    stdout.flush().await?;
    let value = Bytes::from(vec![0x5a; 100]);
    // The driver closes stdin (or dies) when it is done.
    let mut stdin = tokio::io::stdin();
    let mut sink = [0u8; 64];
    let stdin_closed = async {
        while tokio::io::AsyncReadExt::read(&mut stdin, &mut sink)
            .await
            .unwrap_or(0)
            > 0
        {}
    };
    tokio::select! {
        served = serve(listener, value) => served,
        () = stdin_closed => Ok(()),
    }
}

/// Answers every DHT_GET of every connection with `value`.
async fn serve(listener: TcpListener, value: Bytes) -> anyhow::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let value = value.clone();
        tokio::spawn(async move {
            let mut framed = Framed::new(stream, ApiCodec);
            while let Some(Ok(ApiMessage::Get { key })) = framed.next().await {
                let answer = ApiMessage::Success {
                    key,
                    value: value.clone(),
                };
                if framed.send(answer).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// The echo server as a child process of `exe`, killed when dropped.
pub struct EchoServer {
    _child: tokio::process::Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl EchoServer {
    /// Starts `exe echo` and reads its address.
    pub async fn start(exe: &std::path::Path) -> anyhow::Result<EchoServer> {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(exe)
            .arg("echo")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} echo", exe.display()))?;
        let stdout = child.stdout.take().context("echo stdout")?;
        let mut line = String::new();
        tokio::io::BufReader::new(stdout)
            .read_line(&mut line)
            .await
            .context("reading the echo server's address")?;
        let addr = line
            .trim()
            .parse()
            .with_context(|| format!("the echo server said {line:?}"))?;
        Ok(EchoServer {
            _child: child,
            addr,
        })
    }
}
