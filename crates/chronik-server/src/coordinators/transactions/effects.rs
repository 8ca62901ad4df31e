//! Carrying out the manager's effects: durable appends to `__transaction_state`, markers to
//! every partition of a transaction, answers to parked requests. Each append and each marker
//! round runs as its own task and reports back to the manager, whose answer may ask for more.

use std::sync::Arc;
use std::time::Duration;

use chronik_txn::{AppendToken, Effect, TopicPartition, TRANSACTION_STATE_TOPIC};
use kafka_protocol::ResponseError;

use super::TransactionCoordinator;
use crate::broker::Broker;
use crate::clock::now_ms;
use crate::durable_append::append_durably;
use crate::txn::{EndTxnMarker, MarkerType};

/// First and longest wait between attempts to write a marker to a partition that cannot take
/// it now (no leader, leader elsewhere and unreachable, not enough replicas).
const MARKER_RETRY_MIN: Duration = Duration::from_millis(100);
const MARKER_RETRY_MAX: Duration = Duration::from_secs(2);

/// One transaction's markers, as the manager asked for them.
#[derive(Clone)]
struct Markers {
    token: AppendToken,
    marker: EndTxnMarker,
}

impl TransactionCoordinator {
    /// Carries out `effects` in order: answers now, appends and marker writes as tasks.
    pub(super) fn execute(self: &Arc<Self>, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Respond { request, response } => {
                    let waiter = self
                        .waiters
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&request);
                    // None: the request gave up waiting (ANSWER_TIMEOUT).
                    if let Some(tx) = waiter {
                        let _ = tx.send(response);
                    }
                }
                Effect::AppendLog {
                    token,
                    partition,
                    key,
                    value,
                } => {
                    let me = self.clone();
                    tokio::spawn(async move {
                        me.append(token, partition, key, value).await;
                    });
                }
                Effect::WriteMarkers {
                    token,
                    producer_id,
                    producer_epoch,
                    commit,
                    coordinator_epoch,
                    partitions,
                } => {
                    let markers = Markers {
                        token,
                        marker: EndTxnMarker {
                            producer_id,
                            producer_epoch,
                            marker: MarkerType::from_committed(commit),
                            coordinator_epoch,
                        },
                    };
                    let me = self.clone();
                    tokio::spawn(async move {
                        me.write_markers(markers, partitions).await;
                    });
                }
            }
        }
    }

    /// One record to `__transaction_state` (acks=all, uncompressed), reported to the manager.
    async fn append(
        self: Arc<Self>,
        token: AppendToken,
        partition: i32,
        key: bytes::Bytes,
        value: Option<bytes::Bytes>,
    ) {
        let batch = match chronik_groups::encode_raw_batch(&[(key, value)], now_ms()) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a transaction log record");
                let effects = self
                    .manager()
                    .log_failed(&token, ResponseError::UnknownServerError.code());
                return self.execute(effects);
            }
        };
        let result = append_durably(&self.local, TRANSACTION_STATE_TOPIC, partition, &batch).await;
        let effects = match result {
            Ok(_) => self.manager().log_written(&token, now_ms()),
            Err(e) => {
                tracing::warn!(partition, error = %e, "transaction log append failed");
                self.manager().log_failed(&token, e.code().code())
            }
        };
        self.execute(effects);
    }

    /// Writes the marker to every partition (side by side), then tells the manager.
    async fn write_markers(self: Arc<Self>, markers: Markers, partitions: Vec<TopicPartition>) {
        let writes = partitions
            .iter()
            .map(|tp| self.write_marker(&markers, tp))
            .collect::<Vec<_>>();
        futures::future::join_all(writes).await;
        let effects = self.manager().markers_written(&markers.token);
        self.execute(effects);
    }

    /// One attempt at writing `marker` to `tp`: here if this node leads it, else through its
    /// leader. UNKNOWN_TOPIC_OR_PARTITION only when this node's metadata no longer has it.
    async fn attempt(
        &self,
        broker: &Arc<Broker>,
        marker: &EndTxnMarker,
        tp: &TopicPartition,
    ) -> Result<(), ResponseError> {
        let leader = broker
            .metadata()
            .topic(&tp.topic)
            .and_then(|t| t.partitions.get(usize::try_from(tp.partition).ok()?))
            .map(|i| i.leader)
            .ok_or(ResponseError::UnknownTopicOrPartition)?;
        if leader == broker.node_id {
            return crate::handlers::write_marker(broker, &tp.topic, tp.partition, marker)?.await;
        }
        if leader < 0 {
            return Err(ResponseError::NotLeaderOrFollower);
        }
        let results = self
            .peers
            .write_markers(broker, leader, marker, std::slice::from_ref(tp))
            .await;
        match results.into_iter().next() {
            // The leader's metadata may lag this node's: retried, not taken as gone.
            Some(Err(ResponseError::UnknownTopicOrPartition)) => {
                Err(ResponseError::NotLeaderOrFollower)
            }
            Some(r) => r,
            None => Err(ResponseError::UnknownServerError),
        }
    }

    /// Writes the marker to one partition, retrying until it is written, the partition no
    /// longer exists, the partition refuses it for good (a newer producer epoch or
    /// coordinator: Kafka drops such markers too), this node stops coordinating the
    /// transaction, or shutdown.
    async fn write_marker(&self, markers: &Markers, tp: &TopicPartition) {
        let mut wait = MARKER_RETRY_MIN;
        loop {
            let Some(broker) = self.broker.get().and_then(|b| b.upgrade()) else {
                return;
            };
            let code = match self.attempt(&broker, &markers.marker, tp).await {
                Ok(()) => return,
                Err(code) => code,
            };
            match code {
                ResponseError::UnknownTopicOrPartition => {
                    tracing::info!(topic = %tp.topic, partition = tp.partition,
                        "transaction marker not written: the partition no longer exists");
                    return;
                }
                ResponseError::InvalidProducerEpoch
                | ResponseError::TransactionCoordinatorFenced => {
                    tracing::warn!(topic = %tp.topic, partition = tp.partition, error = ?code,
                        producer_id = markers.marker.producer_id,
                        "transaction marker refused for good; not retried");
                    return;
                }
                _ => {}
            }
            crate::warn_limited!("txn_marker_retry", topic = %tp.topic, partition = tp.partition,
                error = ?code, "transaction marker not written yet; retrying");
            if !self
                .manager()
                .is_coordinator(&markers.token.transactional_id)
            {
                return;
            }
            tokio::select! {
                _ = self.shutdown.wait() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(MARKER_RETRY_MAX);
        }
    }
}
