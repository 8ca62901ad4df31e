//! Cluster identity and broker membership: naming the cluster, registering brokers,
//! fencing and unfencing them.

use crate::command::Outcome;
use crate::state::{BrokerInfo, BrokerState, MetadataState};

impl MetadataState {
    /// The first cluster id applied wins; later ones change nothing.
    pub(crate) fn init_cluster(&mut self, cluster_id: &str) -> Outcome {
        if self.cluster_id.is_empty() {
            self.cluster_id = cluster_id.to_string();
        }
        Outcome::Done
    }

    /// Adds or updates a broker. A new incarnation may have lost what it never synced:
    /// each partition decides what follows (`PartitionInfo::on_new_incarnation`).
    pub(crate) fn register_broker(&mut self, b: &BrokerInfo) -> Outcome {
        let new_incarnation = self
            .brokers
            .get(&b.node_id)
            .is_some_and(|old| old.incarnation != b.incarnation);
        if new_incarnation {
            let brokers = &self.brokers;
            let alive = |id: i32| {
                id != b.node_id
                    && brokers
                        .get(&id)
                        .is_some_and(|x| x.state != BrokerState::Fenced)
            };
            for p in self.topics.values_mut().flat_map(|t| &mut t.partitions) {
                p.on_new_incarnation(b.node_id, alive(p.leader));
            }
        }
        self.brokers.insert(b.node_id, b.clone());
        Outcome::Done
    }

    /// The controller fences a silent broker or unfences one that heartbeats again; an
    /// unknown broker changes nothing.
    pub(crate) fn set_broker_state(&mut self, node_id: i32, state: BrokerState) -> Outcome {
        if let Some(b) = self.brokers.get_mut(&node_id) {
            b.state = state;
        }
        Outcome::Done
    }
}
