//! `__consumer_offsets`: created on a cluster's first start, then replayed into the group
//! coordinator.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::internal_topic::InternalTopic;
use super::{Broker, StartError};
use chronik_groups::OFFSETS_TOPIC;
use chronik_metadata::MetadataCommand;

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
            Some(t) if !is_compacted(&t.configs) => self.compact_offsets_topic(t.configs.clone()),
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
        let topic = InternalTopic {
            name: OFFSETS_TOPIC,
            partitions: self.config.offsets_topic_partitions,
            configs: offsets_topic_configs(BTreeMap::new()),
        };
        self.create_internal_topic(topic, cluster_size)
            .await
            .map_err(|e| StartError::Offsets(e.message))
    }

    /// A cluster created before compaction kept its offsets with retention off: move its
    /// topic to Kafka's configs, so the cleaner keeps it as small as its live keys. In the
    /// background, as an operator's AlterConfigs would be: the start does not wait for Raft.
    fn compact_offsets_topic(self: &Arc<Self>, configs: BTreeMap<String, String>) {
        let configs = offsets_topic_configs(configs);
        let me = self.clone();
        tokio::spawn(async move {
            let cmd = MetadataCommand::SetTopicConfigs {
                name: OFFSETS_TOPIC.to_string(),
                configs: configs.clone(),
            };
            let done = |s: &chronik_metadata::MetadataState| {
                s.topic(OFFSETS_TOPIC)
                    .is_some_and(|t| is_compacted(&t.configs))
            };
            match me.meta.propose(cmd, done).await {
                Ok(_) => {
                    tracing::info!(topic = OFFSETS_TOPIC, "the offsets topic is compacted now")
                }
                Err(e) => tracing::warn!(topic = OFFSETS_TOPIC, error = %e.message,
                    "cannot set cleanup.policy=compact on the offsets topic; it will be tried on the next start"),
            }
        });
    }
}

/// Kafka's configs of `__consumer_offsets` (`offsets.topic.segment.bytes` 100 MiB, compacted,
/// batches kept as the coordinator compressed them), over `configs`; the retention overrides
/// of the clusters that predate compaction go.
fn offsets_topic_configs(mut configs: BTreeMap<String, String>) -> BTreeMap<String, String> {
    configs.remove("retention.ms");
    configs.remove("retention.bytes");
    for (k, v) in [
        ("cleanup.policy", "compact".to_string()),
        ("compression.type", "producer".to_string()),
        ("segment.bytes", (100 << 20).to_string()),
    ] {
        configs.insert(k.to_string(), v);
    }
    configs
}

/// Whether the cleaner compacts the topic (an operator's `compact,delete` counts and is kept).
fn is_compacted(configs: &BTreeMap<String, String>) -> bool {
    configs
        .get("cleanup.policy")
        .is_some_and(|p| p.split(',').any(|p| p.trim() == "compact"))
}
