//! Broker liveness: every node heartbeats the controller (the Raft leader); the controller
//! fences a broker that misses its session timeout and unfences it when it heartbeats again.
//! Both changes are metadata commands, so every node's Metadata answers agree on who is
//! alive.
//!
//! A new controller knows nobody's last heartbeat, so it counts every broker as seen at the
//! moment it took over: a broker is fenced only after a full session timeout of silence
//! observed by one controller.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chronik_metadata::raft::NodeId;
use chronik_metadata::{BrokerState, MetadataCommand};
use openraft::ServerState;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::network::channel;
use crate::node::MetadataNode;
use crate::pb::raft_client::RaftClient;
use crate::pb::HeartbeatRequest;

/// Timing of heartbeats and fencing.
#[derive(Debug, Clone, Copy)]
pub struct LivenessConfig {
    /// How often each node heartbeats the controller.
    pub heartbeat_interval: Duration,
    /// Silence after which the controller fences a broker.
    pub session_timeout: Duration,
    /// Give leadership back to preferred replicas once they are in the ISR again.
    pub auto_leader_rebalance: bool,
}

/// The controller's record of heartbeats. Only meaningful on the leader.
#[derive(Default)]
pub struct Heartbeats {
    /// (term in which the record was started, node -> last heartbeat).
    inner: Mutex<(u64, HashMap<NodeId, Instant>)>,
}

impl Heartbeats {
    pub fn record(&self, node: NodeId) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.1.insert(node, Instant::now());
    }

    /// Last heartbeat of `node`, counting from `since` for nodes not heard in `term` yet.
    /// A new term starts a new record.
    fn last_seen(&self, term: u64, node: NodeId, since: Instant) -> Instant {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if g.0 != term {
            *g = (term, HashMap::new());
        }
        *g.1.entry(node).or_insert(since)
    }
}

/// Partition leaderships the controller should move: off each fenced broker that leads a
/// partition with another alive ISR member, and back to preferred replicas.
fn leader_moves(state: &chronik_metadata::MetadataState) -> (Vec<i32>, bool) {
    let alive = |id: &i32| {
        state
            .brokers
            .get(id)
            .is_some_and(|b| b.state == BrokerState::Alive)
    };
    let mut off = Vec::new();
    let mut preferred = false;
    for t in state.topics.values() {
        let unclean = t
            .configs
            .get("unclean.leader.election.enable")
            .is_some_and(|v| v.trim() == "true");
        for p in &t.partitions {
            let candidates = if unclean { &p.replicas } else { &p.isr };
            if !alive(&p.leader)
                && candidates.iter().any(|r| *r != p.leader && alive(r))
                && !off.contains(&p.leader)
            {
                off.push(p.leader);
            }
            if alive(&p.leader)
                && p.leader != p.replicas[0]
                && alive(&p.replicas[0])
                && p.isr.contains(&p.replicas[0])
            {
                preferred = true;
            }
        }
    }
    (off, preferred)
}

/// Partitions whose running reassignment can complete: every target replica is in the ISR.
/// Read from the state on every controller tick, so a new controller picks up where the
/// last one stopped.
fn completable_reassignments(state: &chronik_metadata::MetadataState) -> Vec<(String, i32)> {
    let mut out = Vec::new();
    for t in state.topics.values() {
        for (i, p) in t.partitions.iter().enumerate() {
            if p.reassigning() && p.target_replicas().iter().all(|r| p.isr.contains(r)) {
                out.push((t.name.clone(), i as i32));
            }
        }
    }
    out
}

impl MetadataNode {
    /// On the controller: moves replicas off decommissioning brokers, one reassignment per
    /// partition, and removes a broker from the Raft membership once it holds none.
    async fn drain_decommissioning(&self) {
        let state = self.state();
        let plan = state.decommission_plan();
        if !plan.stuck.is_empty() {
            warn!(node = self.node_id, stuck = ?plan.stuck,
                "replicas on decommissioning brokers with no alive broker to move to");
        }
        let (moves, empty) = (plan.moves, plan.drained);
        for (topic, partition, target) in moves {
            let cmd = MetadataCommand::ReassignPartition {
                topic: topic.clone(),
                partition,
                target: target.clone(),
            };
            match self.propose_as_leader(cmd).await {
                Ok(_) => info!(node = self.node_id, %topic, partition, ?target,
                    "controller moves a replica off a decommissioning broker"),
                Err(e) => warn!(node = self.node_id, %topic, partition, error = %e,
                    "controller could not move a replica off a decommissioning broker"),
            }
        }
        let status = self.status();
        for broker in empty {
            if !status.voters.contains(&broker) && !status.learners.contains(&broker) {
                continue;
            }
            let op = crate::membership::MembershipOp::Remove {
                node_id: broker as NodeId,
            };
            // As leader only, never forwarded (see `propose_as_leader`).
            match crate::membership::on_leader(self.raft(), &op).await {
                Ok(()) => info!(
                    node = self.node_id,
                    broker,
                    "decommissioned broker holds no replica; removed from the Raft membership"
                ),
                Err(e) => warn!(node = self.node_id, broker, error = %e,
                    "could not remove a decommissioned broker from the Raft membership"),
            }
        }
    }

    /// On the controller: completes reassignments whose new replicas caught up.
    async fn complete_reassignments(&self) {
        for (topic, partition) in completable_reassignments(&self.state()) {
            let cmd = MetadataCommand::CompleteReassignment {
                topic: topic.clone(),
                partition,
            };
            match self.propose_as_leader(cmd).await {
                Ok(_) => {
                    info!(node = self.node_id, %topic, partition, "controller completed a reassignment")
                }
                Err(e) => {
                    warn!(node = self.node_id, %topic, partition, error = %e, "controller could not complete a reassignment")
                }
            }
        }
    }

    /// On the controller: moves partition leadership off fenced brokers (to an alive ISR
    /// member, new epoch) and back to preferred replicas once they are in the ISR again.
    async fn check_leaders(&self, auto_rebalance: bool) {
        let (off, preferred) = leader_moves(&self.state());
        let preferred = preferred && auto_rebalance;
        for broker in off {
            match self
                .propose(MetadataCommand::MoveLeadersOff { broker })
                .await
            {
                Ok(_) => info!(
                    node = self.node_id,
                    broker, "controller moved partition leaders off a fenced broker"
                ),
                Err(e) => {
                    warn!(node = self.node_id, broker, error = %e, "controller could not move leaders")
                }
            }
        }
        self.complete_reassignments().await;
        self.drain_decommissioning().await;
        if preferred {
            match self
                .propose_as_leader(MetadataCommand::ElectPreferredLeaders)
                .await
            {
                Ok(_) => info!(
                    node = self.node_id,
                    "controller returned leadership to preferred replicas"
                ),
                Err(e) => {
                    warn!(node = self.node_id, error = %e, "controller could not elect preferred leaders")
                }
            }
        }
    }

    /// Starts this node's heartbeat sender and its controller duties (which act only while
    /// it leads).
    pub fn start_liveness(self: &Arc<Self>, cfg: LivenessConfig) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(cfg.heartbeat_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut leading_since: Option<(u64, Instant)> = None;
            loop {
                tick.tick().await;
                let Some(node) = me.upgrade() else { return };
                // A heartbeat may take up to half a session: a busy controller answering late
                // must not get a live broker fenced.
                node.send_heartbeat(cfg.session_timeout / 2).await;
                let m = node.raft().metrics().borrow().clone();
                if m.state != ServerState::Leader {
                    leading_since = None;
                    continue;
                }
                let since = match leading_since {
                    Some((term, t)) if term == m.current_term => t,
                    _ => {
                        let t = Instant::now();
                        leading_since = Some((m.current_term, t));
                        t
                    }
                };
                node.check_brokers(m.current_term, since, cfg.session_timeout)
                    .await;
                node.check_leaders(cfg.auto_leader_rebalance).await;
            }
        });
    }

    /// Tells the controller this node is alive: recorded directly when this node leads,
    /// else sent to the leader. A failed heartbeat is only logged; the next one follows.
    async fn send_heartbeat(&self, timeout: Duration) {
        let Some(leader) = self.leader() else { return };
        if leader == self.node_id {
            self.heartbeats().record(self.node_id);
            return;
        }
        let Some(addr) = self.peer_addr(leader) else {
            return;
        };
        let Ok(ch) = channel(&addr) else { return };
        let req = HeartbeatRequest {
            node_id: self.node_id,
        };
        match tokio::time::timeout(timeout, RaftClient::new(ch).heartbeat(req)).await {
            Ok(Ok(_)) => {}
            Ok(Err(s)) => {
                tracing::debug!(node = self.node_id, leader, error = %s, "heartbeat failed")
            }
            Err(_) => tracing::debug!(node = self.node_id, leader, "heartbeat timed out"),
        }
    }

    /// On the controller: fences brokers silent for a session timeout, unfences brokers
    /// heard from again.
    async fn check_brokers(&self, term: u64, since: Instant, session_timeout: Duration) {
        let state = self.state();
        let now = Instant::now();
        for (id, b) in &state.brokers {
            let seen = self.heartbeats().last_seen(term, *id as NodeId, since);
            let silent = now.saturating_duration_since(seen) > session_timeout;
            let next = match (b.state, silent) {
                (BrokerState::Alive, true) => BrokerState::Fenced,
                (BrokerState::Fenced, false) => BrokerState::Alive,
                _ => continue,
            };
            let cmd = MetadataCommand::SetBrokerState {
                node_id: *id,
                state: next,
            };
            match self.propose_as_leader(cmd).await {
                Ok(_) => info!(node = self.node_id, broker = id, state = ?next,
                    silent_ms = now.saturating_duration_since(seen).as_millis() as u64,
                    "controller changed broker state"),
                Err(e) => warn!(node = self.node_id, broker = id, error = %e,
                    "controller could not change broker state"),
            }
        }
    }
}
