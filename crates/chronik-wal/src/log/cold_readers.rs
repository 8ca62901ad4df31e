//! The threads that serve reads which may miss the page cache.
//!
//! A consumer far behind the log end reads at whatever rate the disk and the CPU give it, and
//! on a small machine that takes the CPU time and the disk queue the latency-critical work
//! needs: produce handling, commit wake-ups and the fdatasync passes acknowledgements wait for.
//! Measured on 2 cores (docs/performance.md, cold-read scenario): an unthrottled catch-up
//! consumer at 600 MB/s took acks=all p99 from 2.7 ms to 28 ms when its reads ran on the
//! shared blocking pool. So cold reads run on threads of their own at a lower CPU priority
//! (nice [`BACKGROUND_NICE`](crate::io_priority::BACKGROUND_NICE)) and the lowest best-effort I/O priority: they still take every
//! idle cycle and the whole disk when nothing else needs them, but yield when something does.
//! A lower-priority thread cannot be raised back without privileges, which is why these are
//! dedicated threads and not blocking-pool threads lowered for one read.
//!
//! Bounds: [`MAX_COLD_READS`] threads, and as many reads in flight (queued or running) in the
//! whole process; further callers wait asynchronously, holding no thread, for a slot.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::{oneshot, Semaphore};

use crate::error::WalError;

/// Most reads that may miss the page cache in flight at once, in the whole process, and the
/// number of threads that serve them. Measured in the cold-read scenario: two threads read as
/// fast as eight (261 against 257 MB/s, reads chunked and yielding to commits) with the same
/// produce p99; with reads of at most 64 MiB, two bound the memory they fill to 128 MiB.
pub const MAX_COLD_READS: usize = 2;

static SLOTS: Semaphore = Semaphore::const_new(MAX_COLD_READS);
static POOL: OnceLock<Result<SyncSender<Job>, String>> = OnceLock::new();

type Job = Box<dyn FnOnce() + Send>;

/// Runs `read` on a cold-read thread, once one of the [`MAX_COLD_READS`] slots is free.
pub(super) async fn run<T: Send + 'static>(
    read: impl FnOnce() -> Result<T, WalError> + Send + 'static,
) -> Result<T, WalError> {
    metrics::counter!(crate::metric_names::COLD_READS).increment(1);
    // The semaphore is never closed. The permit goes with the job, so a caller that gives up
    // (a closed connection) does not free a slot its read still occupies.
    let permit = SLOTS
        .acquire()
        .await
        .map_err(|_| WalError::Failed("cold read slots closed".into()))?;
    let (done, answer) = oneshot::channel();
    let job: Job = Box::new(move || {
        let _permit = permit;
        // The caller may have gone; then nobody needs the answer.
        let _ = done.send(read());
    });
    let pool = POOL
        .get_or_init(start)
        .as_ref()
        .map_err(|e| WalError::Failed(e.clone()))?;
    // The queue holds MAX_COLD_READS jobs and each holds a slot, so it is never full.
    pool.try_send(job).map_err(|e| match e {
        TrySendError::Full(_) => WalError::Failed("cold read queue full".into()),
        TrySendError::Disconnected(_) => WalError::Failed("cold read threads gone".into()),
    })?;
    answer
        .await
        .map_err(|_| WalError::Failed("cold read failed (the read panicked)".into()))?
}

/// Starts the threads; an error (no thread could be spawned) fails every cold read.
fn start() -> Result<SyncSender<Job>, String> {
    let (tx, rx) = sync_channel::<Job>(MAX_COLD_READS);
    let rx = Arc::new(Mutex::new(rx));
    let mut started = 0;
    for i in 0..MAX_COLD_READS {
        let rx = rx.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("chronik-cold-read-{i}"))
            .spawn(move || serve(&rx));
        match spawned {
            Ok(_) => started += 1,
            Err(e) => tracing::error!(error = %e, "cannot start a cold-read thread"),
        }
    }
    if started == 0 {
        return Err("no cold-read thread could be started".into());
    }
    Ok(tx)
}

fn serve(jobs: &Mutex<Receiver<Job>>) {
    crate::io_priority::lower_this_thread();
    crate::io_priority::mark_cold_reader();
    loop {
        // A poisoned lock only means another thread panicked while holding it, in recv.
        let job = match jobs.lock().unwrap_or_else(|p| p.into_inner()).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        // A read that panics drops its answer channel (the caller gets an error); the thread
        // stays, so the pool never shrinks.
        if catch_unwind(AssertUnwindSafe(job)).is_err() {
            tracing::error!("a cold read panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_run_on_low_priority_threads_and_panics_do_not_shrink_the_pool() {
        let name = run(|| Ok(std::thread::current().name().map(str::to_owned)))
            .await
            .unwrap();
        assert!(name.unwrap_or_default().starts_with("chronik-cold-read-"));
        #[cfg(target_os = "linux")]
        {
            // SAFETY: reads this thread's nice value.
            let nice = run(|| Ok(unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }))
                .await
                .unwrap();
            assert_eq!(nice, crate::io_priority::BACKGROUND_NICE);
        }
        for _ in 0..2 * MAX_COLD_READS {
            let r: Result<(), _> = run(|| panic!("a read that panics")).await;
            assert!(r.is_err());
        }
        let sums = futures_join(16).await;
        assert_eq!(sums, (0..16).collect::<Vec<_>>());
    }

    async fn futures_join(n: usize) -> Vec<usize> {
        let tasks: Vec<_> = (0..n).map(|i| tokio::spawn(run(move || Ok(i)))).collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap().unwrap());
        }
        out
    }
}
