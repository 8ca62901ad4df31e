//! Partition reassignment, shared by the admin gRPC API and Kafka's
//! AlterPartitionReassignments / ListPartitionReassignments: check a move against the applied
//! metadata, then start or cancel it through Raft. The controller completes it once the new
//! replicas joined the ISR (`chronik-cluster`), and each broker opens or deletes its replicas as
//! the replica sets change (`Broker::sync_replica_sets`).

use std::sync::Arc;

use chronik_metadata::{MetadataCommand, MetadataState, PartitionInfo};
use kafka_protocol::ResponseError;

use crate::broker::{Broker, TopicError};

/// Most partition moves one request may carry.
pub const MAX_MOVES_PER_REQUEST: usize = 10_000;

/// The partition, or UNKNOWN_TOPIC_OR_PARTITION naming what does not exist.
pub fn known<'a>(
    state: &'a MetadataState,
    topic: &str,
    partition: i32,
) -> Result<&'a PartitionInfo, TopicError> {
    let unknown = |msg: String| TopicError::new(ResponseError::UnknownTopicOrPartition, msg);
    let t = state
        .topic(topic)
        .ok_or_else(|| unknown(format!("topic '{topic}' does not exist")))?;
    usize::try_from(partition)
        .ok()
        .and_then(|i| t.partitions.get(i))
        .ok_or_else(|| {
            unknown(format!(
                "partition {partition} of '{topic}' does not exist ({} partitions)",
                t.partitions.len()
            ))
        })
}

/// Checks a move before anything is proposed, so one bad move in a list changes nothing: the
/// state machine's own rules, applied to `scratch` (a copy of the applied metadata, taken once
/// per request: later moves of the same request are checked against the earlier ones), so
/// there is no second set of checks to drift; plus the min.insync check, which needs the
/// broker's topic defaults.
pub fn check_move(
    broker: &Broker,
    scratch: &mut MetadataState,
    topic: &str,
    partition: i32,
    target: &[i32],
) -> Result<(), TopicError> {
    let p = known(scratch, topic, partition)?;
    if p.reassigning() {
        return Err(TopicError::new(
            ResponseError::InvalidReplicaAssignment,
            format!(
                "{topic}-{partition}: a reassignment to {:?} is already in progress; cancel it first",
                p.target_replicas()
            ),
        ));
    }
    let t = scratch.topic(topic).ok_or_else(|| {
        TopicError::new(
            ResponseError::UnknownTopicOrPartition,
            format!("topic '{topic}' does not exist"),
        )
    })?;
    // The topic's min.insync.replicas: a move must not leave fewer replicas than acks=all
    // needs.
    let min_isr = broker.topic_config(t).min_insync_replicas();
    if target.len() < min_isr {
        return Err(TopicError::new(
            ResponseError::InvalidReplicationFactor,
            format!(
                "{topic}-{partition}: {} replica(s) would be below min.insync.replicas={min_isr}; \
                 acks=all produce could never succeed",
                target.len()
            ),
        ));
    }
    scratch.apply(&MetadataCommand::ReassignPartition {
        topic: topic.to_string(),
        partition,
        target: target.to_vec(),
    })?;
    Ok(())
}

/// Starts moving `topic`-`partition` to `target` (checked with [`check_move`] first) and
/// answers once this node applied the start.
pub async fn start(
    broker: &Broker,
    topic: &str,
    partition: i32,
    target: Vec<i32>,
) -> Result<Arc<MetadataState>, TopicError> {
    let cmd = MetadataCommand::ReassignPartition {
        topic: topic.to_string(),
        partition,
        target: target.clone(),
    };
    broker
        .propose(cmd, |s| {
            known(s, topic, partition).is_ok_and(|p| p.target_replicas() == target)
        })
        .await
}

/// Abandons the running move of `topic`-`partition` (back to the old replicas).
pub async fn cancel(
    broker: &Broker,
    topic: &str,
    partition: i32,
) -> Result<Arc<MetadataState>, TopicError> {
    known(&broker.metadata(), topic, partition)?;
    let cmd = MetadataCommand::CancelReassignment {
        topic: topic.to_string(),
        partition,
    };
    broker
        .propose(cmd, |s| {
            known(s, topic, partition).is_ok_and(|p| !p.reassigning())
        })
        .await
}

/// Every running reassignment: (topic, partition, its state).
pub fn running(state: &MetadataState) -> Vec<(String, i32, PartitionInfo)> {
    let mut out = Vec::new();
    for t in state.topics.values() {
        for (i, p) in t.partitions.iter().enumerate() {
            if p.reassigning() {
                out.push((t.name.clone(), i as i32, p.clone()));
            }
        }
    }
    out
}
