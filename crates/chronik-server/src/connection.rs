//! One client connection: read frames, dispatch, write responses in request order.
//!
//! The read half runs the order-sensitive part of each request (offset assignment,
//! topic creation) one request at a time, in arrival order. What is left, waiting for
//! fsync or for a long poll, is queued as a future to the write half, which awaits and
//! writes them strictly in order. So pipelined produces on one connection share one
//! group commit, and responses still come back in request order.
//!
//! Bounds: at most [`MAX_IN_FLIGHT`] requests are queued per connection; when full the
//! read half stops reading, and TCP pushes back on the client.

use std::sync::Arc;

use chronik_protocol::frame::{read_frame, FrameError, DEFAULT_MAX_FRAME_BYTES};
use chronik_protocol::{decode_request, encode_response, versions, DecodeError, ResponseError};
use kafka_protocol::messages::{ApiKey, ResponseKind};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::broker::Broker;
use crate::handlers::{self, Reply};

/// Requests queued per connection before the reader stops reading.
pub const MAX_IN_FLIGHT: usize = 64;

struct Outgoing {
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    reply: Reply,
    /// When the request was read: the request-latency metric runs to the answer's write.
    received: std::time::Instant,
}

pub async fn run(socket: TcpStream, broker: Arc<Broker>) {
    let client_host = socket
        .peer_addr()
        .map(|a| format!("/{}", a.ip()))
        .unwrap_or_default();
    let (read_half, mut write_half) = socket.into_split();
    let mut reader = BufReader::with_capacity(64 * 1024, read_half);
    let (tx, mut rx) = mpsc::channel::<Outgoing>(MAX_IN_FLIGHT);

    let writer = tokio::spawn(async move {
        while let Some(out) = rx.recv().await {
            let body: Option<ResponseKind> = match out.reply {
                Reply::None => None,
                Reply::Now(body) => Some(*body),
                Reply::Later(fut) => Some(fut.await),
            };
            let Some(body) = body else { continue };
            match encode_response(out.api_key, out.version, out.correlation_id, &body) {
                Ok(bytes) => {
                    if let Err(e) = write_half.write_all(&bytes).await {
                        tracing::debug!(error = %e, "client went away while writing");
                        return;
                    }
                    crate::metrics::request(out.api_key, out.received.elapsed());
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot encode response; closing connection");
                    return;
                }
            }
        }
        let _ = write_half.shutdown().await;
    });

    let shutdown = broker.shutdown.clone();
    loop {
        let frame = tokio::select! {
            _ = shutdown.wait() => break,
            frame = read_frame(&mut reader, DEFAULT_MAX_FRAME_BYTES) => frame,
        };
        let frame = match frame {
            Ok(Some(f)) => f.freeze(),
            Ok(None) => break,
            Err(FrameError::Io(e)) => {
                tracing::debug!(error = %e, "socket error");
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, "bad frame; closing connection");
                break;
            }
        };
        let out = match decode_request(frame) {
            Ok(req) => {
                let received = std::time::Instant::now();
                let (api_key, version, correlation_id) =
                    (req.api_key, req.version, req.correlation_id());
                let reply = handlers::dispatch(&broker, req, &client_host).await;
                Outgoing {
                    api_key,
                    version,
                    correlation_id,
                    reply,
                    received,
                }
            }
            Err(DecodeError::UnsupportedVersion {
                api_key: ApiKey::ApiVersions,
                version,
                correlation_id,
            }) => {
                // KIP-511: answer in v0 with UNSUPPORTED_VERSION and our ranges so the
                // client can pick a version we speak.
                tracing::debug!(version, "ApiVersions version not supported; answering v0");
                Outgoing {
                    api_key: ApiKey::ApiVersions,
                    version: 0,
                    correlation_id,
                    received: std::time::Instant::now(),
                    reply: Reply::now(ResponseKind::ApiVersions(versions::api_versions_response(
                        ResponseError::UnsupportedVersion.code(),
                    ))),
                }
            }
            Err(e) => {
                // Kafka closes the connection on requests it cannot parse.
                tracing::warn!(error = %e, "cannot decode request; closing connection");
                break;
            }
        };
        if tx.send(out).await.is_err() {
            break; // writer gone: the client stopped reading
        }
    }
    drop(tx);
    let _ = writer.await;
}
