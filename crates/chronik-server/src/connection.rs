//! One client connection: read frames, dispatch, write responses in request order.
//!
//! The read half runs the order-sensitive part of each request (offset assignment,
//! topic creation) one request at a time, in arrival order. What is left, waiting for
//! fsync or for a long poll, is queued as a future to the write half, which awaits and
//! writes them strictly in order. So pipelined produces on one connection share one
//! group commit, and responses still come back in request order.
//!
//! Bounds: at most [`MAX_IN_FLIGHT`] requests are queued per connection; when full the
//! read half stops reading, and TCP pushes back on the client. Each request's body is
//! charged to the budget shared by all connections (`--queued-max-request-bytes`) from
//! before it is allocated until its answer is written. A request must arrive within
//! `--request-read-timeout-ms`, and a connection that completes no request for
//! `--connections-max-idle-ms` with nothing in flight is closed (crate::net_limits).
//!
//! The code is generic over the byte stream ([`Transport`]): plain TCP and TLS connections
//! take the same path once the handshake is done ([`crate::tls`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use chronik_protocol::budget::{BudgetPermit, RequestBudget};
use chronik_protocol::frame::{
    read_frame, Frame, FrameError, FrameLimits, DEFAULT_MAX_FRAME_BYTES,
};
use chronik_protocol::{decode_request, encode_response, versions, DecodeError, ResponseError};
use kafka_protocol::messages::{ApiKey, ResponseKind};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::broker::Broker;
use crate::handlers::{self, Reply};
use crate::sasl::{SaslSession, Verdict};
use crate::session::Session;

/// A connection's byte stream, split into halves the reader and the writer own.
pub trait Transport: Send + 'static {
    type Read: AsyncRead + Unpin + Send + 'static;
    type Write: AsyncWrite + Unpin + Send + 'static;
    fn split(self) -> (Self::Read, Self::Write);
}

impl Transport for TcpStream {
    type Read = OwnedReadHalf;
    type Write = OwnedWriteHalf;
    /// Owned halves: no lock between reader and writer.
    fn split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        self.into_split()
    }
}

type Tls = tokio_rustls::server::TlsStream<TcpStream>;

impl Transport for Tls {
    type Read = tokio::io::ReadHalf<Tls>;
    type Write = tokio::io::WriteHalf<Tls>;
    /// One TLS session serves both directions, so the halves share it behind tokio's lock.
    fn split(self) -> (Self::Read, Self::Write) {
        tokio::io::split(self)
    }
}

/// Requests queued per connection before the reader stops reading.
pub const MAX_IN_FLIGHT: usize = 64;

struct Outgoing {
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    reply: Reply,
    /// When the request was read: the request-latency metric runs to the answer's write.
    received: std::time::Instant,
    /// The request's charge to the budget: its bytes may live until the answer is written
    /// (a produce waiting for its fsync may still hold them).
    _permit: BudgetPermit,
    /// Close the connection once this answer is written (a failed SASL authentication).
    close: bool,
    /// A raw SASL token to write in a size-prefixed frame instead of a Kafka response
    /// (SaslHandshake v0).
    raw: Option<bytes::Bytes>,
}

/// `sasl`: the SASL state of a connection on a SASL listener; `None` elsewhere.
pub async fn run<S: Transport>(
    stream: S,
    mut session: Session,
    mut sasl: Option<SaslSession>,
    broker: Arc<Broker>,
    budget: RequestBudget,
) {
    let (read_half, write_half) = stream.split();
    let mut reader = BufReader::with_capacity(64 * 1024, read_half);
    let (tx, rx) = mpsc::channel::<Outgoing>(MAX_IN_FLIGHT);
    // Requests queued or being answered: a connection waiting on one (a long-poll fetch, a
    // produce waiting for replication) is not idle.
    let in_flight = Arc::new(AtomicUsize::new(0));
    let writer = tokio::spawn(write_answers(write_half, rx, in_flight.clone()));

    let net = &broker.config.net;
    let mut limits = FrameLimits {
        max_bytes: DEFAULT_MAX_FRAME_BYTES,
        budget: Some(budget),
        read_timeout: Some(net.request_read_timeout),
    };
    let shutdown = broker.shutdown.clone();
    let mut idle_deadline = Instant::now() + net.connections_max_idle;
    loop {
        // Wait for the next request's first byte (fill_buf consumes nothing), or close the
        // connection once it has been idle too long.
        let readable = tokio::select! {
            _ = shutdown.wait() => break,
            _ = tokio::time::sleep_until(idle_deadline) => {
                if in_flight.load(Ordering::Acquire) > 0 {
                    idle_deadline = Instant::now() + net.connections_max_idle;
                    continue;
                }
                crate::metrics::connection_closed("idle");
                tracing::debug!("closing idle connection");
                break;
            }
            r = reader.fill_buf() => r.map(|b| !b.is_empty()),
        };
        match readable {
            Ok(true) => {}
            Ok(false) => break, // the peer closed between requests
            Err(e) => {
                tracing::debug!(error = %e, "socket error");
                break;
            }
        }
        // Before SASL authentication only small frames (Kafka's sasl.server.max.receive.size).
        limits.max_bytes = sasl
            .as_ref()
            .and_then(SaslSession::frame_limit)
            .unwrap_or(DEFAULT_MAX_FRAME_BYTES);
        let frame = tokio::select! {
            _ = shutdown.wait() => break,
            frame = read_frame(&mut reader, &limits) => frame,
        };
        let Frame { body, permit } = match frame {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                report_frame_error(&e);
                break;
            }
        };
        idle_deadline = Instant::now() + net.connections_max_idle;
        let Some(out) = handle(&broker, body.freeze(), permit, &mut session, &mut sasl).await
        else {
            break;
        };
        let close = out.close;
        in_flight.fetch_add(1, Ordering::AcqRel);
        if tx.send(out).await.is_err() || close {
            break; // writer gone (the client stopped reading), or the answer ends it
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// Writes answers strictly in request order, awaiting each one's future first.
async fn write_answers<W: AsyncWrite + Unpin>(
    mut write_half: W,
    mut rx: mpsc::Receiver<Outgoing>,
    in_flight: Arc<AtomicUsize>,
) {
    while let Some(out) = rx.recv().await {
        let written = write_answer(&mut write_half, out).await;
        in_flight.fetch_sub(1, Ordering::AcqRel);
        if !written {
            return;
        }
    }
    let _ = write_half.shutdown().await;
}

/// Writes one answer (if the request has one); false when the connection must close.
async fn write_answer<W: AsyncWrite + Unpin>(write_half: &mut W, out: Outgoing) -> bool {
    if let Some(token) = &out.raw {
        let size = (token.len() as u32).to_be_bytes();
        let sent =
            write_half.write_all(&size).await.is_ok() && write_half.write_all(token).await.is_ok();
        return sent && !out.close;
    }
    let body: Option<ResponseKind> = match out.reply {
        Reply::None => None,
        Reply::Now(body) => Some(*body),
        Reply::Later(fut) => Some(fut.await),
    };
    let Some(body) = body else { return true };
    match encode_response(out.api_key, out.version, out.correlation_id, &body) {
        Ok(bytes) => {
            if let Err(e) = write_half.write_all(&bytes).await {
                tracing::debug!(error = %e, "client went away while writing");
                return false;
            }
            crate::metrics::request(out.api_key, out.received.elapsed());
            !out.close
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot encode response; closing connection");
            false
        }
    }
}

enum Gate {
    Serve,
    Answer(Box<ResponseKind>, bool),
    Close,
}

/// On a SASL listener: answers SaslHandshake/SaslAuthenticate (naming the principal once the
/// client authenticated) and lets other requests through only after that.
async fn sasl_gate(
    broker: &Broker,
    sasl: &mut Option<SaslSession>,
    session: &mut Session,
    req: &chronik_protocol::Request,
) -> Gate {
    let Some(s) = sasl.as_mut() else {
        return Gate::Serve;
    };
    let lookup = |user: &str, m| broker.metadata().scram_credential(user, m).cloned();
    match s.gate(req, lookup).await {
        Verdict::Serve => Gate::Serve,
        Verdict::Answer { body, close } => {
            if let Some(user) = s.user() {
                session.principal = Arc::from(format!("User:{user}"));
            }
            Gate::Answer(body, close)
        }
        Verdict::Close(why) => {
            crate::metrics::connection_closed("sasl");
            tracing::debug!(api = ?req.api_key, why, "closing connection");
            Gate::Close
        }
    }
}

/// Counts and (rate-limited) logs why a frame closed its connection.
fn report_frame_error(e: &FrameError) {
    match e {
        FrameError::Io(e) => tracing::debug!(error = %e, "socket error"),
        FrameError::ReadTimeout { .. } => {
            crate::metrics::connection_closed("request_read_timeout");
            crate::warn_limited!("request_read_timeout", error = %e,
                "request not received in time; closing connection");
        }
        FrameError::Truncated => {
            crate::metrics::bad_request("truncated");
            crate::warn_limited!("bad_frame", error = %e, "bad frame; closing connection");
        }
        FrameError::BadSize { .. } | FrameError::OverBudget { .. } => {
            crate::metrics::bad_request("frame_size");
            crate::warn_limited!("bad_frame", error = %e, "bad frame; closing connection");
        }
    }
}

/// Decodes and dispatches one request; `None` when the connection must close.
async fn handle(
    broker: &Arc<Broker>,
    frame: bytes::Bytes,
    permit: BudgetPermit,
    session: &mut Session,
    sasl: &mut Option<SaslSession>,
) -> Option<Outgoing> {
    if let Some(s) = sasl.as_mut().filter(|s| s.expects_raw_token()) {
        let lookup = |user: &str, m| broker.metadata().scram_credential(user, m).cloned();
        let token = s.raw_token(frame, lookup).await?;
        if let Some(user) = s.user() {
            session.principal = Arc::from(format!("User:{user}"));
        }
        return Some(Outgoing {
            api_key: ApiKey::SaslAuthenticate,
            version: 0,
            correlation_id: 0,
            reply: Reply::None,
            received: std::time::Instant::now(),
            _permit: permit,
            close: false,
            raw: Some(token),
        });
    }
    match decode_request(frame) {
        Ok(req) => {
            let received = std::time::Instant::now();
            let (api_key, version, correlation_id) =
                (req.api_key, req.version, req.correlation_id());
            let mut close = false;
            let reply = match sasl_gate(broker, sasl, session, &req).await {
                Gate::Serve => handlers::dispatch(broker, req, session).await,
                Gate::Answer(body, end) => {
                    close = end;
                    Reply::Now(body)
                }
                Gate::Close => return None,
            };
            Some(Outgoing {
                api_key,
                version,
                correlation_id,
                reply,
                received,
                _permit: permit,
                close,
                raw: None,
            })
        }
        Err(DecodeError::UnsupportedVersion {
            api_key: ApiKey::ApiVersions,
            version,
            correlation_id,
        }) => {
            // KIP-511: answer in v0 with UNSUPPORTED_VERSION and our ranges so the
            // client can pick a version we speak.
            tracing::debug!(version, "ApiVersions version not supported; answering v0");
            Some(Outgoing {
                api_key: ApiKey::ApiVersions,
                version: 0,
                correlation_id,
                received: std::time::Instant::now(),
                reply: Reply::now(ResponseKind::ApiVersions(versions::api_versions_response(
                    ResponseError::UnsupportedVersion.code(),
                ))),
                _permit: permit,
                close: false,
                raw: None,
            })
        }
        Err(e) => {
            // Kafka closes the connection on requests it cannot parse.
            crate::metrics::bad_request("decode");
            crate::warn_limited!("decode", error = %e, "cannot decode request; closing connection");
            None
        }
    }
}
