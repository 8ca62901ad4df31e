//! Metadata: brokers, and topics with each partition's leader, replicas and ISR.
//! Unknown topics are auto-created when the client allows it and the broker is set to.

use std::sync::Arc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, ResponseKind};
use kafka_protocol::ResponseError;

use super::{str_bytes, topic_name, topic_str, Reply};
use crate::authz::{self, Resource};
use crate::broker::Broker;
use crate::session::Session;
use chronik_metadata::BrokerState;
use chronik_metadata::{MetadataState, PartitionInfo, TopicInfo};

pub async fn handle(
    broker: &Arc<Broker>,
    req: MetadataRequest,
    version: i16,
    session: &Session,
) -> Reply {
    // v4+ lets the client say whether to auto-create; before that it always could.
    let allow_create = version < 4 || req.allow_auto_topic_creation;
    // v8-v10 ask for the cluster's operations here; v11+ moved that to DescribeCluster.
    let cluster_ops = authz::field(
        (8..=10).contains(&version) && req.include_cluster_authorized_operations,
        Resource::Cluster,
    );
    let topic_ops = authz::field(req.include_topic_authorized_operations, Resource::Topic);
    let mut topics = match req.topics {
        None => all_topics(broker),
        Some(list) if list.is_empty() && version == 0 => all_topics(broker),
        Some(list) => {
            let mut out = Vec::with_capacity(list.len());
            for t in list {
                let state = broker.metadata();
                let name = match &t.name {
                    Some(n) => topic_str(n).to_string(),
                    None => match state.topic_by_id(&t.topic_id) {
                        Some(info) => info.name.clone(),
                        None => {
                            out.push(
                                MetadataResponseTopic::default()
                                    .with_topic_id(t.topic_id)
                                    .with_error_code(ResponseError::UnknownTopicId.code()),
                            );
                            continue;
                        }
                    },
                };
                out.push(match broker.get_or_auto_create(&name, allow_create).await {
                    Ok(Some(info)) => topic_response(&info, &broker.metadata()),
                    Ok(None) => MetadataResponseTopic::default()
                        .with_name(Some(topic_name(&name)))
                        .with_error_code(ResponseError::UnknownTopicOrPartition.code()),
                    Err(e) => MetadataResponseTopic::default()
                        .with_name(Some(topic_name(&name)))
                        .with_error_code(e.code.code()),
                });
            }
            out
        }
    };
    // Kafka sets it on every topic it answers, unknown ones included.
    for t in topics.iter_mut() {
        t.topic_authorized_operations = topic_ops;
    }
    let state = broker.metadata();
    let brokers = state
        .brokers
        .values()
        // Fenced brokers are left out: clients should not connect to them. So is a broker
        // without the client's listener, as in Kafka.
        .filter(|b| b.state != BrokerState::Fenced)
        .filter_map(|b| {
            let (host, port) = b.endpoint(session.listener)?;
            Some(
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(b.node_id))
                    .with_host(str_bytes(host))
                    .with_port(port)
                    .with_rack(b.rack.clone().map(str_bytes)),
            )
        })
        .collect();
    Reply::now(ResponseKind::Metadata(
        MetadataResponse::default()
            .with_brokers(brokers)
            .with_cluster_id(Some(str_bytes(broker.cluster_id().clone())))
            .with_controller_id(BrokerId(broker.controller_id()))
            .with_cluster_authorized_operations(cluster_ops)
            .with_topics(topics),
    ))
}

fn all_topics(broker: &Broker) -> Vec<MetadataResponseTopic> {
    let state = broker.metadata();
    state
        .topics
        .values()
        .map(|t| topic_response(t, &state))
        .collect()
}

/// A partition as clients see it: (error, leader, offline replicas). A partition whose
/// leader is fenced has no leader, as in Kafka: leader -1 with LEADER_NOT_AVAILABLE, and the
/// fenced replicas listed as offline (v5+). The state keeps the fenced leader, which leads
/// again if it comes back before another ISR member can. DescribeTopicPartitions answers
/// the same.
pub(super) fn partition_view(
    p: &PartitionInfo,
    state: &MetadataState,
) -> (i16, i32, Vec<BrokerId>) {
    let fenced = |id: i32| {
        state
            .brokers
            .get(&id)
            .is_none_or(|b| b.state == BrokerState::Fenced)
    };
    let (leader, error) = if fenced(p.leader) {
        (-1, ResponseError::LeaderNotAvailable.code())
    } else {
        (p.leader, 0)
    };
    let offline = p
        .replicas
        .iter()
        .filter(|r| fenced(**r))
        .map(|&r| BrokerId(r))
        .collect();
    (error, leader, offline)
}

fn topic_response(info: &TopicInfo, state: &MetadataState) -> MetadataResponseTopic {
    let partitions = info
        .partitions
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (error, leader, offline) = partition_view(p, state);
            MetadataResponsePartition::default()
                .with_partition_index(i as i32)
                .with_error_code(error)
                .with_leader_id(BrokerId(leader))
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(p.replicas.iter().map(|&r| BrokerId(r)).collect())
                .with_isr_nodes(p.isr.iter().map(|&r| BrokerId(r)).collect())
                .with_offline_replicas(offline)
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(&info.name)))
        .with_topic_id(info.id)
        .with_is_internal(info.internal)
        .with_partitions(partitions)
}
