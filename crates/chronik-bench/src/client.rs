//! One pipelined Kafka connection: requests go out in order, responses come back in order.
//!
//! A writer task owns the socket's write half and a reader task its read half; a bounded queue
//! of outstanding correlation ids links them. Callers `send` a typed request and await the
//! typed response, so many requests can be in flight on one socket without a lock around it.
//! Every queue here is bounded; a caller that outruns the socket waits (backpressure).

use std::collections::HashMap;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

/// Requests queued for the writer; beyond this the caller waits.
const WRITE_QUEUE_LEN: usize = 256;
/// Requests written but not yet answered; the reader's queue of expected correlation ids.
const MAX_OUTSTANDING: usize = 256;
/// Refuse response frames larger than this (Fetch answers are bounded by our max_bytes).
const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;
const CLIENT_ID: &str = "chronik-bench";

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("connection to {0} closed")]
    Closed(String),
    #[error("encoding {api:?} v{version}: {msg}")]
    Encode {
        api: ApiKey,
        version: i16,
        msg: String,
    },
    #[error("decoding {api:?} v{version} response: {msg}")]
    Decode {
        api: ApiKey,
        version: i16,
        msg: String,
    },
    #[error("response correlation id {got}, expected {expected}")]
    Correlation { got: i32, expected: i32 },
    #[error("the broker does not support {api:?} in a version this client speaks (we: {ours:?}, broker: {theirs:?})")]
    Unsupported {
        api: ApiKey,
        ours: (i16, i16),
        theirs: Option<(i16, i16)>,
    },
    #[error("ApiVersions failed with error code {0}")]
    ApiVersions(i16),
    #[error("timed out after {0:?} waiting for {1:?}")]
    Timeout(Duration, ApiKey),
    #[error("SASL authentication failed: {0}")]
    Sasl(String),
}

/// How to connect: the same for every broker of a run.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    pub sasl: Option<crate::sasl::SaslLogin>,
    pub tls: Option<crate::tls::Tls>,
}

/// The versions this client knows how to use: fields it reads exist in all of them.
/// Fetch stops at 12 (13+ addresses topics by id only) and Metadata at 12.
fn our_range(api: ApiKey) -> (i16, i16) {
    match api {
        ApiKey::Produce => (3, 9),
        ApiKey::Fetch => (4, 12),
        ApiKey::ListOffsets => (1, 7),
        ApiKey::Metadata => (1, 12),
        ApiKey::CreateTopics => (2, 7),
        ApiKey::InitProducerId => (0, 4),
        // v4+ of FindCoordinator batch the keys; AddPartitionsToTxn v4+ is the brokers' form;
        // EndTxn v5 belongs to transaction version 2 (an epoch bump per transaction).
        ApiKey::FindCoordinator => (1, 3),
        ApiKey::AddPartitionsToTxn => (0, 3),
        ApiKey::EndTxn => (0, 4),
        ApiKey::SaslHandshake => (1, 1),
        ApiKey::SaslAuthenticate => (0, 2),
        _ => (0, 0),
    }
}

struct Outgoing {
    api: ApiKey,
    version: i16,
    body: Bytes,
    /// `None` for a request the broker does not answer (Produce with acks=0).
    reply: Option<oneshot::Sender<Result<Bytes, ClientError>>>,
    /// Told once the request has been handed to the socket.
    written: Option<oneshot::Sender<()>>,
}

struct Expected {
    correlation_id: i32,
    api: ApiKey,
    version: i16,
    reply: oneshot::Sender<Result<Bytes, ClientError>>,
}

/// A cheap handle; clones share the socket.
#[derive(Clone)]
pub struct Connection {
    addr: String,
    tx: mpsc::Sender<Outgoing>,
    versions: HashMap<i16, (i16, i16)>,
    options: std::sync::Arc<ConnectOptions>,
}

impl Connection {
    /// Connects, negotiates versions with ApiVersions v0 (which every broker answers) and
    /// logs in when `options` say so.
    pub async fn connect(addr: &str, options: &ConnectOptions) -> Result<Connection, ClientError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| ClientError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        let (tx, rx) = mpsc::channel(WRITE_QUEUE_LEN);
        let (exp_tx, exp_rx) = mpsc::channel(MAX_OUTSTANDING);
        match &options.tls {
            None => {
                let (read, write) = stream.into_split();
                tokio::spawn(writer(write, rx, exp_tx));
                tokio::spawn(reader(read, exp_rx, addr.to_string()));
            }
            Some(tls) => {
                let stream =
                    tls.connect(addr, stream)
                        .await
                        .map_err(|source| ClientError::Connect {
                            addr: addr.to_string(),
                            source,
                        })?;
                let (read, write) = tokio::io::split(stream);
                tokio::spawn(writer(write, rx, exp_tx));
                tokio::spawn(reader(read, exp_rx, addr.to_string()));
            }
        }
        let mut conn = Connection {
            addr: addr.to_string(),
            tx,
            versions: HashMap::new(),
            options: std::sync::Arc::new(options.clone()),
        };
        let resp = conn.send_version(ApiVersionsRequest::default(), 0).await?;
        if resp.error_code != 0 {
            return Err(ClientError::ApiVersions(resp.error_code));
        }
        for k in resp.api_keys {
            conn.versions
                .insert(k.api_key, (k.min_version, k.max_version));
        }
        if let Some(login) = &options.sasl {
            crate::sasl::login(&conn, login).await?;
        }
        Ok(conn)
    }

    /// How this connection was made: another broker's connection is made the same way.
    pub fn options(&self) -> &ConnectOptions {
        &self.options
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The highest version both sides speak.
    pub fn version(&self, api: ApiKey) -> Result<i16, ClientError> {
        let ours = our_range(api);
        let theirs = self.versions.get(&(api as i16)).copied();
        match theirs {
            Some((lo, hi)) if hi.min(ours.1) >= lo.max(ours.0) => Ok(hi.min(ours.1)),
            _ => Err(ClientError::Unsupported { api, ours, theirs }),
        }
    }

    /// Sends at the negotiated version and waits for the answer.
    pub async fn send<R: Request>(&self, req: R) -> Result<R::Response, ClientError> {
        let api = api_key::<R>();
        let version = self.version(api)?;
        self.send_version(req, version).await
    }

    /// Sends and waits at most `timeout` for the answer.
    pub async fn send_timeout<R: Request>(
        &self,
        req: R,
        timeout: Duration,
    ) -> Result<R::Response, ClientError> {
        let api = api_key::<R>();
        match tokio::time::timeout(timeout, self.send(req)).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout(timeout, api)),
        }
    }

    pub async fn send_version<R: Request>(
        &self,
        req: R,
        version: i16,
    ) -> Result<R::Response, ClientError> {
        self.submit_version(req, version).await?.wait().await
    }

    /// Queues the request for writing and returns at once; the answer is awaited later.
    /// Requests submitted one after another reach the broker in that order.
    pub async fn submit<R: Request>(&self, req: R) -> Result<Pending<R>, ClientError> {
        let version = self.version(api_key::<R>())?;
        self.submit_version(req, version).await
    }

    async fn submit_version<R: Request>(
        &self,
        req: R,
        version: i16,
    ) -> Result<Pending<R>, ClientError> {
        let api = api_key::<R>();
        let body = encode(&req, api, version)?;
        let (reply_tx, reply_rx) = oneshot::channel();
        self.enqueue(Outgoing {
            api,
            version,
            body,
            reply: Some(reply_tx),
            written: None,
        })
        .await?;
        Ok(Pending {
            rx: reply_rx,
            api,
            version,
            addr: self.addr.clone(),
            _req: std::marker::PhantomData,
        })
    }

    /// Queues a request the broker will not answer (Produce with acks=0); the receiver
    /// fires once it has been written to the socket.
    pub async fn submit_no_response<R: Request>(
        &self,
        req: R,
    ) -> Result<oneshot::Receiver<()>, ClientError> {
        let api = api_key::<R>();
        let version = self.version(api)?;
        let body = encode(&req, api, version)?;
        let (written_tx, written_rx) = oneshot::channel();
        self.enqueue(Outgoing {
            api,
            version,
            body,
            reply: None,
            written: Some(written_tx),
        })
        .await?;
        Ok(written_rx)
    }

    async fn enqueue(&self, out: Outgoing) -> Result<(), ClientError> {
        self.tx
            .send(out)
            .await
            .map_err(|_| ClientError::Closed(self.addr.clone()))
    }
}

/// An answer still to come.
pub struct Pending<R: Request> {
    rx: oneshot::Receiver<Result<Bytes, ClientError>>,
    api: ApiKey,
    version: i16,
    addr: String,
    _req: std::marker::PhantomData<fn() -> R>,
}

impl<R: Request> Pending<R> {
    pub async fn wait(self) -> Result<R::Response, ClientError> {
        let mut frame = self
            .rx
            .await
            .map_err(|_| ClientError::Closed(self.addr.clone()))??;
        R::Response::decode(&mut frame, self.version).map_err(|e| ClientError::Decode {
            api: self.api,
            version: self.version,
            msg: e.to_string(),
        })
    }

    pub async fn wait_timeout(self, timeout: Duration) -> Result<R::Response, ClientError> {
        let api = self.api;
        match tokio::time::timeout(timeout, self.wait()).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout(timeout, api)),
        }
    }
}

fn api_key<R: Request>() -> ApiKey {
    ApiKey::try_from(R::KEY).unwrap_or(ApiKey::ApiVersions)
}

fn encode<R: Encodable>(req: &R, api: ApiKey, version: i16) -> Result<Bytes, ClientError> {
    // Exact capacity: growing by doubling would copy a 1 MiB produce request several times.
    let size = req.compute_size(version).map_err(|e| ClientError::Encode {
        api,
        version,
        msg: e.to_string(),
    })?;
    let mut buf = BytesMut::with_capacity(size);
    req.encode(&mut buf, version)
        .map_err(|e| ClientError::Encode {
            api,
            version,
            msg: e.to_string(),
        })?;
    Ok(buf.freeze())
}

async fn writer<W: AsyncWrite + Unpin>(
    write: W,
    mut rx: mpsc::Receiver<Outgoing>,
    expected: mpsc::Sender<Expected>,
) {
    let mut out = BufWriter::with_capacity(256 * 1024, write);
    let mut correlation_id: i32 = 0;
    let mut header_buf = BytesMut::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        let mut written = Vec::new();
        // Write everything queued, then flush once.
        while let Some(req) = next {
            correlation_id = correlation_id.wrapping_add(1);
            let header = RequestHeader::default()
                .with_request_api_key(req.api as i16)
                .with_request_api_version(req.version)
                .with_correlation_id(correlation_id)
                .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
            header_buf.clear();
            let hv = req.api.request_header_version(req.version);
            if header.encode(&mut header_buf, hv).is_err() {
                return;
            }
            if let Some(reply) = req.reply {
                // Register before writing, so the reader can never see an unexpected answer.
                let exp = Expected {
                    correlation_id,
                    api: req.api,
                    version: req.version,
                    reply,
                };
                if expected.send(exp).await.is_err() {
                    return;
                }
            }
            let size = (header_buf.len() + req.body.len()) as u32;
            let mut prefix = [0u8; 4];
            (&mut prefix[..]).put_u32(size);
            if out.write_all(&prefix).await.is_err()
                || out.write_all(&header_buf).await.is_err()
                || out.write_all(&req.body).await.is_err()
            {
                return;
            }
            if let Some(w) = req.written {
                written.push(w);
            }
            next = rx.try_recv().ok();
        }
        if out.flush().await.is_err() {
            return;
        }
        for w in written {
            let _ = w.send(());
        }
    }
}

async fn reader<R: AsyncRead + Unpin>(
    mut read: R,
    mut expected: mpsc::Receiver<Expected>,
    addr: String,
) {
    let mut size_buf = [0u8; 4];
    while let Some(exp) = expected.recv().await {
        let result = async {
            read.read_exact(&mut size_buf)
                .await
                .map_err(|_| ClientError::Closed(addr.clone()))?;
            let size = u32::from_be_bytes(size_buf) as usize;
            if size > MAX_RESPONSE_BYTES {
                return Err(ClientError::Decode {
                    api: exp.api,
                    version: exp.version,
                    msg: format!("response frame of {size} bytes"),
                });
            }
            let mut frame = BytesMut::zeroed(size);
            read.read_exact(&mut frame)
                .await
                .map_err(|_| ClientError::Closed(addr.clone()))?;
            let mut frame = frame.freeze();
            let hv = exp.api.response_header_version(exp.version);
            let header =
                ResponseHeader::decode(&mut frame, hv).map_err(|e| ClientError::Decode {
                    api: exp.api,
                    version: exp.version,
                    msg: e.to_string(),
                })?;
            if header.correlation_id != exp.correlation_id {
                return Err(ClientError::Correlation {
                    got: header.correlation_id,
                    expected: exp.correlation_id,
                });
            }
            Ok(frame)
        }
        .await;
        let fatal = result.is_err();
        let _ = exp.reply.send(result);
        if fatal {
            // The stream is out of step: fail everything else that waits on it.
            expected.close();
            while let Some(e) = expected.recv().await {
                let _ = e.reply.send(Err(ClientError::Closed(addr.clone())));
            }
            return;
        }
    }
}
