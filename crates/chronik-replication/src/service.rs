//! Leader side: the `Replication.Fetch` stream. Each follower node holds one stream; every
//! request on it fetches all the partitions that follower replicates from this node. A
//! request with nothing new is held until a partition appends or `max_wait_ms` passes.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use crate::manager::ReplicaManager;
use crate::pb::replication_server::Replication;
use crate::pb::{FetchRequest, FetchResponse, PartitionData, SegmentChunk, SegmentRequest};
use crate::replica::{code, FollowerFetch};

/// Most a leader holds a fetch, whatever the follower asks.
const MAX_WAIT_CAP: Duration = Duration::from_secs(5);
/// Partitions one fetch may name.
const MAX_PARTITIONS_PER_FETCH: usize = 100_000;

pub struct ReplicationService {
    pub manager: Arc<ReplicaManager>,
}

impl ReplicationService {
    async fn answer(&self, req: &FetchRequest) -> (FetchResponse, bool) {
        let mut budget = (req.max_bytes as usize).clamp(1, self.manager.config.max_bytes);
        let mut any = false;
        let mut out = Vec::with_capacity(req.partitions.len());
        for pf in &req.partitions {
            let mut pd = PartitionData {
                topic: pf.topic.clone(),
                partition: pf.partition,
                leader_epoch: -1,
                ..Default::default()
            };
            let Some(replica) = self.manager.get(&pf.topic, pf.partition) else {
                pd.error_code = code::UNKNOWN_TOPIC_OR_PARTITION;
                out.push(pd);
                any = true;
                continue;
            };
            let served = replica
                .serve_fetch(
                    FollowerFetch {
                        follower: req.follower_id as i32,
                        fetch_offset: pf.fetch_offset,
                        last_fetched_epoch: pf.last_fetched_epoch,
                        durable_offset: pf.durable_offset,
                        leader_epoch: pf.leader_epoch,
                        log_start_offset: pf.log_start_offset,
                    },
                    budget,
                )
                .await;
            budget = budget.saturating_sub(served.records.len()).max(1);
            any |=
                !served.records.is_empty() || served.error_code != 0 || served.diverging.is_some();
            any |= served.segment_available;
            pd.segment_available = served.segment_available;
            pd.leader_epoch = served.leader_epoch;
            pd.error_code = served.error_code;
            pd.records = served.records;
            pd.high_watermark = served.high_watermark;
            pd.log_start_offset = served.log_start_offset;
            pd.restart_offset = served.restart_offset.unwrap_or(0);
            if let Some((epoch, end)) = served.diverging {
                pd.diverging_epoch = epoch;
                pd.diverging_end_offset = end;
            } else {
                pd.diverging_epoch = -1;
                pd.diverging_end_offset = -1;
            }
            out.push(pd);
        }
        (FetchResponse { partitions: out }, any)
    }

    /// Watches on the named partitions' log ends and high watermarks, taken before the request
    /// is answered: a change after that (the high watermark this very fetch moved, say) wakes
    /// [`Self::hold`] at once instead of after `max_wait_ms`.
    fn watches(&self, req: &FetchRequest) -> Vec<tokio::sync::watch::Receiver<i64>> {
        let mut watches = Vec::new();
        for pf in &req.partitions {
            if let Some(r) = self.manager.get(&pf.topic, pf.partition) {
                let mut log = r.log.subscribe_end();
                log.borrow_and_update();
                watches.push(log);
                let mut hw = r.subscribe_hw();
                hw.borrow_and_update();
                watches.push(hw);
                let mut start = r.subscribe_log_start();
                start.borrow_and_update();
                watches.push(start);
            }
        }
        watches
    }

    /// Waits until a watched partition appends or its high watermark moves, or `wait` passes.
    async fn hold(&self, mut watches: Vec<tokio::sync::watch::Receiver<i64>>, wait: Duration) {
        if watches.is_empty() {
            tokio::time::sleep(wait).await;
            return;
        }
        let changed =
            futures::future::select_all(watches.iter_mut().map(|w| Box::pin(w.changed())));
        let _ = tokio::time::timeout(wait, changed).await;
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
        tokio::spawn(async move {
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
                if req.partitions.len() > MAX_PARTITIONS_PER_FETCH {
                    let _ = tx
                        .send(Err(Status::invalid_argument(
                            "too many partitions in one fetch",
                        )))
                        .await;
                    return;
                }
                let wait = Duration::from_millis(req.max_wait_ms as u64).min(MAX_WAIT_CAP);
                let watches = me.watches(&req);
                let (mut resp, any) = me.answer(&req).await;
                if !any && !wait.is_zero() {
                    me.hold(watches, wait).await;
                    resp = me.answer(&req).await.0;
                }
                if tx.send(Ok(resp)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
