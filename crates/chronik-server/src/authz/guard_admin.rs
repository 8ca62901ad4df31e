//! The guard for topic administration and the other per-topic APIs (see [`super::guard`]).

use chronik_auth::acl::{Operation, ResourceType as Rt, CLUSTER_NAME};
use chronik_metadata::MetadataState;
use kafka_protocol::messages::{RequestKind, ResponseKind};

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

pub fn guard(
    az: &Authorizer,
    state: &MetadataState,
    body: RequestKind,
    topic_ok: &dyn Fn(Operation, &str) -> bool,
    cluster_ok: &dyn Fn(Operation) -> bool,
) -> Guarded {
    match body {
        RequestKind::DeleteTopics(mut r) => {
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
            let post: Post = Box::new(move |resp| {
                if let ResponseKind::DeleteTopics(d) = resp {
                    use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
                    for (name, id) in denied {
                        d.responses.push(
                            DeletableTopicResult::default()
                                .with_name(Some(wire_name(&name)))
                                .with_topic_id(id)
                                .with_error_code(TOPIC_DENIED),
                        );
                    }
                }
            });
            Guarded::Serve(RequestKind::DeleteTopics(r), Some(post))
        }
        RequestKind::CreatePartitions(mut r) => {
            let (keep, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut r.topics)
                .into_iter()
                .partition(|t| topic_ok(Operation::Alter, t.name.0.as_str()));
            r.topics = keep;
            let post: Post = Box::new(move |resp| {
                if let ResponseKind::CreatePartitions(c) = resp {
                    use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
                    for t in denied {
                        c.results.push(
                            CreatePartitionsTopicResult::default()
                                .with_name(t.name)
                                .with_error_code(TOPIC_DENIED),
                        );
                    }
                }
            });
            Guarded::Serve(RequestKind::CreatePartitions(r), Some(post))
        }
        RequestKind::DeleteRecords(mut r) => {
            let (keep, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut r.topics)
                .into_iter()
                .partition(|t| topic_ok(Operation::Delete, t.name.0.as_str()));
            r.topics = keep;
            let post: Post = Box::new(move |resp| {
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
            });
            Guarded::Serve(RequestKind::DeleteRecords(r), Some(post))
        }
        RequestKind::DescribeConfigs(mut r) => {
            let mut denied = Vec::new();
            r.resources.retain(|c| {
                let code = config_denied(
                    az,
                    Operation::DescribeConfigs,
                    c.resource_type,
                    c.resource_name.as_str(),
                );
                if let Some(code) = code {
                    denied.push((c.resource_type, c.resource_name.clone(), code));
                }
                code.is_none()
            });
            let post: Post = Box::new(move |resp| {
                if let ResponseKind::DescribeConfigs(d) = resp {
                    use kafka_protocol::messages::describe_configs_response::DescribeConfigsResult;
                    for (rt, name, code) in denied {
                        d.results.push(
                            DescribeConfigsResult::default()
                                .with_resource_type(rt)
                                .with_resource_name(name)
                                .with_error_code(code),
                        );
                    }
                }
            });
            Guarded::Serve(RequestKind::DescribeConfigs(r), Some(post))
        }
        RequestKind::AlterConfigs(mut r) => {
            let mut denied = Vec::new();
            r.resources.retain(|c| {
                let code = config_denied(
                    az,
                    Operation::AlterConfigs,
                    c.resource_type,
                    c.resource_name.as_str(),
                );
                if let Some(code) = code {
                    denied.push((c.resource_type, c.resource_name.clone(), code));
                }
                code.is_none()
            });
            let post: Post = Box::new(move |resp| {
                if let ResponseKind::AlterConfigs(a) = resp {
                    use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
                    for (rt, name, code) in denied {
                        a.responses.push(
                            AlterConfigsResourceResponse::default()
                                .with_resource_type(rt)
                                .with_resource_name(name)
                                .with_error_code(code),
                        );
                    }
                }
            });
            Guarded::Serve(RequestKind::AlterConfigs(r), Some(post))
        }
        RequestKind::IncrementalAlterConfigs(mut r) => {
            let mut denied = Vec::new();
            r.resources.retain(|c| {
                let code = config_denied(
                    az,
                    Operation::AlterConfigs,
                    c.resource_type,
                    c.resource_name.as_str(),
                );
                if let Some(code) = code {
                    denied.push((c.resource_type, c.resource_name.clone(), code));
                }
                code.is_none()
            });
            let post: Post = Box::new(move |resp| {
                if let ResponseKind::IncrementalAlterConfigs(a) = resp {
                    use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
                    for (rt, name, code) in denied {
                        a.responses.push(
                            AlterConfigsResourceResponse::default()
                                .with_resource_type(rt)
                                .with_resource_name(name)
                                .with_error_code(code),
                        );
                    }
                }
            });
            Guarded::Serve(RequestKind::IncrementalAlterConfigs(r), Some(post))
        }
        RequestKind::OffsetForLeaderEpoch(mut r) => {
            let (keep, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut r.topics)
                .into_iter()
                .partition(|t| topic_ok(Operation::Describe, t.topic.0.as_str()));
            r.topics = keep;
            let post: Post = Box::new(move |resp| {
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
            });
            Guarded::Serve(RequestKind::OffsetForLeaderEpoch(r), Some(post))
        }
        RequestKind::DescribeProducers(mut r) => {
            let (keep, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut r.topics)
                .into_iter()
                .partition(|t| topic_ok(Operation::Read, t.name.0.as_str()));
            r.topics = keep;
            let post: Post = Box::new(move |resp| {
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
            });
            Guarded::Serve(RequestKind::DescribeProducers(r), Some(post))
        }
        RequestKind::DescribeTopicPartitions(mut r) => {
            let (keep, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut r.topics)
                .into_iter()
                .partition(|t| topic_ok(Operation::Describe, t.name.0.as_str()));
            r.topics = keep;
            let az = az.clone();
            let post: Post = Box::new(move |resp| {
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
                    for t in denied {
                        d.topics.push(
                            DescribeTopicPartitionsResponseTopic::default()
                                .with_name(Some(t.name))
                                .with_error_code(TOPIC_DENIED),
                        );
                    }
                }
            });
            Guarded::Serve(RequestKind::DescribeTopicPartitions(r), Some(post))
        }
        other => super::guard_cluster::guard(az, other, cluster_ok),
    }
}
