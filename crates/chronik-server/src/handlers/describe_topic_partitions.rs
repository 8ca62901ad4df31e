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

#[cfg(test)]
mod tests {
    use super::*;
    use chronik_metadata::{BrokerInfo, BrokerState, PartitionInfo};

    /// Brokers 1 and 2 (2 fenced); topics "a" (3 partitions) and "b" (2), led by 1, replicas
    /// [1, 2], except b-1, led by the fenced broker 2.
    fn state() -> MetadataState {
        let mut s = MetadataState::new("c".into());
        for (id, state) in [(1, BrokerState::Alive), (2, BrokerState::Fenced)] {
            s.brokers.insert(
                id,
                BrokerInfo {
                    node_id: id,
                    host: "h".into(),
                    port: 9092,
                    listeners: Vec::new(),
                    rack: None,
                    rpc_addr: String::new(),
                    state,
                    incarnation: 0,
                },
            );
        }
        let partition = |leader| PartitionInfo {
            replicas: vec![1, 2],
            leader,
            leader_epoch: 4,
            isr: vec![leader],
            sealed: false,
            adding: vec![],
            removing: vec![],
        };
        for (name, leaders) in [("a", vec![1, 1, 1]), ("b", vec![1, 2])] {
            s.topics.insert(
                name.into(),
                TopicInfo {
                    name: name.into(),
                    id: uuid::Uuid::from_u128(name.len() as u128),
                    configs: Default::default(),
                    partitions: leaders.into_iter().map(partition).collect(),
                    internal: false,
                },
            );
        }
        s
    }

    /// (topic, partition indexes) of a page, and its cursor.
    type Page = (Vec<(String, Vec<i32>)>, Option<(String, i32)>);

    fn run(limit: i32, start: i32) -> Page {
        let names = vec!["a".to_string(), "b".to_string()];
        let first = |n: &str| if n == "a" { start } else { 0 };
        let r = page(&state(), &names, first, limit, true);
        let topics = r
            .topics
            .iter()
            .map(|t| {
                let name = t.name.as_ref().unwrap().0.to_string();
                (
                    name,
                    t.partitions.iter().map(|p| p.partition_index).collect(),
                )
            })
            .collect();
        let cursor = r
            .next_cursor
            .map(|c| (c.topic_name.0.to_string(), c.partition_index));
        (topics, cursor)
    }

    fn t(name: &str, parts: &[i32]) -> (String, Vec<i32>) {
        (name.to_string(), parts.to_vec())
    }

    #[test]
    fn pages_follow_kafkas_cursor_rules() {
        // Everything fits: no cursor.
        assert_eq!(
            run(2000, 0),
            (vec![t("a", &[0, 1, 2]), t("b", &[0, 1])], None)
        );
        // The limit ends inside "b": its next partition is the cursor.
        assert_eq!(
            run(4, 0),
            (
                vec![t("a", &[0, 1, 2]), t("b", &[0])],
                Some(("b".into(), 1))
            )
        );
        // The limit ends exactly with "a": the cursor is the start of "b".
        assert_eq!(run(3, 0), (vec![t("a", &[0, 1, 2])], Some(("b".into(), 0))));
        // Resuming inside "a".
        assert_eq!(run(2, 1), (vec![t("a", &[1, 2])], Some(("b".into(), 0))));
        // A zero limit answers only the cursor; a negative one nothing (as Kafka).
        assert_eq!(run(0, 0), (vec![], Some(("a".into(), 0))));
        assert_eq!(run(-1, 0), (vec![], None));
    }

    #[test]
    fn a_fenced_leader_is_no_leader_and_fenced_replicas_are_offline() {
        let r = page(&state(), &["b".to_string()], |_| 0, 2000, true);
        let p = &r.topics[0].partitions;
        assert_eq!((p[0].leader_id.0, p[0].error_code), (1, 0));
        assert_eq!((p[1].leader_id.0, p[1].error_code), (-1, 0));
        assert_eq!(p[1].leader_epoch, 4);
        assert_eq!(p[1].offline_replicas, vec![BrokerId(2)]);
        assert_eq!(p[1].eligible_leader_replicas, Some(vec![]));
    }
}
