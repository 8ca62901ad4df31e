//! The transaction coordinator's state, without I/O: Kafka's `TransactionCoordinator` and
//! `TransactionStateManager` for clients below transaction.version 2 (KIP-98 transactions,
//! KIP-360 producer recovery, KIP-447 offsets, KIP-890 part 1 verification, KIP-664 describe
//! and list).
//!
//! The manager owns the `__transaction_state` partitions the broker told it it leads
//! ([`TxnManager::load`] / [`TxnManager::unload`]) and the transactional ids in them. Every
//! request method returns [`Effect`]s the I/O layer carries out in order:
//!
//! ```text
//! EndTxn(commit) ─> AppendLog(PrepareCommit) ─log_written─> Respond(EndTxn OK)
//!                                                          + WriteMarkers(commit, partitions)
//!                ─markers_written─> AppendLog(CompleteCommit) ─log_written─> state CompleteCommit
//! ```
//!
//! The state moves only when an append is confirmed durable, so a coordinator that fails in
//! between leaves the log as the truth; its successor replays the log ([`TxnManager::load`])
//! and sends the markers of every transaction it finds half-way (PrepareCommit/PrepareAbort).
//!
//! Bounds: at most one transition per transactional id is in flight (others are answered
//! CONCURRENT_TRANSACTIONS), so pending appends, marker writes and parked client requests are
//! each at most one per transactional id; transactional ids are at most
//! `max_transactional_ids` and expire after `transactional_id_expiration_ms` idle; a
//! transaction holds at most `max_partitions_per_transaction` partitions.

mod admin;
mod completion;
mod requests;
mod state;

use std::collections::HashMap;

use bytes::Bytes;
use kafka_protocol::ResponseError::*;
use tracing::warn;

use crate::partition_for;
use crate::record::{encode_key, TopicPartition, TxnKey, TxnLogValue, TxnState};

pub use admin::{ListFilter, ListedTxn, ListedTxns, TxnDescription};
pub use requests::{AddOffsets, AddPartitions, EndTxn, InitProducerId};
use state::{PendingKind, TxnFields, TxnMetadata};

/// The I/O layer's key for a client request whose answer may come later (the matching
/// [`Effect::Respond`] carries it back). It must be unique among the requests in flight.
pub type RequestId = u64;

/// Identifies one append (or marker write) the manager asked for; hand it back to
/// [`TxnManager::log_written`], [`TxnManager::log_failed`] or [`TxnManager::markers_written`].
/// A token from before a failover or a newer transition is recognised and ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendToken {
    pub transactional_id: String,
    /// The coordinator epoch (leader epoch of the `__transaction_state` partition) it was
    /// issued under.
    pub coordinator_epoch: i32,
    pub seq: u64,
}

/// What the I/O layer must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Append one record to `__transaction_state` partition `partition` with acks=all and no
    /// compression (Kafka's enforced settings), then report with `token`. `value` None is a
    /// tombstone. `chronik_groups::encode_raw_batch` makes the batch.
    AppendLog {
        token: AppendToken,
        partition: i32,
        key: Bytes,
        value: Option<Bytes>,
    },
    /// Write a COMMIT (`commit`) or ABORT control batch for `producer_id`/`producer_epoch`
    /// carrying `coordinator_epoch` to every partition (Kafka's WriteTxnMarkers), retrying
    /// each until it is written or its partition no longer exists; then call
    /// `markers_written(token)`.
    WriteMarkers {
        token: AppendToken,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
        partitions: Vec<TopicPartition>,
    },
    /// Answer the client request `request`.
    Respond {
        request: RequestId,
        response: Response,
    },
}

/// Answers to client requests. Error codes are Kafka's; map PRODUCER_FENCED for old request
/// versions with [`downgrade_fenced_error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Response {
    InitProducerId {
        error: i16,
        producer_id: i64,
        producer_epoch: i16,
    },
    /// AddPartitionsToTxn (every partition of the transaction gets this error, as in Kafka)
    /// and AddOffsetsToTxn.
    AddPartitions {
        error: i16,
    },
    EndTxn {
        error: i16,
    },
}

/// Where new producer ids come from: the cluster's producer-id blocks. `None` means no id is
/// at hand right now (a block is being reserved); the client gets
/// COORDINATOR_LOAD_IN_PROGRESS and retries, as from Kafka's RPCProducerIdManager.
pub trait ProducerIdSource {
    fn next_producer_id(&mut self) -> Option<i64>;
}

impl<F: FnMut() -> Option<i64>> ProducerIdSource for F {
    fn next_producer_id(&mut self) -> Option<i64> {
        self()
    }
}

/// Settings, by their Kafka names where Kafka has them.
#[derive(Debug, Clone)]
pub struct TxnConfig {
    /// transaction.state.log.num.partitions.
    pub transaction_state_partitions: i32,
    /// transaction.max.timeout.ms: a client asking for more gets INVALID_TRANSACTION_TIMEOUT.
    pub transaction_max_timeout_ms: i32,
    /// transactional.id.expiration.ms: an id idle this long (and not in a transaction) is
    /// removed with a tombstone.
    pub transactional_id_expiration_ms: i64,
    /// Value version written: 0 is what Kafka writes for clients below transaction.version 2
    /// (the only ones this manager serves); 1 is the flexible one.
    pub log_value_version: i16,
    /// Partitions one transaction may hold. Kafka has no count, but its record must fit the
    /// log's max message size and it answers UNKNOWN_SERVER_ERROR when it does not; so does
    /// this bound.
    pub max_partitions_per_transaction: usize,
    /// Transactional ids this coordinator keeps. Beyond it a new id gets
    /// COORDINATOR_NOT_AVAILABLE (retriable) until others expire. Kafka has no such bound.
    /// A replay ([`TxnManager::load`]) keeps every id its log holds (written under this bound,
    /// unless the bound was lowered since).
    pub max_transactional_ids: usize,
}

impl Default for TxnConfig {
    fn default() -> Self {
        TxnConfig {
            transaction_state_partitions: 50,
            transaction_max_timeout_ms: 900_000,
            transactional_id_expiration_ms: 604_800_000,
            log_value_version: crate::record::VALUE_VERSION_V0,
            max_partitions_per_transaction: 100_000,
            max_transactional_ids: 1_000_000,
        }
    }
}

/// The requests whose PRODUCER_FENCED an old client does not know (KIP-588).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnApi {
    InitProducerId,
    AddPartitionsToTxn,
    AddOffsetsToTxn,
    EndTxn,
}

/// Kafka's KafkaApis answers INVALID_PRODUCER_EPOCH instead of PRODUCER_FENCED to request
/// versions from before PRODUCER_FENCED existed (InitProducerId < 4, AddPartitionsToTxn,
/// AddOffsetsToTxn and EndTxn < 2).
pub fn downgrade_fenced_error(api: TxnApi, version: i16, error: i16) -> i16 {
    let first = match api {
        TxnApi::InitProducerId => 4,
        TxnApi::AddPartitionsToTxn | TxnApi::AddOffsetsToTxn | TxnApi::EndTxn => 2,
    };
    if error == ProducerFenced.code() && version < first {
        InvalidProducerEpoch.code()
    } else {
        error
    }
}

/// Kafka's translation of a failed transaction-log append into the coordinator error the
/// client sees (TransactionStateManager.appendTransactionToLog).
pub fn log_append_error(error: i16) -> i16 {
    let is = |e: kafka_protocol::ResponseError| error == e.code();
    if is(UnknownTopicOrPartition)
        || is(NotEnoughReplicas)
        || is(NotEnoughReplicasAfterAppend)
        || is(RequestTimedOut)
    {
        CoordinatorNotAvailable.code()
    } else if is(NotLeaderOrFollower) || is(KafkaStorageError) {
        NotCoordinator.code()
    } else if is(MessageTooLarge) || is(RecordListTooLarge) {
        UnknownServerError.code()
    } else {
        error
    }
}

/// One `__transaction_state` partition this node leads.
#[derive(Debug, Default)]
struct Owned {
    coordinator_epoch: i32,
    /// Being replayed: requests get COORDINATOR_LOAD_IN_PROGRESS.
    loading: bool,
    txns: HashMap<String, TxnMetadata>,
}

/// The coordinator state of every `__transaction_state` partition this node leads.
#[derive(Debug)]
pub struct TxnManager {
    config: TxnConfig,
    partitions: HashMap<i32, Owned>,
    /// Source of AppendToken::seq.
    next_seq: u64,
}

/// Where the next append of one transactional id goes: its partition, the coordinator epoch
/// it is issued under, its token's seq, and the value version to encode.
#[derive(Debug, Clone, Copy)]
struct Slot {
    partition: i32,
    coordinator_epoch: i32,
    seq: u64,
    version: i16,
}

/// The append of `fields` (None: a tombstone) of `id`.
fn append_effect(slot: Slot, id: &str, fields: Option<&TxnFields>) -> Result<Effect, i16> {
    let key = encode_key(id).map_err(|_| InvalidRequest.code())?;
    let value = fields
        .map(|f| f.to_value().encode(slot.version))
        .transpose()
        .map_err(|_| UnknownServerError.code())?;
    let token = AppendToken {
        transactional_id: id.to_string(),
        coordinator_epoch: slot.coordinator_epoch,
        seq: slot.seq,
    };
    Ok(Effect::AppendLog {
        token,
        partition: slot.partition,
        key,
        value,
    })
}

/// Marks `meta` pending on `target` and returns the append that makes it durable.
fn begin(
    meta: &mut TxnMetadata,
    slot: Slot,
    id: &str,
    target: TxnFields,
    kind: PendingKind,
) -> Result<Effect, i16> {
    let effect = append_effect(slot, id, Some(&target))?;
    meta.pending = Some(state::Pending {
        target,
        kind,
        seq: slot.seq,
    });
    Ok(effect)
}

fn respond(request: RequestId, response: Response) -> Effect {
    Effect::Respond { request, response }
}

impl TxnManager {
    pub fn new(config: TxnConfig) -> TxnManager {
        TxnManager {
            config,
            partitions: HashMap::new(),
            next_seq: 0,
        }
    }

    /// A new AppendToken::seq (taken before borrowing a transactional id's state).
    fn next_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    pub fn config(&self) -> &TxnConfig {
        &self.config
    }

    /// The `__transaction_state` partition of `transactional_id`.
    pub fn partition_of(&self, transactional_id: &str) -> i32 {
        partition_for(transactional_id, self.config.transaction_state_partitions)
    }

    /// Whether this node coordinates `transactional_id` (leads its partition, loaded).
    pub fn is_coordinator(&self, transactional_id: &str) -> bool {
        self.partitions
            .get(&self.partition_of(transactional_id))
            .is_some_and(|o| !o.loading)
    }

    /// The partition of `id` if this node serves it, else Kafka's error: NOT_COORDINATOR, or
    /// COORDINATOR_LOAD_IN_PROGRESS while it loads.
    fn owned(&mut self, id: &str) -> Result<(i32, &mut Owned), i16> {
        let p = self.partition_of(id);
        match self.partitions.get_mut(&p) {
            None => Err(NotCoordinator.code()),
            Some(o) if o.loading => Err(CoordinatorLoadInProgress.code()),
            Some(o) => Ok((p, o)),
        }
    }

    /// Like [`owned`](Self::owned), with the slot of the next append for `id`.
    fn owned_slot(&mut self, id: &str) -> Result<(Slot, &mut Owned), i16> {
        let seq = self.next_seq();
        let version = self.config.log_value_version;
        let (partition, owned) = self.owned(id)?;
        let slot = Slot {
            partition,
            coordinator_epoch: owned.coordinator_epoch,
            seq,
            version,
        };
        Ok((slot, owned))
    }

    /// The metadata of `id`: INVALID_REQUEST for an empty id, `missing` for an unknown one.
    fn existing(&mut self, id: &str, missing: i16) -> Result<(Slot, &mut TxnMetadata), i16> {
        if id.is_empty() {
            return Err(InvalidRequest.code());
        }
        let (slot, owned) = self.owned_slot(id)?;
        let meta = owned.txns.get_mut(id).ok_or(missing)?;
        Ok((slot, meta))
    }

    /// This node became leader of `partition` at `coordinator_epoch` and is replaying it:
    /// until [`load`](Self::load), its transactional ids get COORDINATOR_LOAD_IN_PROGRESS.
    /// Returns the answers owed to requests of an older leadership still parked.
    pub fn begin_load(&mut self, partition: i32, coordinator_epoch: i32) -> Vec<Effect> {
        let effects = self.unload(partition);
        self.partitions.insert(
            partition,
            Owned {
                coordinator_epoch,
                loading: true,
                txns: HashMap::new(),
            },
        );
        effects
    }

    /// Rebuilds `partition` from its log, every record from the log start to the log end in
    /// log order as (key, value), a None value being a tombstone (Kafka's
    /// loadTransactionMetadata: the last record of an id wins; an iterator, so the log can be
    /// streamed). Records that do not decode are skipped with a warning (the id keeps its
    /// previous record; Kafka stops the load there). Transactions found in
    /// PrepareCommit/PrepareAbort get their markers sent again (then their Complete record);
    /// Ongoing ones are left to time out in [`tick`](Self::tick), as Kafka does.
    pub fn load(
        &mut self,
        partition: i32,
        coordinator_epoch: i32,
        records: impl IntoIterator<Item = (Bytes, Option<Bytes>)>,
        now_ms: i64,
    ) -> Vec<Effect> {
        let mut effects = Vec::new();
        if self
            .partitions
            .get(&partition)
            .is_some_and(|o| !(o.loading && o.coordinator_epoch == coordinator_epoch))
        {
            effects = self.unload(partition);
        }
        let mut txns: HashMap<String, TxnMetadata> = HashMap::new();
        for (key, value) in records {
            let id = match TxnKey::decode(&key) {
                Ok(TxnKey::TransactionalId(id)) => id,
                Ok(TxnKey::Unknown(v)) => {
                    warn!(
                        partition,
                        version = v,
                        "skipping a transaction log key of unknown version"
                    );
                    continue;
                }
                Err(e) => {
                    warn!(partition, error = %e, "skipping a transaction log record with a bad key");
                    continue;
                }
            };
            match value.as_deref().map(TxnLogValue::decode) {
                None => {
                    txns.remove(&id);
                }
                Some(Ok(v)) => {
                    txns.insert(id, TxnMetadata::loaded(TxnFields::from_value(v)));
                }
                Some(Err(e)) => {
                    warn!(partition, transactional_id = %id, error = %e,
                        "skipping a transaction log record with a bad value");
                }
            }
        }
        let mut owned = Owned {
            coordinator_epoch,
            loading: false,
            txns,
        };
        for (id, meta) in owned.txns.iter_mut() {
            if matches!(
                meta.fields.state,
                TxnState::PrepareCommit | TxnState::PrepareAbort
            ) {
                self.next_seq += 1;
                let slot = Slot {
                    partition,
                    coordinator_epoch,
                    seq: self.next_seq,
                    version: self.config.log_value_version,
                };
                effects.extend(completion::start_markers(slot, id, meta, now_ms));
            }
        }
        self.partitions.insert(partition, owned);
        effects
    }

    /// This node no longer leads `partition`: its state goes, and the requests parked on it
    /// are answered NOT_COORDINATOR so their clients find the new coordinator (Kafka answers
    /// them so when their append completes under a changed coordinator epoch).
    pub fn unload(&mut self, partition: i32) -> Vec<Effect> {
        let Some(owned) = self.partitions.remove(&partition) else {
            return Vec::new();
        };
        let mut effects = Vec::new();
        for meta in owned.txns.into_values() {
            let Some(pending) = meta.pending else {
                continue;
            };
            let not_coordinator = NotCoordinator.code();
            let answer = match pending.kind {
                PendingKind::InitProducerId(r) => Some((r, init_error(not_coordinator))),
                PendingKind::AddPartitions(r) => Some((
                    r,
                    Response::AddPartitions {
                        error: not_coordinator,
                    },
                )),
                PendingKind::Prepare { reply: Some(reply) } => Some(match reply {
                    state::Reply::EndTxn(r) => (
                        r,
                        Response::EndTxn {
                            error: not_coordinator,
                        },
                    ),
                    state::Reply::FencedByInit(r) => (r, init_error(not_coordinator)),
                }),
                _ => None,
            };
            effects.extend(answer.map(|(r, resp)| respond(r, resp)));
        }
        effects
    }

    /// Timers, as Kafka's scheduled tasks: every Ongoing transaction past its
    /// transaction.timeout.ms is aborted with its producer fenced (epoch bump, Kafka's
    /// PrepareEpochFence path); every transactional id idle past
    /// transactional.id.expiration.ms in Empty/CompleteCommit/CompleteAbort is removed with a
    /// tombstone; Complete records whose append failed are appended again. Kafka runs the
    /// first every 10 s and the second every hour; calling this every second or so is fine:
    /// it scans the ids of the led partitions.
    pub fn tick(&mut self, now_ms: i64) -> Vec<Effect> {
        let mut effects = Vec::new();
        let expiration_ms = self.config.transactional_id_expiration_ms;
        let version = self.config.log_value_version;
        for (&partition, owned) in self.partitions.iter_mut().filter(|(_, o)| !o.loading) {
            for (id, meta) in owned.txns.iter_mut() {
                let f = &meta.fields;
                let (target, kind) = match &meta.pending {
                    Some(pending) if pending.kind == (PendingKind::Complete { retry: true }) => (
                        Some(pending.target.clone()),
                        PendingKind::Complete { retry: false },
                    ),
                    Some(_) => continue,
                    None if f.state == TxnState::Ongoing
                        && f.start_ms.saturating_add(i64::from(f.timeout_ms)) < now_ms =>
                    {
                        tracing::info!(transactional_id = %id, producer_id = f.producer_id,
                            "aborting a transaction past its transaction.timeout.ms");
                        let target = meta.fence_and_prepare_abort(now_ms);
                        (Some(target), PendingKind::Prepare { reply: None })
                    }
                    None if f.state.expiration_allowed()
                        && f.last_update_ms <= now_ms.saturating_sub(expiration_ms) =>
                    {
                        (None, PendingKind::Dead)
                    }
                    None => continue,
                };
                self.next_seq += 1;
                let slot = Slot {
                    partition,
                    coordinator_epoch: owned.coordinator_epoch,
                    seq: self.next_seq,
                    version,
                };
                match append_effect(slot, id, target.as_ref()) {
                    Ok(effect) => {
                        let target = target.unwrap_or_else(|| TxnFields {
                            state: TxnState::Dead,
                            ..meta.fields.clone()
                        });
                        let seq = slot.seq;
                        meta.pending = Some(state::Pending { target, kind, seq });
                        effects.push(effect);
                    }
                    Err(e) => warn!(transactional_id = %id, error = e,
                        "cannot encode a transaction log record"),
                }
            }
        }
        effects
    }

    /// How many transactional ids this node holds.
    pub fn len(&self) -> usize {
        self.partitions.values().map(|o| o.txns.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn init_error(error: i16) -> Response {
    Response::InitProducerId {
        error,
        producer_id: state::NO_PRODUCER_ID,
        producer_epoch: state::NO_PRODUCER_EPOCH,
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_failover;
