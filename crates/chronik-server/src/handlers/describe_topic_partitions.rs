//! DescribeTopicPartitions (KIP-966): Metadata's topic descriptions, paginated. Topics are
//! answered in name order, at most `response_partition_limit` partitions per answer (and at
//! most Kafka's `max.request.partition.size.limit`, 2000); `next_cursor` names the first
//! partition left out, and a request that carries it resumes there. Kafka's handler
//! (DescribeTopicPartitionsRequestHandler + KRaftMetadataCache) is the model, rule for rule.

use std::collections::BTreeSet;
use std::sync::Arc;

use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, ResponseKind,
};
use kafka_protocol::ResponseError;

use super::metadata::partition_view;
use super::{topic_name, topic_str, Reply};
use crate::authz::{self, Resource};
use crate::broker::Broker;
use chronik_metadata::{MetadataState, TopicInfo};

/// Kafka's `max.request.partition.size.limit` default: the most partitions in one answer,
/// whatever the client asks for.
pub const MAX_PARTITIONS_PER_RESPONSE: i32 = 2000;

pub fn handle(broker: &Arc<Broker>, req: DescribeTopicPartitionsRequest, _version: i16) -> Reply {
    let state = broker.metadata();
    let fetch_all = req.topics.is_empty();
    let cursor_topic = req
        .cursor
        .as_ref()
        .map(|c| topic_str(&c.topic_name).to_string())
        .unwrap_or_default();
    // Topics from the cursor's on, in name order, each once.
    let names: BTreeSet<String> = if fetch_all {
        state.topics.keys().cloned().collect()
    } else {
        req.topics
            .iter()
            .map(|t| topic_str(&t.name).to_string())
            .collect()
    };
    let names: Vec<String> = names.into_iter().filter(|n| *n >= cursor_topic).collect();
    if req.cursor.is_some() && !fetch_all && !names.contains(&cursor_topic) {
        // Kafka throws InvalidRequestException, answered as that error on every topic asked.
        let topics = req
            .topics
            .iter()
            .map(|t| {
                DescribeTopicPartitionsResponseTopic::default()
                    .with_name(Some(t.name.clone()))
                    .with_error_code(ResponseError::InvalidRequest.code())
            })
            .collect();
        return Reply::now(ResponseKind::DescribeTopicPartitions(
            DescribeTopicPartitionsResponse::default().with_topics(topics),
        ));
    }
    let first_partition = |name: &str| match &req.cursor {
        Some(c) if name == cursor_topic => c.partition_index,
        _ => 0,
    };
    let limit = req
        .response_partition_limit
        .min(MAX_PARTITIONS_PER_RESPONSE);
    let mut resp = page(&state, &names, first_partition, limit, fetch_all);
    // Set on every topic answered, as Kafka does (this API has no include flag).
    for t in resp.topics.iter_mut() {
        t.topic_authorized_operations = authz::authorized_operations(Resource::Topic);
    }
    Reply::now(ResponseKind::DescribeTopicPartitions(resp))
}

/// One page: whole topics while the partition budget lasts; the topic that does not fit is
/// answered up to the budget and named, with its next partition, in `next_cursor`.
fn page(
    state: &MetadataState,
    names: &[String],
    first_partition: impl Fn(&str) -> i32,
    limit: i32,
    fetch_all: bool,
) -> DescribeTopicPartitionsResponse {
    let mut remaining = limit;
    let mut resp = DescribeTopicPartitionsResponse::default();
    for name in names {
        if remaining < 0 {
            // Kafka answers nothing for a negative limit (neither branch of its loop runs).
            break;
        }
        if remaining == 0 {
            // The cursor points at the start of the next topic (which may not exist).
            resp.next_cursor = Some(
                Cursor::default()
                    .with_topic_name(topic_name(name))
                    .with_partition_index(0),
            );
            break;
        }
        let Some(info) = state.topic(name) else {
            if !fetch_all {
                let code = match chronik_metadata::topic_name::validate(name) {
                    Ok(()) => ResponseError::UnknownTopicOrPartition,
                    Err(_) => ResponseError::InvalidTopicException,
                };
                resp.topics.push(
                    DescribeTopicPartitionsResponseTopic::default()
                        .with_name(Some(topic_name(name)))
                        .with_error_code(code.code()),
                );
            }
            continue;
        };
        let start = first_partition(name).max(0);
        let count = info.partitions.len() as i32;
        let upper = count.min(start.saturating_add(remaining));
        let partitions = partitions(info, state, start, upper);
        remaining -= partitions.len() as i32;
        resp.topics.push(
            DescribeTopicPartitionsResponseTopic::default()
                .with_name(Some(topic_name(name)))
                .with_topic_id(info.id)
                .with_is_internal(info.internal)
                .with_partitions(partitions),
        );
        if upper < count {
            resp.next_cursor = Some(
                Cursor::default()
                    .with_topic_name(topic_name(name))
                    .with_partition_index(upper),
            );
            break;
        }
    }
    resp
}

/// Partitions `start..upper` of a topic, as Metadata describes them (leader -1 when the
/// leader is fenced, fenced replicas offline), without Metadata's per-partition error:
/// Kafka answers NONE here. No eligible leader replicas (KIP-966's ELR is not kept): empty.
fn partitions(
    info: &TopicInfo,
    state: &MetadataState,
    start: i32,
    upper: i32,
) -> Vec<DescribeTopicPartitionsResponsePartition> {
    (start..upper)
        .filter_map(|i| Some((i, info.partitions.get(usize::try_from(i).ok()?)?)))
        .map(|(i, p)| {
            let (_, leader, offline) = partition_view(p, state);
            DescribeTopicPartitionsResponsePartition::default()
                .with_partition_index(i)
                .with_leader_id(BrokerId(leader))
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(p.replicas.iter().map(|&r| BrokerId(r)).collect())
                .with_isr_nodes(p.isr.iter().map(|&r| BrokerId(r)).collect())
                .with_eligible_leader_replicas(Some(Vec::new()))
                .with_last_known_elr(Some(Vec::new()))
                .with_offline_replicas(offline)
        })
        .collect()
}
