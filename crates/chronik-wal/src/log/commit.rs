//! The group-commit task: one per partition. It waits for work, then runs a *pass* on the
//! blocking pool: fdatasync rolled segments and persist their indexes (index strictly after data),
//! fsync the directory when files were created, fdatasync the active segment, and publish the
//! synced end as committed. Appends keep going meanwhile, so one pass covers every append that
//! arrived while the previous one was syncing.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::heal::{HEAL_BACKOFF_MAX, HEAL_BACKOFF_MIN};
use super::{LifeState, Shared};
use crate::config::FsyncPolicy;
use crate::error::WalError;
use crate::index::{write_index_files, write_index_files_with, IndexMeta, SegmentIndex};
use crate::recovery::fsync_dir;
use crate::segment::{
    drop_cached, prealloc_step, start_writeback, write_zeros, CACHE_DROP_STEP_BYTES,
    CACHE_KEEP_BYTES, PREALLOC_MAX_PASS_BYTES,
};

/// A sealed segment whose data must be synced and whose index must then be persisted.
struct SealJob {
    base_offset: i64,
    /// Cut preallocated zeros off before syncing, so the sealed file is exactly its data.
    trim_to: Option<u64>,
    file: Arc<File>,
    path: Arc<Path>,
    meta: IndexMeta,
    index: Arc<SegmentIndex>,
}

/// Blocking work after an active segment's sync, done without the partition lock: dropping
/// synced bytes from the page cache, and growing the zeros ahead of the data.
struct AfterSync {
    uncache: Option<(u64, u64)>,
    preallocate: bool,
}

/// A pass that only syncs the active segment, planned for a sync round (see `crowded_pass`).
struct RoundPass {
    file: Arc<File>,
    base: i64,
    /// The active segment's size when planned: the bytes the round makes durable.
    size: u64,
    /// The log end when planned: committed once the round ends.
    target: i64,
    /// The log's heals and rewrites when planned: if either moved, the data below `target`
    /// may have been cut and rewritten since, so the round proves nothing about it.
    generation: u64,
    rewrites: u64,
}

/// One commit pass's work, planned under the partition lock.
struct Pass {
    jobs: Vec<SealJob>,
    /// The directory generation to fsync, if entries changed since the last directory sync.
    dir_gen: Option<u64>,
    /// The active segment to fdatasync: its file, base offset and the size it had.
    active: Option<(Arc<File>, i64, u64)>,
    /// The log end when planned: committed once the active segment is synced.
    target: i64,
}

enum Step {
    Pass {
        sync_active: bool,
    },
    /// Poisoned: try to heal (see `heal`).
    Heal,
    Wait(Option<Duration>),
    Exit,
}

impl Shared {
    fn next_step(&self) -> Step {
        let inner = self.lock();
        if inner.state != LifeState::Open {
            return Step::Exit;
        }
        if inner.failure.is_some() {
            return Step::Heal;
        }
        let dirty = inner.log_end > inner.synced_end;
        let seal_work = !inner.pending_seals.is_empty() || inner.dir_gen > inner.dir_synced_gen;
        match inner.config.fsync {
            FsyncPolicy::Always => {
                if dirty || seal_work {
                    Step::Pass { sync_active: dirty }
                } else {
                    Step::Wait(None)
                }
            }
            FsyncPolicy::Interval(every) => {
                let elapsed = inner.last_sync.elapsed();
                let due = dirty && elapsed >= every;
                if due || seal_work {
                    Step::Pass { sync_active: due }
                } else if dirty {
                    Step::Wait(Some(every - elapsed))
                } else {
                    Step::Wait(None)
                }
            }
            FsyncPolicy::Never => {
                if seal_work {
                    Step::Pass { sync_active: false }
                } else {
                    Step::Wait(None)
                }
            }
        }
    }

    /// One commit pass: sync sealed segments and persist their indexes, fsync the directory,
    /// fdatasync the active segment (if asked and dirty), then publish. Blocking; runs on the
    /// blocking pool (or inline during close). Failures poison the partition.
    pub(super) fn run_pass(&self, sync_active: bool) {
        let _m = self.lock_maintenance();
        let Some(pass) = self.plan_pass(sync_active) else {
            return;
        };
        let result = self.sync_pass(&pass);
        self.publish_pass(pass, result);
    }

    /// What a pass will sync, taken under the partition lock; `None` if the partition is
    /// poisoned.
    fn plan_pass(&self, sync_active: bool) -> Option<Pass> {
        let inner = self.lock();
        if inner.failure.is_some() {
            return None;
        }
        let jobs: Vec<SealJob> = inner
            .pending_seals
            .iter()
            .filter_map(|b| inner.segments.iter().find(|s| s.base_offset == *b))
            .map(|s| SealJob {
                base_offset: s.base_offset,
                trim_to: (s.allocated_bytes > s.size_bytes).then_some(s.size_bytes),
                file: s.file().clone(),
                path: s.path.clone(),
                meta: s.meta(),
                index: s.index.clone(),
            })
            .collect();
        assert_eq!(
            jobs.len(),
            inner.pending_seals.len(),
            "pending seal names a missing segment"
        );
        let dirty = inner.log_end > inner.synced_end;
        let active = (sync_active && dirty).then(|| {
            let seg = inner.active();
            (seg.file().clone(), seg.base_offset, seg.size_bytes)
        });
        let dir_gen = (inner.dir_gen > inner.dir_synced_gen).then_some(inner.dir_gen);
        Some(Pass {
            jobs,
            dir_gen,
            active,
            target: inner.log_end,
        })
    }

    /// The pass's file syncs, without the partition lock: sealed segments (trimmed, synced,
    /// indexed), the directory, then the active segment. The first failure stops it.
    fn sync_pass(&self, pass: &Pass) -> Result<(), String> {
        let Pass {
            jobs,
            dir_gen,
            active,
            ..
        } = pass;
        // Cold reads wait for this pass's syncs (crate::io_priority).
        let _commit = crate::io_priority::CommitInFlight::start();
        #[cfg(test)]
        if self
            .inject_sync_failure
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            return Err("injected fdatasync failure".into());
        }
        for job in jobs {
            if let Some(len) = job.trim_to {
                job.file.set_len(len).map_err(|e| {
                    format!(
                        "trimming preallocated zeros of sealed segment {} failed: {e}",
                        job.path.display()
                    )
                })?;
            }
            job.file.sync_data().map_err(|e| {
                format!(
                    "fdatasync of sealed segment {} failed: {e}",
                    job.path.display()
                )
            })?;
            self.count_fsyncs(1);
            let n = write_index_files(&self.dir, self.partition, &job.meta, &job.index)
                .map_err(|e| format!("writing index of segment {} failed: {e}", job.base_offset))?;
            self.count_fsyncs(n);
        }
        if dir_gen.is_some() || !jobs.is_empty() {
            fsync_dir(&self.dir)
                .map_err(|e| format!("fsync of {} failed: {e}", self.dir.display()))?;
            self.count_fsyncs(1);
        }
        if let Some((f, _, _)) = active {
            let started = Instant::now();
            let syncing = self.rounds.enter();
            f.sync_data()
                .map_err(|e| format!("fdatasync of active segment failed: {e}"))?;
            drop(syncing);
            // Process-wide, no per-partition labels: bounded cardinality.
            metrics::histogram!(crate::metric_names::FSYNC_SECONDS)
                .record(started.elapsed().as_secs_f64());
            self.count_fsyncs(1);
        }
        Ok(())
    }

    /// Records what the pass made durable and publishes the committed offset; poisons the
    /// partition if the pass failed. Then drops synced data from the page cache.
    fn publish_pass(&self, pass: Pass, result: Result<(), String>) {
        let mut inner = self.lock();
        if let Err(reason) = result {
            self.poison(&mut inner, reason);
            return;
        }
        let Pass {
            jobs,
            dir_gen,
            active,
            target,
        } = pass;
        if let Some(g) = dir_gen {
            inner.dir_synced_gen = inner.dir_synced_gen.max(g);
        }
        for job in &jobs {
            inner.pending_seals.retain(|b| *b != job.base_offset);
            if let Some(s) = inner
                .segments
                .iter_mut()
                .find(|s| s.base_offset == job.base_offset)
            {
                s.mark_persisted();
                s.allocated_bytes = s.size_bytes;
            }
            debug!(topic = %self.topic, partition = self.partition, segment = job.base_offset,
                "sealed segment synced and indexed");
        }
        if active.is_some() {
            // `maintenance` is held, so no truncation ran since the snapshot: target <= log_end.
            debug_assert!(target <= inner.log_end);
            inner.synced_end = inner.synced_end.max(target);
            inner.last_sync = Instant::now();
        }
        // Everything below synced_end is durable (data below `target` lives in the files synced
        // above or in earlier passes), so under every policy it is committed.
        if inner.synced_end > self.committed() {
            self.publish_committed(&inner, inner.synced_end);
        }
        inner.check_invariants();
        if let Some((file, base, synced_pos)) = active {
            let after = Self::record_active_sync(&mut inner, base, synced_pos);
            // Under the same lock: whoever sees the commit sees the zeros ahead too.
            match after.preallocate {
                true => self.preallocate(inner),
                false => drop(inner),
            }
            if let Some((from, len)) = after.uncache {
                drop_cached(&file, from, len);
            }
        }
    }

    /// Books `synced_pos` bytes of active segment `base` as synced and says what follows.
    fn record_active_sync(inner: &mut super::Inner, base: i64, synced_pos: u64) -> AfterSync {
        let uncache = Self::cache_drop_range(inner, base, synced_pos);
        let pass_bytes = match inner.segments.iter_mut().find(|s| s.base_offset == base) {
            Some(seg) => {
                let before = seg.synced_bytes;
                seg.synced_bytes = before.max(synced_pos);
                synced_pos.saturating_sub(before)
            }
            None => 0,
        };
        // Group commit: how many bytes one sync made durable.
        metrics::histogram!(crate::metric_names::COMMIT_BYTES).record(pass_bytes as f64);
        AfterSync {
            uncache,
            preallocate: pass_bytes < PREALLOC_MAX_PASS_BYTES && Self::prealloc_due(inner),
        }
    }

    /// The blocking follow-up of an active segment sync (see [`AfterSync`]).
    fn after_active_sync(&self, file: &File, after: AfterSync) {
        if after.preallocate {
            self.preallocate(self.lock());
        }
        if let Some((from, len)) = after.uncache {
            drop_cached(file, from, len);
        }
    }

    /// The range of the active segment `base` to drop from the page cache now that its bytes
    /// below `synced_pos` are durable: everything synced except the newest
    /// [`CACHE_KEEP_BYTES`], once at least [`CACHE_DROP_STEP_BYTES`] has gathered. Marks the
    /// range dropped.
    fn cache_drop_range(
        inner: &mut super::Inner,
        base: i64,
        synced_pos: u64,
    ) -> Option<(u64, u64)> {
        let seg = inner.segments.iter_mut().find(|s| s.base_offset == base)?;
        let to = synced_pos.checked_sub(CACHE_KEEP_BYTES)?;
        if to < seg.cache_dropped_to + CACHE_DROP_STEP_BYTES {
            return None;
        }
        let from = std::mem::replace(&mut seg.cache_dropped_to, to);
        Some((from, to - from))
    }

    fn prealloc_due(inner: &super::Inner) -> bool {
        prealloc_target(inner.active(), inner.config.segment_bytes).is_some()
    }

    /// Keeps zeros ahead of the active segment's data (see [`prealloc_step`]), after
    /// the pass has published, so no waiting append pays for it. The zeros are written under
    /// the partition lock (appends write at the data end, never into a range being zeroed)
    /// and their writeback is started at once, so the next fdatasync mostly finds it done.
    /// A failure here costs only speed: it is logged and appends extend the file as before.
    fn preallocate(&self, mut inner: std::sync::MutexGuard<'_, super::Inner>) {
        let limit = inner.config.segment_bytes;
        let seg = inner
            .segments
            .back_mut()
            .expect("partition log has no segment");
        let Some(target) = prealloc_target(seg, limit) else {
            return;
        };
        let (from, len) = (seg.allocated_bytes, target - seg.allocated_bytes);
        if let Err(e) = write_zeros(seg.file(), from, len) {
            warn!(topic = %self.topic, partition = self.partition, error = %e,
                "could not preallocate segment space; appends extend the file instead");
            return;
        }
        seg.allocated_bytes = target;
        let file = seg.file().clone();
        drop(inner);
        start_writeback(&file, from, len);
    }
}

/// Where the active segment's zeros should reach, if they should grow now: when less than
/// half a [`prealloc_step`] is left ahead of the data.
fn prealloc_target(seg: &crate::segment::Segment, limit: u64) -> Option<u64> {
    let step = prealloc_step(seg.size_bytes);
    if seg.allocated_bytes - seg.size_bytes >= step / 2 {
        return None;
    }
    // Data never grows past segment.bytes except by one oversized batch: no zeros there.
    let target = (seg.size_bytes + step).min(limit.max(seg.size_bytes));
    (target > seg.allocated_bytes).then_some(target)
}

impl Shared {
    /// A pass made of nothing but the active segment's sync, or `None` (seals or a directory
    /// to sync, nothing dirty, or poisoned).
    fn plan_round_pass(&self) -> Option<RoundPass> {
        let inner = self.lock();
        let simple = inner.failure.is_none()
            && inner.pending_seals.is_empty()
            && inner.dir_gen == inner.dir_synced_gen
            && inner.log_end > inner.synced_end;
        let seg = inner.active();
        simple.then(|| RoundPass {
            file: seg.file().clone(),
            base: seg.base_offset,
            size: seg.size_bytes,
            target: inner.log_end,
            generation: inner.generation,
            rewrites: inner.rewrites,
        })
    }

    /// When many partitions are syncing at once, a pass that only has the active segment to
    /// sync joins the filesystem's next sync round (`sync_rounds`) instead of fdatasyncing
    /// alone, and waits for it on this task: no blocking thread is held. It does not hold
    /// `maintenance` across the wait (the pass runs on async code); a truncation or heal in
    /// between is seen by `generation`/`rewrites` and the pass then publishes nothing.
    /// Returns whether it ran.
    async fn round_pass(self: &Arc<Self>) -> bool {
        if !self.rounds.crowded() {
            return false;
        }
        let Some(pass) = self.plan_round_pass() else {
            return false;
        };
        let syncing = self.rounds.enter();
        let result = self.rounds.sync(&pass.file, pass.size).await;
        drop(syncing);
        #[cfg(test)]
        let result = match self
            .inject_sync_failure
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            true => Err("injected sync round failure".to_string()),
            false => result,
        };
        self.count_fsyncs(1);
        let after = {
            let mut inner = self.lock();
            if let Err(reason) = result {
                self.poison(&mut inner, reason);
                return true;
            }
            if inner.failure.is_some()
                || inner.generation != pass.generation
                || inner.rewrites != pass.rewrites
            {
                return true;
            }
            debug_assert!(pass.target <= inner.log_end);
            inner.synced_end = inner.synced_end.max(pass.target);
            inner.last_sync = Instant::now();
            if inner.synced_end > self.committed() {
                self.publish_committed(&inner, inner.synced_end);
            }
            inner.check_invariants();
            Self::record_active_sync(&mut inner, pass.base, pass.size)
        };
        if after.preallocate || after.uncache.is_some() {
            let s = self.clone();
            let _ =
                tokio::task::spawn_blocking(move || s.after_active_sync(&pass.file, after)).await;
        }
        true
    }
}

pub(super) async fn commit_loop(shared: Arc<Shared>) {
    let mut heal_backoff = HEAL_BACKOFF_MIN;
    loop {
        match shared.next_step() {
            Step::Exit => break,
            Step::Heal => {
                // Woken early only by close (which ends the loop) or another poisoning.
                let _ = tokio::time::timeout(heal_backoff, shared.wake.notified()).await;
                if !matches!(shared.next_step(), Step::Heal) {
                    continue;
                }
                let s = shared.clone();
                match tokio::task::spawn_blocking(move || s.try_heal()).await {
                    Ok(Ok(())) => heal_backoff = HEAL_BACKOFF_MIN,
                    Ok(Err(why)) => {
                        debug!(topic = %shared.topic, partition = shared.partition, %why,
                            retry_in_ms = heal_backoff.as_millis() as u64, "partition log not healed yet");
                        heal_backoff = (heal_backoff * 2).min(HEAL_BACKOFF_MAX);
                    }
                    Err(e) => {
                        warn!(topic = %shared.topic, partition = shared.partition, error = %e,
                            "heal attempt did not complete");
                        heal_backoff = HEAL_BACKOFF_MAX;
                    }
                }
            }
            Step::Wait(None) => shared.wake.notified().await,
            Step::Wait(Some(d)) => {
                let _ = tokio::time::timeout(d, shared.wake.notified()).await;
            }
            Step::Pass { sync_active: true } if shared.round_pass().await => {}
            Step::Pass { sync_active } => {
                // Under load, passes run back to back on the blocking thread: returning to
                // this task between them would add two thread hand-offs per fdatasync.
                let s = shared.clone();
                let passes = tokio::task::spawn_blocking(move || {
                    let mut sync_active = sync_active;
                    loop {
                        s.run_pass(sync_active);
                        match s.next_step() {
                            // A crowd forming: back to the task, which joins a round.
                            Step::Pass { sync_active: true } if s.rounds.crowded() => break,
                            Step::Pass { sync_active: next } => sync_active = next,
                            _ => break,
                        }
                    }
                });
                if let Err(e) = passes.await {
                    let mut inner = shared.lock();
                    shared.poison(&mut inner, format!("commit pass did not complete: {e}"));
                }
            }
        }
    }
    debug!(topic = %shared.topic, partition = shared.partition, "commit task stopped");
}

impl Shared {
    /// `defer_sync`: trim the zeros and persist the active segment's index without syncing
    /// them; the caller makes the filesystem durable afterwards (`clean_shutdown`). Data
    /// written before the close is synced by the final pass either way.
    pub(super) fn finish_close(&self, defer_sync: bool) -> Result<(), WalError> {
        // Final pass: seals, directory and active segment, whatever the policy.
        self.run_pass(true);
        let _m = self.lock_maintenance();
        let mut guard = self.lock();
        let inner = &mut *guard;
        let result = match &inner.failure {
            Some(f) => Err(WalError::Failed(f.clone())),
            None => {
                assert_eq!(inner.synced_end, inner.log_end, "close left unsynced data");
                let seg = inner
                    .segments
                    .back_mut()
                    .expect("partition log has no segment");
                if seg.allocated_bytes > seg.size_bytes {
                    // A clean close leaves exact files: cut the preallocated zeros.
                    let trimmed = seg.file().set_len(seg.size_bytes).and_then(|()| {
                        if defer_sync {
                            return Ok(());
                        }
                        self.count_fsyncs(1);
                        seg.file().sync_all()
                    });
                    match trimmed {
                        Ok(()) => seg.allocated_bytes = seg.size_bytes,
                        Err(e) => warn!(topic = %self.topic, partition = self.partition,
                            error = %e, "could not trim preallocated zeros on close; recovery will"),
                    }
                }
                let meta = seg.meta();
                let r = write_index_files_with(
                    &self.dir,
                    self.partition,
                    &meta,
                    &seg.index,
                    !defer_sync,
                )
                .and_then(|n| match defer_sync {
                    true => Ok(n),
                    false => fsync_dir(&self.dir).map(|()| n + 1),
                })
                .map_err(WalError::io("write index files", &self.dir));
                if let Ok(n) = &r {
                    self.count_fsyncs(*n);
                    seg.persisted = true;
                }
                r.map(|_| ())
            }
        };
        inner.state = LifeState::Closed;
        self.committed_tx.send_modify(|_| {});
        info!(topic = %self.topic, partition = self.partition, log_end_offset = inner.log_end,
            "closed partition log");
        result
    }
}
