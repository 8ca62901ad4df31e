//! ListOffsets: earliest (-2), latest (-1, the high watermark) and by timestamp: the
//! earliest offset whose timestamp is >= the target, found through the WAL's time index
//! and then record by record inside that one batch.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::list_offsets_request::ListOffsetsPartition;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse, ResponseKind};
use kafka_protocol::records::RecordBatchDecoder;
use kafka_protocol::ResponseError;

use super::{topic_str, Reply};
use crate::broker::Broker;
use crate::partition::Partition;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
/// Attribute bit: the batch uses LogAppendTime, so every record has the batch's max timestamp.
const LOG_APPEND_TIME_FLAG: i16 = 0x08;

pub fn handle(broker: &Arc<Broker>, req: ListOffsetsRequest, version: i16) -> Reply {
    let broker = broker.clone();
    // Async: a lookup by timestamp reads a batch that may be anywhere in the log (off the
    // runtime, see `PartitionLog::find_batch_by_timestamp`).
    Reply::Later(Box::pin(async move {
        let mut topics = Vec::with_capacity(req.topics.len());
        for t in req.topics {
            let mut partitions = Vec::with_capacity(t.partitions.len());
            for p in &t.partitions {
                partitions.push(answer(&broker, topic_str(&t.name), p, version).await);
            }
            topics.push(
                ListOffsetsTopicResponse::default()
                    .with_name(t.name)
                    .with_partitions(partitions),
            );
        }
        ResponseKind::ListOffsets(ListOffsetsResponse::default().with_topics(topics))
    }))
}

/// One partition's answer.
async fn answer(
    broker: &Broker,
    name: &str,
    p: &ListOffsetsPartition,
    version: i16,
) -> ListOffsetsPartitionResponse {
    let state = broker.metadata();
    let resp = ListOffsetsPartitionResponse::default()
        .with_partition_index(p.partition_index)
        .with_timestamp(-1)
        .with_offset(-1);
    let info = state.topic(name).and_then(|i| {
        usize::try_from(p.partition_index)
            .ok()
            .and_then(|x| i.partitions.get(x))
    });
    let Some(info) = info else {
        return resp.with_error_code(ResponseError::UnknownTopicOrPartition.code());
    };
    let Some(partition) = broker.partition(name, p.partition_index) else {
        return resp.with_error_code(ResponseError::NotLeaderOrFollower.code());
    };
    // leader_epoch exists from v4; older versions must keep the default.
    let resp = if version >= 4 {
        resp.with_leader_epoch(info.leader_epoch)
    } else {
        resp
    };
    if p.current_leader_epoch >= 0 && p.current_leader_epoch != info.leader_epoch {
        let code = if p.current_leader_epoch > info.leader_epoch {
            ResponseError::UnknownLeaderEpoch
        } else {
            ResponseError::FencedLeaderEpoch
        };
        return resp.with_error_code(code.code());
    }
    match lookup(&partition, p.timestamp).await {
        Ok((offset, timestamp)) => resp.with_offset(offset).with_timestamp(timestamp),
        Err(code) => resp.with_error_code(code.code()),
    }
}

/// (offset, timestamp) for one partition; (-1, -1) when no record is that recent.
async fn lookup(partition: &Partition, timestamp: i64) -> Result<(i64, i64), ResponseError> {
    let log = &partition.log;
    let hw = partition.replica.high_watermark();
    match timestamp {
        LATEST => Ok((hw, -1)),
        EARLIEST => Ok((log.log_start_offset(), -1)),
        ts if ts >= 0 => {
            let batch = log.find_batch_by_timestamp(ts).await.map_err(|e| {
                tracing::error!(topic = %partition.topic, partition = partition.index, error = %e, "timestamp lookup failed");
                ResponseError::KafkaStorageError
            })?;
            // Records below the log start (DeleteRecords inside this batch) are gone.
            let start = log.log_start_offset();
            match batch.and_then(|b| first_record_at_or_after(b, ts, start)) {
                Some((offset, t)) if offset < hw => Ok((offset, t)),
                _ => Ok((-1, -1)),
            }
        }
        _ => Err(ResponseError::InvalidRequest),
    }
}

/// The first record in `batch` at or after offset `start` with timestamp >= `ts`.
fn first_record_at_or_after(batch: Bytes, ts: i64, start: i64) -> Option<(i64, i64)> {
    let header = chronik_wal::BatchHeader::parse(&batch).ok()?;
    if header.attributes & LOG_APPEND_TIME_FLAG != 0 {
        return (header.max_timestamp >= ts && header.last_offset() >= start)
            .then_some((header.base_offset.max(start), header.max_timestamp));
    }
    let mut buf = batch;
    let set = match RecordBatchDecoder::decode(&mut buf) {
        Ok(set) => set,
        Err(e) => {
            tracing::warn!(error = %e, "cannot decode a stored batch for a timestamp lookup");
            return None;
        }
    };
    set.records
        .iter()
        .find(|r| r.timestamp >= ts && r.offset >= start)
        .map(|r| (r.offset, r.timestamp))
}
