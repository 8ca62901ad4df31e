//! The broker's periodic work: ISR changes and group timers, each on its own tick until
//! shutdown (or until the broker is dropped).

use std::sync::Arc;

use chronik_metadata::MetadataCommand;

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

    pub(super) async fn update_isrs(&self) {
        let state = self.metadata();
        let lag = self.config.replica_lag_time_max;
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
            let cmd = MetadataCommand::AlterIsr {
                topic: r.topic.clone(),
                partition: r.partition,
                leader_epoch: epoch,
                isr: isr.clone(),
            };
            match self.apply(cmd).await {
                Ok(_) => tracing::info!(topic = %r.topic, partition = r.partition,
                    from = ?info.isr, to = ?isr, "ISR changed"),
                Err(e) => tracing::warn!(topic = %r.topic, partition = r.partition,
                    error = %e.message, "ISR change refused"),
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
