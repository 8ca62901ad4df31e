//! DeleteRecords: moves each partition's log start offset forward on its leader (-1: to the
//! high watermark), as Kafka's `Partition.deleteRecordsOnLeader`. The WAL persists it and
//! deletes the whole segments below it; followers learn it from their next replication fetch.
//! As Kafka's DelayedDeleteRecords, the answer waits until the low watermark (the smallest log
//! start over the leader and every replica on an alive broker) reached the requested offset,
//! bounded by the request's timeout (REQUEST_TIMED_OUT then, with the low watermark as it was).

use std::sync::Arc;
use std::time::Duration;

use chronik_groups::OFFSETS_TOPIC;
use chronik_metadata::BrokerState;
use chronik_wal::WalError;
use futures::future::join_all;
use kafka_protocol::messages::delete_records_request::DeleteRecordsPartition;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse, ResponseKind};
use kafka_protocol::ResponseError;

use super::{topic_str, Reply};
use crate::broker::Broker;
use crate::partition::Partition;

/// Kafka's DeleteRecordsRequest.HIGH_WATERMARK: delete everything below the high watermark.
const HIGH_WATERMARK: i64 = -1;
/// Kafka's DeleteRecordsResponse.INVALID_LOW_WATERMARK.
const INVALID_LOW_WATERMARK: i64 = -1;
/// Upper bound on the wait for the replicas, whatever timeout the client asks for.
const MAX_WAIT: Duration = Duration::from_secs(300);

/// A partition whose log start moved on the leader and whose replicas may still lag.
struct Pending {
    topic: usize,
    partition: usize,
    required: i64,
    part: Arc<Partition>,
    replicas: Vec<i32>,
}

pub fn handle(broker: &Arc<Broker>, req: DeleteRecordsRequest, _version: i16) -> Reply {
    let broker = broker.clone();
    Reply::Later(Box::pin(async move {
        let timeout = Duration::from_millis(req.timeout_ms.max(0) as u64).min(MAX_WAIT);
        let mut topics = Vec::with_capacity(req.topics.len());
        let mut pending = Vec::new();
        for (ti, t) in req.topics.iter().enumerate() {
            let name = topic_str(&t.name);
            let mut partitions = Vec::with_capacity(t.partitions.len());
            for p in &t.partitions {
                let (result, wait) = delete_on_leader(&broker, name, p).await;
                if let Some((required, part, replicas)) = wait {
                    pending.push(Pending {
                        topic: ti,
                        partition: partitions.len(),
                        required,
                        part,
                        replicas,
                    });
                }
                partitions.push(result);
            }
            topics.push(
                DeleteRecordsTopicResult::default()
                    .with_name(t.name.clone())
                    .with_partitions(partitions),
            );
        }
        let waits = pending.into_iter().map(|p| async move {
            let outcome = wait_low_watermark(&p, timeout).await;
            (p.topic, p.partition, outcome)
        });
        for (ti, pi, outcome) in join_all(waits).await {
            let r = &mut topics[ti].partitions[pi];
            match outcome {
                Ok(low) => {
                    r.low_watermark = low;
                    r.error_code = 0;
                }
                Err(code) => {
                    r.error_code = code.code();
                    if code == ResponseError::NotLeaderOrFollower {
                        r.low_watermark = INVALID_LOW_WATERMARK;
                    }
                }
            }
        }
        ResponseKind::DeleteRecords(DeleteRecordsResponse::default().with_topics(topics))
    }))
}

type Wait = Option<(i64, Arc<Partition>, Vec<i32>)>;

/// Moves one partition's log start on this leader. Returns the answer as of now and, when the
/// replicas must catch up first, what to wait for.
async fn delete_on_leader(
    broker: &Broker,
    topic: &str,
    p: &DeleteRecordsPartition,
) -> (DeleteRecordsPartitionResult, Wait) {
    let result = DeleteRecordsPartitionResult::default()
        .with_partition_index(p.partition_index)
        .with_low_watermark(INVALID_LOW_WATERMARK);
    let fail = |code: ResponseError, msg: Option<String>| {
        crate::metrics::partition_error(
            kafka_protocol::messages::ApiKey::DeleteRecords,
            code.code(),
        );
        if let Some(msg) = msg {
            // The response has no message field; the reason is only in the log.
            tracing::info!(topic, partition = p.partition_index, reason = %msg, "DeleteRecords refused");
        }
        (result.clone().with_error_code(code.code()), None)
    };
    let state = broker.metadata();
    let info = state.topic(topic).and_then(|t| {
        usize::try_from(p.partition_index)
            .ok()
            .and_then(|i| t.partitions.get(i))
    });
    let Some(info) = info else {
        return fail(ResponseError::UnknownTopicOrPartition, None);
    };
    if topic == OFFSETS_TOPIC {
        let msg = format!(
            "Cannot delete data of internal topic {topic}-{}",
            p.partition_index
        );
        return fail(ResponseError::InvalidTopicException, Some(msg));
    }
    let Some(part) = broker.partitions.partition(topic, p.partition_index) else {
        return fail(ResponseError::NotLeaderOrFollower, None);
    };
    let policy = state
        .topic(topic)
        .map(|t| broker.partitions.topic_config(t).cleanup_policy());
    if policy.is_some_and(|c| !c.delete) {
        // Kafka's Partition.deleteRecordsOnLeader: only a log whose policy deletes.
        let msg = format!(
            "Records of partition {topic}-{} can not be deleted due to the configured policy",
            p.partition_index
        );
        return fail(ResponseError::PolicyViolation, Some(msg));
    }
    let hw = part.replica.high_watermark();
    let offset = if p.offset == HIGH_WATERMARK {
        hw
    } else {
        p.offset
    };
    if offset < 0 {
        let msg = format!(
            "The offset {offset} for partition {topic}-{} is not valid",
            p.partition_index
        );
        return fail(ResponseError::OffsetOutOfRange, Some(msg));
    }
    if offset > hw {
        // Kafka's message (UnifiedLog.maybeIncrementLogStartOffset).
        let msg = format!(
            "Cannot increment the log start offset to {offset} of partition {topic}-{} since it is larger than the high watermark {hw}",
            p.partition_index
        );
        return fail(ResponseError::OffsetOutOfRange, Some(msg));
    }
    match part.replica.advance_log_start(offset).await {
        Ok(_) => {}
        Err(WalError::OffsetOutOfRange { .. }) => {
            return fail(ResponseError::OffsetOutOfRange, None);
        }
        Err(e) => {
            tracing::error!(topic, partition = p.partition_index, error = %e, "cannot move the log start offset");
            return fail(ResponseError::KafkaStorageError, None);
        }
    }
    // Kafka counts the replicas on alive brokers only.
    let replicas: Vec<i32> = info
        .replicas
        .iter()
        .copied()
        .filter(|r| {
            state
                .brokers
                .get(r)
                .is_some_and(|b| b.state != BrokerState::Fenced)
        })
        .collect();
    let Some(low) = part.replica.low_watermark(&replicas) else {
        return fail(ResponseError::NotLeaderOrFollower, None);
    };
    let result = result.with_low_watermark(low);
    if low >= offset {
        return (result, None);
    }
    (
        result.with_error_code(ResponseError::RequestTimedOut.code()),
        Some((offset, part, replicas)),
    )
}

/// Waits until the low watermark of `p` reached its required offset: `Ok(low watermark)`;
/// `NotLeaderOrFollower` if leadership moved meanwhile; `RequestTimedOut` after `timeout`.
async fn wait_low_watermark(p: &Pending, timeout: Duration) -> Result<i64, ResponseError> {
    let mut moved = p.part.replica.subscribe_log_start();
    let wait = async {
        loop {
            moved.borrow_and_update();
            match p.part.replica.low_watermark(&p.replicas) {
                None => return Err(ResponseError::NotLeaderOrFollower),
                Some(low) if low >= p.required => return Ok(low),
                Some(_) => {}
            }
            // A lost leadership does not fire this watch: look again now and then.
            let _ = tokio::time::timeout(Duration::from_millis(200), moved.changed()).await;
        }
    };
    tokio::time::timeout(timeout, wait)
        .await
        .unwrap_or(Err(ResponseError::RequestTimedOut))
}
