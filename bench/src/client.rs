//! A VoidPhone API client, as another module would write one: one TCP connection, the
//! byte-exact codec of `dht-wire`.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use dht_core::Key;
use dht_wire::{ApiCodec, ApiMessage};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

/// An answer must come within this (above the node's 5 s GET deadline).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// One API connection.
pub struct ApiClient {
    framed: Framed<TcpStream, ApiCodec>,
}

impl ApiClient {
    /// Connects to the API server at `addr`.
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<ApiClient> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to the API at {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(ApiClient {
            framed: Framed::new(stream, ApiCodec),
        })
    }

    /// Sends a DHT_PUT (the API never answers one).
    pub async fn put(&mut self, key: Key, value: Bytes, replication: u8) -> anyhow::Result<()> {
        self.framed
            .send(ApiMessage::Put {
                ttl: 3600,
                replication,
                key,
                value,
            })
            .await
            .context("sending DHT_PUT")
    }

    /// DHT_GET and its answer: `Some(value)` for DHT_SUCCESS, `None` for DHT_FAILURE.
    pub async fn get(&mut self, key: Key) -> anyhow::Result<Option<Bytes>> {
        tokio::time::timeout(ANSWER_TIMEOUT, self.get_unbounded(key))
            .await
            .with_context(|| format!("no answer to DHT_GET within {ANSWER_TIMEOUT:?}"))?
    }

    /// [`ApiClient::get`] without a time limit of its own, for a caller that bounds a
    /// whole series of them (a timer per request is a measurable part of the client's
    /// work at 100,000 requests a second).
    pub async fn get_unbounded(&mut self, key: Key) -> anyhow::Result<Option<Bytes>> {
        self.framed
            .send(ApiMessage::Get { key })
            .await
            .context("sending DHT_GET")?;
        match self.framed.next().await {
            Some(Ok(ApiMessage::Success { key: k, value })) if k == key => Ok(Some(value)),
            Some(Ok(ApiMessage::Failure { key: k })) if k == key => Ok(None),
            Some(Ok(_)) => bail!("answer for another key or of the wrong type"),
            Some(Err(e)) => bail!("malformed answer: {e}"),
            None => bail!("the API server closed the connection"),
        }
    }
}
