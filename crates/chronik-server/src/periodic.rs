//! Work repeated on a tick until shutdown, owned weakly so a dropped owner ends it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::shutdown::Shutdown;

/// Runs `work` on `owner` every `period` until shutdown or until the owner is gone. Ticks
/// missed while `work` runs are not made up: the next one waits a whole period.
pub fn every<T, F, Fut>(owner: &Arc<T>, shutdown: &Shutdown, period: Duration, work: F)
where
    T: Send + Sync + 'static,
    F: Fn(Arc<T>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let me = Arc::downgrade(owner);
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tick.tick() => {}
            }
            let Some(owner) = me.upgrade() else { return };
            work(owner).await;
        }
    });
}
