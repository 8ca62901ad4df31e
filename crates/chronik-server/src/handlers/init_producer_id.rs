//! InitProducerId. Ids come from blocks reserved through the metadata state machine, so they
//! are unique across restarts. With a transactional id the transaction coordinator answers
//! (epoch bump and fencing of the previous instance, KIP-360 recovery).

use std::sync::Arc;

use kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProducerId, ResponseKind,
};
use kafka_protocol::ResponseError;

use super::Reply;
use crate::broker::Broker;

pub async fn handle(broker: &Arc<Broker>, req: InitProducerIdRequest, version: i16) -> Reply {
    let resp = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if let Some(id) = req.transactional_id.as_ref().filter(|t| !t.0.is_empty()) {
        let id = id.0.to_string();
        return transactional(broker, req, id, version).await;
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

/// InitProducerId with a transactional id: the coordinator of that id answers (NOT_COORDINATOR
/// from any other node). A producer id is reserved beforehand in case the coordinator needs a
/// new one (reserving may go through the metadata, which the coordinator's lock must not wait
/// for); one it does not take is never used, and ids are plentiful (i64).
async fn transactional(
    broker: &Arc<Broker>,
    req: InitProducerIdRequest,
    transactional_id: String,
    version: i16,
) -> Reply {
    let refused = |code: i16| {
        Reply::now(ResponseKind::InitProducerId(
            InitProducerIdResponse::default()
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
                .with_error_code(code),
        ))
    };
    if !broker.transaction_state_ready() {
        return refused(ResponseError::CoordinatorNotAvailable.code());
    }
    // Not the coordinator (or still loading): the manager answers that without a new id.
    let spare = if !broker.txns.is_coordinator(&transactional_id) {
        None
    } else {
        match broker.producer_ids.next().await {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::warn!(error = %e.message, "cannot reserve a producer id");
                None
            }
        }
    };
    let init = chronik_txn::InitProducerId {
        transactional_id,
        transaction_timeout_ms: req.transaction_timeout_ms,
        producer_id: req.producer_id.0,
        producer_epoch: req.producer_epoch,
    };
    let chronik_txn::Response::InitProducerId {
        error,
        producer_id,
        producer_epoch,
    } = broker.txns.init_producer_id(init, spare).await
    else {
        return refused(ResponseError::UnknownServerError.code());
    };
    let error =
        chronik_txn::downgrade_fenced_error(chronik_txn::TxnApi::InitProducerId, version, error);
    Reply::now(ResponseKind::InitProducerId(
        InitProducerIdResponse::default()
            .with_error_code(error)
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(producer_epoch),
    ))
}
