//! The VoidPhone API server: DHT_PUT (no reply), DHT_GET (answered with DHT_SUCCESS
//! or DHT_FAILURE), pipelined on any number of connections.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use dht_core::deadline::DeadlineCodec;
use dht_core::{Node, PutOptions};
use dht_wire::{ApiCodec, ApiError, ApiMessage};
use futures::{FutureExt, SinkExt, StreamExt};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, warn};

use crate::metrics::ApiMetrics;

/// PUTs of one client connection replicating at once at most: an eighth of the node's
/// [`PUTS_IN_FLIGHT`](dht_core::PUTS_IN_FLIGHT), so that it takes eight busy clients,
/// not four, to hold every slot, and another module's PUT waits for a slot only then.
pub const PUTS_PER_CONNECTION: usize = dht_core::PUTS_IN_FLIGHT / 8;

/// Settings of the API server.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Where clients connect (`api_address`, 127.0.0.1:7401).
    pub address: SocketAddr,
    /// A GET not answered by then gets DHT_FAILURE (`get_deadline_ms`, 5000 ms).
    pub get_deadline: Duration,
    /// Client connections open at once (`max_api_connections`, 1024); more are closed
    /// at once.
    pub max_connections: usize,
    /// A request must arrive whole within this from its first byte
    /// (`message_deadline_ms`, 10000 ms): byte-at-a-time and stalled clients are cut.
    /// There is no idle timeout: modules keep one connection open for as long as they run.
    pub message_deadline: Duration,
    /// Requests of one connection being worked on at once
    /// (`max_requests_per_connection`, 64). When reached, the server stops reading that
    /// connection until one finishes: nothing is dropped.
    pub max_requests_per_connection: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            address: SocketAddr::from(([127, 0, 0, 1], 7401)),
            get_deadline: Duration::from_millis(5000),
            max_connections: 1024,
            message_deadline: Duration::from_millis(10_000),
            max_requests_per_connection: 64,
        }
    }
}

/// A running API server.
#[derive(Debug)]
pub struct ApiServer {
    local_addr: SocketAddr,
    metrics: ApiMetrics,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl ApiServer {
    /// Binds `config.address` and serves `node` until [`ApiServer::shutdown`].
    pub async fn bind(config: ApiConfig, node: Arc<Node>) -> io::Result<ApiServer> {
        let listener = TcpListener::bind(config.address).await?;
        let local_addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let metrics = ApiMetrics::default();
        let span = tracing::info_span!("api", node = %node.id().short(), addr = %local_addr);
        info!(parent: &span, "API listening");
        tasks.spawn(
            accept_loop(
                listener,
                Shared {
                    config: Arc::new(config),
                    node,
                    metrics: metrics.clone(),
                    shutdown: shutdown.clone(),
                },
                tasks.clone(),
            )
            .instrument(span),
        );
        Ok(ApiServer {
            local_addr,
            metrics,
            shutdown,
            tasks,
        })
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Registers the server's metrics in `registry`: requests by type and outcome, their
    /// latency, and client connections (`dht_api_*`).
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.metrics.register(registry);
    }

    /// Stops accepting and closes every client connection.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// What every connection of one server shares.
#[derive(Clone)]
struct Shared {
    config: Arc<ApiConfig>,
    node: Arc<Node>,
    metrics: ApiMetrics,
    shutdown: CancellationToken,
}

async fn accept_loop(listener: TcpListener, shared: Shared, tasks: TaskTracker) {
    let connections = Arc::new(Semaphore::new(shared.config.max_connections));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shared.shutdown.cancelled() => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            warn!(%peer, "refusing API connection: at max_api_connections");
            shared.metrics.refused();
            continue;
        };
        let _ = stream.set_nodelay(true);
        let span = tracing::debug_span!("client", %peer);
        let shared = shared.clone();
        tasks.spawn(
            async move {
                shared.metrics.connection(true);
                serve(stream, &shared).await;
                shared.metrics.connection(false);
                drop(permit);
            }
            .instrument(span),
        );
    }
}

/// Serves one client connection: reads requests until the client closes, sends
/// garbage or the server stops; answers every valid request read before that.
///
/// One task reads and writes. A GET this node answers from its own store is answered
/// at once; the answers of GETs that need a lookup come back from their tasks through
/// a queue. Answers are written as they come and flushed before the task waits for the
/// client, so that pipelined requests get their answers in one write.
async fn serve(stream: TcpStream, shared: &Shared) {
    let Shared {
        config,
        node,
        metrics,
        shutdown,
    } = shared;
    let (read, write) = stream.into_split();
    let (codec, partial) = DeadlineCodec::new(ApiCodec);
    let mut requests = FramedRead::new(read, codec);
    let mut out = Answers {
        framed: FramedWrite::new(write, ApiCodec),
        unflushed: false,
        stop: shutdown.clone(),
    };
    // Set only while a request is partly received: when it passes the message deadline.
    let next_check = |deadline| {
        partial
            .overdue_at(deadline)
            .unwrap_or_else(|| Instant::now() + NO_PARTIAL_CHECK)
    };
    let check = tokio::time::sleep(NO_PARTIAL_CHECK);
    tokio::pin!(check);
    // Holds as many answers as requests may be in flight: a task never waits to send.
    let (answers_tx, mut answers_rx) =
        mpsc::channel::<ApiMessage>(config.max_requests_per_connection);
    let in_flight = Arc::new(Semaphore::new(config.max_requests_per_connection));
    // This connection's share of the node's PUTs in flight.
    let put_share = Arc::new(Semaphore::new(PUTS_PER_CONNECTION));
    // Waited on by every wait below, that is polled once or twice per request. Polling
    // a token's future locks the token (its state and its list of waiters): a child
    // token of this connection's own keeps those locks off the server-wide token, which
    // every connection would otherwise take on every request.
    let stop = shutdown.child_token();
    let stopping = stop.cancelled();
    tokio::pin!(stopping);
    // GETs whose answers are still to come through `answers_rx`: while there are none,
    // the loop does not look at the queue (the usual case: every GET answered locally).
    let mut awaited = 0usize;
    'serve: loop {
        // Back-pressure: no new request is read while the connection has its maximum
        // in flight. Time spent waiting here does not count against the client.
        let (permit, waited) = match in_flight.clone().try_acquire_owned() {
            Ok(permit) => (permit, Duration::ZERO),
            Err(_) => {
                let waiting = Instant::now();
                let permit = loop {
                    if out.send_ready(&mut answers_rx, &mut awaited).await.is_err() {
                        break 'serve;
                    }
                    tokio::select! {
                        biased;
                        Some(answer) = answers_rx.recv(), if awaited > 0 => {
                            awaited -= 1;
                            if out.feed(answer).await.is_err() {
                                break 'serve;
                            }
                        }
                        permit = in_flight.clone().acquire_owned() => match permit {
                            Ok(permit) => break permit,
                            Err(_) => break 'serve,
                        },
                        () = &mut stopping => break 'serve,
                    }
                };
                (permit, waiting.elapsed())
            }
        };
        let deadline = config.message_deadline + waited;
        // A request already received is taken at once (pipelined requests get their
        // answers in one write); before waiting for the next, the answers so far go out.
        let buffered = if requests.read_buffer().is_empty() {
            None
        } else {
            requests.next().now_or_never()
        };
        let request = match buffered {
            Some(request) => request,
            None => {
                // Only a request partly received has a deadline to watch (a far-off
                // check otherwise: resetting the timer for every request costs).
                if let Some(at) = partial.overdue_at(deadline) {
                    check.as_mut().reset(at);
                }
                loop {
                    if out.send_ready(&mut answers_rx, &mut awaited).await.is_err() {
                        break 'serve;
                    }
                    // Biased: the branches are polled in this order, with no random
                    // start to draw for every request.
                    tokio::select! {
                        biased;
                        request = requests.next() => break request,
                        Some(answer) = answers_rx.recv(), if awaited > 0 => {
                            awaited -= 1;
                            if out.feed(answer).await.is_err() {
                                break 'serve;
                            }
                        }
                        () = &mut stopping => break 'serve,
                        () = partial.started() => check.as_mut().reset(next_check(deadline)),
                        () = &mut check => {
                            if partial.overdue(deadline) {
                                warn!("a request took longer than message_deadline_ms to arrive: closing");
                                metrics.request("invalid", "message_deadline");
                                break 'serve;
                            }
                            check.as_mut().reset(next_check(deadline));
                        }
                    }
                }
            }
        };
        match request {
            Some(Ok(ApiMessage::Get { key })) => {
                // A key this node answers from its own store needs no task of its own.
                let read_at = Instant::now();
                if let Some(value) = node.get_local(&key) {
                    metrics.get_found(read_at.elapsed());
                    if out.feed(ApiMessage::Success { key, value }).await.is_err() {
                        break;
                    }
                    drop(permit);
                    continue;
                }
                let (node, answers, deadline, metrics) = (
                    node.clone(),
                    answers_tx.clone(),
                    config.get_deadline,
                    metrics.clone(),
                );
                awaited += 1;
                tokio::spawn(
                    async move {
                        let (answer, outcome) = match tokio::time::timeout(deadline, node.get(key))
                            .await
                        {
                            Ok(Ok(Some(value))) => (ApiMessage::Success { key, value }, "found"),
                            Ok(Ok(None)) => (ApiMessage::Failure { key }, "not_found"),
                            Ok(Err(e)) => {
                                debug!(key = %key.short(), error = %e, "GET failed");
                                (ApiMessage::Failure { key }, "error")
                            }
                            Err(_) => {
                                debug!(key = %key.short(), "GET deadline passed");
                                (ApiMessage::Failure { key }, "deadline")
                            }
                        };
                        metrics.request("get", outcome);
                        metrics.latency("get", read_at.elapsed());
                        let _ = answers.send(answer).await;
                        drop(permit);
                    }
                    .in_current_span(),
                );
            }
            Some(Ok(ApiMessage::Put {
                ttl,
                replication,
                key,
                value,
            })) => {
                let options = PutOptions {
                    ttl: Duration::from_secs(u64::from(ttl)),
                    replication,
                };
                // Started before the next request is read, so that a node shutting
                // down still finishes every PUT it has read.
                let read_at = Instant::now();
                // Within this connection's share first: a few busy clients cannot take
                // every one of the node's PUT slots from the others.
                let share = tokio::select! {
                    share = put_share.clone().acquire_owned() => match share {
                        Ok(share) => share,
                        Err(_) => break,
                    },
                    () = &mut stopping => break,
                };
                match node.spawn_put(key, value, options).await {
                    Ok(task) => {
                        metrics.request("put", "accepted");
                        metrics.latency("put", read_at.elapsed());
                        tokio::spawn(
                            async move {
                                log_put(key, task.await);
                                drop(share);
                                drop(permit);
                            }
                            .in_current_span(),
                        );
                    }
                    Err(e) => {
                        metrics.request("put", "refused");
                        warn!(key = %key.short(), error = %e, "PUT refused");
                    }
                }
            }
            Some(Ok(other)) => {
                warn!(message = ?kind(&other), "client sent a message only the server sends: closing");
                metrics.request("invalid", "server_message");
                break;
            }
            Some(Err(e)) => {
                warn!(error = %e, "malformed request: closing the connection");
                metrics.request("invalid", "malformed");
                break;
            }
            None => break,
        }
    }
    // Answers of the requests read so far still go out before the connection closes
    // (each within the GET deadline); when the server stops, after a short grace.
    drop(answers_tx);
    // From here the writes are bounded by the grace below instead.
    out.stop = CancellationToken::new();
    let last_answers = async {
        while let Some(answer) = answers_rx.recv().await {
            out.feed(answer).await?;
        }
        out.flush().await
    };
    let stopping = async {
        shutdown.cancelled().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        _ = last_answers => {}
        () = stopping => {}
    }
    // Closing with unread input makes the kernel reset the connection, which can
    // destroy answers still in flight to the client: read what is left, briefly.
    let mut rest = requests.into_inner();
    let mut sink = [0u8; 4096];
    let drain = async {
        let mut total = 0usize;
        while total < DRAIN_LIMIT {
            match rest.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
}

/// The writing half of a client connection: answers are encoded as they come and
/// written out by [`Answers::flush`]. A write that blocks (a client that does not read
/// its answers) gives way when `stop` is cancelled, so that such a client cannot hold
/// the server's shutdown.
struct Answers {
    framed: FramedWrite<tokio::net::tcp::OwnedWriteHalf, ApiCodec>,
    unflushed: bool,
    stop: CancellationToken,
}

impl Answers {
    async fn feed(&mut self, answer: ApiMessage) -> Result<(), ApiError> {
        self.unflushed = true;
        let stop = &self.stop;
        let mut feed = self.framed.feed(answer);
        // Usually done at once; only a write that waits for the client must give way to
        // the shutdown.
        let fed = match (&mut feed).now_or_never() {
            Some(fed) => fed,
            None => tokio::select! {
                fed = feed => fed,
                () = stop.cancelled() => Err(stopped()),
            },
        };
        fed.inspect_err(|e| debug!(error = %e, "client write failed"))
    }

    /// Feeds the answers already queued in `queue` (`awaited` of them are to come),
    /// then flushes.
    async fn send_ready(
        &mut self,
        queue: &mut mpsc::Receiver<ApiMessage>,
        awaited: &mut usize,
    ) -> Result<(), ApiError> {
        while *awaited > 0 {
            let Ok(answer) = queue.try_recv() else { break };
            *awaited -= 1;
            self.feed(answer).await?;
        }
        self.flush().await
    }

    async fn flush(&mut self) -> Result<(), ApiError> {
        if !self.unflushed {
            return Ok(());
        }
        self.unflushed = false;
        let stop = &self.stop;
        let mut flush = SinkExt::<ApiMessage>::flush(&mut self.framed);
        let flushed = match (&mut flush).now_or_never() {
            Some(flushed) => flushed,
            None => tokio::select! {
                flushed = flush => flushed,
                () = stop.cancelled() => Err(stopped()),
            },
        };
        flushed.inspect_err(|e| debug!(error = %e, "client write failed"))
    }
}

fn stopped() -> ApiError {
    ApiError::Io(io::Error::other("the server is stopping"))
}

/// How often a connection with no request partly received wakes to look (a request's
/// start sets the timer to its deadline).
const NO_PARTIAL_CHECK: Duration = Duration::from_secs(3600);
/// How long a stopping server waits for a connection's last answers.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);
/// After the last answer, unread input is read and dropped for at most this long...
const DRAIN_TIME: Duration = Duration::from_millis(200);
/// ...or this many bytes.
const DRAIN_LIMIT: usize = 256 * 1024;

fn log_put(key: dht_core::Key, outcome: Result<dht_core::PutReport, tokio::task::JoinError>) {
    match outcome {
        Ok(report) => debug!(
            key = %key.short(),
            replicas = report.replicas,
            replication = report.replication,
            ttl_secs = report.ttl.as_secs(),
            "PUT stored"
        ),
        Err(e) => warn!(key = %key.short(), error = %e, "PUT task ended early"),
    }
}

fn kind(message: &ApiMessage) -> &'static str {
    match message {
        ApiMessage::Put { .. } => "DHT_PUT",
        ApiMessage::Get { .. } => "DHT_GET",
        ApiMessage::Success { .. } => "DHT_SUCCESS",
        ApiMessage::Failure { .. } => "DHT_FAILURE",
    }
}
