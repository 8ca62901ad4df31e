//! ListOffsets: earliest (-2), latest (-1, the high watermark) and by timestamp: the
//! earliest offset whose timestamp is >= the target, found through the WAL's time index
//! and then record by record inside that one batch. v7+ adds max-timestamp (-3: the first
//! record with the largest timestamp), v8+ earliest-local (-4: the log start, as there is no
//! tiered storage) and v9+ latest-tiered (-5: offset -1, as Kafka answers without tiered
//! storage); v10 adds a timeout for remote lookups, which Chronik never makes.
//!
//! Isolation (v2+): read_committed answers latest with the last stable offset and finds by
//! timestamp only below it; read_uncommitted uses the high watermark (Kafka's
//! `lastFetchableOffset`).

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

/// ListOffsetsRequest's isolation_level for read_committed.
const READ_COMMITTED: i8 = 1;
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;
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
                let read_committed = req.isolation_level == READ_COMMITTED;
                let q = (version, read_committed);
                partitions.push(answer(&broker, topic_str(&t.name), p, q).await);
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
    (version, read_committed): (i16, bool),
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
    let Some(partition) = broker.partitions.partition(name, p.partition_index) else {
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
    match lookup(&partition, p.timestamp, read_committed).await {
        Ok(found) => {
            let resp = resp
                .with_offset(found.offset)
                .with_timestamp(found.timestamp);
            match found.leader_epoch {
                Some(epoch) if version >= 4 => resp.with_leader_epoch(epoch),
                _ => resp,
            }
        }
        Err(code) => resp.with_error_code(code.code()),
    }
}

/// One partition's answer: offset and timestamp (-1 when not known), and the leader epoch of
/// the batch found (a lookup by timestamp answers it as Kafka does; the others answer the
/// current epoch).
struct Found {
    offset: i64,
    timestamp: i64,
    leader_epoch: Option<i32>,
}

impl Found {
    fn offset(offset: i64) -> Self {
        Found {
            offset,
            timestamp: -1,
            leader_epoch: None,
        }
    }
}

async fn lookup(
    partition: &Partition,
    timestamp: i64,
    read_committed: bool,
) -> Result<Found, ResponseError> {
    let log = &partition.log;
    // Kafka's lastFetchableOffset: what a consumer of this isolation may read.
    let hw = if read_committed {
        partition.last_stable_offset()
    } else {
        partition.replica.high_watermark()
    };
    let target = match timestamp {
        LATEST => return Ok(Found::offset(hw)),
        EARLIEST | EARLIEST_LOCAL => return Ok(Found::offset(log.log_start_offset())),
        LATEST_TIERED => {
            return Ok(Found {
                leader_epoch: Some(-1),
                ..Found::offset(-1)
            })
        }
        MAX_TIMESTAMP => match log.max_timestamp() {
            i64::MIN => return Ok(Found::offset(-1)),
            max => max,
        },
        ts if ts >= 0 => ts,
        _ => return Err(ResponseError::InvalidRequest),
    };
    // The first batch whose max timestamp reaches the target, then its first record that
    // does: for MAX_TIMESTAMP, the first record holding the largest timestamp (Kafka's
    // `offsetOfMaxTimestamp` in the first batch with the log's max timestamp).
    let batch = log.find_batch_by_timestamp(target).await.map_err(|e| {
        tracing::error!(topic = %partition.topic, partition = partition.index, error = %e, "timestamp lookup failed");
        ResponseError::KafkaStorageError
    })?;
    // Records at or past the high watermark are not visible yet (Kafka: lastFetchableOffset).
    // Records below the log start (DeleteRecords inside this batch) are gone.
    let start = log.log_start_offset();
    match batch.and_then(|b| first_record_at_or_after(b, target, start)) {
        Some(found) if found.offset < hw => Ok(found),
        _ => Ok(Found::offset(-1)),
    }
}

/// The first record in `batch` at or after offset `start` (the log start: records below it
/// were deleted) with timestamp >= `ts`.
fn first_record_at_or_after(batch: Bytes, ts: i64, start: i64) -> Option<Found> {
    let header = chronik_wal::BatchHeader::parse(&batch).ok()?;
    let found = |offset, timestamp| Found {
        offset,
        timestamp,
        leader_epoch: Some(header.partition_leader_epoch),
    };
    if header.attributes & LOG_APPEND_TIME_FLAG != 0 {
        return (header.max_timestamp >= ts && header.last_offset() >= start)
            .then(|| found(header.base_offset.max(start), header.max_timestamp));
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
        .map(|r| found(r.offset, r.timestamp))
}
