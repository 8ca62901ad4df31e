//! The coordinators' durable write to their internal topics (`__consumer_offsets`,
//! `__transaction_state`): one batch appended to a partition this node leads, answered once it
//! is on every ISR replica, as an acks=all produce would be, so a failover cannot take back
//! what a coordinator acted on.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::ResponseError;
use thiserror::Error;

use crate::partition::AppendError;
use crate::partitions::PartitionManager;

/// Longest an append waits to be replicated before it is answered with an error (Kafka's
/// coordinators wait for the request timeout, 30 s by default).
const REPLICATION_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Error)]
pub enum DurableAppendError {
    #[error("{topic} has no partition {partition} led by this node")]
    NotHere { topic: String, partition: i32 },
    #[error("a record of {size} bytes is over {topic}'s max.message.bytes={max}")]
    TooLarge {
        topic: String,
        size: usize,
        max: usize,
    },
    /// The partition refused the batch or lost it before it replicated; `code` is the error
    /// a produce would have got.
    #[error("appending to {topic}: {message}")]
    Append {
        topic: String,
        code: ResponseError,
        message: String,
    },
    #[error("{topic} did not replicate the append in time")]
    Timeout { topic: String },
}

impl DurableAppendError {
    /// The error a produce would have been answered with.
    pub fn code(&self) -> ResponseError {
        match self {
            DurableAppendError::NotHere { .. } => ResponseError::NotLeaderOrFollower,
            DurableAppendError::TooLarge { .. } => ResponseError::MessageTooLarge,
            DurableAppendError::Append { code, .. } => *code,
            DurableAppendError::Timeout { .. } => ResponseError::RequestTimedOut,
        }
    }
}

/// Appends `batch` to `topic`-`p` (this node must lead it) under the partition's current
/// leader epoch, and waits until the high watermark passes it. Returns its base offset.
pub async fn append_durably(
    local: &Arc<PartitionManager>,
    topic: &str,
    p: i32,
    batch: &[u8],
) -> Result<i64, DurableAppendError> {
    let not_here = || DurableAppendError::NotHere {
        topic: topic.to_string(),
        partition: p,
    };
    let part = local.partition(topic, p).ok_or_else(not_here)?;
    let state = local.metadata();
    let info = state
        .topic(topic)
        .and_then(|t| t.partitions.get(usize::try_from(p).ok()?))
        .ok_or_else(not_here)?;
    if info.leader != local.node_id() {
        return Err(not_here());
    }
    let max_bytes = part.config().max_message_bytes;
    let accepted = part
        .append(batch, max_bytes, info.leader_epoch)
        .map_err(|e| match e {
            AppendError::TooLarge { size, max } => DurableAppendError::TooLarge {
                topic: topic.to_string(),
                size,
                max,
            },
            other => DurableAppendError::Append {
                topic: topic.to_string(),
                code: other.code(),
                message: other.to_string(),
            },
        })?;
    let replicated = part
        .replica
        .wait_high_watermark(accepted.end_offset, accepted.leader_epoch);
    match tokio::time::timeout(REPLICATION_TIMEOUT, replicated).await {
        Ok(Ok(())) => Ok(accepted.base_offset),
        Ok(Err(e)) => Err(DurableAppendError::Append {
            topic: topic.to_string(),
            code: ResponseError::NotLeaderOrFollower,
            message: e.to_string(),
        }),
        Err(_) => Err(DurableAppendError::Timeout {
            topic: topic.to_string(),
        }),
    }
}
