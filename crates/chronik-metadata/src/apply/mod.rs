//! How each [`MetadataCommand`](crate::MetadataCommand) changes the state, one module per
//! concern. Every function here either changes the state and returns the outcome, or
//! refuses and leaves it unchanged: a refusal is decided before the first write.

mod brokers;
mod leadership;
mod reassign;
mod topics;
mod users;

pub(crate) use topics::NewTopic;

use std::collections::BTreeMap;

use crate::error::Refusal;
use crate::state::{PartitionInfo, TopicInfo};

/// A partition of `topic`, or the refusal naming what does not exist.
fn partition_mut<'a>(
    topics: &'a mut BTreeMap<String, TopicInfo>,
    topic: &str,
    partition: i32,
) -> Result<&'a mut PartitionInfo, Refusal> {
    let t = topics
        .get_mut(topic)
        .ok_or_else(|| Refusal::UnknownTopic(topic.to_string()))?;
    let count = t.partitions.len();
    usize::try_from(partition)
        .ok()
        .and_then(|i| t.partitions.get_mut(i))
        .ok_or_else(|| Refusal::InvalidPartitions {
            requested: partition,
            reason: format!("topic {topic} has {count} partitions"),
        })
}
