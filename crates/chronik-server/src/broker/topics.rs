//! Topic administration: create (with broker defaults or a client's replica assignment),
//! grow, delete. The replica lists of new partitions are decided here, on the metadata this
//! node has applied, and travel in the command (the state machine checks them again against
//! the state it applies them to). One lock (`topic_admin`) serializes these operations on a
//! node so its WAL directories follow the metadata, and so two creations from one node see
//! each other's leaders when they balance leadership.

use std::collections::BTreeMap;

use chronik_groups::OFFSETS_TOPIC;
use chronik_metadata::{MetadataCommand, MetadataState, TopicInfo};
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::{Broker, TopicError};
use crate::topic_config;

/// How a new topic's partitions are laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// `partitions` partitions (-1: `--num-partitions`) of `replication_factor` replicas each
    /// (-1: `--default-replication-factor`), placed with leadership balanced.
    Counts {
        partitions: i32,
        replication_factor: i16,
    },
    /// The client's replica lists, index = partition id; the first replica of each is its
    /// preferred leader.
    Manual(Vec<Vec<i32>>),
}

impl Layout {
    /// The broker defaults (auto-created topics).
    pub const DEFAULTS: Layout = Layout::Counts {
        partitions: -1,
        replication_factor: -1,
    };
}

impl Broker {
    /// Kafka's default.replication.factor as this broker applies it: `--default-replication-factor`,
    /// else the brokers alive in `state`, at most 3 (at least 1).
    pub fn default_replication_factor(&self, state: &MetadataState) -> i16 {
        self.config
            .default_replication_factor
            .unwrap_or_else(|| state.alive_brokers().len().clamp(1, 3) as i16)
    }

    /// Creates a topic and opens its partitions.
    pub async fn create_topic(
        &self,
        name: &str,
        layout: Layout,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<TopicInfo, TopicError> {
        chronik_metadata::topic_name::validate(name)
            .map_err(|r| TopicError::new(ResponseError::InvalidTopicException, r))?;
        if name == OFFSETS_TOPIC {
            return Err(TopicError::new(
                ResponseError::TopicAlreadyExists,
                format!("{OFFSETS_TOPIC} is internal and created by the broker"),
            ));
        }
        topic_config::validate_overrides(&configs)
            .map_err(|e| TopicError::new(ResponseError::InvalidConfig, e.to_string()))?;
        self.create_topic_checked(name, layout, configs, false, validate_only)
            .await
    }

    /// The replica lists of a new topic, on the metadata as this node applied it.
    fn assign_topic(
        &self,
        state: &MetadataState,
        name: &str,
        layout: Layout,
    ) -> Result<Vec<Vec<i32>>, TopicError> {
        if state.topic(name).is_some() {
            return Err(chronik_metadata::Refusal::TopicExists(name.to_string()).into());
        }
        let (partitions, replication_factor) = match layout {
            Layout::Manual(lists) => {
                return Ok(state.assign_topic(name, 0, 0, Some(lists.as_slice()))?)
            }
            Layout::Counts {
                partitions,
                replication_factor,
            } => (partitions, replication_factor),
        };
        let partitions = if partitions == -1 {
            self.config.num_partitions
        } else {
            partitions
        };
        let rf = if replication_factor == -1 {
            self.default_replication_factor(state)
        } else {
            replication_factor
        };
        if rf < 1 {
            return Err(TopicError::new(
                ResponseError::InvalidReplicationFactor,
                format!("replication factor {rf} must be at least 1, or -1 for the broker default"),
            ));
        }
        Ok(state.assign_topic(name, partitions, rf, None)?)
    }

    /// Creates a topic whose name and configs were already checked.
    pub(super) async fn create_topic_checked(
        &self,
        name: &str,
        layout: Layout,
        configs: BTreeMap<String, String>,
        internal: bool,
        validate_only: bool,
    ) -> Result<TopicInfo, TopicError> {
        let _admin = self.topic_admin.lock().await;
        let state = self.metadata();
        let cmd = MetadataCommand::CreateTopic {
            name: name.to_string(),
            id: Uuid::new_v4(),
            assignments: self.assign_topic(&state, name, layout)?,
            configs,
            internal,
            partitions: None,
            replication_factor: None,
        };
        if validate_only {
            return Ok((*state).clone().apply(&cmd)?.into_topic()?);
        }
        let topic = self.meta.apply(cmd).await?.into_topic()?;
        let state = self
            .meta
            .applied_locally(|s| s.topic(name).is_some_and(|t| t.id == topic.id))
            .await;
        self.open_changed_partitions(&state).await?;
        tracing::info!(
            topic = name,
            partitions = topic.partitions.len(),
            replication_factor = topic.partitions[0].replicas.len(),
            "created topic"
        );
        Ok(topic)
    }

    /// Returns the topic, creating it with broker defaults if it is missing and
    /// auto-creation is on. `Ok(None)`: missing and not created.
    pub async fn get_or_auto_create(
        &self,
        name: &str,
        allow: bool,
    ) -> Result<Option<TopicInfo>, TopicError> {
        if let Some(t) = self.metadata().topic(name) {
            return Ok(Some(t.clone()));
        }
        if !(allow && self.config.auto_create_topics) {
            return Ok(None);
        }
        match self
            .create_topic(name, Layout::DEFAULTS, BTreeMap::new(), false)
            .await
        {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.code == ResponseError::TopicAlreadyExists => {
                Ok(self.metadata().topic(name).cloned())
            }
            Err(e) => Err(e),
        }
    }

    pub async fn delete_topic(&self, name: &str) -> Result<(), TopicError> {
        if name == OFFSETS_TOPIC {
            return Err(TopicError::new(
                ResponseError::InvalidRequest,
                format!("{OFFSETS_TOPIC} is internal and cannot be deleted"),
            ));
        }
        let _admin = self.topic_admin.lock().await;
        let id = self.metadata().topic(name).map(|t| t.id);
        self.meta
            .apply(MetadataCommand::DeleteTopic {
                name: name.to_string(),
            })
            .await?;
        let state = self
            .meta
            .applied_locally(|s| s.topic(name).map(|t| t.id) != id)
            .await;
        if let Err((_, p, e)) = self.partitions.sync(&state).await {
            tracing::error!(topic = name, partition = p, error = %e, "cannot open partition");
        }
        tracing::info!(topic = name, "deleted topic");
        Ok(())
    }

    /// Grows `name` to `total` partitions, the new ones on `manual` (one replica list per new
    /// partition) or placed with the topic's replication factor.
    pub async fn create_partitions(
        &self,
        name: &str,
        total: i32,
        manual: Option<Vec<Vec<i32>>>,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let _admin = self.topic_admin.lock().await;
        let state = self.metadata();
        let cmd = MetadataCommand::CreatePartitions {
            name: name.to_string(),
            total,
            assignments: state.assign_new_partitions(name, total, manual.as_deref())?,
        };
        if validate_only {
            (*state).clone().apply(&cmd)?;
            return Ok(());
        }
        let before = state.topic(name).map(|t| t.partitions.len()).unwrap_or(0);
        self.meta.apply(cmd).await?.into_topic()?;
        let want = total as usize;
        let state = self
            .meta
            .applied_locally(|s| s.topic(name).is_some_and(|t| t.partitions.len() >= want))
            .await;
        self.open_changed_partitions(&state).await?;
        tracing::info!(topic = name, from = before, to = total, "added partitions");
        Ok(())
    }
}

impl Broker {
    /// Opens (and removes) local partitions to match `state` after a topic change, answering
    /// a WAL failure as KAFKA_STORAGE_ERROR.
    async fn open_changed_partitions(&self, state: &MetadataState) -> Result<(), TopicError> {
        self.partitions.sync(state).await.map_err(|(_, p, e)| {
            TopicError::new(
                ResponseError::KafkaStorageError,
                format!("partition {p}: {e}"),
            )
        })
    }
}
