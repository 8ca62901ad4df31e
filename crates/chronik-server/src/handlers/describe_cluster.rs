//! DescribeCluster: the brokers clients may connect to, the controller, and (when asked) the
//! cluster's authorized operations. v2 (KIP-1073) can also list fenced brokers, marked.

use std::sync::Arc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, ResponseKind,
};
use kafka_protocol::ResponseError;

use super::{str_bytes, Reply};
use crate::authz::{self, Resource};
use crate::broker::Broker;
use crate::session::Session;
use chronik_metadata::BrokerState;

/// `endpoint_type` (KIP-919): 1 the brokers, 2 the KRaft controllers.
const ENDPOINT_TYPE_BROKERS: i8 = 1;
const ENDPOINT_TYPE_CONTROLLERS: i8 = 2;

pub fn handle(
    broker: &Arc<Broker>,
    req: DescribeClusterRequest,
    _version: i16,
    session: &Session,
) -> Reply {
    if req.endpoint_type != ENDPOINT_TYPE_BROKERS {
        // Kafka's AuthHelper.computeDescribeClusterResponse on a broker listener.
        let (code, msg) = if req.endpoint_type == ENDPOINT_TYPE_CONTROLLERS {
            (
                ResponseError::MismatchedEndpointType,
                "The request was sent to an endpoint of type BROKER, but we wanted an endpoint of type CONTROLLER",
            )
        } else {
            (
                ResponseError::UnsupportedEndpointType,
                "Unsupported endpoint type",
            )
        };
        return Reply::now(ResponseKind::DescribeCluster(
            DescribeClusterResponse::default()
                .with_error_code(code.code())
                .with_error_message(Some(str_bytes(msg))),
        ));
    }
    let brokers = broker
        .metadata()
        .brokers
        .values()
        // Fenced brokers are left out unless asked for (v2): clients should not connect to them.
        .filter(|b| req.include_fenced_brokers || b.state != BrokerState::Fenced)
        // A broker without the client's listener is left out, as in Kafka.
        .filter_map(|b| {
            let (host, port) = b.endpoint(session.listener)?;
            Some(
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(b.node_id))
                    .with_host(str_bytes(host))
                    .with_port(port)
                    .with_rack(b.rack.clone().map(str_bytes))
                    .with_is_fenced(b.state == BrokerState::Fenced),
            )
        })
        .collect();
    Reply::now(ResponseKind::DescribeCluster(
        DescribeClusterResponse::default()
            .with_cluster_id(str_bytes(broker.cluster_id().clone()))
            .with_controller_id(BrokerId(broker.controller_id()))
            .with_brokers(brokers)
            .with_cluster_authorized_operations(authz::field(
                req.include_cluster_authorized_operations,
                Resource::Cluster,
            )),
    ))
}
