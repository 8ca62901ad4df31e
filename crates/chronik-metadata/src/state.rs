use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A broker as the cluster knows it: where clients and peers reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerInfo {
    pub node_id: i32,
    /// Host advertised to Kafka clients.
    pub host: String,
    /// Port advertised to Kafka clients.
    pub port: i32,
    pub rack: Option<String>,
    /// Where peers reach its Raft and replication RPCs (empty for standalone).
    #[serde(default)]
    pub rpc_addr: String,
    #[serde(default)]
    pub state: BrokerState,
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
}

impl MetadataState {
    pub fn new(cluster_id: String) -> Self {
        MetadataState {
            cluster_id,
            brokers: BTreeMap::new(),
            topics: BTreeMap::new(),
            next_producer_id: 0,
            applied: 0,
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
