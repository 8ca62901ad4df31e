//! AlterPartitionReassignments and ListPartitionReassignments: Kafka's admin API for moving
//! partitions (kafka-reassign-partitions.sh, AdminClient), over the same reassignment code as
//! `chronik-admin partition reassign` (`crate::reassign`). Each partition gets its own error;
//! a refused partition changes nothing.

use std::sync::Arc;

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, ResponseKind,
};
use kafka_protocol::ResponseError;

use super::{str_bytes, topic_name, topic_str, Reply};
use crate::broker::{Broker, TopicError};
use crate::reassign;

fn ids(v: &[i32]) -> Vec<BrokerId> {
    v.iter().copied().map(BrokerId).collect()
}

pub async fn alter(
    broker: &Arc<Broker>,
    req: AlterPartitionReassignmentsRequest,
    version: i16,
) -> Reply {
    let moves: usize = req.topics.iter().map(|t| t.partitions.len()).sum();
    let allow_rf_change = version < 1 || req.allow_replication_factor_change;
    // Moves are checked against one copy of the metadata, so a later move of the request
    // sees the earlier ones.
    let mut scratch = (*broker.metadata()).clone();
    let mut responses = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let topic = topic_str(&t.name).to_string();
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let result = if moves > reassign::MAX_MOVES_PER_REQUEST {
                Err(TopicError::new(
                    ResponseError::PolicyViolation,
                    format!(
                        "{moves} moves in one request; at most {}",
                        reassign::MAX_MOVES_PER_REQUEST
                    ),
                ))
            } else {
                let target = p
                    .replicas
                    .map(|t| t.into_iter().map(|b| b.0).collect::<Vec<i32>>());
                alter_one(
                    broker,
                    &mut scratch,
                    allow_rf_change,
                    &topic,
                    p.partition_index,
                    target,
                )
                .await
            };
            let r =
                ReassignablePartitionResponse::default().with_partition_index(p.partition_index);
            partitions.push(match result {
                Ok(()) => r,
                Err(e) => r
                    .with_error_code(e.code.code())
                    .with_error_message(Some(str_bytes(e.message))),
            });
        }
        responses.push(
            ReassignableTopicResponse::default()
                .with_name(topic_name(&topic))
                .with_partitions(partitions),
        );
    }
    Reply::now(ResponseKind::AlterPartitionReassignments(
        AlterPartitionReassignmentsResponse::default()
            .with_allow_replication_factor_change(req.allow_replication_factor_change)
            .with_responses(responses),
    ))
}

/// One partition of an AlterPartitionReassignments: `None` cancels (KIP-455), else a move.
async fn alter_one(
    broker: &Broker,
    scratch: &mut chronik_metadata::MetadataState,
    allow_rf_change: bool,
    topic: &str,
    partition: i32,
    target: Option<Vec<i32>>,
) -> Result<(), TopicError> {
    let Some(target) = target else {
        return reassign::cancel(broker, topic, partition).await.map(|_| ());
    };
    let rf = reassign::known(scratch, topic, partition)?.replicas.len();
    if !allow_rf_change && rf != target.len() {
        return Err(TopicError::new(
            ResponseError::InvalidReplicationFactor,
            "the move changes the replication factor and allowReplicationFactorChange is false",
        ));
    }
    reassign::check_move(broker, scratch, topic, partition, &target)?;
    reassign::start(broker, topic, partition, target)
        .await
        .map(|_| ())
}

pub fn list(broker: &Arc<Broker>, req: ListPartitionReassignmentsRequest, _version: i16) -> Reply {
    let state = broker.metadata();
    let wanted = |topic: &str, p: i32| match &req.topics {
        None => true,
        Some(ts) => ts
            .iter()
            .any(|t| topic_str(&t.name) == topic && t.partition_indexes.contains(&p)),
    };
    let mut topics: Vec<OngoingTopicReassignment> = Vec::new();
    for (topic, i, p) in reassign::running(&state) {
        if !wanted(&topic, i) {
            continue;
        }
        let ongoing = OngoingPartitionReassignment::default()
            .with_partition_index(i)
            .with_replicas(ids(&p.replicas))
            .with_adding_replicas(ids(&p.adding))
            .with_removing_replicas(ids(&p.removing));
        match topics.last_mut() {
            Some(t) if topic_str(&t.name) == topic => t.partitions.push(ongoing),
            _ => topics.push(
                OngoingTopicReassignment::default()
                    .with_name(topic_name(&topic))
                    .with_partitions(vec![ongoing]),
            ),
        }
    }
    Reply::now(ResponseKind::ListPartitionReassignments(
        ListPartitionReassignmentsResponse::default().with_topics(topics),
    ))
}
