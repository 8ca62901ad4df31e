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

pub mod manager;
pub mod record;

pub use manager::{
    downgrade_fenced_error, log_append_error, AddOffsets, AddPartitions, AppendToken, Effect,
    EndTxn, InitProducerId, ListedTxn, ListedTxns, ProducerIdSource, RequestId, Response, TxnApi,
    TxnConfig, TxnDescription, TxnManager,
};
pub use record::{encode_key, RecordError, TopicPartition, TxnKey, TxnLogValue, TxnState};

/// The transactional id's `__transaction_state` partition: Kafka's
/// `Utils.abs(transactionalId.hashCode) % transaction.state.log.num.partitions`, the same
/// function that places a group on `__consumer_offsets`, so it is chronik-groups' own.
pub use chronik_groups::partition_for;

/// The internal topic that holds transaction state.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";
