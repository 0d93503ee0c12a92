//! A client of the VoidPhone DHT API: the reference for other modules' authors.
//!
//! One [`Client`] is one TCP connection to a node's `api_address`. Every message goes
//! through [`dht_wire::ApiCodec`], byte-exact with the API specification (all integers
//! big-endian, `size` counting the whole message):
//!
//! | message | bytes | answer |
//! |---|---|---|
//! | DHT_PUT (650) | size, 650, ttl u16, replication u8, 0, key 32, value | none, ever |
//! | DHT_GET (651) | 36, 651, key 32 | DHT_SUCCESS (652: key, value) or DHT_FAILURE (653: key) |
//!
//! A PUT has no answer, so the only acknowledgement the API gives is that the node read
//! it. [`Client::close`] obtains that: it shuts down the client's sending half and waits
//! for the node to close the connection. The node's server reads every request before
//! the end of the stream and starts every PUT it read (storing its own copy first) before
//! it closes, so a clean close means every PUT sent was read. A reset instead means it
//! may not have been.
//!
//! The client sends one GET and waits for its answer; answers carry the key, so a client
//! that pipelines many GETs matches answers by key instead.
//!
//! No method has a timeout of its own: the caller bounds each call (as `dht-cli` does
//! with `tokio::time::timeout_at`), because how long to wait is the caller's decision.

use std::io;
use std::net::SocketAddr;

use bytes::Bytes;
use dht_id::Key;
use dht_wire::{ApiCodec, ApiError, ApiMessage};
use futures::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

/// Hints sent with a DHT_PUT; the node clamps both to its own limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutOptions {
    /// Requested lifetime in seconds.
    pub ttl: u16,
    /// Requested number of copies.
    pub replication: u8,
}

/// Why a call of [`Client`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The address could not be resolved.
    #[error("cannot resolve {address}: {source}")]
    Resolve {
        /// The address as given.
        address: String,
        /// Why.
        source: io::Error,
    },
    /// The address resolved, but no connection could be made to any of its addresses.
    #[error("cannot connect to the DHT API at {address}: {source}")]
    Connect {
        /// The address as given.
        address: String,
        /// The error of the last address tried.
        source: io::Error,
    },
    /// Sending or receiving failed (the connection was reset, for instance).
    #[error("connection to the node failed: {0}")]
    Io(io::Error),
    /// The value cannot be sent: empty, or too large for one message.
    #[error("cannot send the value: {0}")]
    Value(ApiError),
    /// The node sent bytes that are not a valid API message.
    #[error("the node sent a malformed message: {0}")]
    Malformed(ApiError),
    /// The node closed the connection while an answer was due.
    #[error("the node closed the connection before answering")]
    Closed,
    /// The node sent a valid message that is not the answer due.
    #[error("the node sent {0}")]
    Unexpected(String),
}

/// One connection to a node's VoidPhone API.
#[derive(Debug)]
pub struct Client {
    framed: Framed<TcpStream, ApiCodec>,
}

impl Client {
    /// Connects to `address` (`HOST:PORT`; HOST a name or an IP address, IPv6 in
    /// brackets), trying each address the name resolves to in turn.
    pub async fn connect(address: &str) -> Result<Client, ClientError> {
        let candidates =
            tokio::net::lookup_host(address)
                .await
                .map_err(|source| ClientError::Resolve {
                    address: address.to_string(),
                    source,
                })?;
        let mut last_error = None;
        for candidate in candidates {
            match TcpStream::connect(candidate).await {
                Ok(stream) => return Ok(Client::from_stream(stream)),
                Err(e) => last_error = Some(e),
            }
        }
        Err(ClientError::Connect {
            address: address.to_string(),
            source: last_error.unwrap_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, "the name has no address")
            }),
        })
    }

    /// A client over an open connection.
    pub fn from_stream(stream: TcpStream) -> Client {
        // Requests are small and each is waited for: send them at once.
        let _ = stream.set_nodelay(true);
        Client {
            framed: Framed::new(stream, ApiCodec),
        }
    }

    /// The node's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.framed.get_ref().peer_addr()
    }

    /// Sends a DHT_PUT and flushes it. Nothing comes back; see [`Client::close`] for
    /// knowing that the node read it, or GET the key to see it stored.
    pub async fn put(
        &mut self,
        key: Key,
        value: Bytes,
        options: PutOptions,
    ) -> Result<(), ClientError> {
        self.send(ApiMessage::Put {
            ttl: options.ttl,
            replication: options.replication,
            key,
            value,
        })
        .await
    }

    /// Sends a DHT_GET and reads its answer: `Some(value)` for DHT_SUCCESS, `None` for
    /// DHT_FAILURE. Any other message, or an answer about another key, is an error.
    pub async fn get(&mut self, key: Key) -> Result<Option<Bytes>, ClientError> {
        self.send(ApiMessage::Get { key }).await?;
        let answer = match self.framed.next().await {
            None => return Err(ClientError::Closed),
            Some(Err(e)) => return Err(receive_error(e)),
            Some(Ok(answer)) => answer,
        };
        match answer {
            ApiMessage::Success { key: k, value } if k == key => Ok(Some(value)),
            ApiMessage::Failure { key: k } if k == key => Ok(None),
            ApiMessage::Success { key: k, .. } | ApiMessage::Failure { key: k } => {
                Err(ClientError::Unexpected(format!(
                    "an answer about key {k} to a DHT_GET of key {key}"
                )))
            }
            other => Err(ClientError::Unexpected(format!(
                "{} in answer to a DHT_GET",
                name(&other)
            ))),
        }
    }

    /// Ends the connection cleanly: shuts down the sending half, then waits for the node
    /// to close. `Ok` means the node read every request sent (and started every PUT);
    /// any message arriving instead is an error, since none was due.
    pub async fn close(mut self) -> Result<(), ClientError> {
        self.framed
            .get_mut()
            .shutdown()
            .await
            .map_err(ClientError::Io)?;
        match self.framed.next().await {
            None => Ok(()),
            Some(Err(e)) => Err(receive_error(e)),
            Some(Ok(message)) => Err(ClientError::Unexpected(format!(
                "{} although no answer was due",
                name(&message)
            ))),
        }
    }

    async fn send(&mut self, message: ApiMessage) -> Result<(), ClientError> {
        self.framed.send(message).await.map_err(|e| match e {
            ApiError::Io(e) => ClientError::Io(e),
            other => ClientError::Value(other),
        })
    }
}

fn receive_error(e: ApiError) -> ClientError {
    match e {
        ApiError::Io(e) => ClientError::Io(e),
        other => ClientError::Malformed(other),
    }
}

/// The message's name in the API specification.
fn name(message: &ApiMessage) -> &'static str {
    match message {
        ApiMessage::Put { .. } => "DHT_PUT",
        ApiMessage::Get { .. } => "DHT_GET",
        ApiMessage::Success { .. } => "DHT_SUCCESS",
        ApiMessage::Failure { .. } => "DHT_FAILURE",
    }
}
