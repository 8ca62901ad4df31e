//! `__consumer_offsets`: created on a cluster's first start, then replayed into the group
//! coordinator.

use std::collections::BTreeMap;
use std::sync::Arc;

use chronik_groups::OFFSETS_TOPIC;
use kafka_protocol::ResponseError;

use super::{Broker, Layout, StartError};

impl Broker {
    /// Creates the `__consumer_offsets` topic on first start, then rebuilds the committed
    /// offsets by replaying it.
    pub(super) async fn open_offsets(
        self: &Arc<Self>,
        cluster_size: usize,
    ) -> Result<(), StartError> {
        let want = self.config.offsets_topic_partitions;
        match self.metadata().topic(OFFSETS_TOPIC) {
            Some(t) if t.partitions.len() as i32 != want => {
                tracing::warn!(
                    topic = OFFSETS_TOPIC,
                    partitions = t.partitions.len(),
                    configured = want,
                    "the offsets topic keeps the partition count it was created with"
                );
            }
            Some(_) => {}
            // Every broker of the cluster has registered (always, standalone): create it now,
            // spread over all of them.
            None if self.metadata().brokers.len() >= cluster_size => {
                self.create_offsets_topic(cluster_size).await?;
            }
            // Give the others a bounded while to register first, without holding up this
            // node's start: until the topic exists, FindCoordinator answers
            // COORDINATOR_NOT_AVAILABLE and clients retry. A new topic holds no offsets, so
            // the empty stores built below stay right.
            None => {
                let me = self.clone();
                tokio::spawn(async move {
                    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
                    while me.metadata().brokers.len() < cluster_size
                        && me.metadata().topic(OFFSETS_TOPIC).is_none()
                        && tokio::time::Instant::now() < deadline
                    {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                    if me.metadata().topic(OFFSETS_TOPIC).is_none() {
                        if let Err(e) = me.create_offsets_topic(cluster_size).await {
                            tracing::error!(error = %e, "cannot create the offsets topic");
                        }
                    }
                });
            }
        }
        self.groups.open().await.map_err(StartError::Offsets)
    }

    /// Creates `__consumer_offsets` (unless another broker did first) and opens the
    /// partitions this node hosts.
    async fn create_offsets_topic(&self, cluster_size: usize) -> Result<(), StartError> {
        // Offsets must outlive any time or size retention (compaction is still to come).
        let configs = BTreeMap::from([
            ("retention.ms".to_string(), "-1".to_string()),
            ("retention.bytes".to_string(), "-1".to_string()),
            ("segment.bytes".to_string(), (100 << 20).to_string()),
        ]);
        let want = self.config.offsets_topic_partitions;
        // Replicated like Kafka's offsets.topic.replication.factor=3, on as many brokers as
        // have registered (never more than 3).
        let rf = cluster_size
            .min(3)
            .min(self.metadata().brokers.len())
            .max(1) as i16;
        match self
            .create_topic_checked(
                OFFSETS_TOPIC,
                Layout::Counts {
                    partitions: want,
                    replication_factor: rf,
                },
                configs,
                true,
                false,
            )
            .await
        {
            Ok(_) => {}
            Err(e) if e.code == ResponseError::TopicAlreadyExists => {}
            Err(e) => return Err(StartError::Offsets(e.message)),
        }
        self.sync_partitions().await
    }
}
