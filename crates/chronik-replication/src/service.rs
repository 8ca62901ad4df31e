//! Leader side: the `Replication.Fetch` stream. Each follower node holds one stream, fetching
//! all the partitions that follower replicates from this node; the stream is a fetch session
//! (see `session`): requests name only what changed, answers carry only news. A request with
//! nothing new is held until a change on this node gives news or `max_wait_ms` passes.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use crate::manager::ReplicaManager;
use crate::pb::replication_server::Replication;
use crate::pb::{FetchRequest, FetchResponse, SegmentChunk, SegmentRequest};
use crate::replica::{code, BrokerId};
use crate::session::{Session, MAX_PARTITIONS_PER_SESSION};

/// Most a leader holds a fetch, whatever the follower asks.
const MAX_WAIT_CAP: Duration = Duration::from_secs(5);
/// Partitions one fetch may name (added and removed).
const MAX_PARTITIONS_PER_FETCH: usize = MAX_PARTITIONS_PER_SESSION;

pub struct ReplicationService {
    pub manager: Arc<ReplicaManager>,
}

impl ReplicationService {
    /// Answers one request of `session`'s stream: serves what is due, and unless that has
    /// news, holds until a change on this node ([`Changes`](crate::changes::Changes)) gives
    /// some or `wait` passes. The signal's version is taken before each pass, so a change
    /// during the pass (the high watermark this very fetch moved, say) ends the hold at once.
    async fn answer(&self, session: &mut Session, req: &FetchRequest) -> FetchResponse {
        let deadline =
            Instant::now() + Duration::from_millis(req.max_wait_ms as u64).min(MAX_WAIT_CAP);
        let mut budget = (req.max_bytes as usize).clamp(1, self.manager.config.max_bytes);
        loop {
            let seen = self.manager.changes.version();
            let urgent = session.pass(&self.manager, &mut budget).await;
            if urgent || Instant::now() >= deadline {
                break;
            }
            self.manager.changes.wait_past(seen, deadline).await;
        }
        FetchResponse {
            partitions: session.answer(),
            sessions: true,
        }
    }
}

type FetchStream = Pin<Box<dyn Stream<Item = Result<FetchResponse, Status>> + Send>>;
type SegmentStream = Pin<Box<dyn Stream<Item = Result<SegmentChunk, Status>> + Send>>;

/// Piece size of a whole-segment transfer; with the channel below, what one transfer holds.
const SEGMENT_CHUNK_BYTES: usize = 1 << 20;
/// Pieces read ahead of the network per transfer.
const SEGMENT_CHUNKS_IN_FLIGHT: usize = 2;

#[tonic::async_trait]
impl Replication for Arc<ReplicationService> {
    type FetchStream = FetchStream;
    type FetchSegmentStream = SegmentStream;

    /// Streams a sealed segment's file: read on the blocking pool in 1 MiB pieces (one blocking
    /// task per piece, so no thread waits on the network), at most
    /// [`SEGMENT_CHUNKS_IN_FLIGHT`] ahead of the follower. Errors (not the leader, no such
    /// segment) are one message with the Kafka error code.
    async fn fetch_segment(
        &self,
        req: Request<SegmentRequest>,
    ) -> Result<Response<SegmentStream>, Status> {
        chronik_rpc::auth::require_node(&req, "FetchSegment", req.get_ref().follower_id)?;
        let req = req.into_inner();
        let (tx, rx) = mpsc::channel(SEGMENT_CHUNKS_IN_FLIGHT);
        let segment = match self.manager.get(&req.topic, req.partition) {
            None => Err(code::UNKNOWN_TOPIC_OR_PARTITION),
            Some(r) => r.segment_for(req.leader_epoch, req.base_offset),
        };
        let seg = match segment {
            Ok(seg) => seg,
            Err(error_code) => {
                let _ = tx.try_send(Ok(SegmentChunk {
                    error_code,
                    ..Default::default()
                }));
                return Ok(Response::new(Box::pin(ReceiverStream::new(rx))));
            }
        };
        tracing::info!(topic = %req.topic, partition = req.partition, follower = req.follower_id,
            base_offset = seg.base_offset, bytes = seg.size_bytes, "sending a whole segment");
        tokio::spawn(async move {
            let mut pos = 0u64;
            while pos < seg.size_bytes {
                let msg = match seg.read_chunk(pos, SEGMENT_CHUNK_BYTES).await {
                    Ok(data) if data.is_empty() => break,
                    Ok(data) => {
                        pos += data.len() as u64;
                        Ok(SegmentChunk {
                            error_code: code::NONE,
                            data,
                            size_bytes: seg.size_bytes,
                            next_offset: seg.next_offset,
                        })
                    }
                    Err(e) => Err(Status::internal(format!("reading the segment: {e}"))),
                };
                let failed = msg.is_err();
                if tx.send(msg).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn fetch(
        &self,
        req: Request<Streaming<FetchRequest>>,
    ) -> Result<Response<FetchStream>, Status> {
        // Who is calling, from the stream's certificate: every request on it must name that
        // node as its follower (checked per message, see below).
        let caller = chronik_rpc::auth::peer(&req, "Fetch")?;
        let remote = req.remote_addr();
        let mut incoming = req.into_inner();
        // One response in flight: the follower sends its next request after this one.
        let (tx, rx) = mpsc::channel(1);
        let me = self.clone();
        let mut stop = me.manager.stopping();
        let lag_max = me.manager.config.replica_lag_max;
        tokio::spawn(async move {
            // The stream is the session; every request on it names the same follower.
            let mut session: Option<Session> = None;
            loop {
                let next = tokio::select! {
                    m = incoming.message() => m,
                    _ = stop.changed() => return,
                };
                let req = match next {
                    Ok(Some(r)) => r,
                    Ok(None) => return,
                    Err(e) => {
                        tracing::debug!(error = %e, "replication stream ended");
                        return;
                    }
                };
                if let Err(denied) =
                    chronik_rpc::auth::check_node(&caller, remote, "Fetch", req.follower_id)
                {
                    let _ = tx.send(Err(denied)).await;
                    return;
                }
                if req.partitions.len() + req.removed.len() > MAX_PARTITIONS_PER_FETCH {
                    let _ = tx
                        .send(Err(Status::invalid_argument(
                            "too many partitions in one fetch",
                        )))
                        .await;
                    return;
                }
                let follower = req.follower_id as BrokerId;
                let session = match &mut session {
                    Some(s) if s.follower() == follower => s,
                    _ => session.insert(Session::new(follower, lag_max)),
                };
                if let Err(e) = session.update(&req) {
                    let _ = tx.send(Err(Status::invalid_argument(e.to_string()))).await;
                    return;
                }
                let resp = me.answer(session, &req).await;
                if tx.send(Ok(resp)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
