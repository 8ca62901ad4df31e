//! The client requests: InitProducerId with a transactional id, AddPartitionsToTxn (and its
//! KIP-890 verification), AddOffsetsToTxn and EndTxn, with the checks and error codes of
//! Kafka's TransactionCoordinator (transaction.version below 2), in Kafka's order.

use kafka_protocol::ResponseError::*;

use crate::record::{TopicPartition, TxnState};

use super::state::{
    epoch_exhausted, PendingKind, Reply, TxnMetadata, NO_PRODUCER_EPOCH, NO_PRODUCER_ID,
};
use super::{
    begin, init_error, respond, Effect, ProducerIdSource, RequestId, Response, Slot, TxnManager,
};

/// InitProducerId with a transactional id (without one the broker hands out a bare producer
/// id and never asks this manager).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitProducerId {
    pub transactional_id: String,
    pub transaction_timeout_ms: i32,
    /// KIP-360: the client's current producer id and epoch, -1/-1 when it has none.
    pub producer_id: i64,
    pub producer_epoch: i16,
}

/// AddPartitionsToTxn for one transaction (v4+ batches several: one call each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddPartitions {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub partitions: Vec<TopicPartition>,
}

/// AddOffsetsToTxn: the group's `__consumer_offsets` partition joins the transaction (the
/// broker knows the offsets topic's partition count: `partition_for(group, n)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddOffsets {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub offsets_partition: i32,
}

/// EndTxn: commit or abort.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndTxn {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
}

impl TxnManager {
    /// InitProducerId for a transactional id: a new id gets a producer id from `ids` and
    /// epoch 0; a known one gets its epoch bumped (fencing the previous instance), a new
    /// producer id once the epoch is exhausted; an Ongoing transaction is aborted first (its
    /// producer fenced) and the client told CONCURRENT_TRANSACTIONS until that completes.
    pub fn init_producer_id(
        &mut self,
        request: RequestId,
        req: &InitProducerId,
        ids: &mut dyn ProducerIdSource,
        now_ms: i64,
    ) -> Vec<Effect> {
        match self.try_init(request, req, ids, now_ms) {
            Ok(effects) => effects,
            Err(error) => vec![respond(request, init_error(error))],
        }
    }

    fn try_init(
        &mut self,
        request: RequestId,
        req: &InitProducerId,
        ids: &mut dyn ProducerIdSource,
        now_ms: i64,
    ) -> Result<Vec<Effect>, i16> {
        let id = req.transactional_id.as_str();
        if id.is_empty() {
            return Err(InvalidRequest.code());
        }
        // KafkaApis: both or neither of the producer id and epoch.
        let expected = match (req.producer_id, req.producer_epoch) {
            (NO_PRODUCER_ID, NO_PRODUCER_EPOCH) => None,
            (NO_PRODUCER_ID, _) | (_, NO_PRODUCER_EPOCH) => return Err(InvalidRequest.code()),
            (p, e) => Some((p, e)),
        };
        let timeout_ms = req.transaction_timeout_ms;
        if timeout_ms <= 0 || timeout_ms > self.config.transaction_max_timeout_ms {
            return Err(InvalidTransactionTimeout.code());
        }
        let room = self.len() < self.config.max_transactional_ids;
        let (slot, owned) = self.owned_slot(id)?;
        if !owned.txns.contains_key(id) {
            if !room {
                return Err(CoordinatorNotAvailable.code());
            }
            let pid = ids
                .next_producer_id()
                .ok_or(CoordinatorLoadInProgress.code())?;
            owned
                .txns
                .insert(id.to_string(), TxnMetadata::new(pid, timeout_ms, now_ms));
        }
        let meta = owned.txns.get_mut(id).ok_or(UnknownServerError.code())?;
        if meta.pending.is_some() {
            return Err(ConcurrentTransactions.code());
        }
        if let Some((pid, epoch)) = expected {
            // Kafka's isValidProducerId.
            let f = &meta.fields;
            let valid = f.producer_epoch == NO_PRODUCER_EPOCH
                || pid == f.producer_id
                || (pid == f.prev_producer_id && epoch_exhausted(epoch));
            if !valid {
                return Err(ProducerFenced.code());
            }
        }
        let (target, kind) = match meta.fields.state {
            TxnState::PrepareAbort | TxnState::PrepareCommit => {
                return Err(ConcurrentTransactions.code())
            }
            TxnState::Empty | TxnState::CompleteAbort | TxnState::CompleteCommit => {
                let cur = meta.fields.producer_epoch;
                let target = if epoch_exhausted(cur) && expected.is_none_or(|(_, e)| e == cur) {
                    let pid = ids
                        .next_producer_id()
                        .ok_or(CoordinatorLoadInProgress.code())?;
                    meta.prepare_rotation(pid, timeout_ms, now_ms, expected.is_some())
                } else {
                    meta.prepare_increment_epoch(timeout_ms, expected.map(|e| e.1), now_ms)?
                };
                (target, PendingKind::InitProducerId(request))
            }
            TxnState::Ongoing => {
                // The epoch bumped here is never given out: the client retries after the
                // abort and gets the next one (a new producer id if this exhausted it).
                let target = meta.fence_and_prepare_abort(now_ms);
                let reply = Some(Reply::FencedByInit(request));
                (target, PendingKind::Prepare { reply })
            }
            // Never a current state in Kafka either (it throws IllegalStateException).
            TxnState::Dead | TxnState::PrepareEpochFence => return Err(UnknownServerError.code()),
        };
        Ok(vec![begin(meta, slot, id, target, kind)?])
    }

    /// AddPartitionsToTxn (client path): partitions join the Ongoing transaction (starting it
    /// after Empty or a completed one). Already all in it: answered at once.
    pub fn add_partitions(
        &mut self,
        request: RequestId,
        req: &AddPartitions,
        now_ms: i64,
    ) -> Vec<Effect> {
        match self.try_add(request, req, now_ms) {
            Ok(effects) => effects,
            Err(error) => vec![respond(request, Response::AddPartitions { error })],
        }
    }

    /// AddOffsetsToTxn: the group's offsets partition joins, as Kafka's handler does through
    /// handleAddPartitionsToTransaction.
    pub fn add_offsets(
        &mut self,
        request: RequestId,
        req: &AddOffsets,
        now_ms: i64,
    ) -> Vec<Effect> {
        let add = AddPartitions {
            transactional_id: req.transactional_id.clone(),
            producer_id: req.producer_id,
            producer_epoch: req.producer_epoch,
            partitions: vec![TopicPartition::new(
                chronik_groups::OFFSETS_TOPIC,
                req.offsets_partition,
            )],
        };
        self.add_partitions(request, &add, now_ms)
    }

    /// The transactional id's metadata, if the request's producer id and epoch are its
    /// current ones (the checks EndTxn and the verification make first, in Kafka's order).
    fn checked(
        &mut self,
        id: &str,
        producer_id: i64,
        epoch: i16,
    ) -> Result<(Slot, &mut TxnMetadata), i16> {
        let (slot, meta) = self.existing(id, InvalidProducerIdMapping.code())?;
        same_producer(meta, producer_id, epoch)?;
        Ok((slot, meta))
    }

    fn try_add(
        &mut self,
        request: RequestId,
        req: &AddPartitions,
        now_ms: i64,
    ) -> Result<Vec<Effect>, i16> {
        let max = self.config.max_partitions_per_transaction;
        let id = req.transactional_id.as_str();
        let (slot, meta) = self.existing(id, InvalidProducerIdMapping.code())?;
        // Kafka 4.4 looks at a transition in progress before the producer.
        if meta.pending.is_some() {
            return Err(ConcurrentTransactions.code());
        }
        same_producer(meta, req.producer_id, req.producer_epoch)?;
        let state = meta.fields.state;
        if matches!(state, TxnState::PrepareCommit | TxnState::PrepareAbort) {
            return Err(ConcurrentTransactions.code());
        }
        let known = |tp: &TopicPartition| meta.fields.partitions.contains(tp);
        if state == TxnState::Ongoing && req.partitions.iter().all(known) {
            return Ok(vec![respond(request, Response::AddPartitions { error: 0 })]);
        }
        let target = meta.prepare_add_partitions(req.partitions.iter().cloned(), now_ms);
        if target.partitions.len() > max {
            return Err(UnknownServerError.code());
        }
        let kind = PendingKind::AddPartitions(request);
        Ok(vec![begin(meta, slot, id, target, kind)?])
    }

    /// AddPartitionsToTxn v4+ with verify_only (KIP-890 part 1, asked by a partition leader
    /// before it takes a transactional produce): whether each partition is in the ongoing
    /// transaction, without adding it. NONE if it is, TRANSACTION_ABORTABLE if not; one error
    /// for all when the transaction itself does not match.
    pub fn verify_partitions(&mut self, req: &AddPartitions) -> Vec<(TopicPartition, i16)> {
        let id = req.transactional_id.as_str();
        let result = self
            .checked(id, req.producer_id, req.producer_epoch)
            .and_then(|(_, meta)| {
                if matches!(
                    meta.fields.state,
                    TxnState::PrepareCommit | TxnState::PrepareAbort
                ) {
                    return Err(ConcurrentTransactions.code());
                }
                Ok(req
                    .partitions
                    .iter()
                    .map(|tp| {
                        let error = if meta.fields.partitions.contains(tp) {
                            0
                        } else {
                            TransactionAbortable.code()
                        };
                        (tp.clone(), error)
                    })
                    .collect())
            });
        result.unwrap_or_else(|error| {
            req.partitions
                .iter()
                .map(|tp| (tp.clone(), error))
                .collect()
        })
    }

    /// EndTxn: an Ongoing transaction moves to PrepareCommit/PrepareAbort; once that record is
    /// durable the client is answered and the markers go out. A retry after completion with
    /// the same result is answered OK, the opposite result INVALID_TXN_STATE; while the
    /// markers are being written (a transition in progress), CONCURRENT_TRANSACTIONS.
    pub fn end_txn(&mut self, request: RequestId, req: &EndTxn, now_ms: i64) -> Vec<Effect> {
        match self.try_end(request, req, now_ms) {
            Ok(effects) => effects,
            Err(error) => vec![respond(request, Response::EndTxn { error })],
        }
    }

    fn try_end(
        &mut self,
        request: RequestId,
        req: &EndTxn,
        now_ms: i64,
    ) -> Result<Vec<Effect>, i16> {
        let id = req.transactional_id.as_str();
        let (slot, meta) = self.checked(id, req.producer_id, req.producer_epoch)?;
        if meta.pending.is_some() {
            return Err(ConcurrentTransactions.code());
        }
        let invalid = InvalidTxnState.code();
        let same = |commit: bool| {
            if commit == req.commit {
                Ok(())
            } else {
                Err(invalid)
            }
        };
        match meta.fields.state {
            TxnState::Ongoing => {}
            TxnState::CompleteCommit => return same(true).map(|_| vec![end_ok(request)]),
            TxnState::CompleteAbort => return same(false).map(|_| vec![end_ok(request)]),
            TxnState::PrepareCommit => {
                return Err(same(true).map_or(invalid, |_| ConcurrentTransactions.code()))
            }
            TxnState::PrepareAbort => {
                return Err(same(false).map_or(invalid, |_| ConcurrentTransactions.code()))
            }
            TxnState::Empty => return Err(invalid),
            TxnState::Dead | TxnState::PrepareEpochFence => return Err(UnknownServerError.code()),
        }
        let target = meta.prepare_abort_or_commit(req.commit, now_ms);
        let kind = PendingKind::Prepare {
            reply: Some(Reply::EndTxn(request)),
        };
        Ok(vec![begin(meta, slot, id, target, kind)?])
    }
}

/// INVALID_PRODUCER_ID_MAPPING for another producer id, PRODUCER_FENCED for another epoch.
fn same_producer(meta: &TxnMetadata, producer_id: i64, epoch: i16) -> Result<(), i16> {
    if meta.fields.producer_id != producer_id {
        return Err(InvalidProducerIdMapping.code());
    }
    if meta.fields.producer_epoch != epoch {
        return Err(ProducerFenced.code());
    }
    Ok(())
}

fn end_ok(request: RequestId) -> Effect {
    respond(request, Response::EndTxn { error: 0 })
}
