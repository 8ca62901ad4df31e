//! Incarnations and the reopening of healed partitions.
//!
//! A broker registers a fresh incarnation at every start. The metadata state machine bumps
//! the leader epoch of every partition a broker leads when its incarnation changes, so a
//! leader that lost unsynced data (power loss, or a poisoned partition cut back to its last
//! synced offset) never refills those offsets under the epoch its followers fetched them in:
//! their divergence check sees the new epoch and cuts the extra tail.
//!
//! A poisoned WAL partition heals by itself (`chronik_wal`'s `heal`); this watcher then
//! rebuilds the partition's producer state and leader epochs from the cut log and, if this
//! node leads it, registers a new incarnation, and only then lets it take produces again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chronik_metadata::{BrokerInfo, MetadataCommand, MetadataState};

use super::PartitionManager;
use crate::meta::TopicError;

/// How often the watcher looks for healed partitions.
const HEAL_WATCH_INTERVAL: Duration = Duration::from_millis(250);

/// A fresh, random incarnation (never 0, the value of a state written before incarnations).
fn fresh_incarnation() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0.max(1)
}

impl PartitionManager {
    /// How this node registers (its addresses); the incarnation is set by
    /// [`register_new_incarnation`](Self::register_new_incarnation).
    pub fn set_registration(&self, info: BrokerInfo) {
        *self.registration() = info;
    }

    fn registration(&self) -> std::sync::MutexGuard<'_, BrokerInfo> {
        self.registration.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `state` holds this process's current incarnation.
    pub(super) fn registered(&self, state: &MetadataState) -> bool {
        let mine = self.registration().incarnation;
        state
            .brokers
            .get(&self.settings.node_id)
            .is_some_and(|b| b.incarnation == mine)
    }

    /// Registers this broker under a new incarnation and waits until this node applied it
    /// (bounded by the metadata timeout; `apply_roles` takes no new leadership before).
    pub async fn register_new_incarnation(&self) -> Result<(), TopicError> {
        let me = {
            let mut r = self.registration();
            r.incarnation = fresh_incarnation();
            r.clone()
        };
        let incarnation = me.incarnation;
        let id = self.settings.node_id;
        let state = self
            .meta
            .propose(MetadataCommand::RegisterBroker(me), |s| {
                s.brokers
                    .get(&id)
                    .is_some_and(|b| b.incarnation == incarnation)
            })
            .await?;
        if !self.registered(&state) {
            return Err(TopicError::new(
                kafka_protocol::ResponseError::RequestTimedOut,
                "the registration of this broker's new incarnation was not applied in time",
            ));
        }
        tracing::info!(node = id, incarnation, "registered a new incarnation");
        Ok(())
    }

    /// Reopens healed partitions every [`HEAL_WATCH_INTERVAL`] until shutdown. Heals are rare
    /// and a node may carry thousands of partitions: a tick looks at them only when a log in
    /// this process healed since the last look that left nothing to retry.
    pub(super) fn start_heal_watch(self: &Arc<Self>) {
        let looked_at = Arc::new(AtomicU64::new(u64::MAX));
        crate::periodic::every(self, &self.shutdown, HEAL_WATCH_INTERVAL, move |m| {
            let looked_at = looked_at.clone();
            async move {
                let heals = chronik_wal::heals_in_process();
                if looked_at.load(Ordering::Acquire) != heals && m.reopen_healed().await {
                    looked_at.store(heals, Ordering::Release);
                }
            }
        });
    }

    /// Rebuilds each healed partition's state, registers a new incarnation if this node
    /// leads one of them (so they lead on in a new epoch), then lets them take produces.
    /// On any failure the partition stays closed and the next tick retries; true when none
    /// is left to retry.
    async fn reopen_healed(&self) -> bool {
        let mut healed = Vec::new();
        let mut done = true;
        for p in self.all_partitions() {
            let generation = p.log.generation();
            if generation == p.serving_generation() || p.log.failure().is_some() {
                continue;
            }
            if let Err(e) = p.rebuild_after_heal().await {
                tracing::error!(topic = %p.topic, partition = p.index, error = %e,
                    "cannot rebuild state after a heal; partition stays closed");
                done = false;
                continue;
            }
            healed.push((p, generation));
        }
        if healed.is_empty() {
            return done;
        }
        if healed.iter().any(|(p, _)| p.replica.is_leader()) {
            if let Err(e) = self.register_new_incarnation().await {
                tracing::warn!(error = %e.message,
                    "cannot register a new incarnation; healed partitions stay closed");
                return false;
            }
        }
        for (p, generation) in healed {
            p.serve_generation(generation);
            tracing::info!(topic = %p.topic, partition = p.index, generation,
                log_end_offset = p.log.log_end_offset(), "healed partition takes produces again");
        }
        done
    }
}
