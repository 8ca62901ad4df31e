//! Partition reassignment (Kafka's KIP-455 model): start, complete, cancel.

use std::collections::BTreeMap;

use crate::command::Outcome;
use crate::error::Refusal;
use crate::state::{MetadataState, PartitionInfo, TopicInfo};

use super::partition_mut;

impl MetadataState {
    /// Starts moving a partition to `target`: the replicas become the target followed by
    /// the old ones not in it. The same move again (a proposer's retry) is done already.
    pub(crate) fn reassign_partition(
        &mut self,
        topic: &str,
        partition: i32,
        target: &[i32],
    ) -> Result<Outcome, Refusal> {
        let known: Vec<i32> = self.brokers.keys().copied().collect();
        let p = partition_mut(&mut self.topics, topic, partition)?;
        let refuse = |reason: String| Refusal::InvalidReassignment {
            topic: topic.to_string(),
            partition,
            reason,
        };
        if p.reassigning() {
            if p.target_replicas() == target {
                return Ok(Outcome::Done);
            }
            return Err(refuse(format!(
                "one is already in progress (to {:?}); cancel it first",
                p.target_replicas()
            )));
        }
        if target.is_empty() {
            return Err(refuse("the target replica list is empty".into()));
        }
        let mut sorted = target.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != target.len() {
            return Err(refuse(format!("broker repeated in {target:?}")));
        }
        if let Some(b) = target.iter().find(|b| !known.contains(b)) {
            return Err(refuse(format!("broker {b} is not part of the cluster")));
        }
        let old = p.replicas.clone();
        let adding: Vec<i32> = target
            .iter()
            .copied()
            .filter(|r| !old.contains(r))
            .collect();
        let removing: Vec<i32> = old
            .iter()
            .copied()
            .filter(|r| !target.contains(r))
            .collect();
        p.replicas = target.iter().chain(&removing).copied().collect();
        p.adding = adding;
        p.removing = removing;
        Ok(Outcome::Done)
    }

    /// Finishes a reassignment whose target replicas are all in the ISR; if the leader is
    /// leaving, the first alive target replica leads (new epoch).
    pub(crate) fn complete_reassignment(
        &mut self,
        topic: &str,
        partition: i32,
    ) -> Result<Outcome, Refusal> {
        let alive = self.alive_brokers();
        let p = reassigning_partition_mut(&mut self.topics, topic, partition)?;
        let target = p.target_replicas();
        if let Some(r) = target.iter().find(|r| !p.isr.contains(r)) {
            return Err(Refusal::InvalidReassignment {
                topic: topic.to_string(),
                partition,
                reason: format!("target replica {r} is not in the ISR yet"),
            });
        }
        if !target.contains(&p.leader) {
            let next = target
                .iter()
                .copied()
                .find(|r| alive.contains(r))
                .ok_or_else(|| Refusal::InvalidReassignment {
                    topic: topic.to_string(),
                    partition,
                    reason: "no target replica is alive to take leadership".into(),
                })?;
            p.leader = next;
            p.leader_epoch += 1;
        }
        p.isr.retain(|r| target.contains(r));
        p.replicas = target;
        p.adding.clear();
        p.removing.clear();
        Ok(Outcome::Done)
    }

    /// Abandons a running reassignment: back to the old replicas; the added ones leave the
    /// ISR, and if one of them leads, the first old replica in the ISR takes over.
    pub(crate) fn cancel_reassignment(
        &mut self,
        topic: &str,
        partition: i32,
    ) -> Result<Outcome, Refusal> {
        let p = reassigning_partition_mut(&mut self.topics, topic, partition)?;
        let old = p.original_replicas();
        let isr: Vec<i32> = p
            .isr
            .iter()
            .copied()
            .filter(|r| !p.adding.contains(r))
            .collect();
        if !old.contains(&p.leader) {
            let next = isr
                .first()
                .copied()
                .ok_or_else(|| Refusal::InvalidReassignment {
                    topic: topic.to_string(),
                    partition,
                    reason: "no original replica is in the ISR to take leadership back".into(),
                })?;
            p.leader = next;
            p.leader_epoch += 1;
        }
        p.isr = isr;
        p.replicas = old;
        p.adding.clear();
        p.removing.clear();
        Ok(Outcome::Done)
    }
}

/// [`partition_mut`] of a partition with a reassignment in progress
/// (`NoReassignmentInProgress` otherwise).
fn reassigning_partition_mut<'a>(
    topics: &'a mut BTreeMap<String, TopicInfo>,
    topic: &str,
    partition: i32,
) -> Result<&'a mut PartitionInfo, Refusal> {
    let p = partition_mut(topics, topic, partition)?;
    if !p.reassigning() {
        return Err(Refusal::NoReassignmentInProgress {
            topic: topic.to_string(),
            partition,
        });
    }
    Ok(p)
}
