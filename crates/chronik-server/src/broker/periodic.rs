//! The broker's periodic work: ISR changes and group timers, each on its own tick until
//! shutdown (or until the broker is dropped).

use std::sync::Arc;

use chronik_metadata::{IsrChange, MetadataCommand};

use super::Broker;

impl Broker {
    /// Runs `work` on this broker every `period` until shutdown or until the broker is gone.
    /// Ticks missed while `work` runs are not made up: the next one waits a whole period.
    pub(super) fn every<F, Fut>(self: &Arc<Self>, period: std::time::Duration, work: F)
    where
        F: Fn(Arc<Broker>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let me = Arc::downgrade(self);
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.wait() => return,
                    _ = tick.tick() => {}
                }
                let Some(broker) = me.upgrade() else { return };
                work(broker).await;
            }
        });
    }

    /// Leaders propose ISR changes (followers lagging past `replica.lag.time.max.ms` leave,
    /// caught-up replicas join) every 250 ms.
    pub(super) fn start_isr_updates(self: &Arc<Self>) {
        self.every(std::time::Duration::from_millis(250), |broker| async move {
            broker.update_isrs().await
        });
    }

    /// Collects every ISR change this node's leaders want and proposes them as one command:
    /// one Raft round however many partitions changed (a node losing a peer changes the ISR
    /// of every partition it leads with it at once).
    pub(super) async fn update_isrs(&self) {
        let state = self.metadata();
        let lag = self.config.replica_lag_time_max;
        let mut changes = Vec::new();
        let mut before = Vec::new();
        for r in self.replicas.all() {
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

    /// Drives group timers (session expiry, rebalance deadlines) every 100 ms until shutdown,
    /// and records membership changes in the offsets log.
    pub(super) fn start_group_timer(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
            loop {
                tokio::select! {
                    _ = shutdown.wait() => {
                        // Timers stop here, so parked joins would hold the shutdown's drain
                        // until its deadline: answer them now.
                        if let Some(broker) = me.upgrade() {
                            let n = broker.groups().release_waiters(|_| true);
                            tracing::debug!(released = n, "shutdown: answered parked group requests");
                        }
                        return;
                    }
                    _ = tick.tick() => {}
                }
                let Some(broker) = me.upgrade() else { return };
                let dirty = {
                    let mut groups = broker.groups();
                    groups.tick(std::time::Instant::now());
                    groups.take_dirty()
                };
                // Recorded one after another, in the order the changes happened, so the last
                // record of a group in the log is its latest membership. Timers wait meanwhile.
                for (group, record) in dirty {
                    if let Err(e) = broker.offsets().write_group(&broker, &group, record).await {
                        tracing::warn!(group = %group, error = %e, "could not record group membership");
                    }
                }
            }
        });
    }
}
