//! [`PartitionLog`]: one partition's segments, the append path, reads, retention, truncation and
//! the group-commit task.
//!
//! ## Concurrency
//!
//! * `inner` (a `std::sync::Mutex`) guards the in-memory state. `append` holds it for offset
//!   assignment, an occasional segment roll (file creation, no fsync) and one `writev` into the
//!   page cache. Nothing ever fsyncs while holding it, so appends never wait behind a sync.
//! * `maintenance` serialises the operations that sync, rewrite or delete files: commit passes,
//!   retention, truncation, segment installs and replacements (only their renames: the cleaned
//!   file is written and synced before), and close. Lock order is always `maintenance` then
//!   `inner`.
//! * Reads take `inner` only to locate the start position and to clone the segment's file (a
//!   sealed one's comes from the file cache: `files.rs`); the `pread`s happen outside the lock
//!   (and, for async callers, off the runtime unless the data is near the log end: see `read`).
//! * The commit task is the only place that fdatasyncs the active segment and the only place that
//!   publishes `committed` under `FsyncPolicy::Always`. It syncs on an `Arc<File>` from
//!   `spawn_blocking`, then publishes `committed = target` on a watch channel, waking every waiter
//!   at once: many appends, one fdatasync. While many partitions sync at once, a pass with only
//!   the active segment to sync joins a `syncfs` round instead (`crate::sync_rounds`), without
//!   `maintenance`: it publishes only if `generation` and `rewrites` did not move meanwhile.
//!
//! ## Invariants (asserted where they are enforced)
//!
//! * Segment ranges are contiguous: `segments[i].next_offset == segments[i + 1].base_offset`
//!   (batches inside may have gaps only in a cleaned segment, whose header says so and, for a
//!   gap at its end, how far it reaches: compaction removes records, see `replace.rs`), and
//!   `segments[0].base_offset <= log_start <= log_end` (the log start may lie inside the first
//!   segment, see `log_start.rs`), `log_end == segments.last().next_offset`.
//! * `committed <= log_end` and, under `Always`, `committed <= synced_end`.
//! * Every offset below `synced_end` lives in a file that was fdatasynced, in a directory whose
//!   entry for that file was fsynced.
//! * `pending_seals` names non-active segments whose data sync + index write has not happened yet;
//!   it is bounded by `MAX_PENDING_SEALS` (rotation is deferred while it is full).

mod append;
mod cold_readers;
mod commit;
mod files;
mod heal;
mod install;
mod log_start;
mod read;
mod replace;
mod retention;
mod truncate;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn, Instrument};

use self::commit::commit_loop;
pub use self::heal::heals_in_process;
pub use self::install::{CatchUp, SealedSegment, SegmentInstall, VerifiedInstall};
pub(crate) use self::log_start::{CHECKPOINT_FILE, CHECKPOINT_TMP};
pub use self::read::MAX_COLD_READS;
pub use self::replace::{ReplacedSegments, SegmentInfo, SegmentReplacement};
pub use self::retention::{DeletedSegment, RetentionOutcome, RetentionReason};
use crate::config::{FsyncPolicy, LogConfig};
use crate::error::WalError;
use crate::index::SegmentIndex;
use crate::recovery::{fsync_dir, recover};
use crate::segment::{create_segment_file, segment_file_path, FileKind, Segment, SegmentHeader};
use crate::sync_rounds::SyncRounds;

/// Bound on sealed segments waiting for their data sync and index write. While the queue is
/// full, rotation is deferred (the active segment grows past `segment_bytes`, up to the hard file
/// bound, after which appends fail with `SegmentFull`).
pub const MAX_PENDING_SEALS: usize = 64;
/// The failure of a partition whose lock a panic poisoned: its state may be half-updated, so
/// it never heals (only a reopen, which re-runs recovery, clears it).
const PANIC_FAILURE: &str = "internal panic while holding the partition lock";
/// Longest accepted topic name (Kafka's limit).
const MAX_TOPIC_NAME_LEN: usize = 249;

/// Offsets assigned to an appended batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: i64,
    pub last_offset: i64,
    /// The log's generation at the append (see [`PartitionLog::generation`]): wait with
    /// [`PartitionLog::wait_appended`], which fails if a heal cut the batch away.
    pub generation: u64,
}

/// Whole batches returned by [`PartitionLog::read`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadResult {
    /// Concatenated batches, frame headers stripped (ready for a Fetch response).
    pub data: Bytes,
    /// Base offset of the first batch (it may be below the requested offset).
    pub first_offset: Option<i64>,
    /// Number of batches in `data`.
    pub batches: usize,
    /// Records in those batches (their headers' counts).
    pub records: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LifeState {
    Open,
    /// `close()` started: appends are refused, the final sync is under way.
    Closing,
    Closed,
}

struct Inner {
    config: LogConfig,
    segments: VecDeque<Segment>,
    log_start: i64,
    log_end: i64,
    /// Every offset below this is durable (data, and directory entries of its files).
    synced_end: i64,
    total_bytes: u64,
    sealed: bool,
    state: LifeState,
    /// Set when a write or sync failed; the partition is poisoned until it heals.
    failure: Option<String>,
    /// Heals since open: each cut the log back to `synced_end` (see `heal`).
    generation: u64,
    /// Bumped whenever data is cut or rewritten in place (truncation, heal, reset): a segment
    /// replacement prepared before must not swap in then (`replace.rs`).
    rewrites: u64,
    /// Base offsets of sealed segments whose data sync + index write is pending.
    pending_seals: Vec<i64>,
    /// Bumped when a file is created in the directory; the commit task fsyncs the directory
    /// until `dir_synced_gen` catches up.
    dir_gen: u64,
    dir_synced_gen: u64,
    last_sync: Instant,
    deferred_roll_warned: bool,
}

impl Inner {
    /// Index of the segment containing `offset` (the last one whose base is <= offset).
    fn segment_index_for(&self, offset: i64) -> usize {
        self.segments
            .partition_point(|s| s.base_offset <= offset)
            .saturating_sub(1)
    }

    fn active(&self) -> &Segment {
        // Invariant: there is always at least one segment (recovery creates one, retention and
        // truncation never remove the last one).
        self.segments.back().expect("partition log has no segment")
    }

    fn check_invariants(&self) {
        debug_assert!(!self.segments.is_empty());
        debug_assert!(self.log_start >= self.segments[0].base_offset);
        debug_assert!(self.log_start <= self.log_end);
        debug_assert_eq!(self.log_end, self.active().next_offset);
        // Only sealed segments end in a gap (compaction, or a truncation into one).
        debug_assert_eq!(self.active().batches_end, self.active().next_offset);
        debug_assert!(self
            .segments
            .iter()
            .all(|s| (s.base_offset..=s.next_offset).contains(&s.batches_end)));
        // A gap at a segment's end only where its header vouches for it: a plain segment
        // whose batches ended early would look torn to recovery.
        debug_assert!(self
            .segments
            .iter()
            .all(|s| s.gap_allowed(s.batches_end, s.next_offset)));
        debug_assert!(self.synced_end <= self.log_end);
        debug_assert!(files::descriptors_as_designed(self));
        debug_assert!(self
            .segments
            .iter()
            .all(|s| s.size_bytes <= s.allocated_bytes));
        debug_assert!(self.pending_seals.len() <= MAX_PENDING_SEALS);
        debug_assert!(self
            .segments
            .iter()
            .zip(self.segments.iter().skip(1))
            .all(|(a, b)| a.next_offset == b.base_offset));
        debug_assert_eq!(
            self.total_bytes,
            self.segments.iter().map(|s| s.size_bytes).sum::<u64>()
        );
    }
}

/// State shared between the handle and the commit task.
struct Shared {
    topic: String,
    partition: i32,
    dir: PathBuf,
    inner: Mutex<Inner>,
    maintenance: Mutex<()>,
    committed_tx: watch::Sender<i64>,
    /// The log end offset, published on every append (while subscribed) and truncation (with
    /// `inner` locked, so in order): replication sends followers what is written before it is
    /// synced, so the leader's fdatasync and the followers' overlap.
    end_tx: watch::Sender<i64>,
    wake: Notify,
    fsync_count: AtomicU64,
    /// The filesystem's sync rounds, which a commit pass joins when many partitions sync.
    rounds: Arc<SyncRounds>,
    /// The lowest offset the log was cut back to (truncation, heal, reset) since it was last
    /// taken, starting at the log end it opened with (a torn tail cut at open counts too):
    /// data at or above it may be new, whatever was known of the offsets before. See
    /// [`PartitionLog::take_rewritten_from`].
    rewritten_from: AtomicI64,
    /// Test hook: make the next commit pass fail as if fdatasync returned EIO.
    #[cfg(test)]
    inject_sync_failure: std::sync::atomic::AtomicBool,
    /// Test hook: heal attempts fail while set.
    #[cfg(test)]
    hold_heal: std::sync::atomic::AtomicBool,
    /// Test hook: a segment replacement stops after this many steps, as if the process died
    /// there (0: never).
    #[cfg(test)]
    crash_replace_at: std::sync::atomic::AtomicU32,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn validate_name(topic: &str, partition: i32) -> Result<(), WalError> {
    let ok_char = |b: u8| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-';
    if topic.is_empty()
        || topic.len() > MAX_TOPIC_NAME_LEN
        || topic == "."
        || topic == ".."
        || !topic.bytes().all(ok_char)
    {
        return Err(WalError::InvalidConfig(format!(
            "invalid topic name {topic:?}"
        )));
    }
    if partition < 0 {
        return Err(WalError::InvalidConfig(format!(
            "invalid partition {partition}"
        )));
    }
    Ok(())
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => {
                // A panic while holding the lock may have left the state half-updated: stop
                // accepting writes rather than guess.
                let mut g = poisoned.into_inner();
                if g.failure.is_none() {
                    g.failure = Some(PANIC_FAILURE.into());
                    error!(topic = %self.topic, partition = self.partition,
                        "partition log poisoned by a panic under its lock");
                    self.committed_tx.send_modify(|_| {});
                }
                g
            }
        }
    }

    fn lock_maintenance(&self) -> MutexGuard<'_, ()> {
        self.maintenance
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn count_fsyncs(&self, n: u64) {
        self.fsync_count.fetch_add(n, Ordering::Relaxed);
    }

    fn committed(&self) -> i64 {
        *self.committed_tx.borrow()
    }

    /// Publishes a new committed offset. Called with `inner` locked so publications are ordered.
    fn publish_committed(&self, inner: &Inner, value: i64) {
        assert!(
            value <= inner.log_end,
            "committed {value} beyond log end {}",
            inner.log_end
        );
        self.committed_tx.send_replace(value);
    }

    /// Poisons the partition: every current waiter and every later append or wait fails.
    fn poison(&self, inner: &mut Inner, reason: String) {
        if inner.failure.is_none() {
            error!(topic = %self.topic, partition = self.partition, %reason,
                "partition log poisoned; appends and waits fail until it heals");
            inner.failure = Some(reason);
        }
        self.committed_tx.send_modify(|_| {});
        self.wake.notify_one();
    }

    fn check_open(&self, inner: &Inner) -> Result<(), WalError> {
        if let Some(f) = &inner.failure {
            return Err(WalError::Failed(f.clone()));
        }
        match inner.state {
            LifeState::Open => Ok(()),
            LifeState::Closing | LifeState::Closed => Err(WalError::Closed),
        }
    }

    fn check_readable(&self, inner: &Inner) -> Result<(), WalError> {
        match inner.state {
            LifeState::Closed => Err(WalError::Closed),
            _ => Ok(()),
        }
    }

    /// Creates a new active segment at `log_end` and queues the old one for sealing.
    fn roll(&self, inner: &mut Inner, now_ms: i64, reason: &'static str) -> Result<(), WalError> {
        self.roll_to(inner, now_ms, reason, None)
    }

    /// [`roll`](Self::roll) to a segment with this header kind (`cleaned_to`, see
    /// [`Segment::cleaned_to`]).
    fn roll_to(
        &self,
        inner: &mut Inner,
        now_ms: i64,
        reason: &'static str,
        cleaned_to: Option<i64>,
    ) -> Result<(), WalError> {
        let base = inner.log_end;
        let seg = self.fresh_segment(base, now_ms, cleaned_to)?;
        let old = inner.active();
        assert!(!old.is_empty(), "rolling an empty segment");
        let old_base = old.base_offset;
        inner.pending_seals.push(old_base);
        inner.total_bytes += seg.size_bytes;
        inner.segments.push_back(seg);
        inner.dir_gen += 1;
        inner.deferred_roll_warned = false;
        self.wake.notify_one();
        info!(topic = %self.topic, partition = self.partition, base_offset = base,
            previous_segment = old_base, reason, "rolled to a new segment");
        Ok(())
    }

    /// Creates the file of an empty segment at `base` (its directory entry is not synced).
    fn fresh_segment(
        &self,
        base: i64,
        now_ms: i64,
        cleaned_to: Option<i64>,
    ) -> Result<Segment, WalError> {
        let path = segment_file_path(&self.dir, self.partition, base, FileKind::Log);
        let header = SegmentHeader {
            base_offset: base,
            created_ms: now_ms,
            cleaned_to,
        };
        let file =
            create_segment_file(&path, header).map_err(WalError::io("create segment", &path))?;
        let start = header.data_start();
        Ok(Segment {
            base_offset: base,
            next_offset: base,
            batches_end: base,
            cleaned_to,
            size_bytes: start,
            allocated_bytes: start,
            max_timestamp: i64::MIN,
            created_ms: now_ms,
            roll_clock_ms: None,
            file_id: files::file_id(&file, &path)?,
            own_file: Some(Arc::new(file)),
            path: Arc::from(path.as_path()),
            index: Arc::new(SegmentIndex::default()),
            persisted: false,
            cache_dropped_to: 0,
            synced_bytes: start,
        })
    }
}

/// One partition's write-ahead log. See the module docs for the locking and commit model.
///
/// A partition directory must be opened by at most one `PartitionLog` at a time.
pub struct PartitionLog {
    shared: Arc<Shared>,
    /// Serialises `close`/`delete`; holds the commit task handle until it is joined.
    lifecycle: tokio::sync::Mutex<Lifecycle>,
}

struct Lifecycle {
    task: Option<JoinHandle<()>>,
    closed: bool,
}

impl PartitionLog {
    /// Opens or creates `{root}/{topic}/{partition}` and recovers it (see `docs/wal-format.md`).
    /// Spawns its commit task on the current tokio runtime.
    pub async fn open(
        root: &Path,
        topic: &str,
        partition: i32,
        config: LogConfig,
    ) -> Result<Arc<PartitionLog>, WalError> {
        Self::open_with(root, topic, partition, config, false).await
    }

    /// [`open`](Self::open) when the WAL root had the clean-shutdown marker
    /// ([`crate::take_clean_shutdown`]): the active segment's files are trusted as its close
    /// left them (no scan, no fdatasync), which makes a clean restart of thousands of
    /// partitions read nothing but their indexes.
    pub async fn open_after_clean_shutdown(
        root: &Path,
        topic: &str,
        partition: i32,
        config: LogConfig,
    ) -> Result<Arc<PartitionLog>, WalError> {
        Self::open_with(root, topic, partition, config, true).await
    }

    async fn open_with(
        root: &Path,
        topic: &str,
        partition: i32,
        config: LogConfig,
        clean: bool,
    ) -> Result<Arc<PartitionLog>, WalError> {
        validate_name(topic, partition)?;
        config.validate()?;
        let dir = root.join(topic).join(partition.to_string());
        let (recovered, checkpoint, rounds) = {
            let dir = dir.clone();
            let root = root.to_path_buf();
            let topic = topic.to_string();
            let config = config.clone();
            tokio::task::spawn_blocking(move || {
                let r = recover(&dir, &topic, partition, &config, now_ms(), clean)?;
                let rounds = SyncRounds::for_root(&root).map_err(WalError::io("open", &root))?;
                Ok::<_, WalError>((
                    r,
                    log_start::read_checkpoint(&dir, &topic, partition),
                    rounds,
                ))
            })
            .await
            .map_err(|e| WalError::Failed(format!("recovery task failed: {e}")))??
        };
        let segments: VecDeque<Segment> = recovered.segments.into();
        let log_end = segments.back().map_or(0, |s| s.next_offset);
        let log_start =
            log_start::start_after_recovery(&segments, checkpoint, log_end, topic, partition);
        let total_bytes = segments.iter().map(|s| s.size_bytes).sum();
        let inner = Inner {
            config,
            segments,
            log_start,
            log_end,
            synced_end: log_end,
            total_bytes,
            sealed: false,
            state: LifeState::Open,
            failure: None,
            generation: 0,
            rewrites: 0,
            pending_seals: Vec::new(),
            dir_gen: 0,
            dir_synced_gen: 0,
            last_sync: Instant::now(),
            deferred_roll_warned: false,
        };
        inner.check_invariants();
        let (committed_tx, _) = watch::channel(log_end);
        let (end_tx, _) = watch::channel(log_end);
        let shared = Arc::new(Shared {
            topic: topic.to_string(),
            partition,
            dir,
            inner: Mutex::new(inner),
            maintenance: Mutex::new(()),
            committed_tx,
            end_tx,
            wake: Notify::new(),
            fsync_count: AtomicU64::new(recovered.fsyncs),
            rounds,
            rewritten_from: AtomicI64::new(log_end),
            #[cfg(test)]
            inject_sync_failure: std::sync::atomic::AtomicBool::new(false),
            #[cfg(test)]
            hold_heal: std::sync::atomic::AtomicBool::new(false),
            #[cfg(test)]
            crash_replace_at: std::sync::atomic::AtomicU32::new(0),
        });
        let span = tracing::info_span!("wal_commit", topic = %topic, partition);
        let task = tokio::spawn(commit_loop(shared.clone()).instrument(span));
        let log = Arc::new(PartitionLog {
            shared,
            lifecycle: tokio::sync::Mutex::new(Lifecycle {
                task: Some(task),
                closed: false,
            }),
        });
        // A crash may have come between a log start checkpoint and its segment deletions.
        let log2 = log.clone();
        tokio::task::spawn_blocking(move || log2.delete_below_log_start())
            .await
            .map_err(|e| WalError::Failed(format!("recovery task failed: {e}")))??;
        Ok(log)
    }

    pub fn topic(&self) -> &str {
        &self.shared.topic
    }

    pub fn partition(&self) -> i32 {
        self.shared.partition
    }

    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Number of fsync/fdatasync calls issued on this partition's files and directory since
    /// open (recovery included).
    pub fn fsync_count(&self) -> u64 {
        self.shared.fsync_count.load(Ordering::Relaxed)
    }

    /// Test hook: the next commit pass fails as if fdatasync returned an error.
    #[cfg(test)]
    pub(crate) fn inject_sync_failure(&self) {
        self.shared
            .inject_sync_failure
            .store(true, Ordering::SeqCst);
        self.shared.wake.notify_one();
    }

    /// Test hook: while `held`, heal attempts fail as if the disk were still full.
    #[cfg(test)]
    pub(crate) fn hold_heal(&self, held: bool) {
        self.shared.hold_heal.store(held, Ordering::SeqCst);
    }

    /// Test hook: the next segment replacements stop after `step` steps (0: never).
    #[cfg(test)]
    pub(crate) fn crash_replace_at(&self, step: u32) {
        self.shared.crash_replace_at.store(step, Ordering::SeqCst);
    }

    /// Test view: how far the active segment's synced bytes were dropped from the page cache.
    #[cfg(test)]
    pub(crate) fn active_cache_dropped_to(&self) -> u64 {
        self.shared.lock().active().cache_dropped_to
    }

    /// Resolves once every offset below `end_offset` is committed under the fsync policy
    /// (`Always`: fdatasynced; `Interval`/`Never`: written). Offsets already committed resolve
    /// `Ok` even afterwards; otherwise fails with `Failed` once the partition is poisoned and with
    /// `Closed` once it is closed.
    pub async fn wait_committed(&self, end_offset: i64) -> Result<(), WalError> {
        self.wait_until(end_offset, None).await
    }

    /// Like [`wait_committed`](Self::wait_committed) for the batch an append of this log
    /// returned: also fails if the log healed since (the batch was cut away; newer data at its
    /// offsets must not confirm it).
    /// `generation` is [`Appended::generation`] of the last batch waited for.
    pub async fn wait_appended(&self, end_offset: i64, generation: u64) -> Result<(), WalError> {
        self.wait_until(end_offset, Some(generation)).await
    }

    async fn wait_until(&self, end_offset: i64, generation: Option<u64>) -> Result<(), WalError> {
        let mut rx = self.shared.committed_tx.subscribe();
        loop {
            let committed = *rx.borrow_and_update();
            {
                let inner = self.shared.lock();
                if generation.is_some_and(|g| g != inner.generation) {
                    return Err(WalError::Failed(
                        "the log was cut back to its last synced offset after a storage error"
                            .into(),
                    ));
                }
                if committed >= end_offset {
                    return Ok(());
                }
                if let Some(f) = &inner.failure {
                    return Err(WalError::Failed(f.clone()));
                }
                if inner.state == LifeState::Closed {
                    return Err(WalError::Closed);
                }
            }
            if rx.changed().await.is_err() {
                return Err(WalError::Closed);
            }
        }
    }

    pub fn log_start_offset(&self) -> i64 {
        self.shared.lock().log_start
    }

    /// The largest batch `max_timestamp` in the log (`i64::MIN` when it holds no batch):
    /// ListOffsets' MAX_TIMESTAMP finds its batch with
    /// [`find_batch_by_timestamp`](Self::find_batch_by_timestamp) of this value.
    pub fn max_timestamp(&self) -> i64 {
        let inner = self.shared.lock();
        inner
            .segments
            .iter()
            .map(|s| s.max_timestamp)
            .max()
            .unwrap_or(i64::MIN)
    }

    /// Next offset to be assigned.
    pub fn log_end_offset(&self) -> i64 {
        self.shared.lock().log_end
    }

    /// End (exclusive) of the committed offsets; the high watermark of a standalone broker.
    pub fn committed_offset(&self) -> i64 {
        self.shared.committed()
    }

    /// Watch of [`committed_offset`](Self::committed_offset); fetch long-polls wait on it. It also
    /// fires (without a new value) when the partition is poisoned or closed.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.shared.committed_tx.subscribe()
    }

    /// Watch of [`log_end_offset`](Self::log_end_offset): fires on every append (while it has a
    /// receiver; subscribe, then read the log, then wait) and truncation, before the data is
    /// synced. Replication waits on it.
    pub fn subscribe_end(&self) -> watch::Receiver<i64> {
        self.shared.end_tx.subscribe()
    }

    /// Refuses further appends (with `Sealed`) until [`resume`](Self::resume).
    pub fn seal(&self) {
        self.shared.lock().sealed = true;
    }

    pub fn resume(&self) {
        self.shared.lock().sealed = false;
    }

    pub fn is_sealed(&self) -> bool {
        self.shared.lock().sealed
    }

    /// Applies a changed topic config. An invalid config is refused with a warning and the
    /// previous one stays in force; use [`try_set_config`](Self::try_set_config) to get the error.
    pub fn set_config(&self, config: LogConfig) {
        if let Err(e) = self.try_set_config(config) {
            warn!(topic = %self.shared.topic, partition = self.shared.partition, error = %e,
                "ignoring invalid log config");
        }
    }

    /// Like [`set_config`](Self::set_config) but returns validation errors.
    pub fn try_set_config(&self, config: LogConfig) -> Result<(), WalError> {
        config.validate()?;
        let s = &*self.shared;
        let mut inner = s.lock();
        inner.config = config;
        if inner.config.fsync != FsyncPolicy::Always && s.committed() < inner.log_end {
            s.publish_committed(&inner, inner.log_end);
        }
        s.wake.notify_one();
        Ok(())
    }

    pub fn config(&self) -> LogConfig {
        self.shared.lock().config.clone()
    }

    /// Total size of the segment files, headers included.
    pub fn size_bytes(&self) -> u64 {
        self.shared.lock().total_bytes
    }

    pub fn segment_count(&self) -> usize {
        self.shared.lock().segments.len()
    }

    /// Graceful close: refuses new appends, stops the commit task, syncs everything written
    /// (pending seals, directory, active segment), publishes it as committed, persists the active
    /// segment's indexes, and wakes remaining waiters with `Closed`. Idempotent: later calls
    /// return `Ok` immediately. Returns `Failed` if the partition was poisoned.
    pub async fn close(&self) -> Result<(), WalError> {
        self.close_with(false).await
    }

    /// [`close`](Self::close) for a whole-node shutdown: what was written is synced as by
    /// `close`, but the zeros' trim and the active segment's index files are left for one
    /// filesystem sync after every log closed ([`crate::mark_clean_shutdown`]). Without that
    /// sync they may be lost, which only costs the next start a scan.
    pub async fn close_deferred_sync(&self) -> Result<(), WalError> {
        self.close_with(true).await
    }

    async fn close_with(&self, defer_sync: bool) -> Result<(), WalError> {
        let mut lc = self.lifecycle.lock().await;
        if lc.closed {
            return Ok(());
        }
        {
            let mut inner = self.shared.lock();
            if inner.state == LifeState::Open {
                inner.state = LifeState::Closing;
            }
        }
        self.shared.wake.notify_one();
        if let Some(task) = lc.task.take() {
            if let Err(e) = task.await {
                warn!(topic = %self.shared.topic, partition = self.shared.partition, error = %e,
                    "commit task ended abnormally");
            }
        }
        let s = self.shared.clone();
        let result = tokio::task::spawn_blocking(move || s.close_files(defer_sync))
            .await
            .map_err(|e| WalError::Failed(format!("close did not complete: {e}")))
            .and_then(|r| r);
        lc.closed = true;
        result
    }

    /// `close()` and remove the partition directory (topic deletion). Also removes the topic
    /// directory if this was its last partition.
    pub async fn delete(&self) -> Result<(), WalError> {
        if let Err(e) = self.close().await {
            // The data is being deleted anyway; a failed final sync does not matter.
            debug!(topic = %self.shared.topic, partition = self.shared.partition, error = %e,
                "close before delete failed");
        }
        let dir = self.shared.dir.clone();
        let (topic, partition) = (self.shared.topic.clone(), self.shared.partition);
        tokio::task::spawn_blocking(move || -> Result<(), WalError> {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(WalError::io("remove partition directory", &dir)(e)),
            }
            if let Some(topic_dir) = dir.parent() {
                // Fails (harmlessly) while other partitions of the topic remain.
                let removed_topic_dir = std::fs::remove_dir(topic_dir).is_ok();
                let sync_dir = if removed_topic_dir {
                    topic_dir.parent()
                } else {
                    Some(topic_dir)
                };
                if let Some(d) = sync_dir {
                    fsync_dir(d).map_err(WalError::io("fsync directory", d))?;
                }
            }
            info!(topic, partition, "deleted partition log");
            Ok(())
        })
        .await
        .map_err(|e| WalError::Failed(format!("delete did not complete: {e}")))?
    }
}

impl Drop for PartitionLog {
    fn drop(&mut self) {
        // Without close(): stop the commit task; written data stays in the page cache and is
        // recovered (and synced) by the next open.
        let mut inner = self.shared.lock();
        if inner.state != LifeState::Closed {
            inner.state = LifeState::Closed;
        }
        drop(inner);
        self.shared.wake.notify_one();
        self.shared.committed_tx.send_modify(|_| {});
    }
}
