//! Prometheus metrics: what the API server counts, and the HTTP endpoint that serves a
//! registry as text at `/metrics` (`metrics_address`).
//!
//! The endpoint answers `GET /metrics` (and `/`, which names it) over HTTP/1.1 through
//! hyper; anything else gets 404 or 405. It is for a scraper on a trusted network: it
//! has no authentication, so bind it to loopback or a management network. Connections
//! are capped and must send their request head within a few seconds.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, warn};

/// The content type of the OpenMetrics text that prometheus-client writes.
const CONTENT_TYPE_OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Scrapers connected at once; more are closed at once.
const MAX_SCRAPERS: usize = 16;
/// A scraper must send its request head within this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// What the API server counts.
#[derive(Debug, Clone)]
pub(crate) struct ApiMetrics {
    requests: Family<RequestLabels, Counter>,
    seconds: Family<TypeLabel, Histogram>,
    /// The series of a GET answered from the store, resolved once: that is the hot
    /// path, and a family lookup hashes the labels and takes the family's lock, which
    /// every connection shares.
    get_found: Counter,
    get_seconds: Histogram,
    connections: Gauge,
    connections_refused: Counter,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    r#type: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabel {
    r#type: &'static str,
}

/// Every (type, outcome) the server counts, created up front so that each series is
/// scraped from the start (at 0) rather than appearing with its first event.
const REQUEST_OUTCOMES: [(&str, &[&str]); 3] = [
    ("get", &["found", "not_found", "error", "deadline"]),
    ("put", &["accepted", "refused"]),
    (
        "invalid",
        &["malformed", "server_message", "message_deadline"],
    ),
];

impl Default for ApiMetrics {
    fn default() -> Self {
        let requests: Family<RequestLabels, Counter> = Family::default();
        // 50 µs to about 6.5 s, doubling.
        let seconds: Family<TypeLabel, Histogram> =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.000_05, 2.0, 18)));
        let get_found = requests
            .get_or_create(&RequestLabels {
                r#type: "get",
                outcome: "found",
            })
            .clone();
        let get_seconds = seconds.get_or_create(&TypeLabel { r#type: "get" }).clone();
        let metrics = ApiMetrics {
            requests,
            seconds,
            get_found,
            get_seconds,
            connections: Gauge::default(),
            connections_refused: Counter::default(),
        };
        for (r#type, outcomes) in REQUEST_OUTCOMES {
            for outcome in outcomes {
                drop(
                    metrics
                        .requests
                        .get_or_create(&RequestLabels { r#type, outcome }),
                );
            }
            if r#type != "invalid" {
                drop(metrics.seconds.get_or_create(&TypeLabel { r#type }));
            }
        }
        metrics
    }
}

impl ApiMetrics {
    /// A request of `type` (`get`, `put`, or `invalid` for a message that closed its
    /// connection) ended with `outcome`.
    pub(crate) fn request(&self, r#type: &'static str, outcome: &'static str) {
        self.requests
            .get_or_create(&RequestLabels { r#type, outcome })
            .inc();
    }

    /// A GET was answered from this node's store `elapsed` after it was read: the
    /// `request("get", "found")` and `latency("get", elapsed)` of the hot path.
    pub(crate) fn get_found(&self, elapsed: Duration) {
        self.get_found.inc();
        self.get_seconds.observe(elapsed.as_secs_f64());
    }

    /// A GET was answered, or a PUT accepted (stored here), `elapsed` after it was read.
    pub(crate) fn latency(&self, r#type: &'static str, elapsed: Duration) {
        self.seconds
            .get_or_create(&TypeLabel { r#type })
            .observe(elapsed.as_secs_f64());
    }

    /// A client connection opened (`true`) or closed.
    pub(crate) fn connection(&self, open: bool) {
        if open {
            self.connections.inc();
        } else {
            self.connections.dec();
        }
    }

    /// A client connection was refused at `max_api_connections`.
    pub(crate) fn refused(&self) {
        self.connections_refused.inc();
    }

    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "dht_api_requests",
            "VoidPhone API requests by type (get, put, invalid) and outcome",
            self.requests.clone(),
        );
        registry.register_with_unit(
            "dht_api_request_duration",
            "Time from reading an API request to queueing its answer (GET) or storing it here (PUT)",
            Unit::Seconds,
            self.seconds.clone(),
        );
        registry.register(
            "dht_api_connections",
            "API client connections open",
            self.connections.clone(),
        );
        registry.register(
            "dht_api_connections_refused",
            "API client connections refused at max_api_connections",
            self.connections_refused.clone(),
        );
    }
}

/// A running `/metrics` endpoint.
#[derive(Debug)]
pub struct MetricsServer {
    local_addr: SocketAddr,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl MetricsServer {
    /// Binds `address` and serves `registry` at `/metrics` until
    /// [`MetricsServer::shutdown`].
    pub async fn bind(address: SocketAddr, registry: Registry) -> io::Result<MetricsServer> {
        let listener = TcpListener::bind(address).await?;
        let local_addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let span = tracing::info_span!("metrics", addr = %local_addr);
        info!(parent: &span, "serving metrics at http://{local_addr}/metrics");
        tasks.spawn(
            accept_loop(
                listener,
                Arc::new(registry),
                shutdown.clone(),
                tasks.clone(),
            )
            .instrument(span),
        );
        Ok(MetricsServer {
            local_addr,
            shutdown,
            tasks,
        })
    }

    /// The address scrapers connect to.
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
    registry: Arc<Registry>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    let slots = Arc::new(Semaphore::new(MAX_SCRAPERS));
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
        let (registry, shutdown) = (registry.clone(), shutdown.clone());
        tasks.spawn(
            async move {
                let service = service_fn(move |request| {
                    let registry = registry.clone();
                    async move { Ok::<_, Infallible>(respond(&request, &registry)) }
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

fn respond(request: &Request<Incoming>, registry: &Registry) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    if path != "/metrics" && path != "/" {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: metrics are at /metrics\n",
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    if path == "/" {
        return plain(StatusCode::OK, "DHT node metrics: /metrics\n");
    }
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, registry) {
        warn!(error = %e, "encoding metrics failed");
        return plain(StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n");
    }
    let mut response = Response::new(Full::new(Bytes::from(text)));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(CONTENT_TYPE_OPENMETRICS),
    );
    response
}

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(metrics: &ApiMetrics) -> String {
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).expect("encodes");
        out
    }

    #[test]
    fn a_local_get_counts_in_the_scraped_series() {
        let metrics = ApiMetrics::default();
        metrics.get_found(Duration::from_micros(70));
        metrics.request("get", "found");
        metrics.latency("get", Duration::from_millis(3));
        let text = text(&metrics);
        assert!(
            text.contains("dht_api_requests_total{type=\"get\",outcome=\"found\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("dht_api_request_duration_seconds_count{type=\"get\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("dht_api_requests_total{type=\"get\",outcome=\"not_found\"} 0"),
            "{text}"
        );
    }
}
