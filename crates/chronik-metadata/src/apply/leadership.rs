//! Leaders and ISRs: ISR changes from leaders, failover off a fenced broker, preferred and
//! operator-chosen elections. Every leader change bumps the partition's leader epoch.

use crate::command::Outcome;
use crate::error::Refusal;
use crate::state::{BrokerState, MetadataState};

use super::partition_mut;

impl MetadataState {
    /// A leader's ISR change, applied only in its leader epoch and only if the ISR holds
    /// the leader and nothing but replicas. Kept in replica order.
    pub(crate) fn alter_isr(
        &mut self,
        topic: &str,
        partition: i32,
        leader_epoch: i32,
        isr: &[i32],
    ) -> Result<Outcome, Refusal> {
        let p = self
            .topics
            .get_mut(topic)
            .and_then(|t| t.partitions.get_mut(partition as usize))
            .ok_or_else(|| Refusal::UnknownTopic(topic.to_string()))?;
        if p.leader_epoch != leader_epoch {
            return Err(Refusal::StaleLeaderEpoch {
                topic: topic.to_string(),
                partition,
                current: p.leader_epoch,
                got: leader_epoch,
            });
        }
        let bad = |reason: &str| Refusal::InvalidIsr {
            topic: topic.to_string(),
            partition,
            isr: isr.to_vec(),
            reason: reason.to_string(),
        };
        if !isr.contains(&p.leader) {
            return Err(bad("it must hold the leader"));
        }
        if isr.iter().any(|r| !p.replicas.contains(r)) {
            return Err(bad("it may hold only replicas"));
        }
        let mut next: Vec<i32> = p
            .replicas
            .iter()
            .copied()
            .filter(|r| isr.contains(r))
            .collect();
        next.dedup();
        p.isr = next;
        Ok(Outcome::Done)
    }

    /// Moves leadership off a fenced `broker`: the first alive ISR member in replica order
    /// leads; without one the partition stays offline, unless its topic allows an unclean
    /// election. `broker` leaves every ISR that has another member.
    pub(crate) fn move_leaders_off(&mut self, broker: i32) -> Outcome {
        let alive = self.alive_brokers();
        for t in self.topics.values_mut() {
            let unclean = t
                .configs
                .get("unclean.leader.election.enable")
                .is_some_and(|v| v.trim() == "true");
            for p in t.partitions.iter_mut() {
                if p.leader == broker {
                    let clean = p
                        .replicas
                        .iter()
                        .copied()
                        .find(|r| *r != broker && p.isr.contains(r) && alive.contains(r));
                    if let Some(l) = clean {
                        p.leader = l;
                        p.leader_epoch += 1;
                        p.isr.retain(|r| *r != broker);
                    } else if let Some(l) = unclean
                        .then(|| {
                            p.replicas
                                .iter()
                                .copied()
                                .find(|r| *r != broker && alive.contains(r))
                        })
                        .flatten()
                    {
                        // Unclean: an out-of-sync replica leads; what only the old
                        // ISR had is lost. Only with the topic's explicit consent.
                        p.leader = l;
                        p.leader_epoch += 1;
                        p.isr = vec![l];
                    }
                } else if p.isr.len() > 1 && p.isr.contains(&broker) {
                    p.isr.retain(|r| *r != broker);
                }
            }
        }
        Outcome::Done
    }

    /// Leadership back to each partition's preferred (first) replica where it is alive,
    /// in the ISR and not leading already.
    pub(crate) fn elect_preferred_leaders(&mut self) -> Outcome {
        for t in self.topics.values_mut() {
            for p in t.partitions.iter_mut() {
                let preferred = p.replicas[0];
                let alive = self
                    .brokers
                    .get(&preferred)
                    .is_some_and(|b| b.state == BrokerState::Alive);
                if p.leader != preferred && alive && p.isr.contains(&preferred) {
                    p.leader = preferred;
                    p.leader_epoch += 1;
                }
            }
        }
        Outcome::Done
    }

    /// An operator's election of `leader` (or the preferred replica): it must be a replica,
    /// in the ISR and alive. A new epoch only if leadership really moves.
    pub(crate) fn elect_leader(
        &mut self,
        topic: &str,
        partition: i32,
        leader: Option<i32>,
    ) -> Result<Outcome, Refusal> {
        let alive = self.alive_brokers();
        let p = partition_mut(&mut self.topics, topic, partition)?;
        let target = leader.unwrap_or(p.replicas[0]);
        let refuse = |reason: &str| Refusal::IneligibleLeader {
            topic: topic.to_string(),
            partition,
            broker: target,
            reason: reason.to_string(),
        };
        if !p.replicas.contains(&target) {
            return Err(refuse("not a replica"));
        }
        if !p.isr.contains(&target) {
            return Err(refuse("not in the ISR"));
        }
        if !alive.contains(&target) {
            return Err(refuse("not alive"));
        }
        if p.leader != target {
            p.leader = target;
            p.leader_epoch += 1;
        }
        Ok(Outcome::Done)
    }
}
