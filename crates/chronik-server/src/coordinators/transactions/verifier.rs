//! KIP-890 part 1 through this node's coordinator: before a partition takes the first batch of
//! a producer's transaction, the coordinator must have that partition in the transaction.

use std::sync::{Arc, Weak};

use chronik_txn::{AddPartitions, TopicPartition};
use kafka_protocol::ResponseError;

use super::TransactionCoordinator;
use crate::txn::{TxnVerifier, Verification, VerifyRequest};

pub struct CoordinatorVerifier {
    coordinator: Weak<TransactionCoordinator>,
}

impl CoordinatorVerifier {
    pub fn new(coordinator: &Arc<TransactionCoordinator>) -> Self {
        CoordinatorVerifier {
            coordinator: Arc::downgrade(coordinator),
        }
    }
}

/// The produce error for a verification error, as Kafka's AddPartitionsToTxnManager maps
/// them: a partition outside the transaction is INVALID_TXN_STATE; a coordinator that is not
/// ready (moving, loading, busy) NOT_ENOUGH_REPLICAS, which the producer retries; a producer
/// that is not the transaction's current one INVALID_PRODUCER_EPOCH.
fn produce_error(code: i16) -> ResponseError {
    use ResponseError as E;
    match E::try_from_code(code) {
        Some(E::TransactionAbortable) | Some(E::InvalidTxnState) => E::InvalidTxnState,
        Some(
            E::NotCoordinator
            | E::CoordinatorLoadInProgress
            | E::CoordinatorNotAvailable
            | E::ConcurrentTransactions,
        ) => E::NotEnoughReplicas,
        Some(E::ProducerFenced | E::InvalidProducerIdMapping | E::InvalidProducerEpoch) => {
            E::InvalidProducerEpoch
        }
        Some(other) => other,
        None => E::UnknownServerError,
    }
}

impl TxnVerifier for CoordinatorVerifier {
    fn verify(&self, r: VerifyRequest) -> Verification {
        let Some(c) = self.coordinator.upgrade() else {
            return Verification::Refused(
                ResponseError::NotEnoughReplicas,
                "the transaction coordinator is shutting down".into(),
            );
        };
        let p = c.partition_of(&r.transactional_id);
        let coordinator = c
            .local
            .metadata()
            .topic(chronik_txn::TRANSACTION_STATE_TOPIC)
            .and_then(|t| t.partitions.get(usize::try_from(p).ok()?).map(|i| i.leader));
        let me = c.local.node_id();
        match coordinator {
            Some(node) if node == me => {}
            Some(node) if node >= 0 => return remote(&c, node, r),
            // No coordinator yet: retriable for the producer.
            _ => {
                return Verification::Refused(
                    ResponseError::NotEnoughReplicas,
                    "the transaction coordinator is not available".into(),
                )
            }
        }
        let req = AddPartitions {
            transactional_id: r.transactional_id.clone(),
            producer_id: r.producer_id,
            producer_epoch: r.producer_epoch,
            partitions: vec![TopicPartition::new(r.topic.as_str(), r.partition)],
        };
        let code = c.verify(&req).first().map_or(0, |(_, e)| *e);
        if code == 0 {
            Verification::Verified
        } else {
            let error = produce_error(code);
            Verification::Refused(
                error,
                format!(
                    "transaction {} does not hold {}-{} (coordinator error {code})",
                    r.transactional_id, r.topic, r.partition
                ),
            )
        }
    }
}

/// The verification asked of the coordinator on `node`: only this partition's append waits.
fn remote(c: &Arc<TransactionCoordinator>, node: i32, r: VerifyRequest) -> Verification {
    let Some(broker) = c.broker.get().and_then(|b| b.upgrade()) else {
        return Verification::Refused(
            ResponseError::NotEnoughReplicas,
            "the broker is shutting down".into(),
        );
    };
    let c = c.clone();
    Verification::Pending(Box::pin(async move {
        c.peers.verify(&broker, node, &r).await.map_err(|e| {
            let error = produce_error(e.code());
            let msg = format!(
                "transaction {} not verified for {}-{} by node {node}: {e:?}",
                r.transactional_id, r.topic, r.partition
            );
            (error, msg)
        })
    }))
}
