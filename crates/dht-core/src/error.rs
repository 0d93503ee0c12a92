//! Errors of the node.

use std::io;

/// What can go wrong in the node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is unusable.
    #[error("configuration key `{key}`: {reason}")]
    Config {
        /// The key, as spelled in the configuration file.
        key: &'static str,
        /// Why it is refused.
        reason: String,
    },
    /// Binding the peer port or reading the hostkey failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The host key or the proof of work of the node id cannot be used.
    #[error("identity: {0}")]
    Identity(String),
    /// The TLS configuration cannot be built.
    #[error("TLS: {0}")]
    Tls(String),
    /// The value is empty or longer than the API allows.
    #[error("bad value: {0}")]
    BadValue(String),
    /// No peer could be asked: every one that was tried failed.
    #[error("no peer answered ({contacted} tried)")]
    Unreachable {
        /// How many peers were tried.
        contacted: usize,
    },
    /// The node is shutting down.
    #[error("the node is shutting down")]
    ShuttingDown,
    /// The local store refused the record.
    #[error("local store: {0}")]
    Store(#[from] dht_storage::StoreError),
}

/// Why one request to a peer failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RpcError {
    /// Could not connect or the handshake failed.
    #[error("connect: {0}")]
    Connect(String),
    /// The peer did not answer in time.
    #[error("timed out")]
    Timeout,
    /// The connection closed before the answer came.
    #[error("connection closed")]
    Closed,
    /// Too many requests to this peer are waiting already.
    #[error("too many requests in flight to this peer")]
    Overloaded,
    /// The peer answered "overloaded": its rate limit for this node was reached (after
    /// the retries of `Inner::rpc`).
    #[error("the peer is overloaded (its rate limit for us)")]
    PeerOverloaded,
    /// This node is at its own connection limit (says nothing about the peer).
    #[error("at max_connections, and no idle connection to close")]
    LocalLimit,
    /// The peer answered with something that does not answer the request.
    #[error("unexpected answer: {0}")]
    Unexpected(&'static str),
}
