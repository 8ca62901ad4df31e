use std::collections::BTreeMap;

use chronik_auth::acl::Acls;
use chronik_auth::{Mechanism, ScramCredential};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A broker as the cluster knows it: where clients and peers reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerInfo {
    pub node_id: i32,
    /// Host advertised to Kafka clients: its PLAINTEXT listener's, else its first listener's
    /// (what a state written before `listeners` knew).
    pub host: String,
    /// Port advertised to Kafka clients, with `host`.
    pub port: i32,
    /// Every listener it advertises, by name: a client is told the endpoints of the listener
    /// it came in on. Empty in a state written before listeners: then only PLAINTEXT, at
    /// `host`:`port`.
    #[serde(default)]
    pub listeners: Vec<Endpoint>,
    pub rack: Option<String>,
    /// Where peers reach its Raft and replication RPCs (empty for standalone).
    #[serde(default)]
    pub rpc_addr: String,
    #[serde(default)]
    pub state: BrokerState,
    /// Which run of the broker process registered (a fresh random number per start, and per
    /// heal of a poisoned partition). A new one bumps the leader epoch of every partition the
    /// broker leads (see [`crate::MetadataCommand::RegisterBroker`]).
    #[serde(default)]
    pub incarnation: u64,
}

/// One advertised Kafka listener of a broker (Kafka's `advertised.listeners` entry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The listener name (here also its security protocol: PLAINTEXT, SSL, ...).
    pub name: String,
    pub host: String,
    pub port: i32,
}

impl BrokerInfo {
    /// Where a client that came in on listener `name` reaches this broker; `None` when the
    /// broker has no such listener (Kafka leaves such a broker out of the answer).
    pub fn endpoint(&self, name: &str) -> Option<(&str, i32)> {
        if self.listeners.is_empty() {
            return (name == "PLAINTEXT").then_some((self.host.as_str(), self.port));
        }
        self.listeners
            .iter()
            .find(|e| e.name == name)
            .map(|e| (e.host.as_str(), e.port))
    }
}

/// A broker's standing, set by the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum BrokerState {
    /// Heartbeating: listed in Metadata, gets new replicas.
    #[default]
    Alive,
    /// Missed its session timeout: left out of Metadata and placement until it heartbeats.
    Fenced,
    /// Being drained by an operator: gets no new replicas.
    Decommissioning,
}

/// One partition's placement and leadership.
///
/// Invariants (checked by [`MetadataState::check_invariants`]): `leader` is one of
/// `replicas` and is in `isr`; `isr` is a subset of `replicas`; `leader_epoch >= 0`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionInfo {
    pub replicas: Vec<i32>,
    pub leader: i32,
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
    /// A sealed partition refuses appends and still serves reads.
    pub sealed: bool,
    /// While a reassignment runs (Kafka's KIP-455 model): replicas being added (they fetch
    /// and join the ISR) and being removed (they leave when it completes). `replicas` holds
    /// both: the target first, then the ones being removed. Both empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding: Vec<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing: Vec<i32>,
}

impl PartitionInfo {
    /// `node` restarted (or healed a poisoned log) and may have lost what it wrote and never
    /// synced. Where it leads, the leader epoch moves on: its followers may have fetched those
    /// offsets, and refilling them under the old epoch would leave replicas that differ at the
    /// same offsets and epoch, with nothing to detect it; under a new epoch the followers'
    /// divergence check cuts their extra tail. Where it follows a live leader, it leaves the
    /// ISR (Kafka's KIP-903): it may no longer hold what it acknowledged, and must not be
    /// elected before it has fetched it again. Under a fenced leader it stays, as one of the
    /// candidates for the next election (the leader is always in the ISR, so it never empties).
    pub fn on_new_incarnation(&mut self, node: i32, leader_alive: bool) {
        if self.leader == node {
            self.leader_epoch += 1;
        } else if leader_alive {
            self.isr.retain(|r| *r != node);
        }
    }
}

impl PartitionInfo {
    pub fn reassigning(&self) -> bool {
        !self.adding.is_empty() || !self.removing.is_empty()
    }

    /// The replicas a running reassignment ends with (the replicas when none runs).
    pub fn target_replicas(&self) -> Vec<i32> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.removing.contains(r))
            .collect()
    }

    /// The replicas before a running reassignment (the replicas when none runs), in the
    /// merged order: those kept by the target first. Cancelling restores this, as Kafka does.
    pub fn original_replicas(&self) -> Vec<i32> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.adding.contains(r))
            .collect()
    }
}

/// A topic: identity, per-topic config overrides and partitions (index = partition id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicInfo {
    pub name: String,
    pub id: Uuid,
    /// Only the keys set explicitly for this topic; defaults live in the broker config.
    pub configs: BTreeMap<String, String>,
    pub partitions: Vec<PartitionInfo>,
    pub internal: bool,
}

/// The whole replicated metadata. Changed only through [`MetadataState::apply`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataState {
    pub cluster_id: String,
    pub brokers: BTreeMap<i32, BrokerInfo>,
    pub topics: BTreeMap<String, TopicInfo>,
    /// The first producer id not yet handed out.
    pub next_producer_id: i64,
    /// How many commands have been applied; a version number for readers.
    pub applied: u64,
    /// SCRAM credentials by user and mechanism (salted; never a password).
    #[serde(default)]
    pub scram_users: BTreeMap<String, BTreeMap<Mechanism, ScramCredential>>,
    /// Every ACL binding (used with `--authorizer acl`).
    #[serde(default)]
    pub acls: Acls,
}

/// What decommissioning needs next (see [`MetadataState::decommission_plan`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DecommissionPlan {
    /// (topic, partition, target replicas): each replaces one decommissioning broker.
    pub moves: Vec<(String, i32, Vec<i32>)>,
    /// Partitions holding a decommissioning broker with no alive broker to move to.
    pub stuck: Vec<(String, i32)>,
    /// Decommissioning brokers that hold no replica any more: ready to leave Raft.
    pub drained: Vec<i32>,
}

impl MetadataState {
    /// The next step for every decommissioning broker: one move per partition still holding it
    /// (to the alive broker with the fewest replicas that is not already one; partitions with a
    /// move running wait for it), the partitions with nowhere to go, and the brokers drained.
    /// Pure: the controller proposes the moves, the admin API refuses a decommission whose plan
    /// would be stuck.
    pub fn decommission_plan(&self) -> DecommissionPlan {
        let leaving: Vec<i32> = self
            .brokers
            .values()
            .filter(|b| b.state == BrokerState::Decommissioning)
            .map(|b| b.node_id)
            .collect();
        let mut plan = DecommissionPlan {
            drained: leaving.clone(),
            ..Default::default()
        };
        if leaving.is_empty() {
            return plan;
        }
        let mut load: BTreeMap<i32, usize> = self
            .brokers
            .values()
            .filter(|b| b.state == BrokerState::Alive)
            .map(|b| (b.node_id, 0))
            .collect();
        for p in self.topics.values().flat_map(|t| &t.partitions) {
            for r in &p.replicas {
                if let Some(n) = load.get_mut(r) {
                    *n += 1;
                }
            }
        }
        for t in self.topics.values() {
            for (i, p) in t.partitions.iter().enumerate() {
                let Some(gone) = p.replicas.iter().copied().find(|r| leaving.contains(r)) else {
                    continue;
                };
                plan.drained.retain(|b| !p.replicas.contains(b));
                if p.reassigning() {
                    continue; // one move at a time; the next step follows its completion
                }
                let Some(to) = load
                    .iter()
                    .filter(|(b, _)| !p.replicas.contains(b))
                    .min_by_key(|(b, n)| (**n, **b))
                    .map(|(b, _)| *b)
                else {
                    plan.stuck.push((t.name.clone(), i as i32));
                    continue;
                };
                *load.entry(to).or_default() += 1;
                let target = p
                    .replicas
                    .iter()
                    .map(|r| if *r == gone { to } else { *r })
                    .collect();
                plan.moves.push((t.name.clone(), i as i32, target));
            }
        }
        plan
    }

    pub fn new(cluster_id: String) -> Self {
        MetadataState {
            cluster_id,
            brokers: BTreeMap::new(),
            topics: BTreeMap::new(),
            next_producer_id: 0,
            applied: 0,
            scram_users: BTreeMap::new(),
            acls: Acls::default(),
        }
    }

    pub fn topic(&self, name: &str) -> Option<&TopicInfo> {
        self.topics.get(name)
    }

    pub fn topic_by_id(&self, id: &Uuid) -> Option<&TopicInfo> {
        self.topics.values().find(|t| &t.id == id)
    }

    /// Checks the invariants documented on [`PartitionInfo`]; used after loading from
    /// disk and in debug builds after every apply.
    pub fn check_invariants(&self) -> Result<(), String> {
        for t in self.topics.values() {
            if t.partitions.is_empty() {
                return Err(format!("topic {} has no partitions", t.name));
            }
            for (i, p) in t.partitions.iter().enumerate() {
                if !p.replicas.contains(&p.leader) {
                    return Err(format!("{}-{i}: leader {} not a replica", t.name, p.leader));
                }
                if !p.isr.contains(&p.leader) {
                    return Err(format!("{}-{i}: leader {} not in ISR", t.name, p.leader));
                }
                if p.isr.iter().any(|r| !p.replicas.contains(r)) {
                    return Err(format!("{}-{i}: ISR not a subset of replicas", t.name));
                }
                if p.leader_epoch < 0 {
                    return Err(format!("{}-{i}: negative leader epoch", t.name));
                }
                if p.adding
                    .iter()
                    .chain(&p.removing)
                    .any(|r| !p.replicas.contains(r))
                    || p.adding.iter().any(|r| p.removing.contains(r))
                {
                    return Err(format!(
                        "{}-{i}: reassignment sets not disjoint subsets of replicas",
                        t.name
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A broker registered before listeners existed loads, and serves PLAINTEXT only.
    #[test]
    fn endpoints_by_listener_and_old_state() {
        let old = r#"{"node_id":1,"host":"h","port":9092,"rack":null}"#;
        let b: BrokerInfo = serde_json::from_str(old).unwrap();
        assert!(b.listeners.is_empty());
        assert_eq!(b.endpoint("PLAINTEXT"), Some(("h", 9092)));
        assert_eq!(b.endpoint("SSL"), None);
        let b = BrokerInfo {
            listeners: vec![
                Endpoint {
                    name: "PLAINTEXT".into(),
                    host: "h".into(),
                    port: 9092,
                },
                Endpoint {
                    name: "SSL".into(),
                    host: "s".into(),
                    port: 9093,
                },
            ],
            ..b
        };
        assert_eq!(b.endpoint("SSL"), Some(("s", 9093)));
        assert_eq!(b.endpoint("SASL_SSL"), None);
    }
}
