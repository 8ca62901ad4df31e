use std::sync::Arc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, ResponseKind,
};

use super::{str_bytes, Reply};
use crate::broker::Broker;
use chronik_metadata::BrokerState;

pub fn handle(broker: &Arc<Broker>, _req: DescribeClusterRequest, _version: i16) -> Reply {
    let brokers = broker
        .metadata()
        .brokers
        .values()
        // Fenced brokers are left out: clients should not connect to them.
        .filter(|b| b.state != BrokerState::Fenced)
        .map(|b| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(b.node_id))
                .with_host(str_bytes(b.host.clone()))
                .with_port(b.port)
                .with_rack(b.rack.clone().map(str_bytes))
        })
        .collect();
    Reply::now(ResponseKind::DescribeCluster(
        DescribeClusterResponse::default()
            .with_cluster_id(str_bytes(broker.cluster_id.clone()))
            .with_controller_id(BrokerId(broker.controller_id()))
            .with_brokers(brokers),
    ))
}
