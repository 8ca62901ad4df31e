//! OffsetFetch: committed offsets of one group (v1-v7) or of several (v8+). A partition with
//! nothing committed answers offset -1 and no error, as in Kafka; `topics` null asks for every
//! committed partition of the group. v9's member id and epoch (KIP-848) are ignored for a
//! classic group, as Kafka does (`ClassicGroup.validateOffsetFetch` checks neither). With
//! require_stable (v7+, KIP-447), a partition with transactional offsets not yet committed or
//! aborted answers UNSTABLE_OFFSET_COMMIT (the client retries).

use std::sync::Arc;

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, ResponseKind, TopicName};
use kafka_protocol::ResponseError;

use super::{str_bytes, topic_name, topic_str, Reply};
use crate::broker::Broker;

/// One partition's answer, before it is put in the version's response shape.
struct Answer {
    partition: i32,
    /// UNSTABLE_OFFSET_COMMIT for a partition an open transaction holds an offset for, when
    /// the client asked for stable offsets only (KIP-447: a read_committed consumer must not
    /// start from an offset that transaction may still replace).
    error: i16,
    offset: i64,
    leader_epoch: i32,
    metadata: String,
}

/// The offsets of `group`: the asked partitions, or every committed one when `asked` is None.
fn lookup(
    broker: &Broker,
    group: &str,
    asked: Option<Vec<(TopicName, Vec<i32>)>>,
    require_stable: bool,
) -> Vec<(TopicName, Vec<Answer>)> {
    let offsets = broker.groups.offsets();
    let mut answers = lookup_committed(broker, group, asked);
    if require_stable {
        for (name, parts) in &mut answers {
            for a in parts.iter_mut() {
                if offsets.has_pending(group, topic_str(name), a.partition) {
                    a.error = ResponseError::UnstableOffsetCommit.code();
                    a.offset = -1;
                    a.leader_epoch = -1;
                }
            }
        }
    }
    answers
}

fn lookup_committed(
    broker: &Broker,
    group: &str,
    asked: Option<Vec<(TopicName, Vec<i32>)>>,
) -> Vec<(TopicName, Vec<Answer>)> {
    let offsets = broker.groups.offsets();
    match asked {
        Some(topics) => topics
            .into_iter()
            .map(|(name, parts)| {
                let answers = parts
                    .into_iter()
                    .map(|p| match offsets.get(group, topic_str(&name), p) {
                        Some(v) => Answer {
                            partition: p,
                            error: 0,
                            offset: v.offset,
                            leader_epoch: v.leader_epoch,
                            metadata: v.metadata,
                        },
                        None => Answer {
                            partition: p,
                            error: 0,
                            offset: -1,
                            leader_epoch: -1,
                            metadata: String::new(),
                        },
                    })
                    .collect();
                (name, answers)
            })
            .collect(),
        None => offsets
            .group(group)
            .into_iter()
            .map(|(t, parts)| {
                let answers = parts
                    .into_iter()
                    .map(|(p, v)| Answer {
                        partition: p,
                        error: 0,
                        offset: v.offset,
                        leader_epoch: v.leader_epoch,
                        metadata: v.metadata,
                    })
                    .collect();
                (topic_name(&t), answers)
            })
            .collect(),
    }
}

fn group_error(broker: &Broker, group: &str) -> i16 {
    if group.is_empty() {
        ResponseError::InvalidGroupId.code()
    } else if !broker.groups.is_coordinator(group) {
        ResponseError::NotCoordinator.code()
    } else {
        0
    }
}

pub fn handle(broker: &Arc<Broker>, req: OffsetFetchRequest, version: i16) -> Reply {
    let resp = if version >= 8 {
        let groups = req
            .groups
            .into_iter()
            .map(|g| {
                let id = g.group_id.0.to_string();
                let asked = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name, t.partition_indexes))
                        .collect()
                });
                let topics = lookup(broker, &id, asked, req.require_stable)
                    .into_iter()
                    .map(|(name, answers)| {
                        OffsetFetchResponseTopics::default()
                            .with_name(name)
                            .with_partitions(
                                answers
                                    .into_iter()
                                    .map(|a| {
                                        OffsetFetchResponsePartitions::default()
                                            .with_error_code(a.error)
                                            .with_partition_index(a.partition)
                                            .with_committed_offset(a.offset)
                                            .with_committed_leader_epoch(a.leader_epoch)
                                            .with_metadata(Some(str_bytes(a.metadata)))
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                OffsetFetchResponseGroup::default()
                    .with_error_code(group_error(broker, &id))
                    .with_group_id(g.group_id)
                    .with_topics(topics)
            })
            .collect();
        OffsetFetchResponse::default().with_groups(groups)
    } else {
        let id = req.group_id.0.to_string();
        let asked = req.topics.map(|ts| {
            ts.into_iter()
                .map(|t| (t.name, t.partition_indexes))
                .collect()
        });
        let error = group_error(broker, &id);
        // v0 and v1 have no top-level error code: the partitions carry it.
        let partition_error = if version < 2 { error } else { 0 };
        let topics = lookup(broker, &id, asked, req.require_stable)
            .into_iter()
            .map(|(name, answers)| {
                OffsetFetchResponseTopic::default()
                    .with_name(name)
                    .with_partitions(
                        answers
                            .into_iter()
                            .map(|a| {
                                OffsetFetchResponsePartition::default()
                                    .with_error_code(if a.error != 0 {
                                        a.error
                                    } else {
                                        partition_error
                                    })
                                    .with_partition_index(a.partition)
                                    .with_committed_offset(a.offset)
                                    .with_committed_leader_epoch(a.leader_epoch)
                                    .with_metadata(Some(str_bytes(a.metadata)))
                            })
                            .collect(),
                    )
            })
            .collect();
        let resp = OffsetFetchResponse::default().with_topics(topics);
        if version >= 2 {
            resp.with_error_code(error)
        } else {
            resp
        }
    };
    Reply::now(ResponseKind::OffsetFetch(resp))
}
