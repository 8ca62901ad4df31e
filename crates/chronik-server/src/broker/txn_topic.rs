//! `__transaction_state`: created on first need (FindCoordinator or InitProducerId for a
//! transactional id), as Kafka does, with Kafka's configs.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use chronik_txn::TRANSACTION_STATE_TOPIC;

use super::internal_topic::InternalTopic;
use super::Broker;

/// Kafka's transaction.state.log.segment.bytes.
const SEGMENT_BYTES: u64 = 104_857_600;
/// Kafka's transaction.state.log.min.isr (the replica layer caps it at the replica count).
const MIN_INSYNC_REPLICAS: u32 = 2;

impl Broker {
    /// Whether `__transaction_state` exists. If not, its creation is started in the
    /// background (once at a time); callers answer COORDINATOR_NOT_AVAILABLE meanwhile and
    /// clients retry, as with Kafka.
    pub fn transaction_state_ready(self: &Arc<Self>) -> bool {
        if self.metadata().topic(TRANSACTION_STATE_TOPIC).is_some() {
            return true;
        }
        if self.txn_topic_creating.swap(true, Ordering::AcqRel) {
            return false;
        }
        let me = self.clone();
        tokio::spawn(async move {
            let topic = InternalTopic {
                name: TRANSACTION_STATE_TOPIC,
                partitions: me.txns.partitions(),
                configs: configs(),
            };
            let cluster_size = me.config.cluster.as_ref().map_or(1, |c| c.peers.0.len());
            match me.create_internal_topic(topic, cluster_size).await {
                Ok(()) => tracing::info!(topic = TRANSACTION_STATE_TOPIC, "created"),
                Err(e) => tracing::warn!(topic = TRANSACTION_STATE_TOPIC, error = %e.message,
                    "cannot create the transaction state topic; will retry on the next request"),
            }
            me.txn_topic_creating.store(false, Ordering::Release);
        });
        false
    }
}

/// Kafka's configs of `__transaction_state`.
fn configs() -> BTreeMap<String, String> {
    [
        ("cleanup.policy", "compact".to_string()),
        ("compression.type", "uncompressed".to_string()),
        ("segment.bytes", SEGMENT_BYTES.to_string()),
        ("min.insync.replicas", MIN_INSYNC_REPLICAS.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}
