//! FindCoordinator: the coordinator of a group is the leader of its `__consumer_offsets`
//! partition, that of a transactional id the leader of its `__transaction_state` partition
//! (created on the first such request). Standalone, that is this node. v4+ answers a batch of keys; v5 only adds the
//! TRANSACTION_ABORTABLE error and v6 the share-group key type (answered INVALID_REQUEST,
//! as Kafka without share groups does), so both answer as v4.

use std::sync::Arc;

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{
    BrokerId, FindCoordinatorRequest, FindCoordinatorResponse, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{str_bytes, Reply};
use crate::broker::Broker;
use crate::session::Session;

/// `key_type` of a consumer group.
const KEY_TYPE_GROUP: i8 = 0;
/// `key_type` of a transactional id.
const KEY_TYPE_TRANSACTION: i8 = 1;
/// `key_type` of a share group (KIP-932, v6+; no share groups).
const KEY_TYPE_SHARE: i8 = 2;

/// The coordinator for one key, as (node id, host, port), or the error that explains why
/// there is none: the leader of the key's partition of `__consumer_offsets` (a group) or
/// `__transaction_state` (a transactional id).
fn coordinator(
    broker: &Arc<Broker>,
    key: &str,
    key_type: i8,
    listener: &str,
) -> Result<(i32, String, i32), (ResponseError, String)> {
    let (topic, p) = match key_type {
        KEY_TYPE_GROUP if key.is_empty() => {
            return Err((ResponseError::InvalidGroupId, "group id is empty".into()))
        }
        KEY_TYPE_GROUP => (
            chronik_groups::OFFSETS_TOPIC,
            broker.groups.offsets().partition_of(key),
        ),
        KEY_TYPE_TRANSACTION if key.is_empty() => {
            return Err((
                ResponseError::InvalidRequest,
                "transactional id is empty".into(),
            ))
        }
        KEY_TYPE_TRANSACTION => {
            // Created on first need, as Kafka does; clients retry meanwhile.
            if !broker.transaction_state_ready() {
                return Err((
                    ResponseError::CoordinatorNotAvailable,
                    "the transaction state topic is being created".into(),
                ));
            }
            (
                chronik_txn::TRANSACTION_STATE_TOPIC,
                broker.txns.partition_of(key),
            )
        }
        // Kafka 4.4 without share groups enabled answers INVALID_REQUEST.
        KEY_TYPE_SHARE => {
            return Err((
                ResponseError::InvalidRequest,
                "share groups are not supported".into(),
            ))
        }
        // Kafka: CoordinatorType.forId throws InvalidRequestException.
        other => {
            return Err((
                ResponseError::InvalidRequest,
                format!("unknown coordinator key type {other}"),
            ))
        }
    };
    let state = broker.metadata();
    let leader = state
        .topic(topic)
        .and_then(|t| t.partitions.get(p as usize))
        .map(|info| info.leader);
    let Some(b) = leader.and_then(|l| state.brokers.get(&l)) else {
        return Err((
            ResponseError::CoordinatorNotAvailable,
            format!("{topic} partition {p} has no live leader"),
        ));
    };
    // Kafka answers COORDINATOR_NOT_AVAILABLE when the coordinator lacks the listener.
    match b.endpoint(listener) {
        Some((host, port)) => Ok((b.node_id, host.to_string(), port)),
        None => Err((
            ResponseError::CoordinatorNotAvailable,
            format!("the coordinator has no {listener} listener"),
        )),
    }
}

pub fn handle(
    broker: &Arc<Broker>,
    req: FindCoordinatorRequest,
    version: i16,
    session: &Session,
) -> Reply {
    let listener = session.listener;
    let resp = if version >= 4 {
        let coordinators = req
            .coordinator_keys
            .iter()
            .map(|key| {
                let c = Coordinator::default().with_key(key.clone());
                match coordinator(broker, key.as_str(), req.key_type, listener) {
                    Ok((node, host, port)) => c
                        .with_node_id(BrokerId(node))
                        .with_host(str_bytes(host))
                        .with_port(port),
                    Err((code, msg)) => c
                        .with_node_id(BrokerId(-1))
                        .with_host(StrBytes::default())
                        .with_port(-1)
                        .with_error_code(code.code())
                        .with_error_message(Some(str_bytes(msg))),
                }
            })
            .collect();
        FindCoordinatorResponse::default().with_coordinators(coordinators)
    } else {
        match coordinator(broker, req.key.as_str(), req.key_type, listener) {
            Ok((node, host, port)) => FindCoordinatorResponse::default()
                .with_node_id(BrokerId(node))
                .with_host(str_bytes(host))
                .with_port(port),
            Err((code, msg)) => FindCoordinatorResponse::default()
                .with_node_id(BrokerId(-1))
                .with_port(-1)
                .with_error_code(code.code())
                .with_error_message(Some(str_bytes(msg))),
        }
    };
    Reply::now(ResponseKind::FindCoordinator(resp))
}
