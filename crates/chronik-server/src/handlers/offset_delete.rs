//! OffsetDelete: removes committed offsets of a group (tombstones in `__consumer_offsets`).
//! As in Kafka, offsets of topics the group's members are subscribed to are kept and answered
//! GROUP_SUBSCRIBED_TO_TOPIC.

use std::sync::Arc;

use chronik_groups::membership::code;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse, ResponseKind};
use kafka_protocol::ResponseError;

use super::{topic_str, Reply};
use crate::broker::Broker;

pub async fn handle(broker: &Arc<Broker>, req: OffsetDeleteRequest, _version: i16) -> Reply {
    let group = req.group_id.0.to_string();
    let top = |code: i16| {
        Reply::now(ResponseKind::OffsetDelete(
            OffsetDeleteResponse::default().with_error_code(code),
        ))
    };
    if group.is_empty() {
        return top(code::INVALID_GROUP_ID);
    }
    let subscribed = broker.groups.members().subscribed_topics(&group);
    if subscribed.is_none() && !broker.groups.offsets().has_group(&group) {
        return top(code::GROUP_ID_NOT_FOUND);
    }
    let state = broker.metadata();
    let mut deletes = Vec::new();
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let name = topic_str(&t.name).to_string();
        let info = state.topic(&name);
        let parts = t
            .partitions
            .iter()
            .map(|p| {
                let known = info.is_some_and(|i| {
                    p.partition_index >= 0 && (p.partition_index as usize) < i.partitions.len()
                });
                let code = if !known {
                    ResponseError::UnknownTopicOrPartition.code()
                } else if subscribed.as_ref().is_some_and(|s| s.contains(&name)) {
                    ResponseError::GroupSubscribedToTopic.code()
                } else {
                    deletes.push((name.clone(), p.partition_index));
                    0
                };
                OffsetDeleteResponsePartition::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(code)
            })
            .collect();
        topics.push(
            OffsetDeleteResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(parts),
        );
    }
    let error = match broker
        .groups
        .offsets()
        .delete(&broker.partitions, &group, &deletes)
        .await
    {
        Ok(()) => 0,
        Err(e) => e.code().code(),
    };
    Reply::now(ResponseKind::OffsetDelete(
        OffsetDeleteResponse::default()
            .with_error_code(error)
            .with_topics(topics),
    ))
}
