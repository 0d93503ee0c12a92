//! The VoidPhone DHT API over a [`dht_core::Node`], and the configuration file the
//! binaries read.
//!
//! The API is byte-exact to the VoidPhone contract (`dht_wire::api`): DHT_PUT gets no
//! reply, DHT_GET gets DHT_SUCCESS or DHT_FAILURE carrying the key, requests may be
//! pipelined and are answered in completion order, and a malformed message closes only
//! its own connection, after the valid requests before it have been answered.
#![deny(missing_docs, rustdoc::broken_intra_doc_links, unreachable_pub)]

mod config;
mod http;
mod ini;
mod logs;
mod metrics;
pub mod process;
mod server;
mod status_page;

pub use config::{Config, ConfigError, DEFAULT_HOSTKEY, LogConfig, LogFormat};
pub use http::MetricsServer;
pub use server::{ApiConfig, ApiServer, PUTS_PER_CONNECTION};
