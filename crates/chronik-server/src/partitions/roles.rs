//! Roles: each local replica's role (leader or follower, epoch, ISR, min ISR) from an applied
//! state; a replica taking leadership first rebuilds its producer state. Every leadership taken
//! or lost is published to the manager's listeners.

use std::sync::Arc;

use chronik_metadata::MetadataState;
use chronik_replication::Role;
use tracing::Instrument;

use futures::StreamExt;

use super::{Leadership, PartitionManager};
use crate::partition::Partition;

/// Producer-state rebuilds (log scans) run at once when this node takes over partitions: a
/// bound on the reads a failover starts together, which still overlaps their waits.
const MAX_PARALLEL_REBUILDS: usize = 8;

/// One local replica's role in an applied state, and what it had before.
struct RoleChange {
    topic: String,
    partition: usize,
    part: Arc<Partition>,
    role: Role,
    was_leader: bool,
    leader: i32,
    sealed: bool,
    span: tracing::Span,
}

impl RoleChange {
    /// Whether this replica becomes leader now (and must rebuild its producer state first).
    fn takes_leadership(&self) -> bool {
        matches!(self.role, Role::Leader { .. }) && !self.was_leader
    }
}

impl PartitionManager {
    /// Gives every local replica its role from `state`. A replica that becomes leader first
    /// rebuilds its producer state (and, for an offsets partition, its committed offsets and
    /// groups) from its log, which the previous leader filled. The rebuilds of all new
    /// leaderships run side by side, at most [`MAX_PARALLEL_REBUILDS`] at once, so taking over
    /// many partitions (a failover) does not take one log scan per partition in turn.
    pub(super) async fn apply_roles(&self, state: &MetadataState) {
        let changes = self.plan_roles(state);
        // Each future owns what it uses, collected first: a stream over a borrowing iterator
        // makes the future not provably Send (rustc #102211).
        let rebuilds: Vec<_> = changes
            .iter()
            .map(|c| {
                let (part, span, takes) = (c.part.clone(), c.span.clone(), c.takes_leadership());
                async move {
                    if !takes {
                        return true;
                    }
                    // Stop taking fetched batches first, so the scan sees the final log.
                    part.replica.set_role(Role::Unknown);
                    match part.rebuild_producers().instrument(span.clone()).await {
                        Ok(()) => true,
                        Err(e) => {
                            span.in_scope(|| {
                                tracing::error!(error = %e,
                                "cannot rebuild producer state; not taking leadership")
                            });
                            false
                        }
                    }
                }
            })
            .collect();
        let rebuilt: Vec<bool> = futures::stream::iter(rebuilds)
            .buffered(MAX_PARALLEL_REBUILDS)
            .collect()
            .await;
        for (c, ok) in changes.iter().zip(rebuilt) {
            if ok {
                self.take_role(state, c).await;
            }
        }
    }

    /// The role `state` gives each local replica, with what it had before.
    fn plan_roles(&self, state: &MetadataState) -> Vec<RoleChange> {
        // Leadership needs this process's incarnation in the state: only then are the epochs
        // of the partitions it led before a restart or heal bumped (the registration that
        // bumps them lands in a later state; this one is applied again then).
        let registered = self.registered(state);
        let mut out = Vec::new();
        for topic in state.topics.values() {
            let Some(local) = self.partitions.get(&topic.name).map(|t| t.parts.clone()) else {
                continue;
            };
            for (i, info) in topic.partitions.iter().enumerate() {
                let Some(Some(part)) = local.get(i) else {
                    continue;
                };
                if info.leader == self.settings.node_id && !registered && !part.replica.is_leader()
                {
                    continue;
                }
                let role = if info.leader == self.settings.node_id {
                    Role::Leader {
                        epoch: info.leader_epoch,
                        isr: info.isr.clone(),
                        min_isr: part.config().min_insync_replicas.min(info.replicas.len()),
                    }
                } else {
                    Role::Follower {
                        leader: info.leader,
                        epoch: info.leader_epoch,
                    }
                };
                out.push(RoleChange {
                    topic: topic.name.clone(),
                    partition: i,
                    was_leader: part.replica.is_leader(),
                    part: part.clone(),
                    role,
                    leader: info.leader,
                    sealed: info.sealed,
                    span: tracing::info_span!("partition", topic = %topic.name, partition = i),
                });
            }
        }
        out
    }

    /// Gives one replica its planned role (its producer state is rebuilt if it takes over).
    async fn take_role(&self, state: &MetadataState, c: &RoleChange) {
        let (part, i, span) = (&c.part, c.partition, &c.span);
        let leading = matches!(c.role, Role::Leader { .. });
        let addr = state
            .brokers
            .get(&c.leader)
            .map(|b| b.rpc_addr.clone())
            .filter(|a| !a.is_empty());
        // Only a leader refuses produce; followers keep replicating what it has.
        if c.sealed && leading {
            part.log.seal();
        } else {
            part.log.resume();
        }
        span.in_scope(|| {
            self.replicas
                .set_role(&c.topic, i as i32, c.role.clone(), addr.as_deref())
        });
        if c.takes_leadership() || (c.was_leader && !leading) {
            let change = Leadership {
                topic: c.topic.clone(),
                partition: i as i32,
                part: part.clone(),
                leads: leading,
            };
            let listeners = self
                .listeners
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            for l in listeners {
                l.changed(&change).instrument(span.clone()).await;
            }
        }
    }
}
