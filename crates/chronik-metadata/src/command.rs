use std::collections::BTreeMap;

use chronik_auth::acl::{AclBinding, AclFilter};
use chronik_auth::{Mechanism, ScramCredential};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::apply::NewTopic;
use crate::error::Refusal;
use crate::state::{BrokerInfo, BrokerState, MetadataState, TopicInfo};

/// Kafka's ceiling on partitions per topic we accept in one request; a bound, not a target.
pub const MAX_PARTITIONS_PER_TOPIC: i32 = 10_000;
/// The largest producer-id block one command may allocate.
pub const MAX_PRODUCER_ID_BLOCK: i64 = 1_000_000;

/// A change to the metadata. Deterministic: every input a replica needs is in the command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataCommand {
    /// Names the cluster. The first one applied wins; later ones (another node's proposal
    /// when several start at once) change nothing.
    InitCluster {
        cluster_id: String,
    },
    /// Adds or updates a broker's addresses; a (re)registered broker is alive. A new
    /// incarnation (the broker restarted, or healed a poisoned partition) may have lost what
    /// it wrote and never synced; see `PartitionInfo::on_new_incarnation` for what follows.
    RegisterBroker(BrokerInfo),
    /// The controller fences a silent broker or unfences one that heartbeats again.
    SetBrokerState {
        node_id: i32,
        state: BrokerState,
    },
    /// Creates a topic whose partition `i` has the replicas `assignments[i]` (the first is
    /// its preferred leader), decided by the proposer (see `crate::placement`) and checked
    /// again here: every broker registered, none twice, the same count everywhere.
    CreateTopic {
        name: String,
        id: Uuid,
        #[serde(default)]
        assignments: Vec<Vec<i32>>,
        configs: BTreeMap<String, String>,
        internal: bool,
        /// Commands written before they carried assignments name only counts (and an empty
        /// `assignments`): those are placed on apply, as they were then.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        partitions: Option<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replication_factor: Option<i16>,
    },
    DeleteTopic {
        name: String,
    },
    /// Grows a topic to `total` partitions, the new ones on `assignments` (one replica list
    /// per new partition, decided by the proposer; checked again here, with the topic's
    /// replication factor). Empty only in commands written before they carried assignments:
    /// those are placed on apply, as they were then.
    CreatePartitions {
        name: String,
        total: i32,
        #[serde(default)]
        assignments: Vec<Vec<i32>>,
    },
    /// Replaces the topic's explicit config overrides.
    SetTopicConfigs {
        name: String,
        configs: BTreeMap<String, String>,
    },
    AllocateProducerIds {
        count: i64,
    },
    /// A leader's ISR changes for many partitions in one command (Kafka's AlterPartition
    /// carries many too): each is applied or refused on its own, as [`MetadataCommand::AlterIsr`].
    /// The outcome is [`Outcome::PerPartition`], one result per change in order.
    AlterIsrs {
        changes: Vec<IsrChange>,
    },
    /// A partition leader changes its ISR. Applied only if `leader_epoch` is still the
    /// partition's epoch (a deposed leader's change is refused) and the ISR holds the leader
    /// and only replicas. (Commands written before `AlterIsrs` existed; leaders send that now.)
    AlterIsr {
        topic: String,
        partition: i32,
        leader_epoch: i32,
        isr: Vec<i32>,
    },
    /// The controller moves leadership off `broker` (fenced): each partition it leads gets
    /// the first alive ISR member in replica order as leader, with a new epoch; `broker`
    /// leaves every ISR that has another member. A partition with no such member keeps its
    /// leader (offline until it returns), unless its topic sets
    /// `unclean.leader.election.enable=true`: then the first alive replica leads.
    MoveLeadersOff {
        broker: i32,
    },
    /// The controller gives leadership back to each partition's preferred (first) replica
    /// where it is alive, in the ISR, and not the leader; new epoch.
    ElectPreferredLeaders,
    SetPartitionSealed {
        topic: String,
        partition: i32,
        sealed: bool,
    },
    /// An operator moves leadership to `leader` (or, `None`, the preferred first replica):
    /// it must be a replica, alive and in the ISR. New epoch, unless it already leads.
    ElectLeader {
        topic: String,
        partition: i32,
        leader: Option<i32>,
    },
    /// An operator moves a partition to the `target` replicas (Kafka's KIP-455 model). The
    /// replicas become the target followed by the old ones not in it; `adding` and `removing`
    /// record the difference. Added replicas fetch from the leader and join the ISR once caught
    /// up; the controller then completes the move ([`MetadataCommand::CompleteReassignment`]).
    /// Refused while another runs, for an empty or repeated target, or a broker the cluster does
    /// not know. The same set in another order only reorders (the first replica is preferred).
    ReassignPartition {
        topic: String,
        partition: i32,
        target: Vec<i32>,
    },
    /// The controller finishes a reassignment whose target replicas are all in the ISR: the
    /// replicas become the target, the ISR keeps only target members, and if the leader is
    /// leaving the first target replica in the ISR that is alive leads (new epoch).
    CompleteReassignment {
        topic: String,
        partition: i32,
    },
    /// An operator abandons a running reassignment: the replicas go back to the old set, and
    /// the added ones leave the ISR (if one of them leads, the first old replica in the ISR takes
    /// over with a new epoch; refused if there is none).
    CancelReassignment {
        topic: String,
        partition: i32,
    },
    /// Sets a user's SCRAM credential for one mechanism (AlterUserScramCredentials upsertion,
    /// `--bootstrap-user`): salted and iterated already; no password travels through Raft.
    UpsertScramCredential {
        user: String,
        mechanism: Mechanism,
        credential: ScramCredential,
    },
    /// Removes a user's SCRAM credential for one mechanism (refused when there is none, as
    /// Kafka answers RESOURCE_NOT_FOUND); a user with no credential left is gone.
    DeleteScramCredential {
        user: String,
        mechanism: Mechanism,
    },
    /// Adds ACL bindings (CreateAcls); refused whole if one is invalid (the proposer sends
    /// only valid ones). Adding a binding that exists changes nothing.
    CreateAcls {
        bindings: Vec<AclBinding>,
    },
    /// Removes every binding each filter matches (DeleteAcls); the outcome lists them per
    /// filter, in order ([`Outcome::AclsDeleted`]).
    DeleteAcls {
        filters: Vec<AclFilter>,
    },
}

/// One partition's ISR change within [`MetadataCommand::AlterIsrs`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsrChange {
    pub topic: String,
    pub partition: i32,
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
}

/// What applying a command produced, for the proposer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Done,
    Topic(TopicInfo),
    /// Producer ids `[first, first + count)` now belong to the proposer.
    ProducerIds {
        first: i64,
        count: i64,
    },
    /// One result per partition of a batched command, in the command's order.
    PerPartition(Vec<Result<(), Refusal>>),
    /// The bindings each filter of a DeleteAcls removed, in the filters' order.
    AclsDeleted(Vec<Vec<AclBinding>>),
}

/// A command answered with an outcome of another kind than its own: a bug, reported as
/// an error rather than a panic on the request path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("metadata answered {got:?} where {expected} was expected")]
pub struct UnexpectedOutcome {
    pub expected: &'static str,
    pub got: Box<Outcome>,
}

impl Outcome {
    /// The topic that CreateTopic, CreatePartitions and SetTopicConfigs answer with.
    pub fn into_topic(self) -> Result<TopicInfo, UnexpectedOutcome> {
        match self {
            Outcome::Topic(t) => Ok(t),
            got => Err(UnexpectedOutcome {
                expected: "a topic",
                got: Box::new(got),
            }),
        }
    }

    /// The per-partition results of a batched command.
    pub fn into_per_partition(self) -> Result<Vec<Result<(), Refusal>>, UnexpectedOutcome> {
        match self {
            Outcome::PerPartition(r) => Ok(r),
            got => Err(UnexpectedOutcome {
                expected: "per-partition results",
                got: Box::new(got),
            }),
        }
    }

    /// The `(first, count)` producer-id block that AllocateProducerIds answers with.
    pub fn into_producer_ids(self) -> Result<(i64, i64), UnexpectedOutcome> {
        match self {
            Outcome::ProducerIds { first, count } => Ok((first, count)),
            got => Err(UnexpectedOutcome {
                expected: "a producer-id block",
                got: Box::new(got),
            }),
        }
    }

    /// The bindings each filter of a DeleteAcls removed.
    pub fn into_acls_deleted(self) -> Result<Vec<Vec<AclBinding>>, UnexpectedOutcome> {
        match self {
            Outcome::AclsDeleted(d) => Ok(d),
            got => Err(UnexpectedOutcome {
                expected: "the deleted ACLs",
                got: Box::new(got),
            }),
        }
    }
}

impl MetadataState {
    /// Applies one command. On error the state is unchanged. Each command's rules live in
    /// `crate::apply`, by concern.
    pub fn apply(&mut self, cmd: &MetadataCommand) -> Result<Outcome, Refusal> {
        use MetadataCommand as C;
        let outcome = match cmd {
            C::InitCluster { cluster_id } => self.init_cluster(cluster_id),
            C::RegisterBroker(b) => self.register_broker(b),
            C::SetBrokerState { node_id, state } => self.set_broker_state(*node_id, *state),
            C::AlterIsr {
                topic,
                partition,
                leader_epoch,
                isr,
            } => self.alter_isr(topic, *partition, *leader_epoch, isr)?,
            C::AlterIsrs { changes } => Outcome::PerPartition(
                changes
                    .iter()
                    .map(|c| {
                        self.alter_isr(&c.topic, c.partition, c.leader_epoch, &c.isr)
                            .map(|_| ())
                    })
                    .collect(),
            ),
            C::MoveLeadersOff { broker } => self.move_leaders_off(*broker),
            C::ElectPreferredLeaders => self.elect_preferred_leaders(),
            C::ElectLeader {
                topic,
                partition,
                leader,
            } => self.elect_leader(topic, *partition, *leader)?,
            C::CreateTopic {
                name,
                id,
                assignments,
                configs,
                internal,
                partitions,
                replication_factor,
            } => self.create_topic(NewTopic {
                name,
                id: *id,
                assignments,
                configs,
                internal: *internal,
                partitions: *partitions,
                replication_factor: *replication_factor,
            })?,
            C::DeleteTopic { name } => self.delete_topic(name)?,
            C::CreatePartitions {
                name,
                total,
                assignments,
            } => self.create_partitions(name, *total, assignments)?,
            C::SetTopicConfigs { name, configs } => self.set_topic_configs(name, configs)?,
            C::SetPartitionSealed {
                topic,
                partition,
                sealed,
            } => self.set_partition_sealed(topic, *partition, *sealed)?,
            C::AllocateProducerIds { count } => self.allocate_producer_ids(*count),
            C::ReassignPartition {
                topic,
                partition,
                target,
            } => self.reassign_partition(topic, *partition, target)?,
            C::CompleteReassignment { topic, partition } => {
                self.complete_reassignment(topic, *partition)?
            }
            C::CancelReassignment { topic, partition } => {
                self.cancel_reassignment(topic, *partition)?
            }
            C::UpsertScramCredential {
                user,
                mechanism,
                credential,
            } => self.upsert_scram_credential(user, *mechanism, credential)?,
            C::DeleteScramCredential { user, mechanism } => {
                self.delete_scram_credential(user, *mechanism)?
            }
            C::CreateAcls { bindings } => self.create_acls(bindings)?,
            C::DeleteAcls { filters } => Outcome::AclsDeleted(
                filters
                    .iter()
                    .map(|f| self.acls.remove_matching(f))
                    .collect(),
            ),
        };
        self.applied += 1;
        debug_assert_eq!(self.check_invariants(), Ok(()));
        Ok(outcome)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::state::PartitionInfo;

    /// A state with brokers 1..=n registered and alive (shared by the crate's tests).
    pub(crate) fn state_with_brokers(n: i32) -> MetadataState {
        let mut s = MetadataState::new("c".into());
        for id in 1..=n {
            s.apply(&MetadataCommand::RegisterBroker(BrokerInfo {
                node_id: id,
                host: "h".into(),
                port: 9092,
                listeners: Vec::new(),
                rack: None,
                rpc_addr: String::new(),
                state: BrokerState::Alive,
                incarnation: 0,
            }))
            .unwrap();
        }
        s
    }

    /// CreateTopic in its older form (counts only, placed on apply): such commands are still
    /// in Raft logs written before commands carried assignments.
    fn create(name: &str, partitions: i32, rf: i16) -> MetadataCommand {
        MetadataCommand::CreateTopic {
            name: name.into(),
            id: Uuid::from_u128(7),
            assignments: Vec::new(),
            configs: BTreeMap::new(),
            internal: false,
            partitions: Some(partitions),
            replication_factor: Some(rf),
        }
    }

    #[test]
    fn new_incarnation_bumps_the_epochs_the_broker_leads() {
        let mut s = state_with_brokers(3);
        s.apply(&create("t", 3, 3)).unwrap();
        let epochs = |s: &MetadataState| -> Vec<(i32, i32)> {
            s.topics["t"]
                .partitions
                .iter()
                .map(|p| (p.leader, p.leader_epoch))
                .collect()
        };
        let before = epochs(&s);
        let mut b = s.brokers[&2].clone();
        // Same incarnation (a re-registration with new addresses): no bump.
        b.port = 9999;
        s.apply(&MetadataCommand::RegisterBroker(b.clone()))
            .unwrap();
        assert_eq!(epochs(&s), before);
        b.incarnation = 42;
        s.apply(&MetadataCommand::RegisterBroker(b)).unwrap();
        let after = epochs(&s);
        for ((leader, e0), (_, e1)) in before.iter().zip(&after) {
            assert_eq!(
                *e1,
                if *leader == 2 { e0 + 1 } else { *e0 },
                "{before:?} {after:?}"
            );
        }
        assert!(before.iter().any(|(l, _)| *l == 2));
    }

    #[test]
    fn new_incarnation_leaves_the_isrs_it_follows_in() {
        let mut s = state_with_brokers(3);
        s.apply(&create("t", 3, 3)).unwrap();
        // Under a fenced leader it stays: it is one of the candidates for the next election.
        s.apply(&MetadataCommand::SetBrokerState {
            node_id: 3,
            state: BrokerState::Fenced,
        })
        .unwrap();
        let before = s.topics["t"].partitions.clone();
        let mut b = s.brokers[&2].clone();
        b.incarnation = 42;
        s.apply(&MetadataCommand::RegisterBroker(b)).unwrap();
        for (p0, p1) in before.iter().zip(&s.topics["t"].partitions) {
            let expect: Vec<i32> = if p0.leader == 2 || p0.leader == 3 {
                p0.isr.clone()
            } else {
                p0.isr.iter().copied().filter(|r| *r != 2).collect()
            };
            assert_eq!(p1.isr, expect, "{p0:?} -> {p1:?}");
        }
        assert!(before.iter().any(|p| p.leader == 1));
        assert!(before.iter().any(|p| p.leader == 3 && p.isr.contains(&2)));
    }

    #[test]
    fn create_grow_delete() {
        let mut s = state_with_brokers(1);
        s.apply(&create("t", 2, 1)).unwrap();
        assert!(matches!(
            s.apply(&create("t", 2, 1)),
            Err(Refusal::TopicExists(_))
        ));
        s.apply(&MetadataCommand::CreatePartitions {
            name: "t".into(),
            total: 5,
            assignments: Vec::new(),
        })
        .unwrap();
        assert_eq!(s.topic("t").unwrap().partitions.len(), 5);
        assert!(s
            .apply(&MetadataCommand::CreatePartitions {
                name: "t".into(),
                total: 3,
                assignments: Vec::new(),
            })
            .is_err());
        s.apply(&MetadataCommand::DeleteTopic { name: "t".into() })
            .unwrap();
        assert!(s.topic("t").is_none());
    }

    #[test]
    fn commands_from_older_logs_still_apply() {
        // CreateTopic and CreatePartitions as Raft logs hold them from before commands
        // carried assignments: placed on apply, as they were then.
        let old = r#"{"CreateTopic":{"name":"t","id":"00000000-0000-0000-0000-000000000007",
            "partitions":2,"replication_factor":2,"configs":{},"internal":false}}"#;
        let cmd: MetadataCommand = serde_json::from_str(old).unwrap();
        let mut s = state_with_brokers(3);
        s.apply(&cmd).unwrap();
        let grow = r#"{"CreatePartitions":{"name":"t","total":3}}"#;
        s.apply(&serde_json::from_str(grow).unwrap()).unwrap();
        let replicas: Vec<Vec<i32>> = s.topics["t"]
            .partitions
            .iter()
            .map(|p| p.replicas.clone())
            .collect();
        assert_eq!(replicas, vec![vec![1, 2], vec![2, 3], vec![3, 1]]);
        let placed = MetadataCommand::CreatePartitions {
            name: "t".into(),
            total: 4,
            assignments: vec![vec![1, 3]],
        };
        s.apply(&placed).unwrap();
        assert_eq!(s.topics["t"].partitions[3].replicas, vec![1, 3]);
    }

    #[test]
    fn refuses_bad_input_without_changing_state() {
        let mut s = state_with_brokers(1);
        let before = s.clone();
        assert!(s.apply(&create("bad/name", 1, 1)).is_err());
        assert!(s.apply(&create("t", 0, 1)).is_err());
        assert!(s.apply(&create("t", 1, 3)).is_err());
        assert_eq!(s, before);
    }

    #[test]
    fn placement_spreads_leaders() {
        let mut s = state_with_brokers(3);
        s.apply(&create("t", 6, 3)).unwrap();
        let leaders: Vec<i32> = s
            .topic("t")
            .unwrap()
            .partitions
            .iter()
            .map(|p| p.leader)
            .collect();
        assert_eq!(leaders, vec![1, 2, 3, 1, 2, 3]);
        for p in &s.topic("t").unwrap().partitions {
            let mut r = p.replicas.clone();
            r.sort();
            assert_eq!(r, vec![1, 2, 3]);
        }
    }

    #[test]
    fn leadership_is_balanced_across_topics_and_skips_fenced_brokers() {
        let mut s = state_with_brokers(3);
        for i in 0..6 {
            s.apply(&create(&format!("t{i}"), 1, 1)).unwrap();
        }
        let mut per_broker = BTreeMap::new();
        for t in s.topics.values() {
            *per_broker.entry(t.partitions[0].leader).or_insert(0) += 1;
        }
        assert_eq!(per_broker, BTreeMap::from([(1, 2), (2, 2), (3, 2)]));
        s.apply(&MetadataCommand::SetBrokerState {
            node_id: 2,
            state: BrokerState::Fenced,
        })
        .unwrap();
        s.apply(&create("after", 4, 2)).unwrap();
        for p in &s.topic("after").unwrap().partitions {
            assert!(!p.replicas.contains(&2), "{p:?}");
        }
        assert!(s.apply(&create("rf3", 1, 3)).is_err());
    }

    #[test]
    fn producer_ids_are_unique() {
        let mut s = state_with_brokers(1);
        let a = s
            .apply(&MetadataCommand::AllocateProducerIds { count: 10 })
            .unwrap();
        let b = s
            .apply(&MetadataCommand::AllocateProducerIds { count: 10 })
            .unwrap();
        assert_eq!(
            a,
            Outcome::ProducerIds {
                first: 0,
                count: 10
            }
        );
        assert_eq!(
            b,
            Outcome::ProducerIds {
                first: 10,
                count: 10
            }
        );
    }

    fn reassign(target: &[i32]) -> MetadataCommand {
        MetadataCommand::ReassignPartition {
            topic: "t".into(),
            partition: 0,
            target: target.to_vec(),
        }
    }

    fn p0(s: &MetadataState) -> PartitionInfo {
        s.topic("t").unwrap().partitions[0].clone()
    }

    fn set_isr(s: &mut MetadataState, isr: &[i32]) {
        let epoch = p0(s).leader_epoch;
        s.apply(&MetadataCommand::AlterIsr {
            topic: "t".into(),
            partition: 0,
            leader_epoch: epoch,
            isr: isr.to_vec(),
        })
        .unwrap();
    }

    #[test]
    fn batched_isr_changes_apply_or_refuse_each_on_its_own() {
        let mut s = state_with_brokers(3);
        s.apply(&create("t", 3, 3)).unwrap();
        let part = |s: &MetadataState, i: usize| s.topics["t"].partitions[i].clone();
        let change = |s: &MetadataState, i: usize, epoch_delta: i32, drop: bool| {
            let p = part(s, i);
            let isr: Vec<i32> = if drop {
                vec![p.leader]
            } else {
                p.replicas.clone()
            };
            IsrChange {
                topic: "t".into(),
                partition: i as i32,
                leader_epoch: p.leader_epoch + epoch_delta,
                isr,
            }
        };
        let cmd = MetadataCommand::AlterIsrs {
            changes: vec![
                change(&s, 0, 0, true),
                change(&s, 1, -1, true),
                change(&s, 2, 0, true),
            ],
        };
        let results = s.apply(&cmd).unwrap().into_per_partition().unwrap();
        assert_eq!(results[0], Ok(()));
        assert!(matches!(results[1], Err(Refusal::StaleLeaderEpoch { .. })));
        assert_eq!(results[2], Ok(()));
        assert_eq!(part(&s, 0).isr, vec![part(&s, 0).leader]);
        assert_eq!(
            part(&s, 1).isr.len(),
            3,
            "a refused change leaves its partition alone"
        );
        assert_eq!(part(&s, 2).isr, vec![part(&s, 2).leader]);
    }

    #[test]
    fn reassignment_adds_then_completes_once_the_target_is_in_sync() {
        let mut s = state_with_brokers(4);
        s.apply(&create("t", 1, 3)).unwrap();
        let before = p0(&s);
        assert_eq!(before.leader, before.replicas[0]);
        let old = before.replicas.clone();
        // Move off the leader, onto broker 4.
        let target: Vec<i32> = old[1..].iter().copied().chain([4]).collect();
        s.apply(&reassign(&target)).unwrap();
        let during = p0(&s);
        assert_eq!(during.adding, vec![4]);
        assert_eq!(during.removing, vec![old[0]]);
        assert_eq!(during.replicas[..3], target[..]);
        assert_eq!(during.target_replicas(), target);
        // The old set, target members first (Kafka's merged order).
        assert_eq!(during.original_replicas(), vec![old[1], old[2], old[0]]);
        s.check_invariants().unwrap();
        // The same move again (a retried proposal) changes nothing; another one is refused.
        let snapshot = s.topics.clone();
        s.apply(&reassign(&target)).unwrap();
        assert_eq!(s.topics, snapshot);
        assert!(matches!(
            s.apply(&reassign(&old)),
            Err(Refusal::InvalidReassignment { .. })
        ));
        assert_eq!(s.topics, snapshot);
        // Not complete until 4 is in the ISR.
        assert!(s
            .apply(&MetadataCommand::CompleteReassignment {
                topic: "t".into(),
                partition: 0
            })
            .is_err());
        set_isr(&mut s, &[old[0], old[1], old[2], 4]);
        s.apply(&MetadataCommand::CompleteReassignment {
            topic: "t".into(),
            partition: 0,
        })
        .unwrap();
        let after = p0(&s);
        assert_eq!(after.replicas, target);
        assert!(!after.reassigning());
        assert!(!after.isr.contains(&old[0]));
        // The leader was removed: the first target replica leads, with a new epoch.
        assert_eq!(after.leader, target[0]);
        assert_eq!(after.leader_epoch, before.leader_epoch + 1);
        s.check_invariants().unwrap();
    }

    #[test]
    fn reassignment_refusals_and_cancel() {
        let mut s = state_with_brokers(4);
        s.apply(&create("t", 1, 3)).unwrap();
        let before = s.clone();
        for bad in [vec![], vec![1, 1, 2], vec![1, 2, 9]] {
            assert!(
                matches!(
                    s.apply(&reassign(&bad)),
                    Err(Refusal::InvalidReassignment { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            s.apply(&MetadataCommand::CancelReassignment {
                topic: "t".into(),
                partition: 0
            }),
            Err(Refusal::NoReassignmentInProgress { .. })
        ));
        assert_eq!(s, before);
        let old = p0(&s).replicas;
        s.apply(&reassign(&[old[0], 4])).unwrap();
        s.apply(&MetadataCommand::CancelReassignment {
            topic: "t".into(),
            partition: 0,
        })
        .unwrap();
        assert_eq!(p0(&s), p0(&before));
    }

    #[test]
    fn decommission_plan_moves_each_replica_or_names_the_stuck_partition() {
        let mut s = state_with_brokers(4);
        s.apply(&create("t", 1, 3)).unwrap();
        let old = p0(&s).replicas;
        let spare = (1..=4).find(|b| !old.contains(b)).unwrap();
        let leaving = old[1];
        s.apply(&MetadataCommand::SetBrokerState {
            node_id: leaving,
            state: BrokerState::Decommissioning,
        })
        .unwrap();
        let plan = s.decommission_plan();
        let want: Vec<i32> = old
            .iter()
            .map(|r| if *r == leaving { spare } else { *r })
            .collect();
        assert_eq!(plan.moves, vec![("t".to_string(), 0, want.clone())]);
        assert!(plan.stuck.is_empty() && plan.drained.is_empty());
        // While that move runs, nothing more is planned; once it completed, the broker is drained.
        s.apply(&reassign(&want)).unwrap();
        assert!(s.decommission_plan().moves.is_empty());
        let epoch = p0(&s).leader_epoch;
        s.apply(&MetadataCommand::AlterIsr {
            topic: "t".into(),
            partition: 0,
            leader_epoch: epoch,
            isr: p0(&s).replicas,
        })
        .unwrap();
        s.apply(&MetadataCommand::CompleteReassignment {
            topic: "t".into(),
            partition: 0,
        })
        .unwrap();
        assert_eq!(s.decommission_plan().drained, vec![leaving]);
        // Three brokers, RF=3: nowhere to go.
        let mut s = state_with_brokers(3);
        s.apply(&create("t", 1, 3)).unwrap();
        s.apply(&MetadataCommand::SetBrokerState {
            node_id: 1,
            state: BrokerState::Decommissioning,
        })
        .unwrap();
        assert_eq!(s.decommission_plan().stuck, vec![("t".to_string(), 0)]);
    }
}
