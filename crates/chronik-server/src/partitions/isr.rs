//! ISR changes: the leaders on this node propose them, all in one Raft command per tick.

use std::sync::Arc;

use chronik_metadata::{IsrChange, MetadataCommand};
use chronik_replication::replica::Replica;

use super::PartitionManager;

impl PartitionManager {
    /// Leaders propose ISR changes (followers lagging past `replica.lag.time.max.ms` leave,
    /// caught-up replicas join) every 250 ms.
    pub(super) fn start_isr_updates(self: &Arc<Self>) {
        let tick = std::time::Duration::from_millis(250);
        crate::periodic::every(self, &self.shutdown, tick, |m| async move {
            m.update_isrs().await
        });
    }

    /// Collects every ISR change this node's leaders want and proposes them as one command:
    /// one Raft round however many partitions changed (a node losing a peer changes the ISR
    /// of every partition it leads with it at once).
    pub async fn update_isrs(&self) {
        let state = self.metadata();
        let lag = self.settings.replica_lag_time_max;
        let mut changes = Vec::new();
        let mut before = Vec::new();
        for r in self.replicas.matching(Replica::isr_may_change) {
            let Some(info) = state
                .topic(&r.topic)
                .and_then(|t| t.partitions.get(r.partition as usize))
            else {
                continue;
            };
            let Some((epoch, isr)) = r.isr_change(&info.replicas, lag) else {
                continue;
            };
            // Joining members count towards the high watermark before the change
            // commits; leaving ones until it has.
            r.widen_isr(&isr);
            before.push(info.isr.clone());
            changes.push(IsrChange {
                topic: r.topic.clone(),
                partition: r.partition,
                leader_epoch: epoch,
                isr,
            });
        }
        if changes.is_empty() {
            return;
        }
        let results = match self
            .meta
            .apply(MetadataCommand::AlterIsrs {
                changes: changes.clone(),
            })
            .await
            .and_then(|o| Ok(o.into_per_partition()?))
        {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(partitions = changes.len(), error = %e.message,
                    "ISR changes not committed; retried on the next tick");
                return;
            }
        };
        for ((c, from), result) in changes.iter().zip(before).zip(results) {
            match result {
                Ok(()) => tracing::info!(topic = %c.topic, partition = c.partition,
                    from = ?from, to = ?c.isr, "ISR changed"),
                Err(e) => tracing::warn!(topic = %c.topic, partition = c.partition,
                    error = %e, "ISR change refused"),
            }
        }
    }
}
