//! HTTP for the tests of a node's operations endpoint: a plain HTTP/1.1 GET, the
//! samples of an OpenMetrics text, serving a test node's endpoint, and finding the
//! programs operators point at it (Chromium, Prometheus).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use dht_api::MetricsServer;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::TestNode;

/// An answer to [`http_get`].
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    /// The status line, e.g. `HTTP/1.1 200 OK`.
    pub status: String,
    /// The headers, lower-cased, one per line.
    pub headers: String,
    /// The body.
    pub body: String,
}

/// An HTTP/1.1 request of `path` with `method` (a GET when `"GET"`), read to the end.
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
) -> anyhow::Result<HttpAnswer> {
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .context("no response within 10 s")??;
    let response = String::from_utf8(response)?;
    let Some((head, body)) = response.split_once("\r\n\r\n") else {
        bail!("no end of headers in {response:?}");
    };
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    Ok(HttpAnswer {
        status: status.to_string(),
        headers: headers.to_lowercase(),
        body: body.to_string(),
    })
}

/// An HTTP/1.1 GET of `path`.
pub async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<HttpAnswer> {
    http_request(addr, "GET", path).await
}

/// The samples of an OpenMetrics text: `name{labels}` → value.
pub fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// Serves `node`'s operations endpoint (its metrics and its API server's, health,
/// readiness and status page) on a free port of 127.0.0.1.
pub async fn serve_endpoint(node: &TestNode) -> anyhow::Result<MetricsServer> {
    let mut registry = Registry::default();
    node.node.register_metrics(&mut registry);
    let program = match &node.api {
        Some(api) => {
            api.register_metrics(&mut registry);
            "dht-node"
        }
        None => "dht-bootstrap",
    };
    let address = "127.0.0.1:0".parse().expect("literal address");
    Ok(MetricsServer::bind(address, registry, node.node.clone(), program).await?)
}

/// The path of the first of `names` found on `PATH`.
pub fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// The program a test drives (`chromium`, `prometheus`), or `None` when the test is to
/// be skipped: outside CI a machine without it skips the test, saying so; under CI
/// (`CI` set), whose script installs it, a missing program fails the test.
pub fn required_program(names: &[&str], package: &str) -> Option<PathBuf> {
    if let Some(found) = find_program(names) {
        return Some(found);
    }
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
    assert!(
        !ci,
        "{} is not installed, and CI must run this test: apt-get install {package}",
        names.join(" or ")
    );
    eprintln!(
        "SKIPPED: {} is not installed (apt-get install {package}); .ci/run installs it",
        names.join(" or ")
    );
    None
}
