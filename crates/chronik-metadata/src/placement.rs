//! Where new partitions go: the replica list of each (the first replica is its preferred
//! leader). CreateTopic and CreatePartitions commands carry these lists, decided by the
//! proposer (placed by [`MetadataState::place`], or given by the client and checked as Kafka
//! checks them), and the state machine checks them again against the state it applies them
//! to; leader and ISR follow from the lists and the brokers' standing there.

use std::collections::BTreeMap;

use crate::command::MAX_PARTITIONS_PER_TOPIC;
use crate::error::Refusal;
use crate::state::{BrokerState, MetadataState, PartitionInfo};

impl MetadataState {
    /// Brokers that get new replicas (alive: not fenced, not being drained), in id order.
    pub fn alive_brokers(&self) -> Vec<i32> {
        self.brokers
            .values()
            .filter(|b| b.state == BrokerState::Alive)
            .map(|b| b.node_id)
            .collect()
    }

    /// Replica lists for `count` new partitions of `replication_factor` replicas over the
    /// alive brokers. Leadership is balanced across topics: each new partition is led (as its
    /// preferred, first replica) by the alive broker leading the fewest partitions so far,
    /// ties to the lowest id; its other replicas follow that broker in id order.
    pub fn place(&self, count: i32, replication_factor: i16) -> Result<Vec<Vec<i32>>, Refusal> {
        let brokers = self.alive_brokers();
        let rf = usize::try_from(replication_factor).unwrap_or(0);
        if rf == 0 || rf > brokers.len() {
            return Err(Refusal::InvalidReplicationFactor(
                replication_factor as i32,
                brokers.len(),
            ));
        }
        let mut leads: BTreeMap<i32, usize> = brokers.iter().map(|b| (*b, 0)).collect();
        for p in self.topics.values().flat_map(|t| &t.partitions) {
            if let Some(n) = leads.get_mut(&p.leader) {
                *n += 1;
            }
        }
        Ok((0..count.max(0))
            .map(|_| {
                let (start, _) = brokers
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, b)| (leads[*b], **b))
                    .expect("rf >= 1 brokers");
                let replicas: Vec<i32> = (0..rf)
                    .map(|r| brokers[(start + r) % brokers.len()])
                    .collect();
                *leads.get_mut(&replicas[0]).expect("a known broker") += 1;
                replicas
            })
            .collect())
    }

    /// The replica lists of a new topic: `manual` checked as Kafka checks a manual assignment,
    /// or `partitions` placed with `replication_factor` replicas each.
    pub fn assign_topic(
        &self,
        topic: &str,
        partitions: i32,
        replication_factor: i16,
        manual: Option<&[Vec<i32>]>,
    ) -> Result<Vec<Vec<i32>>, Refusal> {
        match manual {
            Some(lists) => {
                check_partition_count(i32::try_from(lists.len()).unwrap_or(i32::MAX))?;
                self.check_assignment(topic, 0, lists, None)?;
                Ok(lists.to_vec())
            }
            None => {
                check_partition_count(partitions)?;
                self.place(partitions, replication_factor)
            }
        }
    }

    /// The replica lists of the partitions that grow `topic` to `total`: `manual` (one list
    /// per new partition, checked as Kafka checks them, with the topic's replication factor)
    /// or placed with the topic's replication factor.
    pub fn assign_new_partitions(
        &self,
        topic: &str,
        total: i32,
        manual: Option<&[Vec<i32>]>,
    ) -> Result<Vec<Vec<i32>>, Refusal> {
        let t = self
            .topics
            .get(topic)
            .ok_or_else(|| Refusal::UnknownTopic(topic.to_string()))?;
        let current = t.partitions.len() as i32;
        if total <= current {
            return Err(Refusal::InvalidPartitions {
                requested: total,
                reason: format!("topic {topic} already has {current} partitions"),
            });
        }
        check_partition_count(total)?;
        // The target, not a running reassignment's union of old and new replicas.
        let rf = t.partitions[0].target_replicas().len();
        let additional = (total - current) as usize;
        match manual {
            Some(lists) => {
                if lists.len() != additional {
                    return Err(Refusal::InvalidReplicaAssignment {
                        topic: topic.to_string(),
                        reason: format!(
                            "Attempted to add {additional} additional partition(s), but only \
                             {} assignment(s) were specified.",
                            lists.len()
                        ),
                    });
                }
                self.check_assignment(topic, current, lists, Some(rf))?;
                Ok(lists.to_vec())
            }
            None => self.place(additional as i32, rf as i16),
        }
    }

    /// Kafka's checks of a manual assignment (partition `first + i` gets `lists[i]`): every
    /// broker registered, none twice in a partition, the same number of replicas in every
    /// partition (`rf`, when the topic has partitions already), and at least one replica on a
    /// broker that is not fenced, to lead.
    pub fn check_assignment(
        &self,
        topic: &str,
        first: i32,
        lists: &[Vec<i32>],
        mut rf: Option<usize>,
    ) -> Result<(), Refusal> {
        let refuse = |reason: String| Refusal::InvalidReplicaAssignment {
            topic: topic.to_string(),
            reason,
        };
        for (i, replicas) in lists.iter().enumerate() {
            let partition = first + i as i32;
            if replicas.is_empty() {
                return Err(refuse(format!(
                    "The manual partition assignment for partition {partition} names no broker."
                )));
            }
            for (j, b) in replicas.iter().enumerate() {
                if !self.brokers.contains_key(b) {
                    return Err(refuse(format!(
                        "The manual partition assignment includes broker {b}, but no such \
                         broker is registered."
                    )));
                }
                if replicas[..j].contains(b) {
                    return Err(refuse(format!(
                        "The manual partition assignment includes the broker {b} more than once."
                    )));
                }
            }
            match rf {
                Some(n) if n != replicas.len() => {
                    return Err(refuse(format!(
                        "The manual partition assignment includes a partition with {} \
                         replica(s), but this is not consistent with previous partitions, \
                         which have {n} replica(s).",
                        replicas.len()
                    )));
                }
                _ => rf = Some(replicas.len()),
            }
            if !replicas.iter().any(|b| self.active(*b)) {
                return Err(refuse(format!(
                    "All brokers specified in the manual partition assignment for partition \
                     {partition} are fenced."
                )));
            }
        }
        Ok(())
    }

    /// New partitions on `lists` (checked): the ISR is every replica on a broker that is not
    /// fenced, led by the first of them (the first replica, the preferred leader, whenever
    /// its broker is up).
    pub(crate) fn new_partitions(&self, lists: &[Vec<i32>]) -> Vec<PartitionInfo> {
        lists
            .iter()
            .map(|replicas| {
                let isr: Vec<i32> = replicas
                    .iter()
                    .copied()
                    .filter(|b| self.active(*b))
                    .collect();
                PartitionInfo {
                    leader: isr[0],
                    leader_epoch: 0,
                    isr,
                    replicas: replicas.clone(),
                    sealed: false,
                    adding: Vec::new(),
                    removing: Vec::new(),
                }
            })
            .collect()
    }

    /// A registered broker that is not fenced (it runs and heartbeats; a draining one too).
    fn active(&self, broker: i32) -> bool {
        self.brokers
            .get(&broker)
            .is_some_and(|b| b.state != BrokerState::Fenced)
    }
}

fn check_partition_count(n: i32) -> Result<(), Refusal> {
    if !(1..=MAX_PARTITIONS_PER_TOPIC).contains(&n) {
        return Err(Refusal::InvalidPartitions {
            requested: n,
            reason: format!("must be between 1 and {MAX_PARTITIONS_PER_TOPIC}"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::MetadataCommand;

    use crate::command::tests::state_with_brokers;

    fn create(name: &str, assignments: Vec<Vec<i32>>) -> MetadataCommand {
        MetadataCommand::CreateTopic {
            name: name.into(),
            id: Uuid::from_u128(9),
            assignments,
            configs: BTreeMap::new(),
            internal: false,
            partitions: None,
            replication_factor: None,
        }
    }

    fn reason(r: Result<impl std::fmt::Debug, Refusal>) -> String {
        match r {
            Err(Refusal::InvalidReplicaAssignment { reason, .. }) => reason,
            other => panic!("expected InvalidReplicaAssignment, got {other:?}"),
        }
    }

    #[test]
    fn manual_assignment_is_kept_and_its_first_replica_leads() {
        let mut s = state_with_brokers(3);
        let lists = vec![vec![3, 1], vec![2, 3], vec![1, 2]];
        s.apply(&create("t", lists.clone())).unwrap();
        let t = s.topic("t").unwrap();
        for (p, want) in t.partitions.iter().zip(&lists) {
            assert_eq!(&p.replicas, want);
            assert_eq!(p.leader, want[0]);
            assert_eq!(&p.isr, want);
        }
        // Growing with assignments: same replication factor, appended in order.
        s.apply(&MetadataCommand::CreatePartitions {
            name: "t".into(),
            total: 5,
            assignments: vec![vec![2, 1], vec![3, 2]],
        })
        .unwrap();
        let replicas: Vec<Vec<i32>> = s.topics["t"]
            .partitions
            .iter()
            .map(|p| p.replicas.clone())
            .collect();
        assert_eq!(replicas[3..], [vec![2, 1], vec![3, 2]]);
        s.check_invariants().unwrap();
    }

    #[test]
    fn bad_assignments_are_refused_with_kafkas_reasons_and_change_nothing() {
        let mut s = state_with_brokers(3);
        s.apply(&create("t", vec![vec![1, 2]])).unwrap();
        let before = s.clone();
        let unknown = reason(s.apply(&create("u", vec![vec![1, 9]])));
        assert!(
            unknown.contains("broker 9") && unknown.contains("registered"),
            "{unknown}"
        );
        let twice = reason(s.apply(&create("u", vec![vec![2, 2]])));
        assert!(twice.contains("broker 2 more than once"), "{twice}");
        let uneven = reason(s.apply(&create("u", vec![vec![1, 2], vec![3]])));
        assert!(
            uneven.contains("1 replica(s)") && uneven.contains("have 2"),
            "{uneven}"
        );
        let empty = reason(s.apply(&create("u", vec![vec![]])));
        assert!(empty.contains("partition 0"), "{empty}");
        // New partitions must match the topic's replication factor and the count added.
        let grow = |assignments: Vec<Vec<i32>>| MetadataCommand::CreatePartitions {
            name: "t".into(),
            total: 3,
            assignments,
        };
        let rf = reason(s.apply(&grow(vec![vec![1, 2, 3], vec![1, 2, 3]])));
        assert!(rf.contains("3 replica(s)") && rf.contains("have 2"), "{rf}");
        let count = reason(s.apply(&grow(vec![vec![1, 2]])));
        assert!(
            count.contains("add 2 additional partition(s), but only 1"),
            "{count}"
        );
        assert_eq!(s, before);
    }

    #[test]
    fn fenced_brokers_may_hold_replicas_but_not_lead_or_be_in_sync() {
        let mut s = state_with_brokers(3);
        s.apply(&MetadataCommand::SetBrokerState {
            node_id: 1,
            state: BrokerState::Fenced,
        })
        .unwrap();
        s.apply(&create("t", vec![vec![1, 2]])).unwrap();
        let p = &s.topics["t"].partitions[0];
        assert_eq!((p.leader, p.isr.clone()), (2, vec![2]));
        assert_eq!(p.replicas, vec![1, 2]);
        s.apply(&MetadataCommand::SetBrokerState {
            node_id: 3,
            state: BrokerState::Fenced,
        })
        .unwrap();
        let all_fenced = reason(s.apply(&create("u", vec![vec![1, 3]])));
        assert!(all_fenced.contains("fenced"), "{all_fenced}");
    }

    #[test]
    fn placement_is_carried_by_the_command_and_balances_leaders() {
        let s = state_with_brokers(3);
        let lists = s.place(6, 2).unwrap();
        let leaders: Vec<i32> = lists.iter().map(|r| r[0]).collect();
        assert_eq!(leaders, vec![1, 2, 3, 1, 2, 3]);
        assert_eq!(lists[2], vec![3, 1]);
        assert!(s.place(1, 4).is_err() && s.place(1, 0).is_err());
        // Applying the placed lists on another replica of the state gives the same topic,
        // whatever that replica's leader counts are by then.
        let mut a = s.clone();
        a.apply(&create("t", lists.clone())).unwrap();
        let mut b = state_with_brokers(3);
        b.apply(&create("other", vec![vec![1]])).unwrap();
        b.apply(&create("t", lists)).unwrap();
        assert_eq!(a.topics["t"], b.topics["t"]);
    }
}
