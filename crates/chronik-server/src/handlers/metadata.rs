//! Metadata: brokers, and topics with each partition's leader, replicas and ISR.
//! Unknown topics are auto-created when the client allows it and the broker is set to.

use std::sync::Arc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, ResponseKind};
use kafka_protocol::ResponseError;

use super::{str_bytes, topic_name, topic_str, Reply};
use crate::broker::Broker;
use chronik_metadata::BrokerState;
use chronik_metadata::{MetadataState, TopicInfo};

pub async fn handle(broker: &Arc<Broker>, req: MetadataRequest, version: i16) -> Reply {
    // v4+ lets the client say whether to auto-create; before that it always could.
    let allow_create = version < 4 || req.allow_auto_topic_creation;
    let topics = match req.topics {
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
    let state = broker.metadata();
    let brokers = state
        .brokers
        .values()
        // Fenced brokers are left out: clients should not connect to them.
        .filter(|b| b.state != BrokerState::Fenced)
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.node_id))
                .with_host(str_bytes(b.host.clone()))
                .with_port(b.port)
                .with_rack(b.rack.clone().map(str_bytes))
        })
        .collect();
    Reply::now(ResponseKind::Metadata(
        MetadataResponse::default()
            .with_brokers(brokers)
            .with_cluster_id(Some(str_bytes(broker.cluster_id.clone())))
            .with_controller_id(BrokerId(broker.controller_id()))
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

/// A partition whose leader is fenced has no leader for clients, as in Kafka: leader -1 with
/// LEADER_NOT_AVAILABLE, and the fenced replicas listed as offline (v5+). The state keeps the
/// fenced leader, which leads again if it comes back before another ISR member can.
fn topic_response(info: &TopicInfo, state: &MetadataState) -> MetadataResponseTopic {
    let fenced = |id: i32| {
        state
            .brokers
            .get(&id)
            .is_none_or(|b| b.state == BrokerState::Fenced)
    };
    let partitions = info
        .partitions
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (leader, error) = if fenced(p.leader) {
                (-1, ResponseError::LeaderNotAvailable.code())
            } else {
                (p.leader, 0)
            };
            MetadataResponsePartition::default()
                .with_partition_index(i as i32)
                .with_error_code(error)
                .with_leader_id(BrokerId(leader))
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(p.replicas.iter().map(|&r| BrokerId(r)).collect())
                .with_isr_nodes(p.isr.iter().map(|&r| BrokerId(r)).collect())
                .with_offline_replicas(
                    p.replicas
                        .iter()
                        .filter(|r| fenced(**r))
                        .map(|&r| BrokerId(r))
                        .collect(),
                )
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(&info.name)))
        .with_topic_id(info.id)
        .with_is_internal(info.internal)
        .with_partitions(partitions)
}
