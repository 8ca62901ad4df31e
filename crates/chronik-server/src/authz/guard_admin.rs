//! The guard for topic administration and the other per-topic APIs (see [`super::guard`]).

use chronik_auth::acl::{Operation, ResourceType as Rt, CLUSTER_NAME};
use chronik_metadata::MetadataState;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::guard::{wire_name, Guarded, Post, CLUSTER_DENIED, TOPIC_DENIED};
use super::{supported, Authorizer, Resource, NOT_REQUESTED};

/// Kafka's ConfigResource types: 2 topic, 4 broker, 8 broker logger.
const TOPIC_RESOURCE: i8 = 2;

/// A config resource's check: topics by name, brokers (and loggers) on the cluster.
fn config_denied(az: &Authorizer, op: Operation, resource_type: i8, name: &str) -> Option<i16> {
    if resource_type == TOPIC_RESOURCE {
        (!az.allows(op, Rt::Topic, name)).then_some(TOPIC_DENIED)
    } else {
        (!az.allows(op, Rt::Cluster, CLUSTER_NAME)).then_some(CLUSTER_DENIED)
    }
}

/// The three config APIs alike: refused resources are taken out of the request and answered
/// with their error in the response's `$list`, one `$Entry` each.
macro_rules! configs {
    ($az:expr, $r:ident, $Kind:ident, $Op:ident, $list:ident, $Entry:ty) => {{
        let mut r = $r;
        let denied = narrow_configs($az, &mut r.resources, Operation::$Op, |c| {
            (c.resource_type, &c.resource_name)
        });
        let post: Post = Box::new(move |resp| {
            if let ResponseKind::$Kind(a) = resp {
                a.$list.extend(denied.into_iter().map(|(rt, name, code)| {
                    <$Entry>::default()
                        .with_resource_type(rt)
                        .with_resource_name(name)
                        .with_error_code(code)
                }));
            }
        });
        Guarded::Serve(RequestKind::$Kind(r), Some(post))
    }};
}

pub fn guard(
    az: &Authorizer,
    state: &MetadataState,
    body: RequestKind,
    topic_ok: &dyn Fn(Operation, &str) -> bool,
    cluster_ok: &dyn Fn(Operation) -> bool,
) -> Guarded {
    let serve = |r, post| Guarded::Serve(r, Some(post));
    match body {
        RequestKind::DeleteTopics(mut r) => {
            let post = delete_topics(&mut r, state, topic_ok);
            serve(RequestKind::DeleteTopics(r), post)
        }
        RequestKind::CreatePartitions(mut r) => {
            let post = create_partitions(&mut r, topic_ok);
            serve(RequestKind::CreatePartitions(r), post)
        }
        RequestKind::DeleteRecords(mut r) => {
            let post = delete_records(&mut r, topic_ok);
            serve(RequestKind::DeleteRecords(r), post)
        }
        RequestKind::DescribeConfigs(r) => {
            use describe_configs_response::DescribeConfigsResult as Entry;
            configs!(az, r, DescribeConfigs, DescribeConfigs, results, Entry)
        }
        RequestKind::AlterConfigs(r) => {
            use alter_configs_response::AlterConfigsResourceResponse as Entry;
            configs!(az, r, AlterConfigs, AlterConfigs, responses, Entry)
        }
        RequestKind::IncrementalAlterConfigs(r) => {
            use incremental_alter_configs_response::AlterConfigsResourceResponse as Entry;
            configs!(
                az,
                r,
                IncrementalAlterConfigs,
                AlterConfigs,
                responses,
                Entry
            )
        }
        RequestKind::OffsetForLeaderEpoch(mut r) => {
            let post = offset_for_leader_epoch(&mut r, topic_ok);
            serve(RequestKind::OffsetForLeaderEpoch(r), post)
        }
        RequestKind::DescribeProducers(mut r) => {
            let post = describe_producers(&mut r, topic_ok);
            serve(RequestKind::DescribeProducers(r), post)
        }
        RequestKind::DescribeTopicPartitions(mut r) => {
            let post = describe_topic_partitions(az, &mut r, topic_ok);
            serve(RequestKind::DescribeTopicPartitions(r), post)
        }
        other => super::guard_cluster::guard(az, other, cluster_ok),
    }
}

/// Takes out the config resources `op` is refused on: (type, name, error code) of each.
fn narrow_configs<T>(
    az: &Authorizer,
    resources: &mut Vec<T>,
    op: Operation,
    key: impl Fn(&T) -> (i8, &StrBytes),
) -> Vec<(i8, StrBytes, i16)> {
    let mut denied = Vec::new();
    resources.retain(|c| {
        let (rt, name) = key(c);
        let code = config_denied(az, op, rt, name.as_str());
        if let Some(code) = code {
            denied.push((rt, name.clone(), code));
        }
        code.is_none()
    });
    denied
}

fn delete_topics(
    r: &mut DeleteTopicsRequest,
    state: &MetadataState,
    topic_ok: &dyn Fn(Operation, &str) -> bool,
) -> Post {
    let mut denied: Vec<(String, uuid::Uuid)> = Vec::new();
    r.topic_names.retain(|n| {
        let ok = topic_ok(Operation::Delete, n.0.as_str());
        if !ok {
            denied.push((n.0.to_string(), uuid::Uuid::nil()));
        }
        ok
    });
    r.topics.retain(|t| {
        let name = match &t.name {
            Some(n) => n.0.to_string(),
            None => state
                .topic_by_id(&t.topic_id)
                .map_or_else(String::new, |i| i.name.clone()),
        };
        let ok = name.is_empty() || topic_ok(Operation::Delete, &name);
        if !ok {
            denied.push((name, t.topic_id));
        }
        ok
    });
    Box::new(move |resp| {
        if let ResponseKind::DeleteTopics(d) = resp {
            use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
            d.responses.extend(denied.into_iter().map(|(name, id)| {
                DeletableTopicResult::default()
                    .with_name(Some(wire_name(&name)))
                    .with_topic_id(id)
                    .with_error_code(TOPIC_DENIED)
            }));
        }
    })
}

fn create_partitions(
    r: &mut CreatePartitionsRequest,
    topic_ok: &dyn Fn(Operation, &str) -> bool,
) -> Post {
    let (keep, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut r.topics)
        .into_iter()
        .partition(|t| topic_ok(Operation::Alter, t.name.0.as_str()));
    r.topics = keep;
    Box::new(move |resp| {
        if let ResponseKind::CreatePartitions(c) = resp {
            use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
            c.results.extend(denied.into_iter().map(|t| {
                CreatePartitionsTopicResult::default()
                    .with_name(t.name)
                    .with_error_code(TOPIC_DENIED)
            }));
        }
    })
}

fn delete_records(
    r: &mut DeleteRecordsRequest,
    topic_ok: &dyn Fn(Operation, &str) -> bool,
) -> Post {
    let (keep, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut r.topics)
        .into_iter()
        .partition(|t| topic_ok(Operation::Delete, t.name.0.as_str()));
    r.topics = keep;
    Box::new(move |resp| {
        if let ResponseKind::DeleteRecords(d) = resp {
            use kafka_protocol::messages::delete_records_response::*;
            for t in denied {
                let parts = t.partitions.iter().map(|p| {
                    DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index)
                        .with_low_watermark(-1)
                        .with_error_code(TOPIC_DENIED)
                });
                d.topics.push(
                    DeleteRecordsTopicResult::default()
                        .with_name(t.name)
                        .with_partitions(parts.collect()),
                );
            }
        }
    })
}

fn offset_for_leader_epoch(
    r: &mut OffsetForLeaderEpochRequest,
    topic_ok: &dyn Fn(Operation, &str) -> bool,
) -> Post {
    let (keep, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut r.topics)
        .into_iter()
        .partition(|t| topic_ok(Operation::Describe, t.topic.0.as_str()));
    r.topics = keep;
    Box::new(move |resp| {
        if let ResponseKind::OffsetForLeaderEpoch(o) = resp {
            use kafka_protocol::messages::offset_for_leader_epoch_response::*;
            for t in denied {
                let parts = t.partitions.iter().map(|p| {
                    EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_error_code(TOPIC_DENIED)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1)
                });
                o.topics.push(
                    OffsetForLeaderTopicResult::default()
                        .with_topic(t.topic)
                        .with_partitions(parts.collect()),
                );
            }
        }
    })
}

fn describe_producers(
    r: &mut DescribeProducersRequest,
    topic_ok: &dyn Fn(Operation, &str) -> bool,
) -> Post {
    let (keep, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut r.topics)
        .into_iter()
        .partition(|t| topic_ok(Operation::Read, t.name.0.as_str()));
    r.topics = keep;
    Box::new(move |resp| {
        if let ResponseKind::DescribeProducers(d) = resp {
            use kafka_protocol::messages::describe_producers_response::*;
            for t in denied {
                let parts = t.partition_indexes.iter().map(|p| {
                    PartitionResponse::default()
                        .with_partition_index(*p)
                        .with_error_code(TOPIC_DENIED)
                });
                d.topics.push(
                    TopicResponse::default()
                        .with_name(t.name)
                        .with_partitions(parts.collect()),
                );
            }
        }
    })
}

fn describe_topic_partitions(
    az: &Authorizer,
    r: &mut DescribeTopicPartitionsRequest,
    topic_ok: &dyn Fn(Operation, &str) -> bool,
) -> Post {
    let (keep, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut r.topics)
        .into_iter()
        .partition(|t| topic_ok(Operation::Describe, t.name.0.as_str()));
    r.topics = keep;
    let az = az.clone();
    Box::new(move |resp| {
        if let ResponseKind::DescribeTopicPartitions(d) = resp {
            use kafka_protocol::messages::describe_topic_partitions_response::*;
            d.topics.retain(|t| {
                t.name
                    .as_ref()
                    .is_none_or(|n| az.check(Operation::Describe, Rt::Topic, n.0.as_str()))
            });
            for t in d.topics.iter_mut() {
                if t.topic_authorized_operations != NOT_REQUESTED {
                    let name = t.name.as_ref().map_or("", |n| n.0.as_str());
                    t.topic_authorized_operations =
                        az.operations(Rt::Topic, name, supported(Resource::Topic));
                }
            }
            d.topics.extend(denied.into_iter().map(|t| {
                DescribeTopicPartitionsResponseTopic::default()
                    .with_name(Some(t.name))
                    .with_error_code(TOPIC_DENIED)
            }));
        }
    })
}
