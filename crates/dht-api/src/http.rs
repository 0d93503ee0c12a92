//! The node's operations endpoint on `metrics_address`, over HTTP/1.1 (hyper):
//!
//! - `/metrics`: the registry as OpenMetrics text, for Prometheus;
//! - `/healthz`: 200 while the process serves at all;
//! - `/readyz`: 200 once the node has joined, knows a live peer and has its store open,
//!   503 with the reason otherwise;
//! - `/`: the status page (`status_page.rs`), HTML without scripts or external assets.
//!
//! Only GET and HEAD are answered (405 otherwise) and nothing a request says changes the
//! node: the endpoint reads, it never writes, and it never shows a stored value. It has
//! no authentication, so bind it to loopback or a management network. Connections are
//! capped and must send their request head within a few seconds.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dht_core::Node;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CACHE_CONTROL, CONNECTION, CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, warn};

/// The content type of the OpenMetrics text that prometheus-client writes.
const CONTENT_TYPE_OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The status page may load nothing, run nothing and be framed by nobody.
const PAGE_POLICY: &str =
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'";
/// Clients connected at once; more are closed at once. (The status page is answered with
/// `Connection: close`, so that browsers reloading it hold no slot between reloads.)
const MAX_CLIENTS: usize = 64;
/// A client must send its request head within this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// The paths served, for the 404 answer.
const PATHS: &str = "/ (status page), /metrics, /healthz, /readyz";

/// What the endpoint shows.
struct Shown {
    registry: Registry,
    node: Arc<Node>,
    program: &'static str,
}

/// A running operations endpoint: `/metrics`, `/healthz`, `/readyz` and the status
/// page `/`.
#[derive(Debug)]
pub struct MetricsServer {
    local_addr: SocketAddr,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl MetricsServer {
    /// Binds `address` and serves `registry` at `/metrics`, the health and readiness of
    /// `node` and its status page (titled with `program`, e.g. `dht-node`) until
    /// [`MetricsServer::shutdown`].
    pub async fn bind(
        address: SocketAddr,
        registry: Registry,
        node: Arc<Node>,
        program: &'static str,
    ) -> io::Result<MetricsServer> {
        let listener = TcpListener::bind(address).await?;
        let local_addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let span = tracing::info_span!("metrics", addr = %local_addr);
        info!(parent: &span, "serving metrics at http://{local_addr}/metrics and the status page at http://{local_addr}/");
        let shown = Arc::new(Shown {
            registry,
            node,
            program,
        });
        tasks.spawn(accept_loop(listener, shown, shutdown.clone(), tasks.clone()).instrument(span));
        Ok(MetricsServer {
            local_addr,
            shutdown,
            tasks,
        })
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting and closes every connection.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    shown: Arc<Shown>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => return,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            debug!(%peer, "refusing metrics connection: too many open");
            continue;
        };
        let (shown, shutdown) = (shown.clone(), shutdown.clone());
        tasks.spawn(
            async move {
                let service = service_fn(move |request| {
                    let shown = shown.clone();
                    async move { Ok::<_, Infallible>(respond(&request, &shown)) }
                });
                let connection = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service);
                tokio::pin!(connection);
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(e) = result {
                            debug!(%peer, error = %e, "metrics connection ended");
                        }
                    }
                    () = shutdown.cancelled() => connection.as_mut().graceful_shutdown(),
                }
                drop(permit);
            }
            .in_current_span(),
        );
    }
}

fn respond(request: &Request<Incoming>, shown: &Shown) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    if !matches!(path, "/" | "/metrics" | "/healthz" | "/readyz") {
        return text(
            StatusCode::NOT_FOUND,
            format!("not found: this endpoint serves {PATHS}\n"),
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n".into());
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match path {
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => match shown.node.readiness() {
            Ok(()) => text(StatusCode::OK, "ready\n".into()),
            Err(reason) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {reason}\n"),
            ),
        },
        "/" => {
            let page = crate::status_page::render(shown.program, &shown.node.status());
            let mut response = with_type(StatusCode::OK, page, "text/html; charset=utf-8");
            let headers = response.headers_mut();
            headers.insert(
                HeaderName::from_static("content-security-policy"),
                HeaderValue::from_static(PAGE_POLICY),
            );
            headers.insert(
                HeaderName::from_static("x-content-type-options"),
                HeaderValue::from_static("nosniff"),
            );
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
            response
        }
        _ => metrics(&shown.registry),
    }
}

fn metrics(registry: &Registry) -> Response<Full<Bytes>> {
    let mut body = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut body, registry) {
        warn!(error = %e, "encoding metrics failed");
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "encoding failed\n".into(),
        );
    }
    with_type(StatusCode::OK, body, CONTENT_TYPE_OPENMETRICS)
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    with_type(status, body, "text/plain; charset=utf-8")
}

fn with_type(status: StatusCode, body: String, kind: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
