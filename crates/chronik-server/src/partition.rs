//! A partition as the broker serves it: its WAL plus its idempotent-producer state.
//!
//! Invariant: producer-sequence checks and offset assignment happen under one lock
//! (`producers`), so the order of sequence numbers always matches the order of offsets.
//! Waiting for durability happens after the lock is released, so appends from other
//! producers pipeline behind a single group commit.
//!
//! Transactions (`crate::txn`): `txns` holds the ongoing transactions, the last stable offset
//! and the aborted-transaction index. Lock order: `producers`, then `txns`. A batch that
//! changes `txns` is appended with both held, so a reader of the LSO (which takes `txns` only)
//! never sees a transactional batch in the log before its transaction.

use std::sync::{Arc, Mutex};

use chronik_protocol::batch::BatchError;
use chronik_replication::{EpochCache, Replica};
use chronik_wal::{BatchHeader, PartitionLog, WalError};
use kafka_protocol::ResponseError;
use thiserror::Error;

use crate::producer_state::{ProducerStateTable, SeqCheck};
use crate::topic_config::ProduceConfig;
use crate::txn::{control, TxnState};

/// Why a produce to this partition was refused; each maps to one Kafka error code.
#[derive(Debug, Error)]
pub enum AppendError {
    #[error("corrupt record batch: {0}")]
    Corrupt(String),
    #[error("record batch of {size} bytes is over max.message.bytes={max}")]
    TooLarge { size: usize, max: usize },
    #[error("unsupported record batch: {0}")]
    Unsupported(String),
    /// Kafka's ProduceRequest.validateRecords (v3+): one batch per partition, no more, no less.
    #[error("produce requests must contain exactly one record batch per partition, not {0}")]
    NotOneBatch(usize),
    #[error("out of order sequence number: expected {expected}, got {got}")]
    OutOfOrder { expected: i32, got: i32 },
    #[error("producer epoch {got} is older than the current epoch {current}")]
    Fenced { current: i16, got: i16 },
    #[error("coordinator epoch {got} is older than the current epoch {current}")]
    CoordinatorFenced { current: i32, got: i32 },
    #[error("{0} transactions are open on this partition; retry when one ends")]
    TooManyTransactions(usize),
    /// Kafka's ProducerAppendInfo: a producer inside a transaction writes transactionally.
    #[error("expected a transactional write from producer {0}, which has an open transaction")]
    NotTransactional(i64),
    #[error("partition is sealed")]
    Sealed,
    #[error("storage error: {0}")]
    Storage(#[source] WalError),
    /// The log failed earlier and is being reopened; the reason is that failure's.
    #[error("storage error: {0}")]
    Recovering(String),
    /// Refused by the topic's batch policy (timestamps, decompression).
    #[error(transparent)]
    Batch(#[from] BatchError),
}

impl AppendError {
    pub fn code(&self) -> ResponseError {
        match self {
            AppendError::Corrupt(_) => ResponseError::CorruptMessage,
            AppendError::TooLarge { .. } => ResponseError::MessageTooLarge,
            AppendError::Unsupported(_) | AppendError::NotOneBatch(_) => {
                ResponseError::InvalidRecord
            }
            AppendError::OutOfOrder { .. } => ResponseError::OutOfOrderSequenceNumber,
            AppendError::Fenced { .. } => ResponseError::InvalidProducerEpoch,
            AppendError::CoordinatorFenced { .. } => ResponseError::TransactionCoordinatorFenced,
            AppendError::TooManyTransactions(_) => ResponseError::ConcurrentTransactions,
            AppendError::NotTransactional(_) => ResponseError::InvalidTxnState,
            AppendError::Sealed => ResponseError::NotLeaderOrFollower,
            AppendError::Storage(_) | AppendError::Recovering(_) => {
                ResponseError::KafkaStorageError
            }
            AppendError::Batch(e) => e.code(),
        }
    }
}

impl From<WalError> for AppendError {
    fn from(e: WalError) -> Self {
        match e {
            WalError::Sealed { .. } => AppendError::Sealed,
            WalError::InvalidBatch(b) => AppendError::Corrupt(b.to_string()),
            other => AppendError::Storage(other),
        }
    }
}

/// Where an accepted produce landed. `end_offset` is what to wait for before answering.
#[derive(Debug, Clone, Copy)]
pub struct Accepted {
    pub base_offset: i64,
    pub end_offset: i64,
    pub duplicate: bool,
    /// The epoch this replica led in when it took the batches (`None`: it no longer led);
    /// an acks=all wait must end while it still leads in it.
    pub leader_epoch: Option<i32>,
    /// The log generation the batches were taken in: an acks=1 wait fails if the log healed
    /// (was cut back) since.
    pub generation: u64,
    /// The broker time stamped into the batch (LogAppendTime topics).
    pub log_append_time_ms: Option<i64>,
}

pub struct Partition {
    pub topic: String,
    pub index: i32,
    pub log: Arc<PartitionLog>,
    /// Replication state: role, leader epochs, high watermark.
    pub replica: Arc<Replica>,
    pub(crate) producers: Mutex<ProducerStateTable>,
    /// Transactions on this partition (`crate::txn::state`); locked after `producers`.
    pub(crate) txns: Mutex<TxnState>,
    /// The log generation whose producer state and leader epochs this partition holds, and
    /// in which it takes produces: after the log heals, appends are refused until the broker
    /// rebuilt that state and bumped the leader epochs (`partitions::heal`).
    serving_generation: std::sync::atomic::AtomicU64,
    /// Metric handles, registered once: no label allocation or lookup per request.
    pub counters: crate::metrics::PartitionCounters,
    /// The topic's produce settings, typed; replaced when the topic's config changes.
    config: std::sync::RwLock<Arc<ProduceConfig>>,
}

/// What a partition rebuilds from its log: producers, transactions, leader epochs.
struct Scanned {
    producers: ProducerStateTable,
    txns: TxnState,
    epochs: EpochCache,
}

/// Producer state, transactions and leader epochs rebuilt from the batch headers of `log`,
/// reading the body of control batches only (one small record each). The cost is the header
/// scan the producer state always needed: every batch from the log start. `hw` is a high
/// watermark known to be reached (a checkpoint, or the replica's): a transaction whose marker
/// is below it is stable; one whose marker is not stays unstable until an LSO read sees the
/// high watermark past it.
async fn scan(log: &Arc<PartitionLog>, hw: i64) -> Result<Scanned, WalError> {
    let scan_log = log.clone();
    tokio::task::spawn_blocking(move || {
        let mut s = Scanned {
            producers: ProducerStateTable::default(),
            txns: TxnState::default(),
            epochs: EpochCache::default(),
        };
        let start = scan_log.log_start_offset();
        let (topic, partition) = (scan_log.topic().to_string(), scan_log.partition());
        scan_log.scan_batches(start, &|h| h.is_control(), &mut |h, body| {
            s.epochs.record(h.partition_leader_epoch, h.base_offset);
            let Some(body) = body else {
                s.producers.record(h, h.base_offset);
                s.txns.on_data(h, h.base_offset);
                return;
            };
            match control::decode_marker(body) {
                Ok(m) => {
                    s.producers.record_marker(
                        m.producer_id,
                        m.producer_epoch,
                        m.coordinator_epoch,
                        h.base_offset,
                        h.max_timestamp,
                    );
                    s.txns.on_marker(m.producer_id, m.marker, h.base_offset, hw);
                }
                Err(e) => tracing::warn!(%topic, partition, offset = h.base_offset, error = %e,
                    "control batch that is no transaction marker; ignored"),
            }
        })?;
        Ok::<_, WalError>(s)
    })
    .await
    .map_err(|e| WalError::Failed(format!("producer state rebuild panicked: {e}")))?
}

impl Partition {
    /// Opens the partition's log and rebuilds producer state and leader epochs from the
    /// batch headers.
    /// `hw_checkpoint`: the high watermark last checkpointed for it (else its log start).
    pub async fn open(
        log: Arc<PartitionLog>,
        node_id: i32,
        hw_checkpoint: Option<i64>,
        config: ProduceConfig,
    ) -> Result<Arc<Partition>, WalError> {
        let hw = hw_checkpoint.unwrap_or(log.log_start_offset());
        // What Replica::new starts from: reached, so markers below it are stable.
        let reached = hw.clamp(log.log_start_offset(), log.committed_offset());
        let Scanned {
            producers,
            txns,
            epochs,
        } = scan(&log, reached).await?;
        let replica = Replica::new(log.clone(), node_id, epochs, hw);
        if !producers.is_empty() {
            tracing::info!(
                topic = log.topic(),
                partition = log.partition(),
                producers = producers.len(),
                ongoing_transactions = txns.ongoing_count(),
                aborted_transactions = txns.aborted().len(),
                "rebuilt idempotent producer and transaction state from the log"
            );
        }
        Ok(Arc::new(Partition {
            topic: log.topic().to_string(),
            index: log.partition(),
            counters: crate::metrics::PartitionCounters::new(log.topic()),
            log,
            replica,
            producers: Mutex::new(producers),
            txns: Mutex::new(txns),
            serving_generation: std::sync::atomic::AtomicU64::new(0),
            config: std::sync::RwLock::new(Arc::new(config)),
        }))
    }

    /// The topic's produce settings now.
    pub fn config(&self) -> Arc<ProduceConfig> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Applies the topic's changed config to the next produces.
    pub fn set_config(&self, config: ProduceConfig) {
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
    }

    /// Rebuilds the idempotent-producer state from this replica's log: a follower's appends
    /// do not track producers, so a new leader must, before it takes produces.
    /// The transactions are rebuilt the same way, so a follower that becomes leader holds
    /// the ongoing transactions and aborted index of every batch and marker it copied.
    pub async fn rebuild_producers(&self) -> Result<(), WalError> {
        self.install(scan(&self.log, self.replica.high_watermark()).await?);
        Ok(())
    }

    fn install(&self, scanned: Scanned) {
        let mut producers = self.producers.lock().unwrap_or_else(|e| e.into_inner());
        *producers = scanned.producers;
        *self.txns.lock().unwrap_or_else(|e| e.into_inner()) = scanned.txns;
    }

    /// The idempotent producers this partition tracks (DescribeProducers).
    pub fn active_producers(&self) -> Vec<crate::producer_state::ActiveProducer> {
        let producers = self.producers.lock().unwrap_or_else(|e| e.into_inner());
        let txns = self.txns.lock().unwrap_or_else(|e| e.into_inner());
        let mut active = producers.active();
        for p in &mut active {
            p.current_txn_start_offset = txns.ongoing_first_offset(p.producer_id).unwrap_or(-1);
        }
        active
    }

    /// Why this partition cannot take produces because of its storage: the log is poisoned,
    /// or it healed and the broker has not reopened it yet.
    pub fn storage_failure(&self) -> Option<String> {
        if let Some(f) = self.log.failure() {
            return Some(f);
        }
        (self.log.generation() != self.serving_generation())
            .then(|| "recovered from a storage error; reopening".to_string())
    }

    pub fn serving_generation(&self) -> u64 {
        self.serving_generation
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// The log's generation, if the producer state serves it; `Recovering` while a heal has
    /// not rebuilt it yet. Call with the producers lock held, so the state checked next
    /// belongs to the generation returned.
    pub(crate) fn serving_check(&self) -> Result<u64, AppendError> {
        let generation = self.log.generation();
        if generation != self.serving_generation() {
            return Err(AppendError::Recovering(
                self.storage_failure()
                    .unwrap_or_else(|| "recovering from a storage error".into()),
            ));
        }
        Ok(generation)
    }

    /// After the log healed: rebuilds producer state from what the heal left of the log and
    /// drops the leader epochs recorded past the cut. Appends stay refused until
    /// [`serve_generation`](Self::serve_generation).
    pub async fn rebuild_after_heal(&self) -> Result<(), WalError> {
        self.install(scan(&self.log, self.replica.high_watermark()).await?);
        self.replica.reconcile_heal();
        Ok(())
    }

    /// Takes produces again, in log generation `generation`.
    pub fn serve_generation(&self, generation: u64) {
        self.serving_generation
            .store(generation, std::sync::atomic::Ordering::Release);
    }

    /// Validates and appends the record batch of one produce request partition.
    ///
    /// Exactly one batch per partition, as Kafka requires of Produce v3+ (the only versions
    /// served): anything else is refused whole with INVALID_RECORD before a byte is written.
    pub fn append(
        &self,
        records: &[u8],
        max_message_bytes: usize,
        leader_epoch: i32,
    ) -> Result<Accepted, AppendError> {
        let header = validate_batch(records, max_message_bytes)?;
        let mut producers = self.producers.lock().unwrap_or_else(|e| e.into_inner());
        // Under the producers lock, so the table checked below belongs to this generation.
        let generation = self.serving_check()?;
        // Read before appending: if leadership moves in between, the wait fails, never the
        // other way round.
        let leading = self.replica.leading_epoch();
        match producers.check(&header) {
            // Logged (rate-limited): a client answers these by bumping its epoch and sending
            // again, which is where an idempotent producer's duplicates come from.
            SeqCheck::OutOfOrder { expected, got } => {
                crate::warn_limited!("produce_out_of_order", topic = %self.topic,
                    partition = self.index, producer_id = header.producer_id,
                    producer_epoch = header.producer_epoch, expected, got,
                    "idempotent batch out of sequence; answering OUT_OF_ORDER_SEQUENCE_NUMBER");
                Err(AppendError::OutOfOrder { expected, got })
            }
            SeqCheck::Fenced { current, got } => {
                crate::warn_limited!("produce_fenced_epoch", topic = %self.topic,
                    partition = self.index, producer_id = header.producer_id, current, got,
                    "idempotent batch from an old producer epoch; answering INVALID_PRODUCER_EPOCH");
                Err(AppendError::Fenced { current, got })
            }
            SeqCheck::Duplicate(meta) => Ok(Accepted {
                base_offset: meta.base_offset,
                end_offset: meta.last_offset + 1,
                duplicate: true,
                leader_epoch: leading,
                generation,
                log_append_time_ms: None,
            }),
            SeqCheck::Append => {
                // Checked for every producer's batch; held across the append only for a
                // transactional one (module invariant), so plain appends never block readers.
                let mut txns = None;
                if header.producer_id >= 0 {
                    let t = self.txns.lock().unwrap_or_else(|e| e.into_inner());
                    check_txn(&t, &header)?;
                    txns = header.is_transactional().then_some(t);
                }
                let mut batch = records.to_vec();
                let appended = self.log.append(&mut batch, leader_epoch)?;
                self.replica
                    .record_epoch(leader_epoch, appended.base_offset, appended.generation);
                producers.record(&header, appended.base_offset);
                if let Some(t) = txns.as_mut() {
                    t.on_data(&header, appended.base_offset);
                }
                Ok(Accepted {
                    base_offset: appended.base_offset,
                    end_offset: appended.last_offset + 1,
                    duplicate: false,
                    leader_epoch: leading,
                    generation: appended.generation,
                    log_append_time_ms: None,
                })
            }
        }
    }

    /// [`append`](Self::append) of a produced batch, after the topic's batch policy
    /// (recompression, LogAppendTime, timestamp bounds) made it what the log stores.
    pub fn append_produced(
        &self,
        records: &[u8],
        config: &ProduceConfig,
        leader_epoch: i32,
    ) -> Result<Accepted, AppendError> {
        let (policy, max_message_bytes) = (&config.policy, config.max_message_bytes);
        let header = validate_batch(records, max_message_bytes)?;
        // Kafka's LogValidator for client batches: a producer id needs a sequence (only the
        // coordinator writes sequence-less batches of a producer, see producer_state).
        if header.producer_id >= 0 && header.base_sequence < 0 {
            return Err(AppendError::Corrupt(format!(
                "invalid sequence number {} for a batch of producer {}",
                header.base_sequence, header.producer_id
            )));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let outcome = crate::rewrite::apply(records, policy, now)?;
        let Some(stored) = outcome.batch else {
            return self.append(records, max_message_bytes, leader_epoch);
        };
        // Kafka checks the size of what it stores too: recompression may have grown it.
        // The rewrite keeps producer id, epoch and sequence, so the sequence checks read the
        // same header.
        let mut accepted = self.append(&stored, max_message_bytes, leader_epoch)?;
        // A retried batch was stamped when it was first stored; that time is not kept.
        if !accepted.duplicate {
            accepted.log_append_time_ms = outcome.log_append_time_ms;
        }
        Ok(accepted)
    }
}

/// A data batch against the partition's transactions: room for a new one, and no plain write
/// from a producer inside one.
fn check_txn(t: &TxnState, h: &BatchHeader) -> Result<(), AppendError> {
    if t.begins_txn(h) && !t.has_room() {
        return Err(AppendError::TooManyTransactions(t.ongoing_count()));
    }
    if !h.is_transactional() && t.ongoing_first_offset(h.producer_id).is_some() {
        return Err(AppendError::NotTransactional(h.producer_id));
    }
    Ok(())
}

/// Checks the records of a produce partition: exactly one v2 batch, its size and record
/// count. Its CRC32C is checked by the WAL's append before anything is written.
fn validate_batch(records: &[u8], max_message_bytes: usize) -> Result<BatchHeader, AppendError> {
    let ranges =
        chronik_wal::split_batches(records).map_err(|e| AppendError::Corrupt(e.to_string()))?;
    if ranges.len() != 1 {
        return Err(AppendError::NotOneBatch(ranges.len()));
    }
    let header = BatchHeader::parse(records).map_err(|e| AppendError::Corrupt(e.to_string()))?;
    if records.len() > max_message_bytes {
        return Err(AppendError::TooLarge {
            size: records.len(),
            max: max_message_bytes,
        });
    }
    if header.records_count <= 0 || header.last_offset_delta != header.records_count - 1 {
        return Err(AppendError::Corrupt(format!(
            "batch claims {} records but a last offset delta of {}",
            header.records_count, header.last_offset_delta
        )));
    }
    // Kafka's LogValidator: control batches come from the coordinator (WriteTxnMarkers),
    // never from a client; a transaction needs a producer id.
    if header.is_control() {
        return Err(AppendError::Unsupported(
            "clients are not allowed to write control records".into(),
        ));
    }
    if header.is_transactional() && header.producer_id < 0 {
        return Err(AppendError::Unsupported(
            "a transactional batch needs a producer id".into(),
        ));
    }
    Ok(header)
}
