//! KIP-890 part 1: before a partition appends the *first* transactional batch of a
//! producer's transaction, the broker asks the transaction coordinator whether the partition
//! was really added to that transaction (AddPartitionsToTxn v4+, verify only). Without this a
//! late or duplicated produce from an aborted transaction could open a transaction the
//! coordinator never ends ("hanging transaction"), holding the LSO back forever.
//!
//! The produce path calls [`TxnVerifier::verify`] exactly for the batches
//! [`crate::partition::Partition::needs_txn_verification`] selects (transactional, and the
//! producer has no ongoing transaction on the partition); later batches of the same
//! transaction are not verified again, as in Kafka.

use futures::future::BoxFuture;
use kafka_protocol::ResponseError;

/// What the produce path asks about one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyRequest {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub topic: String,
    pub partition: i32,
}

/// The answer. `Pending` lets an implementation ask a remote coordinator: the produce path
/// appends the request's other partitions at once and that partition's batch once it
/// resolves, before the connection handles its next request (a pipelined next batch of the
/// producer must find this one in the log).
pub enum Verification {
    Verified,
    /// Refused with this error (Kafka answers INVALID_TXN_STATE when the partition is not in
    /// the transaction, or the coordinator's error).
    Refused(ResponseError, String),
    Pending(BoxFuture<'static, Result<(), (ResponseError, String)>>),
}

/// The coordinator-side check of KIP-890 part 1.
pub trait TxnVerifier: Send + Sync {
    fn verify(&self, request: VerifyRequest) -> Verification;
}

/// Verifies nothing and lets every first transactional batch through, as a broker without
/// KIP-890 did: the broker's verifier only until the transaction coordinator attaches its own
/// during assembly (`crate::coordinators::transactions::CoordinatorVerifier`), and in tests.
#[derive(Debug, Default, Clone, Copy)]
pub struct UncheckedTxnVerifier;

impl TxnVerifier for UncheckedTxnVerifier {
    fn verify(&self, _request: VerifyRequest) -> Verification {
        Verification::Verified
    }
}
