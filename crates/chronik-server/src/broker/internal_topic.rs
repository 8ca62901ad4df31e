//! Creating an internal topic (`__consumer_offsets`, `__transaction_state`) the way Kafka
//! does: a fixed partition count, replicated on up to 3 brokers, with the topic's own configs.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;

use super::{Broker, Layout, TopicError};

/// What an internal topic is made with.
pub struct InternalTopic {
    pub name: &'static str,
    pub partitions: i32,
    pub configs: BTreeMap<String, String>,
}

/// Kafka's `*.replication.factor` default for its internal topics.
const MAX_REPLICATION: usize = 3;

impl Broker {
    /// Creates `topic` (unless another broker did first: that is success) and opens the
    /// partitions this node hosts. Replicated on as many of `cluster_size` brokers as have
    /// registered, at most 3.
    pub(crate) async fn create_internal_topic(
        &self,
        topic: InternalTopic,
        cluster_size: usize,
    ) -> Result<(), TopicError> {
        let rf = cluster_size
            .min(MAX_REPLICATION)
            .min(self.metadata().brokers.len())
            .max(1) as i16;
        let layout = Layout::Counts {
            partitions: topic.partitions,
            replication_factor: rf,
        };
        match self
            .create_topic_checked(topic.name, layout, topic.configs, true, false)
            .await
        {
            Ok(_) => {}
            Err(e) if e.code == ResponseError::TopicAlreadyExists => {}
            Err(e) => return Err(e),
        }
        self.sync_partitions()
            .await
            .map_err(|e| TopicError::new(ResponseError::UnknownServerError, e.to_string()))
    }
}
