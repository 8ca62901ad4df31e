//! Kafka transactions (KIP-98, KIP-447, KIP-890 part 1) without I/O: the record format of the
//! `__transaction_state` topic ([`record`]) and the transaction coordinator's state machine per
//! transactional id ([`manager`]).
//!
//! Nothing here touches sockets, disks or clocks. The broker decodes requests, hands them to a
//! [`TxnManager`] with the current time, and carries out the [`Effect`]s it returns: append a
//! record to the transaction log, write transaction markers to the data partitions, answer a
//! client. It reports back when an append is durable ([`TxnManager::log_written`]) or failed,
//! and when the markers are written ([`TxnManager::markers_written`]); only then does the state
//! move on, as Kafka's coordinator moves only after its log append is replicated.
//!
//! The I/O layer's loop, in outline (effects are carried out in the order given):
//!
//! ```
//! use std::collections::VecDeque;
//! use chronik_txn::*;
//!
//! let mut m = TxnManager::new(TxnConfig::default());
//! // This node leads every __transaction_state partition, each replayed (here: empty).
//! for p in 0..m.config().transaction_state_partitions {
//!     m.load(p, 1, Vec::new(), 0);
//! }
//! let mut next_id = 1000;
//! let mut ids = || { next_id += 1; Some(next_id - 1) };
//! let init = InitProducerId {
//!     transactional_id: "app-1".into(),
//!     transaction_timeout_ms: 60_000,
//!     producer_id: -1,
//!     producer_epoch: -1,
//! };
//! let mut todo: VecDeque<Effect> = m.init_producer_id(7, &init, &mut ids, 0).into();
//! let mut answers = Vec::new();
//! while let Some(effect) = todo.pop_front() {
//!     match effect {
//!         // Append to __transaction_state `partition` (acks=all), then report.
//!         Effect::AppendLog { token, .. } => todo.extend(m.log_written(&token, 0)),
//!         // Write the control batches, then report.
//!         Effect::WriteMarkers { token, .. } => todo.extend(m.markers_written(&token)),
//!         Effect::Respond { request, response } => answers.push((request, response)),
//!     }
//! }
//! assert_eq!(
//!     answers,
//!     vec![(7, Response::InitProducerId { error: 0, producer_id: 1000, producer_epoch: 0 })]
//! );
//! ```

pub mod manager;
pub mod record;

pub use manager::{
    downgrade_fenced_error, log_append_error, AddOffsets, AddPartitions, AppendToken, Effect,
    EndTxn, InitProducerId, ListFilter, ListedTxn, ListedTxns, ProducerIdSource, RequestId,
    Response, TxnApi, TxnConfig, TxnDescription, TxnManager,
};
pub use record::{encode_key, RecordError, TopicPartition, TxnKey, TxnLogValue, TxnState};

/// The transactional id's `__transaction_state` partition: Kafka's
/// `Utils.abs(transactionalId.hashCode) % transaction.state.log.num.partitions`, the same
/// function that places a group on `__consumer_offsets`, so it is chronik-groups' own.
pub use chronik_groups::partition_for;

/// The internal topic that holds transaction state.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";
