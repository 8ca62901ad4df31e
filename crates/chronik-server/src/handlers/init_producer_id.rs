//! InitProducerId for idempotent (non-transactional) producers. Ids come from blocks
//! reserved through the metadata state machine, so they are unique across restarts.

use std::sync::Arc;

use kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProducerId, ResponseKind,
};
use kafka_protocol::ResponseError;

use super::Reply;
use crate::broker::Broker;

pub async fn handle(broker: &Arc<Broker>, req: InitProducerIdRequest, _version: i16) -> Reply {
    let resp = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if req
        .transactional_id
        .as_ref()
        .is_some_and(|t| !t.0.is_empty())
    {
        return Reply::now(ResponseKind::InitProducerId(
            resp.with_error_code(ResponseError::InvalidRequest.code()),
        ));
    }
    // KIP-360: a producer that already has an id may ask for the next epoch.
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1 {
        // Rare and telling: the client gave up on the sequence of some batch.
        tracing::info!(
            producer_id = req.producer_id.0,
            epoch = req.producer_epoch + 1,
            "idempotent producer bumped its epoch"
        );
        return Reply::now(ResponseKind::InitProducerId(
            resp.with_producer_id(req.producer_id)
                .with_producer_epoch(req.producer_epoch + 1),
        ));
    }
    let resp = match broker.producer_ids.next().await {
        Ok(id) => resp.with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(e) => {
            tracing::error!(error = %e.message, "cannot allocate a producer id");
            resp.with_error_code(e.code.code())
        }
    };
    Reply::now(ResponseKind::InitProducerId(resp))
}
