//! What happens when the I/O layer reports back: a transaction-log append became durable or
//! failed, or a transaction's markers are written. This is where a prepared transition
//! completes (Kafka's completeTransitionTo after appendTransactionToLog's callback) and where
//! parked client requests are answered.

use kafka_protocol::ResponseError::ConcurrentTransactions;
use tracing::{debug, warn};

use crate::record::TxnState;

use super::state::{Pending, PendingKind, Reply, TxnMetadata};
use super::{
    begin, init_error, log_append_error, respond, AppendToken, Effect, Response, Slot, TxnManager,
};

impl TxnManager {
    /// Takes the pending transition `token` names, if it is still the current one (same
    /// coordinator epoch, partition loaded, same append), with the slot of the next append.
    fn take_pending(&mut self, token: &AppendToken) -> Option<(Slot, &mut TxnMetadata, Pending)> {
        let id = token.transactional_id.as_str();
        let (slot, owned) = self.owned_slot(id).ok()?;
        if slot.coordinator_epoch != token.coordinator_epoch {
            return None;
        }
        let meta = owned.txns.get_mut(id)?;
        if meta.pending.as_ref().is_none_or(|p| p.seq != token.seq) {
            debug!(
                ?token,
                "a report for a transition no longer pending: ignored"
            );
            return None;
        }
        let pending = meta.pending.take()?;
        Some((slot, meta, pending))
    }

    /// The append `token` named is durable: the transition completes, the client waiting on
    /// it is answered, and after a Prepare record the markers go out.
    pub fn log_written(&mut self, token: &AppendToken, now_ms: i64) -> Vec<Effect> {
        let Some((slot, meta, pending)) = self.take_pending(token) else {
            return Vec::new();
        };
        let Pending { target, kind, .. } = pending;
        match kind {
            PendingKind::InitProducerId(request) => {
                meta.fields = target;
                let response = Response::InitProducerId {
                    error: 0,
                    producer_id: meta.fields.producer_id,
                    producer_epoch: meta.fields.producer_epoch,
                };
                vec![respond(request, response)]
            }
            PendingKind::AddPartitions(request) => {
                meta.fields = target;
                vec![respond(request, Response::AddPartitions { error: 0 })]
            }
            PendingKind::Prepare { reply } => {
                meta.fields = target;
                // Kafka's prepareComplete: the fence (if this was one) is now in the log.
                meta.failed_epoch_fence = false;
                let mut effects: Vec<Effect> =
                    reply.into_iter().map(|r| prepare_answer(r, 0)).collect();
                effects.extend(start_markers(slot, &token.transactional_id, meta, now_ms));
                effects
            }
            PendingKind::Complete { .. } => {
                meta.fields = target;
                Vec::new()
            }
            PendingKind::Dead => {
                let id = token.transactional_id.as_str();
                if let Ok((_, owned)) = self.owned(id) {
                    owned.txns.remove(id);
                }
                Vec::new()
            }
            PendingKind::Markers => {
                // No append is in flight in this phase: keep waiting for the markers.
                meta.pending = Some(Pending {
                    target,
                    kind,
                    seq: token.seq,
                });
                Vec::new()
            }
        }
    }

    /// The append `token` named failed with `error` (the log's error code). The transition is
    /// dropped and its client answered with Kafka's coordinator error for it, except a
    /// Complete record, which `tick` appends again until it is in (the transaction cannot
    /// move on without it).
    pub fn log_failed(&mut self, token: &AppendToken, error: i16) -> Vec<Effect> {
        let error = log_append_error(error);
        let Some((slot, meta, pending)) = self.take_pending(token) else {
            return Vec::new();
        };
        warn!(transactional_id = %token.transactional_id, error, kind = ?pending.kind,
            "transaction log append failed");
        match pending.kind {
            PendingKind::Complete { .. } => {
                // Tokens are single-use: the retry gets its own.
                meta.pending = Some(Pending {
                    kind: PendingKind::Complete { retry: true },
                    seq: slot.seq,
                    ..pending
                });
                Vec::new()
            }
            PendingKind::InitProducerId(request) => vec![respond(request, init_error(error))],
            PendingKind::AddPartitions(request) => {
                vec![respond(request, Response::AddPartitions { error })]
            }
            PendingKind::Prepare { reply } => {
                // A fence (timeout, or InitProducerId over an Ongoing transaction) already
                // bumped the epoch in memory: the next fence must not bump it again.
                if !matches!(reply, Some(Reply::EndTxn(_))) {
                    meta.failed_epoch_fence = true;
                }
                reply
                    .into_iter()
                    .map(|r| prepare_answer(r, error))
                    .collect()
            }
            PendingKind::Dead => Vec::new(),
            PendingKind::Markers => {
                meta.pending = Some(pending);
                Vec::new()
            }
        }
    }

    /// Every marker of the transaction `token` named is written: append its Complete record.
    pub fn markers_written(&mut self, token: &AppendToken) -> Vec<Effect> {
        let Some((slot, meta, pending)) = self.take_pending(token) else {
            return Vec::new();
        };
        if pending.kind != PendingKind::Markers {
            meta.pending = Some(pending);
            return Vec::new();
        }
        let kind = PendingKind::Complete { retry: false };
        let id = token.transactional_id.as_str();
        match begin(meta, slot, id, pending.target.clone(), kind) {
            Ok(effect) => vec![effect],
            Err(e) => {
                warn!(transactional_id = %id, error = e, "cannot encode a transaction log record");
                meta.pending = Some(pending);
                Vec::new()
            }
        }
    }
}

/// The answer to the request that led to a Prepare record: EndTxn gets the append's outcome;
/// InitProducerId, which fenced an ongoing transaction, gets CONCURRENT_TRANSACTIONS on
/// success so that it retries once the abort completed (Kafka's sendRetriableErrorCallback).
fn prepare_answer(reply: Reply, error: i16) -> Effect {
    match reply {
        Reply::EndTxn(r) => respond(r, Response::EndTxn { error }),
        Reply::FencedByInit(r) => {
            let error = if error == 0 {
                ConcurrentTransactions.code()
            } else {
                error
            };
            respond(r, init_error(error))
        }
    }
}

/// A Prepare record of `meta` is durable (or was found by a replay): the Complete record is
/// prepared and the markers asked for (with no partition, the Complete record is appended at
/// once, as Kafka's marker manager does).
pub(super) fn start_markers(
    slot: Slot,
    id: &str,
    meta: &mut TxnMetadata,
    now_ms: i64,
) -> Vec<Effect> {
    let commit = meta.fields.state == TxnState::PrepareCommit;
    let target = meta.prepare_complete(now_ms);
    if meta.fields.partitions.is_empty() {
        let kind = PendingKind::Complete { retry: false };
        return match begin(meta, slot, id, target, kind) {
            Ok(effect) => vec![effect],
            Err(e) => {
                warn!(transactional_id = %id, error = e, "cannot encode a transaction log record");
                Vec::new()
            }
        };
    }
    meta.pending = Some(Pending {
        target,
        kind: PendingKind::Markers,
        seq: slot.seq,
    });
    vec![Effect::WriteMarkers {
        token: AppendToken {
            transactional_id: id.to_string(),
            coordinator_epoch: slot.coordinator_epoch,
            seq: slot.seq,
        },
        producer_id: meta.fields.producer_id,
        producer_epoch: meta.fields.producer_epoch,
        commit,
        coordinator_epoch: slot.coordinator_epoch,
        partitions: meta.fields.partitions.iter().cloned().collect(),
    }]
}
