//! WriteTxnMarkers (API 27, Kafka's inter-broker API): the transaction coordinator asks each
//! partition leader to write the commit or abort marker of a transaction. Every marker is
//! appended now, in request order (`Partition::append_marker`), and answered once it is
//! replicated as an acks=all produce would be (Kafka appends markers with acks=all, and
//! `min.insync.replicas` applies). Authorization (CLUSTER_ACTION on the cluster) is checked by
//! `crate::authz` before this runs.
//!
//! Per-partition errors, as Kafka's: UNKNOWN_TOPIC_OR_PARTITION, NOT_LEADER_OR_FOLLOWER,
//! INVALID_PRODUCER_EPOCH (the producer wrote with a newer epoch),
//! TRANSACTION_COORDINATOR_FENCED (a newer coordinator wrote a marker), NOT_ENOUGH_REPLICAS,
//! KAFKA_STORAGE_ERROR, REQUEST_TIMED_OUT.

use std::sync::Arc;
use std::time::Duration;

use chronik_groups::OFFSETS_TOPIC;
use chronik_metadata::MetadataState;
use futures::future::{join_all, BoxFuture};
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{ResponseKind, WriteTxnMarkersRequest, WriteTxnMarkersResponse};
use kafka_protocol::ResponseError;

use super::Reply;
use crate::broker::Broker;
use crate::partition::{Accepted, Partition};
use crate::txn::{EndTxnMarker, MarkerType};

/// How long a marker may take to replicate (Kafka: the coordinator's request timeout, 30 s).
const MARKER_COMMIT_WAIT: Duration = Duration::from_secs(30);

/// A marker to wait for: (marker index, topic index, partition index, its replication).
type Wait = (usize, usize, usize, MarkerWritten);

/// The wait for an appended marker: its replication, then what it completes.
pub(crate) type MarkerWritten = BoxFuture<'static, Result<(), ResponseError>>;

pub fn handle(broker: &Arc<Broker>, req: WriteTxnMarkersRequest, _version: i16) -> Reply {
    let mut markers = Vec::with_capacity(req.markers.len());
    let mut waits: Vec<Wait> = Vec::new();
    for (mi, m) in req.markers.into_iter().enumerate() {
        let marker = EndTxnMarker {
            producer_id: m.producer_id.0,
            producer_epoch: m.producer_epoch,
            marker: MarkerType::from_committed(m.transaction_result),
            coordinator_epoch: m.coordinator_epoch,
        };
        let mut topics = Vec::with_capacity(m.topics.len());
        for (ti, t) in m.topics.into_iter().enumerate() {
            let mut parts = Vec::with_capacity(t.partition_indexes.len());
            for index in t.partition_indexes {
                let code = match write_marker(broker, t.name.0.as_str(), index, &marker) {
                    Ok(written) => {
                        waits.push((mi, ti, parts.len(), written));
                        0
                    }
                    Err(code) => code.code(),
                };
                parts.push(
                    WritableTxnMarkerPartitionResult::default()
                        .with_partition_index(index)
                        .with_error_code(code),
                );
            }
            topics.push(
                WritableTxnMarkerTopicResult::default()
                    .with_name(t.name)
                    .with_partitions(parts),
            );
        }
        markers.push(
            WritableTxnMarkerResult::default()
                .with_producer_id(m.producer_id)
                .with_topics(topics),
        );
    }
    let done = |markers| {
        ResponseKind::WriteTxnMarkers(WriteTxnMarkersResponse::default().with_markers(markers))
    };
    if waits.is_empty() {
        return Reply::now(done(markers));
    }
    Reply::Later(Box::pin(async move {
        let results = join_all(
            waits
                .into_iter()
                .map(|(mi, ti, pi, written)| async move { (mi, ti, pi, written.await) }),
        )
        .await;
        for (mi, ti, pi, r) in results {
            if let Err(code) = r {
                markers[mi].topics[ti].partitions[pi].error_code = code.code();
            }
        }
        done(markers)
    }))
}

/// Appends `marker` to `topic`-`index` now (this node must lead it; appends happen in call
/// order) and returns the wait for it to replicate as an acks=all produce would. The one way
/// a marker is written, for WriteTxnMarkers and for this node's own transaction coordinator.
/// A marker on a `__consumer_offsets` partition then ends the producer's transactional
/// offsets there (KIP-447: committed, or dropped on abort), as Kafka's
/// GroupCoordinator.onTransactionCompleted after the marker's append.
pub(crate) fn write_marker(
    broker: &Arc<Broker>,
    topic: &str,
    index: i32,
    marker: &EndTxnMarker,
) -> Result<MarkerWritten, ResponseError> {
    let state = broker.metadata();
    let (accepted, part, min_isr) = write_one(broker, &state, topic, index, marker)?;
    let marker_offset = accepted.base_offset;
    let broker = broker.clone();
    let offsets_partition = (topic == OFFSETS_TOPIC).then_some(index);
    let marker = *marker;
    Ok(Box::pin(async move {
        super::produce::wait_stored(&broker, -1, MARKER_COMMIT_WAIT, accepted, &part, min_isr)
            .await
            .map_err(|(code, _)| code)?;
        if let Some(p) = offsets_partition {
            let commit = marker.marker == MarkerType::Commit;
            broker
                .groups
                .offsets()
                .complete_txn(p, marker.producer_id, commit, marker_offset)
                .await;
        }
        Ok(())
    }))
}

/// Appends `marker` to one partition this node leads.
fn write_one(
    broker: &Broker,
    state: &MetadataState,
    topic: &str,
    index: i32,
    marker: &EndTxnMarker,
) -> Result<(Accepted, Arc<Partition>, usize), ResponseError> {
    let info = state
        .topic(topic)
        .and_then(|t| t.partitions.get(usize::try_from(index).ok()?))
        .ok_or(ResponseError::UnknownTopicOrPartition)?;
    let part = broker
        .partitions
        .partition(topic, index)
        .ok_or(ResponseError::NotLeaderOrFollower)?;
    let min_isr = part.config().min_insync_replicas;
    if info.isr.len() < min_isr {
        return Err(ResponseError::NotEnoughReplicas);
    }
    match part.append_marker(marker, info.leader_epoch) {
        Ok(accepted) => Ok((accepted, part, min_isr)),
        Err(e) => {
            let code = e.code();
            if code == ResponseError::KafkaStorageError {
                tracing::error!(%topic, partition = index, error = %e, "marker append failed");
            }
            Err(code)
        }
    }
}
