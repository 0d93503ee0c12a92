//! Requests to peers: one request over the peer's connection (dialled when there is
//! none), sent again over a new one when the peer closed a reused connection as it went
//! out, and again after a pause when the peer answered "overloaded".

use std::sync::Arc;

use dht_routing::Contact;
use dht_wire::{ErrorCode, PeerMessage};

use crate::error::RpcError;
use crate::node::Inner;
use crate::stats::Counters;

/// The first pause before asking a peer that answered "overloaded" again (at its
/// default rate, 25 requests' worth of its tokens).
pub(crate) const OVERLOAD_BACKOFF: std::time::Duration = std::time::Duration::from_millis(25);
/// How often a request answered "overloaded" is sent again (pauses of 25, 50, 100 ms).
pub(crate) const OVERLOAD_RETRIES: u32 = 3;

impl Inner {
    /// Sends one request to `contact`, connecting first when needed. A peer that
    /// answers "overloaded" (its rate limit for us) is asked again after a pause that
    /// doubles each time ([`OVERLOAD_BACKOFF`], at most [`OVERLOAD_RETRIES`] times): the
    /// work that sent the request slows down instead of failing, and with it, through the
    /// bounded PUTs in flight, whoever feeds this node PUTs.
    pub(crate) async fn rpc(
        self: &Arc<Self>,
        contact: Contact,
        message: PeerMessage,
    ) -> Result<PeerMessage, RpcError> {
        let started = tokio::time::Instant::now();
        let kind = crate::metrics::request_kind(&message);
        let mut pause = OVERLOAD_BACKOFF;
        let mut retries = 0;
        let result = loop {
            let result = self.rpc_unmeasured(contact, message.clone()).await;
            Counters::bump(&self.counters.requests_sent);
            if matches!(
                result,
                Ok(_) | Err(RpcError::PeerOverloaded | RpcError::Unexpected(_))
            ) {
                Counters::bump(&self.counters.answers_received);
            }
            if !matches!(result, Err(RpcError::PeerOverloaded)) || retries == OVERLOAD_RETRIES {
                break result;
            }
            retries += 1;
            // Jitter, so that the requests a burst made do not all come back at once.
            let jitter = self.with_rng(|rng| rand::Rng::gen_range(rng, 0.5..1.5));
            tokio::select! {
                () = tokio::time::sleep(pause.mul_f64(jitter)) => {}
                () = self.shutdown.cancelled() => break result,
            }
            pause *= 2;
        };
        match &result {
            Err(RpcError::Timeout | RpcError::Connect(_)) if !self.shutdown.is_cancelled() => {
                self.answer_times
                    .went_quiet(contact.id, crate::node::mono_now());
            }
            Err(RpcError::Timeout | RpcError::Connect(_)) => {}
            Err(_) | Ok(_) => self.answer_times.answered(&contact.id),
        }
        self.metrics.rpc(
            kind,
            crate::metrics::rpc_outcome(&result),
            started.elapsed(),
        );
        result
    }

    async fn rpc_unmeasured(
        self: &Arc<Self>,
        contact: Contact,
        message: PeerMessage,
    ) -> Result<PeerMessage, RpcError> {
        let timeout = self.config.rpc_timeout;
        let started = tokio::time::Instant::now();
        // Lookups' answers and pings time the network; a STORE's answer waits on the
        // peer's disk too.
        let timed = matches!(
            message,
            PeerMessage::FindNode { .. } | PeerMessage::FindValue { .. } | PeerMessage::Ping
        );
        let reused = self.usable_conn(&contact.id, contact.addr);
        let conn = match reused.clone() {
            Some(conn) => conn,
            None => self.connection(Some(contact.id), contact.addr).await?,
        };
        let mut warm = reused.is_some();
        let sent = conn.request(message.clone(), timeout).await;
        if matches!(sent, Err(RpcError::Timeout)) && conn.is_closed() {
            Counters::bump(&self.counters.silent_connections_closed);
        }
        let answer = match sent {
            // The peer closed the connection we reused (its idle limit for a peer outside
            // its table) as the request went out: once more, over a new connection. A peer
            // that is gone fails the dial instead.
            Err(RpcError::Closed) if reused.is_some() && !self.shutdown.is_cancelled() => {
                warm = false;
                let conn = self.connection(Some(contact.id), contact.addr).await?;
                conn.request(message, timeout).await?
            }
            answer => answer?,
        };
        if timed {
            self.answer_times.sample(warm, started.elapsed());
        }
        match answer {
            PeerMessage::Error {
                code: ErrorCode::Overloaded,
            } => Err(RpcError::PeerOverloaded),
            PeerMessage::Error { code } => Err(RpcError::Unexpected(match code {
                ErrorCode::UnexpectedMessage => "peer did not expect the request",
                _ => "peer error",
            })),
            answer => Ok(answer),
        }
    }

    pub(crate) async fn ping(self: &Arc<Self>, contact: Contact) -> Result<(), RpcError> {
        match self.rpc(contact, PeerMessage::Ping).await? {
            PeerMessage::Pong => Ok(()),
            _ => Err(RpcError::Unexpected("PING not answered with PONG")),
        }
    }
}
