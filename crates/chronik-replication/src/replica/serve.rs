//! Leader side of a follower's fetch, and the change version a held fetch watches.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use chronik_wal::WalError;

use super::{code, BrokerId, FollowerFetch, Progress, Replica, Role, ServedFetch};
use crate::changes::Changes;

impl Replica {
    /// Leader side of a follower's fetch: checks epochs and divergence, records the
    /// follower's progress, and reads up to `max_bytes` of durable batches (a catching-up
    /// follower's read of old data on the blocking pool, see `PartitionLog::read_async`).
    pub async fn serve_fetch(&self, f: FollowerFetch, max_bytes: usize) -> ServedFetch {
        let mut out = ServedFetch {
            high_watermark: self.high_watermark(),
            log_start_offset: self.log.log_start_offset(),
            leader_epoch: -1,
            ..Default::default()
        };
        let log_end = self.log.log_end_offset();
        {
            let mut st = self.lock();
            let epoch = match &st.role {
                Role::Leader { epoch, .. } => *epoch,
                _ => {
                    out.error_code = code::NOT_LEADER_OR_FOLLOWER;
                    return out;
                }
            };
            out.leader_epoch = epoch;
            if f.leader_epoch < epoch {
                out.error_code = code::FENCED_LEADER_EPOCH;
                return out;
            }
            if f.leader_epoch > epoch {
                out.error_code = code::UNKNOWN_LEADER_EPOCH;
                return out;
            }
            // Divergence: the follower's last epoch must end, in this log, no earlier than
            // where the follower's log ends.
            if f.fetch_offset > out.log_start_offset {
                let end = if f.last_fetched_epoch < 0 {
                    None
                } else {
                    st.epochs.end_offset_for(f.last_fetched_epoch, log_end)
                };
                match end {
                    Some((e, end)) if e == f.last_fetched_epoch && end >= f.fetch_offset => {}
                    Some((e, end)) => {
                        out.diverging = Some((e, end.min(f.fetch_offset)));
                        return out;
                    }
                    None => {
                        let start = st.epochs.first_start().unwrap_or(out.log_start_offset);
                        out.diverging = Some((-1, start.min(f.fetch_offset)));
                        return out;
                    }
                }
            }
            // Caught up (Kafka's rule): at this log's end, or at least where it ended when
            // the follower last fetched, so a steady stream of appends does not count as lag.
            let now = Instant::now();
            let since = st.leading_since;
            let p = st.followers.entry(f.follower).or_insert(Progress {
                log_end: f.fetch_offset,
                durable: f.durable_offset,
                caught_up_at: since,
                leader_end_at_last_fetch: i64::MAX,
                // Unknown until now (Kafka's UNKNOWN_OFFSET): the change below is announced.
                log_start: -1,
            });
            if f.fetch_offset >= log_end || f.fetch_offset >= p.leader_end_at_last_fetch {
                p.caught_up_at = now;
            }
            p.leader_end_at_last_fetch = log_end;
            p.log_end = f.fetch_offset;
            if p.log_start != f.log_start_offset {
                p.log_start = f.log_start_offset;
                self.log_start_moved.send_modify(|n| *n += 1);
            }
            p.durable = f.durable_offset.min(f.fetch_offset);
        }
        self.update_high_watermark();
        out.high_watermark = self.high_watermark();
        // Up to what is written, synced or not (as Kafka's followers fetch up to the leader's
        // log end): the leader's fdatasync then overlaps the followers' instead of preceding
        // it. The high watermark still needs this log's own sync (`update_high_watermark`).
        // Far behind, inside sealed segments, the follower gets whole segment files instead.
        let limit = match self.log.catch_up_plan(f.fetch_offset) {
            chronik_wal::CatchUp::WholeSegment => {
                out.segment_available = true;
                return out;
            }
            chronik_wal::CatchUp::ReadTo(limit) if limit <= f.fetch_offset => return out,
            chronik_wal::CatchUp::ReadTo(limit) => limit,
        };
        // From the first segment's base, not the log start: a follower whose log ends inside
        // the segment holding the log start catches up, then moves its own log start.
        match self
            .log
            .read_replica_async(f.fetch_offset, max_bytes, limit)
            .await
        {
            Ok(r) => out.records = r.data,
            Err(WalError::OffsetOutOfRange { .. }) => {
                out.error_code = code::OFFSET_OUT_OF_RANGE;
                if f.fetch_offset < out.log_start_offset {
                    out.restart_offset = self.restart_offset().await;
                }
            }
            Err(e) => {
                tracing::error!(topic = %self.topic, partition = self.partition, error = %e,
                    "replica read failed");
                out.error_code = code::KAFKA_STORAGE_ERROR;
            }
        }
        out
    }

    /// A follower's fetch of this partition that changed nothing: the follower, in a fetch
    /// session, left it out of its request (its log end, durable end, epoch and log start are
    /// as in the fetch this leader last served), and nothing changed here since (else the
    /// partition would be served). Only the caught-up clock moves, by Kafka's rule as in
    /// [`Replica::serve_fetch`]: a live follower holding everything this log has stays in the
    /// ISR without its partition being served again.
    pub fn note_unchanged_fetch(&self, follower: BrokerId) {
        let log_end = self.log.log_end_offset();
        let mut st = self.lock();
        if !matches!(st.role, Role::Leader { .. }) {
            return;
        }
        if let Some(p) = st.followers.get_mut(&follower) {
            if p.log_end >= log_end || p.log_end >= p.leader_end_at_last_fetch {
                p.caught_up_at = Instant::now();
            }
            p.leader_end_at_last_fetch = log_end;
        }
    }

    /// Grows whenever something a follower's fetch of this partition would learn may have
    /// changed: a leader append or truncation (through the manager's watch of the log end), the
    /// high watermark, the log start, the role. A fetch session serves a partition again only
    /// when this moved since it last served it.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Bumps [`Replica::version`] and the manager's signal.
    pub fn changed(&self) {
        self.version.fetch_add(1, Ordering::AcqRel);
        if let Some(c) = self.changes.get() {
            c.bump();
        }
    }

    /// Ties this replica to its manager's change signal (once; by `ReplicaManager::add`).
    pub(crate) fn attach_changes(&self, changes: Arc<Changes>) {
        let _ = self.changes.set(changes);
    }
}
