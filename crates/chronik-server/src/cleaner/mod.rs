//! The log cleaner (Kafka's `LogCleaner`): `--log-cleaner-threads` OS threads per node, each
//! repeatedly picking the dirtiest compacted log among this node's replicas and cleaning it
//! with `chronik_cleaner`'s decisions and the WAL's atomic segment replacement. Every replica
//! cleans on its own, leader and follower alike, as in Kafka.
//!
//! A round: for every local replica of a topic whose `cleanup.policy` includes `compact` and
//! that no other thread is cleaning, the log's segment facts and its checkpoint are
//! assessed (`chronik_cleaner::assess`; the high watermark is the last stable offset, the
//! active segment is never cleaned); `pick_filthiest` names one, which is cleaned
//! (`clean::clean`) and its checkpoint stored. A thread with nothing to clean sleeps
//! `--log-cleaner-backoff-ms`.
//!
//! The partitions are read through the partition manager's accessors only; the cleaner holds
//! it weakly and ends with it or at shutdown. Each thread owns one offset map of
//! `--log-cleaner-dedupe-buffer-size / threads` bytes, allocated at its first clean (a broker
//! without compacted topics never pays for it). Reads and writes share the
//! `--log-cleaner-io-max-bytes-per-second` budget.

mod checkpoint;
mod clean;
mod throttle;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use chronik_cleaner::{assess, pick_filthiest, Assessment, CompactionConfig, LogFacts, OffsetMap};

use crate::partition::Partition;
use crate::partitions::PartitionManager;
use crate::shutdown::Shutdown;
use checkpoint::{Checkpoints, Key};
use clean::{clean, facts, first_batch_timestamps, CleanFailure, CleanInput};
use throttle::Throttle;

pub const BYTES_READ: &str = "chronik_log_cleaner_bytes_read_total";
pub const BYTES_WRITTEN: &str = "chronik_log_cleaner_bytes_written_total";
pub const CLEANS: &str = "chronik_log_cleaner_cleans_total";
pub const DIRTY_RATIO: &str = "chronik_log_cleaner_dirty_ratio";
pub const LAST_CLEAN: &str = "chronik_log_cleaner_last_clean_timestamp_seconds";
pub const MAX_DIRTY_RATIO: &str = "chronik_log_cleaner_max_dirty_ratio";
/// With `--metrics-partition-labels false`: per topic, the highest dirty ratio and the oldest
/// last clean (0: a partition never cleaned since the start).
pub const TOPIC_MAX_DIRTY_RATIO: &str = "chronik_topic_log_cleaner_max_dirty_ratio";
pub const TOPIC_OLDEST_CLEAN: &str = "chronik_topic_log_cleaner_oldest_clean_timestamp_seconds";

/// The cleaner's broker settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanerSettings {
    /// Kafka's `log.cleaner.threads`.
    pub threads: usize,
    /// Kafka's `log.cleaner.io.max.bytes.per.second`; `None` is unlimited.
    pub io_max_bytes_per_second: Option<u64>,
    /// Kafka's `log.cleaner.dedupe.buffer.size`, shared by the threads.
    pub dedupe_buffer_size: usize,
    /// Kafka's `log.cleaner.backoff.ms`: a thread's sleep when nothing is dirty enough.
    pub backoff: Duration,
    /// `--metrics-partition-labels`: gauges per partition, else per topic.
    pub partition_labels: bool,
}

pub struct LogCleaner {
    settings: CleanerSettings,
    partitions: Weak<PartitionManager>,
    checkpoints: Checkpoints,
    throttle: Option<Throttle>,
    /// Logs a thread is cleaning now: no other thread picks them.
    in_progress: Mutex<HashSet<Key>>,
    /// When each log was last cleaned (seconds since the epoch), for the gauge.
    last_clean: Mutex<HashMap<Key, f64>>,
    shutdown: Shutdown,
}

impl LogCleaner {
    /// Starts the cleaner threads over `partitions`' replicas; they stop once `shutdown` is
    /// triggered (see [`CleanerThreads::join`]).
    pub fn start(
        settings: CleanerSettings,
        partitions: &Arc<PartitionManager>,
        shutdown: Shutdown,
    ) -> std::io::Result<CleanerThreads> {
        let cleaner = Arc::new(LogCleaner {
            checkpoints: Checkpoints::load(partitions.wal_root()),
            throttle: Throttle::new(settings.io_max_bytes_per_second),
            partitions: Arc::downgrade(partitions),
            in_progress: Mutex::new(HashSet::new()),
            last_clean: Mutex::new(HashMap::new()),
            settings,
            shutdown,
        });
        let mut threads = Vec::with_capacity(cleaner.settings.threads);
        for i in 0..cleaner.settings.threads {
            let c = cleaner.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("log-cleaner-{i}"))
                    .spawn(move || c.run())?,
            );
        }
        Ok(CleanerThreads(threads))
    }

    fn run(&self) {
        // Cleaning is background work: it takes the CPU and the disk produce leaves idle, and
        // its reads go in chunks after the commits in flight, as a catch-up consumer's do.
        chronik_wal::io_priority::lower_this_thread();
        chronik_wal::io_priority::mark_cold_reader();
        let mut map: Option<OffsetMap> = None;
        loop {
            if self.shutdown.is_triggered() {
                return;
            }
            let Some(manager) = self.partitions.upgrade() else {
                return;
            };
            let cleaned = self.round(&manager, &mut map);
            drop(manager);
            if !cleaned {
                self.sleep(self.settings.backoff);
            }
        }
    }

    /// Sleeps up to `d`, waking early at shutdown.
    fn sleep(&self, d: Duration) {
        let until = Instant::now() + d;
        while !self.shutdown.is_triggered() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            std::thread::sleep(left.min(Duration::from_millis(100)));
        }
    }

    /// Picks the dirtiest log and cleans it; `false` when none needed cleaning or it failed.
    fn round(&self, manager: &PartitionManager, map: &mut Option<OffsetMap>) -> bool {
        let Some((part, assessment)) = self.pick(manager) else {
            return false;
        };
        let key = (part.topic.clone(), part.index);
        let ok = self.clean_one(manager, &part, &assessment, map);
        lock(&self.in_progress).remove(&key);
        ok
    }

    /// The dirtiest compacted log no other thread cleans, marked as in progress.
    fn pick(&self, manager: &PartitionManager) -> Option<(Arc<Partition>, Assessment)> {
        let now = crate::clock::now_ms();
        let mut in_progress = lock(&self.in_progress);
        let candidates: Vec<(Arc<Partition>, Assessment)> = manager
            .all_partitions()
            .into_iter()
            .filter_map(|p| {
                let config = p.config().compaction?;
                let key = (p.topic.clone(), p.index);
                if in_progress.contains(&key) || p.log.failure().is_some() {
                    return None;
                }
                let a = self.assess(&p, &config, self.checkpoint(&p, &key), now);
                Some((p, a))
            })
            .collect();
        self.record_gauges(&candidates);
        let (part, a) = pick_filthiest(candidates)?;
        in_progress.insert((part.topic.clone(), part.index));
        Some((part, a))
    }

    /// Where `p`'s log is clean up to: its checkpoint, lowered to where the log was last cut
    /// back (a follower's divergent tail, a heal, a torn tail at open: Kafka's
    /// `maybeTruncateCheckpoint`), since what the log holds from there on may be new. Only the
    /// thread that picks a log takes its mark (`pick` holds the in-progress set). A crash
    /// between a cut and this leaves the old checkpoint: the new data below it is then taken
    /// for clean, and keeps older versions of its keys until they are written again.
    fn checkpoint(&self, p: &Partition, key: &Key) -> Option<i64> {
        let Some(from) = p.log.take_rewritten_from() else {
            return self.checkpoints.get(key);
        };
        self.checkpoints.lower(key, from).unwrap_or_else(|e| {
            tracing::warn!(topic = %p.topic, partition = p.index, error = %e,
                "cannot write the lowered cleaner checkpoint; using it in memory");
            self.checkpoints.get(key)
        })
    }

    /// Kafka's `LogToClean` of one replica's log.
    fn assess(
        &self,
        p: &Partition,
        config: &CompactionConfig,
        checkpoint: Option<i64>,
        now: i64,
    ) -> Assessment {
        let infos = p.log.segments();
        let mut segs = facts(&infos);
        if config.max_compaction_lag_ms < i64::MAX {
            let from = checkpoint.unwrap_or(p.log.log_start_offset());
            first_batch_timestamps(&p.log, &infos, &mut segs, from);
        }
        let log = LogFacts {
            segments: &segs,
            log_start_offset: p.log.log_start_offset(),
            log_end_offset: p.log.log_end_offset(),
            // Nothing at or above an open transaction's first offset is cleaned (Kafka's
            // rule; a follower keeps no transaction state, so its bound is the high watermark).
            last_stable_offset: p.last_stable_offset(),
            cleaned_up_to: checkpoint,
        };
        assess(&log, config, now)
    }

    /// The dirty ratio of every compacted log (per partition, or per topic the highest with
    /// `--metrics-partition-labels false`), the highest of all (Kafka's `max-dirty-percent`),
    /// and when each log was last cleaned.
    fn record_gauges(&self, assessed: &[(Arc<Partition>, Assessment)]) {
        let last_clean = lock(&self.last_clean).clone();
        let mut per_topic: HashMap<&str, (f64, f64)> = HashMap::new();
        let mut max = 0f64;
        for (p, a) in assessed {
            let ratio = a.dirtiness.ratio;
            let cleaned = last_clean.get(&(p.topic.clone(), p.index)).copied();
            max = max.max(ratio);
            if self.settings.partition_labels {
                let labels = [
                    ("topic", p.topic.clone()),
                    ("partition", p.index.to_string()),
                ];
                metrics::gauge!(DIRTY_RATIO, &labels).set(ratio);
                if let Some(t) = cleaned {
                    metrics::gauge!(LAST_CLEAN, &labels).set(t);
                }
            } else {
                let e = per_topic.entry(&p.topic).or_insert((0.0, f64::MAX));
                e.0 = e.0.max(ratio);
                e.1 = e.1.min(cleaned.unwrap_or(0.0));
            }
        }
        for (topic, (ratio, oldest)) in per_topic {
            let labels = [("topic", topic.to_string())];
            metrics::gauge!(TOPIC_MAX_DIRTY_RATIO, &labels).set(ratio);
            metrics::gauge!(TOPIC_OLDEST_CLEAN, &labels).set(oldest);
        }
        metrics::gauge!(MAX_DIRTY_RATIO).set(max);
    }

    /// Cleans one log and stores its checkpoint; `false` on failure (logged).
    fn clean_one(
        &self,
        manager: &PartitionManager,
        part: &Partition,
        a: &Assessment,
        map: &mut Option<OffsetMap>,
    ) -> bool {
        let map = match map {
            Some(m) => m,
            None => {
                let budget = self.settings.dedupe_buffer_size / self.settings.threads.max(1);
                match OffsetMap::new(budget) {
                    Ok(m) => map.insert(m),
                    Err(e) => {
                        tracing::error!(error = %e, "log cleaner cannot build its offset map");
                        return false;
                    }
                }
            }
        };
        let Some(config) = part.config().compaction else {
            return false;
        };
        let forget = |offsets: &[i64]| part.forget_aborted_markers(offsets);
        let input = CleanInput {
            first_dirty: a.range.first_dirty_offset,
            first_uncleanable: a.dirtiness.first_uncleanable_offset,
            high_watermark: part.replica.high_watermark(),
            delete_retention_ms: config.delete_retention_ms,
            segment_bytes: part.log.config().segment_bytes,
            max_decompressed_bytes: part.config().policy.max_decompressed_bytes,
            now_ms: crate::clock::now_ms(),
            throttle: self.throttle.as_ref(),
            stop: Some(&self.shutdown),
            markers_removed: Some(&forget),
        };
        let started = Instant::now();
        let outcome = match clean(&part.log, &input, map) {
            Ok(o) => o,
            Err(CleanFailure::Stopped) => {
                tracing::info!(topic = %part.topic, partition = part.index, "log clean stopped for the shutdown");
                return false;
            }
            Err(e) => {
                tracing::warn!(topic = %part.topic, partition = part.index, error = %e, "log clean failed; retried after the backoff");
                return false;
            }
        };
        metrics::counter!(BYTES_READ).increment(outcome.bytes_read());
        metrics::counter!(BYTES_WRITTEN).increment(outcome.filter.bytes_written);
        metrics::counter!(CLEANS).increment(1);
        let key = (part.topic.clone(), part.index);
        let hosted: HashSet<Key> = manager
            .all_partitions()
            .iter()
            .map(|p| (p.topic.clone(), p.index))
            .collect();
        let hosted = |k: &Key| hosted.contains(k);
        if let Err(e) = self
            .checkpoints
            .set(key.clone(), outcome.cleaned_up_to, &hosted)
        {
            tracing::warn!(error = %e, "cannot write the cleaner checkpoint; the next clean redoes the work");
        }
        let now_s = crate::clock::now_ms() as f64 / 1000.0;
        lock(&self.last_clean).insert(key, now_s);
        tracing::info!(
            topic = %part.topic, partition = part.index,
            from = input.first_dirty, to = outcome.cleaned_up_to,
            passes = outcome.passes, segments = outcome.segments_replaced,
            bytes_before = outcome.bytes_before, bytes_after = outcome.bytes_after,
            records_kept = outcome.filter.records_kept, records_read = outcome.filter.records_read,
            tombstones_removed = outcome.filter.tombstones_removed,
            aborted_removed = outcome.filter.aborted_removed,
            markers_removed = outcome.filter.markers_removed,
            bytes_read = outcome.bytes_read(), bytes_written = outcome.filter.bytes_written,
            ms = started.elapsed().as_millis() as u64,
            "log cleaned"
        );
        true
    }
}

/// The running cleaner threads, for the shutdown to wait for.
pub struct CleanerThreads(Vec<std::thread::JoinHandle<()>>);

/// Longest the shutdown waits for a clean to reach a stopping point: a clean stopped midway
/// is safe (a replacement is atomic), so past it the broker closes its logs anyway.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

impl CleanerThreads {
    /// Waits, bounded, until every thread has returned (the shutdown must be triggered first:
    /// a thread sees it between segment groups and in its sleeps). False if one was still
    /// busy at the deadline.
    pub async fn join(self) -> bool {
        let deadline = tokio::time::Instant::now() + JOIN_TIMEOUT;
        while !self.0.iter().all(|t| t.is_finished()) {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    "log cleaner threads still busy at shutdown; closing the logs anyway"
                );
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for t in self.0 {
            if t.join().is_err() {
                tracing::error!("a log cleaner thread panicked");
            }
        }
        true
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests;
