//! Authorization in front of the handlers, one place for every API (so no handler checks
//! anything): a request is either answered with Kafka's authorization error at once, or served
//! with the resources the principal may not touch taken out, and those put back into the
//! answer with TOPIC_AUTHORIZATION_FAILED (or the group or cluster code) by a post step.
//! What each API needs is Kafka's (KafkaApis): WRITE to produce, READ to fetch, DESCRIBE to
//! see a topic, CREATE on the cluster or topic to create, DELETE, ALTER, DESCRIBE_CONFIGS,
//! ALTER_CONFIGS; groups need READ to join or commit, DESCRIBE to describe, DELETE to
//! delete; cluster administration needs ALTER or DESCRIBE on the cluster.

use chronik_auth::acl::{Operation, ResourceType as Rt, CLUSTER_NAME};
use chronik_metadata::MetadataState;
use kafka_protocol::messages::{RequestKind, ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::authorizer::Authorizer;

pub const TOPIC_DENIED: i16 = 29;
pub const GROUP_DENIED: i16 = 30;
pub const CLUSTER_DENIED: i16 = 31;
pub const TRANSACTIONAL_ID_DENIED: i16 = 53;

/// Puts the refused resources back into the handler's answer.
pub type Post = Box<dyn FnOnce(&mut ResponseKind) + Send>;

pub enum Guarded {
    /// Serve this (possibly narrowed) request, then apply the post step to its answer.
    Serve(RequestKind, Option<Post>),
    /// Refused as a whole: this is the answer.
    Answer(ResponseKind),
}

fn name(n: &TopicName) -> &str {
    n.0.as_str()
}

/// The topic's name: by name, or by id in the versions that address topics by id.
fn topic_name(state: &MetadataState, n: &TopicName, id: &Uuid) -> String {
    if !id.is_nil() {
        if let Some(t) = state.topic_by_id(id) {
            return t.name.clone();
        }
    }
    name(n).to_string()
}

/// Splits `items` into those `keep` allows and the rest.
fn split<T>(items: Vec<T>, mut keep: impl FnMut(&T) -> bool) -> (Vec<T>, Vec<T>) {
    items.into_iter().partition(|t| keep(t))
}

pub fn guard(az: &Authorizer, state: &MetadataState, body: RequestKind) -> Guarded {
    let topic_ok = |op, n: &str| az.allows(op, Rt::Topic, n);
    let cluster_ok = |op| az.allows(op, Rt::Cluster, CLUSTER_NAME);
    match body {
        RequestKind::Produce(r) => produce(az, state, r),
        RequestKind::Fetch(mut r) => {
            let (keep, denied) = split(std::mem::take(&mut r.topics), |t| {
                topic_ok(Operation::Read, &topic_name(state, &t.topic, &t.topic_id))
            });
            r.topics = keep;
            let post: Post = Box::new(move |resp| {
                if let ResponseKind::Fetch(f) = resp {
                    use kafka_protocol::messages::fetch_response::*;
                    for t in denied {
                        let parts = t.partitions.iter().map(|p| {
                            PartitionData::default()
                                .with_partition_index(p.partition)
                                .with_error_code(TOPIC_DENIED)
                                .with_high_watermark(-1)
                                .with_last_stable_offset(-1)
                                .with_log_start_offset(-1)
                                .with_records(Some(bytes::Bytes::new()))
                        });
                        f.responses.push(
                            FetchableTopicResponse::default()
                                .with_topic(t.topic)
                                .with_topic_id(t.topic_id)
                                .with_partitions(parts.collect()),
                        );
                    }
                }
            });
            Guarded::Serve(RequestKind::Fetch(r), Some(post))
        }
        RequestKind::ListOffsets(mut r) => {
            let (keep, denied) = split(std::mem::take(&mut r.topics), |t| {
                topic_ok(Operation::Describe, name(&t.name))
            });
            r.topics = keep;
            let post: Post = Box::new(move |resp| {
                if let ResponseKind::ListOffsets(l) = resp {
                    use kafka_protocol::messages::list_offsets_response::*;
                    for t in denied {
                        let parts = t.partitions.iter().map(|p| {
                            ListOffsetsPartitionResponse::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(TOPIC_DENIED)
                                .with_timestamp(-1)
                                .with_offset(-1)
                        });
                        l.topics.push(
                            ListOffsetsTopicResponse::default()
                                .with_name(t.name)
                                .with_partitions(parts.collect()),
                        );
                    }
                }
            });
            Guarded::Serve(RequestKind::ListOffsets(r), Some(post))
        }
        RequestKind::Metadata(r) => super::metadata::guard(az, r),
        RequestKind::CreateTopics(mut r) => {
            let cluster_create = az.check(Operation::Create, Rt::Cluster, CLUSTER_NAME);
            let (keep, denied) = split(std::mem::take(&mut r.topics), |t| {
                cluster_create || topic_ok(Operation::Create, name(&t.name))
            });
            r.topics = keep;
            let post: Post = Box::new(move |resp| {
                if let ResponseKind::CreateTopics(c) = resp {
                    use kafka_protocol::messages::create_topics_response::*;
                    for t in denied {
                        c.topics.push(
                            CreatableTopicResult::default()
                                .with_name(t.name)
                                .with_error_code(TOPIC_DENIED)
                                .with_num_partitions(-1)
                                .with_replication_factor(-1),
                        );
                    }
                }
            });
            Guarded::Serve(RequestKind::CreateTopics(r), Some(post))
        }
        other if super::guard_txn::handles(&other) => super::guard_txn::guard(az, other),
        other => super::guard_admin::guard(az, state, other, &topic_ok, &cluster_ok),
    }
}

/// Produce: WRITE on each topic (the others answered TOPIC_AUTHORIZATION_FAILED), and for a
/// transactional produce WRITE on its transactional id, else the whole request is refused with
/// TRANSACTIONAL_ID_AUTHORIZATION_FAILED (Kafka's KafkaApis.handleProduceRequest).
fn produce(
    az: &Authorizer,
    state: &MetadataState,
    mut r: kafka_protocol::messages::ProduceRequest,
) -> Guarded {
    let topic_ok = |op, n: &str| az.allows(op, Rt::Topic, n);
    if let Some(id) = &r.transactional_id {
        if !az.allows(Operation::Write, Rt::TransactionalId, id.0.as_str()) {
            return Guarded::Answer(ResponseKind::Produce(produce_refused(
                &r,
                TRANSACTIONAL_ID_DENIED,
            )));
        }
    }
    let (keep, denied) = split(std::mem::take(&mut r.topic_data), |t| {
        topic_ok(Operation::Write, &topic_name(state, &t.name, &t.topic_id))
    });
    r.topic_data = keep;
    let post: Post = Box::new(move |resp| {
        if let ResponseKind::Produce(p) = resp {
            use kafka_protocol::messages::produce_response::*;
            for t in denied {
                p.responses.push(
                    TopicProduceResponse::default()
                        .with_name(t.name)
                        .with_topic_id(t.topic_id)
                        .with_partition_responses(
                            t.partition_data
                                .iter()
                                .map(|d| {
                                    PartitionProduceResponse::default()
                                        .with_index(d.index)
                                        .with_error_code(TOPIC_DENIED)
                                        .with_base_offset(-1)
                                        .with_log_append_time_ms(-1)
                                        .with_log_start_offset(-1)
                                })
                                .collect(),
                        ),
                );
            }
        }
    });
    Guarded::Serve(RequestKind::Produce(r), Some(post))
}

/// A Produce answer refusing every partition of `r` with `code`.
fn produce_refused(
    r: &kafka_protocol::messages::ProduceRequest,
    code: i16,
) -> kafka_protocol::messages::ProduceResponse {
    use kafka_protocol::messages::produce_response::*;
    let topics = r.topic_data.iter().map(|t| {
        let parts = t.partition_data.iter().map(|d| {
            PartitionProduceResponse::default()
                .with_index(d.index)
                .with_error_code(code)
                .with_base_offset(-1)
                .with_log_append_time_ms(-1)
                .with_log_start_offset(-1)
        });
        TopicProduceResponse::default()
            .with_name(t.name.clone())
            .with_topic_id(t.topic_id)
            .with_partition_responses(parts.collect())
    });
    kafka_protocol::messages::ProduceResponse::default().with_responses(topics.collect())
}

/// A topic name as the wire wants it.
pub fn wire_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chronik_auth::acl::{AclBinding, PatternType, Permission};
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, TransactionalId};

    use super::*;

    /// Kafka: a produce with a transactional id needs WRITE on it (besides WRITE on the
    /// topics), else every partition answers TRANSACTIONAL_ID_AUTHORIZATION_FAILED.
    #[test]
    fn a_transactional_produce_needs_write_on_its_transactional_id() {
        let grant = |rt, name: &str| AclBinding {
            resource_type: rt,
            resource_name: name.into(),
            pattern_type: PatternType::Literal,
            principal: "User:p".into(),
            host: "*".into(),
            operation: Operation::Write,
            permission: Permission::Allow,
        };
        let mut state = MetadataState::new("c".into());
        state.acls.insert(grant(Rt::Topic, "t"));
        let produce = ProduceRequest::default()
            .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("tx"))))
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(wire_name("t"))
                .with_partition_data(
                    vec![PartitionProduceData::default().with_index(0)],
                )]);
        let run = |state: &MetadataState| {
            let az = Authorizer::for_test(Arc::new(state.clone()), "User:p");
            guard(&az, state, RequestKind::Produce(produce.clone()))
        };
        let Guarded::Answer(ResponseKind::Produce(r)) = run(&state) else {
            panic!("not refused without WRITE on the transactional id");
        };
        let code = r.responses[0].partition_responses[0].error_code;
        assert_eq!(code, TRANSACTIONAL_ID_DENIED);
        state.acls.insert(grant(Rt::TransactionalId, "tx"));
        let Guarded::Serve(RequestKind::Produce(r), _) = run(&state) else {
            panic!("refused with WRITE on the transactional id");
        };
        assert_eq!(r.topic_data.len(), 1);
    }
}
