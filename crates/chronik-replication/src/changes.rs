//! One change signal per [`ReplicaManager`](crate::ReplicaManager): every replica registered
//! there bumps it when something a follower's fetch would learn changes (a leader's append,
//! high watermark or log start, a role). A held fetch waits on this one signal instead of on
//! watches of each of its thousands of partitions, and then looks at each partition's own
//! version ([`Replica::version`](crate::Replica::version)) to find which changed.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;
use tokio::time::Instant;

#[derive(Default)]
pub struct Changes {
    version: AtomicU64,
    notify: Notify,
}

impl Changes {
    /// The current version: take it before looking at the partitions, then
    /// [`wait_past`](Self::wait_past) it, so a change in between is not missed.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    pub fn bump(&self) {
        self.version.fetch_add(1, Ordering::AcqRel);
        self.notify.notify_waiters();
    }

    /// Waits until the version differs from `seen` or `deadline` passes.
    pub async fn wait_past(&self, seen: u64, deadline: Instant) {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        // Registered before the version is read: a bump after the read wakes it.
        notified.as_mut().enable();
        if self.version() != seen {
            return;
        }
        let _ = tokio::time::timeout_at(deadline, notified).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_bump_after_the_version_was_taken_is_not_missed() {
        let c = Changes::default();
        let seen = c.version();
        c.bump();
        let t0 = Instant::now();
        c.wait_past(seen, t0 + Duration::from_secs(5)).await;
        assert!(t0.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_wait_ends_on_a_bump_or_at_its_deadline() {
        let c = Arc::new(Changes::default());
        let t0 = Instant::now();
        c.wait_past(c.version(), t0 + Duration::from_millis(50))
            .await;
        assert!(t0.elapsed() >= Duration::from_millis(50));
        let waiter = {
            let c = c.clone();
            let seen = c.version();
            tokio::spawn(async move {
                c.wait_past(seen, Instant::now() + Duration::from_secs(5))
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let t1 = Instant::now();
        c.bump();
        waiter.await.expect("waiter");
        assert!(t1.elapsed() < Duration::from_secs(1));
    }
}
