//! The group coordinator: consumer-group membership (chronik-groups' sans-IO
//! `GroupManager`) and committed offsets (`crate::offsets`, kept in `__consumer_offsets`).
//! This node coordinates the groups whose offsets partition it leads; it learns that from the
//! partition manager's leadership changes: taking an offsets partition replays it and restores
//! its groups, losing one answers the groups' parked requests so their members look for the
//! new coordinator.

use std::sync::{Arc, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use chronik_groups::{GroupConfig, GroupManager, OFFSETS_TOPIC};

use crate::clock::now_ms;
use crate::offsets::Offsets;
use crate::partition::Partition;
use crate::partitions::{BoxFuture, Leadership, LeadershipListener, PartitionManager};
use crate::shutdown::Shutdown;

/// How often group timers (session expiry, rebalance deadlines) run.
const GROUP_TICK: Duration = Duration::from_millis(100);

/// What the group coordinator needs from the broker's settings.
#[derive(Debug, Clone)]
pub struct GroupSettings {
    /// Kafka's offsets.topic.num.partitions.
    pub offsets_topic_partitions: i32,
    /// Kafka's offsets.retention.minutes.
    pub offsets_retention_minutes: u64,
    /// Kafka's group.initial.rebalance.delay.ms.
    pub initial_rebalance_delay: Duration,
}

pub struct GroupCoordinator {
    local: Arc<PartitionManager>,
    settings: GroupSettings,
    /// Committed offsets; set once by [`open`](Self::open), before requests are served.
    offsets: OnceLock<Arc<Offsets>>,
    /// Group membership. Held only for short, non-blocking state changes.
    members: std::sync::Mutex<GroupManager>,
    shutdown: Shutdown,
}

impl GroupCoordinator {
    /// A coordinator following `local`'s leadership changes from now on.
    pub fn new(
        local: Arc<PartitionManager>,
        settings: GroupSettings,
        shutdown: Shutdown,
    ) -> Arc<Self> {
        let members = GroupManager::new(GroupConfig {
            initial_rebalance_delay: settings.initial_rebalance_delay,
            ..GroupConfig::default()
        });
        let me = Arc::new(GroupCoordinator {
            local: local.clone(),
            settings,
            offsets: OnceLock::new(),
            members: std::sync::Mutex::new(members),
            shutdown,
        });
        local.subscribe(me.clone());
        me
    }

    /// Group membership state.
    pub fn members(&self) -> MutexGuard<'_, GroupManager> {
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Committed offsets (opened during start).
    pub fn offsets(&self) -> &Arc<Offsets> {
        self.offsets
            .get()
            .expect("offsets are opened before the broker serves requests")
    }

    /// The partitions the offsets are written to.
    pub fn local(&self) -> &Arc<PartitionManager> {
        &self.local
    }

    /// Whether this node coordinates `group`: it leads the group's offsets partition.
    pub fn is_coordinator(&self, group: &str) -> bool {
        self.offsets.get().is_some_and(|o| {
            self.local
                .partition(OFFSETS_TOPIC, o.partition_of(group))
                .is_some()
        })
    }

    /// Rebuilds the committed offsets by replaying every offsets partition this node leads,
    /// and restores their groups. The offsets topic's local partitions must be open.
    pub async fn open(&self) -> Result<(), String> {
        let local = self.local.clone();
        let partitions = self.settings.offsets_topic_partitions;
        let offsets = tokio::task::spawn_blocking(move || Offsets::rebuild(&local, partitions))
            .await
            .map_err(|e| format!("offsets replay panicked: {e}"))?
            .map_err(|e| e.to_string())?;
        let records = offsets.group_records();
        let _ = self.offsets.set(Arc::new(offsets));
        let now = Instant::now();
        let mut members = self.members();
        for (group, record) in &records {
            members.restore(group, record, now);
        }
        if !records.is_empty() {
            tracing::info!(
                groups = records.len(),
                "restored consumer groups from the offsets log"
            );
        }
        Ok(())
    }

    /// After this node took over offsets partition `p`: replay it and restore its groups.
    async fn load_partition(&self, part: &Partition, p: i32) {
        let Some(offsets) = self.offsets.get() else {
            return; // start: `open` replays every led partition itself
        };
        match offsets.reload_partition(&part.log, p as usize).await {
            Ok(records) => {
                let now = Instant::now();
                let mut members = self.members();
                for (group, record) in &records {
                    members.restore(group, record, now);
                }
                tracing::info!(
                    partition = p,
                    groups = records.len(),
                    "took over an offsets partition: committed offsets and groups reloaded"
                );
            }
            Err(e) => {
                tracing::error!(partition = p, error = %e, "cannot reload an offsets partition")
            }
        }
    }

    /// Drives group timers every [`GROUP_TICK`] until shutdown, and records membership
    /// changes in the offsets log.
    pub fn start_timer(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(GROUP_TICK);
            loop {
                tokio::select! {
                    _ = shutdown.wait() => {
                        // Timers stop here, so parked joins would hold the shutdown's drain
                        // until its deadline: answer them now.
                        if let Some(c) = me.upgrade() {
                            let n = c.members().release_waiters(|_| true);
                            tracing::debug!(released = n, "shutdown: answered parked group requests");
                        }
                        return;
                    }
                    _ = tick.tick() => {}
                }
                let Some(c) = me.upgrade() else { return };
                let dirty = {
                    let mut members = c.members();
                    members.tick(Instant::now());
                    members.take_dirty()
                };
                // Recorded one after another, in the order the changes happened, so the last
                // record of a group in the log is its latest membership. Timers wait meanwhile.
                for (group, record) in dirty {
                    if let Err(e) = c.offsets().write_group(&c.local, &group, record).await {
                        tracing::warn!(group = %group, error = %e, "could not record group membership");
                    }
                }
            }
        });
    }

    /// Kafka's offsets retention: forgets the offsets of groups without members whose every
    /// commit is older than `offsets.retention.minutes`.
    pub async fn expire_offsets(&self) {
        let retention_ms = self
            .settings
            .offsets_retention_minutes
            .saturating_mul(60_000) as i64;
        for group in self.offsets().expired_groups(now_ms(), retention_ms) {
            if self.members().has_members(&group) {
                continue;
            }
            match self.offsets().delete_group(&self.local, &group).await {
                Ok(()) => tracing::info!(group = %group, "expired the offsets of an idle group"),
                Err(e) => tracing::warn!(group = %group, error = %e, "offsets expiry failed"),
            }
        }
        self.offsets().forget_tombstones().await;
    }
}

impl LeadershipListener for GroupCoordinator {
    fn changed<'a>(&'a self, change: &'a Leadership) -> BoxFuture<'a> {
        Box::pin(async move {
            if change.topic != OFFSETS_TOPIC {
                return;
            }
            if change.leads {
                self.load_partition(&change.part, change.partition).await;
            } else if let Some(offsets) = self.offsets.get() {
                // No longer the coordinator of this partition's groups: their parked joins
                // go look for the new one.
                self.members()
                    .release_waiters(|g| offsets.partition_of(g) == change.partition);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chronik_groups::{OffsetKey, OffsetValue, OFFSETS_TOPIC};

    use super::*;
    use crate::partitions::test_support::{create, manager};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_group_coordinator_follows_offsets_leadership() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pm = manager(dir.path()).await;
        let settings = GroupSettings {
            offsets_topic_partitions: 2,
            offsets_retention_minutes: 60,
            initial_rebalance_delay: Duration::ZERO,
        };
        let first = GroupCoordinator::new(pm.clone(), settings.clone(), Shutdown::new());
        create(&pm, OFFSETS_TOPIC, 2).await;
        first.open().await.expect("opened");
        assert!(first.is_coordinator("g"));
        let key = OffsetKey {
            group: "g".into(),
            topic: "t".into(),
            partition: 0,
        };
        let value = OffsetValue {
            offset: 42,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms: 0,
        };
        first
            .offsets()
            .commit(&pm, "g", vec![(key, value)])
            .await
            .expect("committed");

        // A second coordinator opened on the same partitions replays the commit.
        let second = GroupCoordinator::new(pm.clone(), settings, Shutdown::new());
        second.open().await.expect("opened");
        assert_eq!(
            second.offsets().get("g", "t", 0).map(|v| v.offset),
            Some(42)
        );
        // Told it leads the group's offsets partition (again), it reloads it; other topics'
        // changes are not its business.
        let p = second.offsets().partition_of("g");
        let part = pm.partition(OFFSETS_TOPIC, p).expect("led here");
        for topic in ["other", OFFSETS_TOPIC] {
            let change = Leadership {
                topic: topic.into(),
                partition: p,
                part: part.clone(),
                leads: true,
            };
            second.changed(&change).await;
        }
        assert_eq!(
            second.offsets().get("g", "t", 0).map(|v| v.offset),
            Some(42)
        );
        pm.close(true).await;
    }
}
