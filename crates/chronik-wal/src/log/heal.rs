//! Recovery of a poisoned partition without a restart. A failed write or fsync poisons the
//! partition (see `Shared::poison`): nothing above the last synced offset can be trusted, and
//! every waiter for it has been failed. The commit task then retries, with a bounded backoff,
//! a *heal*: cut the log back to its last synced offset (everything above was never reported
//! committed under `fsync=always`), then probe that the disk takes writes again (write and
//! fdatasync [`PROBE_BYTES`] of zeros past the data: the same preallocated zeros recovery
//! trims), and only then reopen for appends. Each heal bumps the log's generation, so a waiter
//! for offsets appended before the cut fails even once new data refills them.

use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::{LifeState, PartitionLog, Shared};
use crate::segment::write_zeros;

/// The first retry follows this long after the failure; each failed attempt doubles it.
pub(super) const HEAL_BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Bound on the wait between two attempts: a freed disk is noticed within this long.
pub(super) const HEAL_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Zeros written and synced to prove the disk takes writes again; one preallocation step, so a
/// partition that heals has room for its next appends.
const PROBE_BYTES: u64 = crate::segment::PREALLOC_STEP_BYTES;

impl Shared {
    /// One heal attempt (blocking). `Ok` once the partition is open for appends again (or was
    /// not poisoned); `Err` with the reason it stays poisoned for now.
    pub(super) fn try_heal(&self) -> Result<(), String> {
        #[cfg(test)]
        if self.hold_heal.load(std::sync::atomic::Ordering::SeqCst) {
            return Err("held by a test".into());
        }
        let _m = self.lock_maintenance();
        let (file, base, data_end, target) = {
            let mut guard = self.lock();
            let inner = &mut *guard;
            if inner.state != LifeState::Open {
                return Err("partition log is closing".into());
            }
            match inner.failure.as_deref() {
                None => return Ok(()),
                Some(super::PANIC_FAILURE) => return Err(super::PANIC_FAILURE.into()),
                // The disk holds a half-done replacement only recovery finishes.
                Some(f) if f.starts_with(super::replace::REPLACE_FAILURE) => {
                    return Err(f.to_string())
                }
                Some(_) => {}
            }
            let target = inner.synced_end;
            self.cut_to(inner, target)
                .map_err(|e| format!("cutting back to offset {target} failed: {e}"))?;
            let seg = inner.active();
            (seg.file().clone(), seg.base_offset, seg.size_bytes, target)
        };
        // Outside the partition lock: while poisoned nothing appends, and `maintenance` keeps
        // truncation, retention and installs away, so the active segment cannot change.
        let probe = write_zeros(&file, data_end, PROBE_BYTES).and_then(|()| file.sync_data());
        if let Err(e) = probe {
            if let Err(e) = file.set_len(data_end) {
                warn!(topic = %self.topic, partition = self.partition, error = %e,
                    "could not remove the probe's zeros; recovery trims them");
            }
            return Err(format!("probe write failed: {e}"));
        }
        self.count_fsyncs(1);
        let mut inner = self.lock();
        let seg = inner
            .segments
            .back_mut()
            .expect("partition log has no segment");
        assert!(
            seg.base_offset == base && seg.size_bytes == data_end,
            "active segment changed while the partition was poisoned"
        );
        seg.allocated_bytes = data_end + PROBE_BYTES;
        let reason = inner.failure.take().unwrap_or_default();
        inner.generation += 1;
        HEALS.fetch_add(1, std::sync::atomic::Ordering::Release);
        inner.last_sync = Instant::now();
        inner.check_invariants();
        info!(topic = %self.topic, partition = self.partition, log_end_offset = target,
            generation = inner.generation, failure = %reason,
            "partition log healed: cut back to its last synced offset and reopened");
        drop(inner);
        self.committed_tx.send_modify(|_| {});
        Ok(())
    }
}

/// Heals of every log in this process, so that a watcher over thousands of partitions looks
/// at their generations only after one of them changed.
static HEALS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many times any log in this process healed so far ([`PartitionLog::generation`] rose).
pub fn heals_in_process() -> u64 {
    HEALS.load(std::sync::atomic::Ordering::Acquire)
}

impl PartitionLog {
    /// Why the partition is poisoned (a write or fsync failed and it has not healed yet).
    pub fn failure(&self) -> Option<String> {
        self.shared.lock().failure.clone()
    }

    /// How many times the partition healed from a poisoning since it was opened. An append
    /// reports the generation it was written in ([`super::Appended::generation`]); state derived
    /// from the log in an older generation (producer sequences, leader epochs) may name
    /// offsets the heal cut away.
    pub fn generation(&self) -> u64 {
        self.shared.lock().generation
    }
}
