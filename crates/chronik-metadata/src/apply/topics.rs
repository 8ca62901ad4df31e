//! Topics and their partitions: creation (placement checked again here), deletion,
//! growth, config overrides, the sealed flag; and producer-id blocks.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::command::{Outcome, MAX_PRODUCER_ID_BLOCK};
use crate::error::Refusal;
use crate::state::{MetadataState, TopicInfo};
use crate::topic_name;

use super::partition_mut;

/// A CreateTopic command's fields, as the proposer decided them.
pub(crate) struct NewTopic<'a> {
    pub name: &'a str,
    pub id: Uuid,
    pub assignments: &'a [Vec<i32>],
    pub configs: &'a BTreeMap<String, String>,
    pub internal: bool,
    /// Counts of the older command form (placed on apply); `None` in newer commands.
    pub partitions: Option<i32>,
    pub replication_factor: Option<i16>,
}

impl MetadataState {
    pub(crate) fn create_topic(&mut self, new: NewTopic<'_>) -> Result<Outcome, Refusal> {
        let name = new.name;
        topic_name::validate(name).map_err(|reason| Refusal::InvalidTopicName {
            name: name.to_string(),
            reason: reason.to_string(),
        })?;
        if self.topics.contains_key(name) {
            return Err(Refusal::TopicExists(name.to_string()));
        }
        let lists = match (
            new.assignments.is_empty(),
            new.partitions,
            new.replication_factor,
        ) {
            (true, Some(n), Some(rf)) => self.assign_topic(name, n, rf, None)?,
            _ => self.assign_topic(name, 0, 0, Some(new.assignments))?,
        };
        let topic = TopicInfo {
            name: name.to_string(),
            id: new.id,
            configs: new.configs.clone(),
            partitions: self.new_partitions(&lists),
            internal: new.internal,
        };
        self.topics.insert(name.to_string(), topic.clone());
        Ok(Outcome::Topic(topic))
    }

    pub(crate) fn delete_topic(&mut self, name: &str) -> Result<Outcome, Refusal> {
        self.topics
            .remove(name)
            .ok_or_else(|| Refusal::UnknownTopic(name.to_string()))?;
        Ok(Outcome::Done)
    }

    /// Grows `name` to `total` partitions, on `assignments` when the proposer gave them.
    pub(crate) fn create_partitions(
        &mut self,
        name: &str,
        total: i32,
        assignments: &[Vec<i32>],
    ) -> Result<Outcome, Refusal> {
        let manual = (!assignments.is_empty()).then_some(assignments);
        let lists = self.assign_new_partitions(name, total, manual)?;
        let extra = self.new_partitions(&lists);
        let topic = self
            .topics
            .get_mut(name)
            .ok_or_else(|| Refusal::UnknownTopic(name.to_string()))?;
        topic.partitions.extend(extra);
        Ok(Outcome::Topic(topic.clone()))
    }

    pub(crate) fn set_topic_configs(
        &mut self,
        name: &str,
        configs: &BTreeMap<String, String>,
    ) -> Result<Outcome, Refusal> {
        let topic = self
            .topics
            .get_mut(name)
            .ok_or_else(|| Refusal::UnknownTopic(name.to_string()))?;
        topic.configs = configs.clone();
        Ok(Outcome::Topic(topic.clone()))
    }

    pub(crate) fn set_partition_sealed(
        &mut self,
        topic: &str,
        partition: i32,
        sealed: bool,
    ) -> Result<Outcome, Refusal> {
        partition_mut(&mut self.topics, topic, partition)?.sealed = sealed;
        Ok(Outcome::Done)
    }

    /// Hands out the next block of producer ids, clamped to `[1, MAX_PRODUCER_ID_BLOCK]`.
    pub(crate) fn allocate_producer_ids(&mut self, count: i64) -> Outcome {
        let count = count.clamp(1, MAX_PRODUCER_ID_BLOCK);
        let first = self.next_producer_id;
        self.next_producer_id += count;
        Outcome::ProducerIds { first, count }
    }
}
