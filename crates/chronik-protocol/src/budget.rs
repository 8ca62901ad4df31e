//! One budget of request bytes being received, shared by every connection (Kafka's
//! `queued.max.request.bytes`, on by default here).
//!
//! A frame's body is charged in full before its buffer is allocated and stays charged until
//! its [`BudgetPermit`] drops (the connection drops it once the request has been handled).
//! When the budget is spent, readers wait: they stop reading their socket and TCP pushes back
//! on their clients, so memory for request bodies never exceeds the budget.
//!
//! Not FIFO on purpose: a small request takes room that is free now even while a large one
//! waits for more. With a FIFO semaphore, one connection announcing a 100 MiB frame (and
//! stalling) would put every small request of every client behind it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// The shared budget. Cloning shares it.
#[derive(Clone, Debug)]
pub struct RequestBudget {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    total_bytes: usize,
    used_bytes: AtomicUsize,
    /// Woken whenever bytes are given back.
    released: Notify,
}

/// Bytes charged to the budget, given back on drop.
#[derive(Debug)]
pub struct BudgetPermit {
    inner: Option<Arc<Inner>>,
    bytes: usize,
}

impl RequestBudget {
    pub fn new(total_bytes: usize) -> RequestBudget {
        RequestBudget {
            inner: Arc::new(Inner {
                total_bytes,
                used_bytes: AtomicUsize::new(0),
                released: Notify::new(),
            }),
        }
    }

    pub fn total_bytes(&self) -> usize {
        self.inner.total_bytes
    }

    /// Bytes charged right now (for metrics).
    pub fn used_bytes(&self) -> usize {
        self.inner.used_bytes.load(Ordering::Relaxed)
    }

    /// Charges `bytes`, waiting until that much is free. `None` if `bytes` exceeds the whole
    /// budget: it could never be granted, so the caller must refuse the frame.
    pub async fn acquire(&self, bytes: usize) -> Option<BudgetPermit> {
        if bytes > self.inner.total_bytes {
            return None;
        }
        loop {
            // Register for the wake-up before checking, so a release between the check and
            // the wait is not missed.
            let released = self.inner.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if let Some(p) = self.try_acquire(bytes) {
                return Some(p);
            }
            released.await;
        }
    }

    /// Charges `bytes` if that much is free now.
    pub fn try_acquire(&self, bytes: usize) -> Option<BudgetPermit> {
        let inner = &self.inner;
        inner
            .used_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes)
                    .filter(|&after| after <= inner.total_bytes)
            })
            .ok()?;
        Some(BudgetPermit {
            inner: Some(inner.clone()),
            bytes,
        })
    }
}

impl BudgetPermit {
    /// A permit for nothing (an empty frame, or reading without a budget).
    pub fn none() -> BudgetPermit {
        BudgetPermit {
            inner: None,
            bytes: 0,
        }
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for BudgetPermit {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            inner.used_bytes.fetch_sub(self.bytes, Ordering::AcqRel);
            inner.released.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn waits_when_spent_and_resumes_on_release() {
        let budget = RequestBudget::new(100);
        let a = budget.acquire(60).await.unwrap();
        assert_eq!(budget.used_bytes(), 60);
        assert!(budget.try_acquire(50).is_none());
        // Never grantable: refused at once instead of waiting forever.
        assert!(budget.acquire(101).await.is_none());

        let b2 = budget.clone();
        let waiter = tokio::spawn(async move { b2.acquire(50).await.map(|p| p.bytes()) });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "must wait while the budget is spent");
        drop(a);
        let got = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, Some(50));
        assert_eq!(budget.used_bytes(), 0, "the waiter's permit was dropped");
    }

    #[tokio::test]
    async fn small_requests_pass_a_waiting_large_one() {
        let budget = RequestBudget::new(100);
        let held = budget.acquire(70).await.unwrap();
        let b2 = budget.clone();
        let large = tokio::spawn(async move { b2.acquire(80).await.map(|p| p.bytes()) });
        tokio::time::sleep(Duration::from_millis(20)).await;
        // 30 bytes are free: a small request gets them although the large one waits.
        let small = tokio::time::timeout(Duration::from_secs(5), budget.acquire(10))
            .await
            .unwrap()
            .unwrap();
        drop(small);
        drop(held);
        let got = tokio::time::timeout(Duration::from_secs(5), large)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, Some(80));
        assert_eq!(BudgetPermit::none().bytes(), 0);
    }
}
