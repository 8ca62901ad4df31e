//! The log start offset across replicas (Kafka's DeleteRecords): the leader moves its own on
//! request; followers learn it from every fetch answer and move theirs up to it (never past
//! their high watermark); each follower reports its own in its fetches, so the leader knows
//! the low watermark, the smallest log start over the replicas, which a DeleteRecords waits
//! for.

use chronik_wal::{RetentionOutcome, WalError};
use tokio::sync::watch;

use super::{follows, BrokerId, Replica, Role};

impl Replica {
    /// Moves this log's start forward to `offset` (durably, deleting whole segments below it;
    /// see `PartitionLog::advance_log_start`) and wakes the held fetches of followers, so they
    /// learn it at once. The caller checks leadership and bounds `offset` (Kafka: by the high
    /// watermark). The file work runs on the blocking pool.
    pub async fn advance_log_start(&self, offset: i64) -> Result<RetentionOutcome, WalError> {
        let log = self.log.clone();
        let out = tokio::task::spawn_blocking(move || log.advance_log_start(offset))
            .await
            .map_err(|e| WalError::Failed(format!("log start task failed: {e}")))??;
        self.log_start_moved.send_modify(|n| *n += 1);
        self.changed();
        Ok(out)
    }

    /// On a leader, Kafka's low watermark: the smallest log start offset over this log and
    /// every follower in `replicas` (the caller names the alive ones, as Kafka counts only
    /// replicas on alive brokers); -1 while one of them has not fetched in this leadership
    /// (its log start is unknown). `None` unless this replica leads.
    pub fn low_watermark(&self, replicas: &[BrokerId]) -> Option<i64> {
        let st = self.lock();
        if !matches!(st.role, Role::Leader { .. }) {
            return None;
        }
        let mut low = self.log.log_start_offset();
        for r in replicas.iter().filter(|r| **r != self.node_id) {
            low = low.min(st.followers.get(r).map_or(-1, |p| p.log_start));
        }
        Some(low)
    }

    /// Fires when this log's start moved through [`Replica::advance_log_start`] or a
    /// follower reported a different log start.
    pub fn subscribe_log_start(&self) -> watch::Receiver<i64> {
        self.log_start_moved.subscribe()
    }

    /// On a follower of `leader` in `epoch`: moves this log's start up to the leader's
    /// `leader_log_start`, never past this replica's high watermark (Kafka's rule: the leader
    /// deleted only below its high watermark, and this log may not hold that far yet).
    /// Nothing happens unless this replica still follows `leader` in that epoch.
    pub async fn follow_log_start(
        &self,
        leader: BrokerId,
        epoch: i32,
        leader_log_start: i64,
    ) -> Result<(), WalError> {
        let target = leader_log_start.min(self.high_watermark());
        if target <= self.log.log_start_offset() || !follows(&self.lock().role, leader, epoch) {
            return Ok(());
        }
        self.advance_log_start(target).await.map(|_| ())
    }

    /// Leader side: where a follower whose log ends below everything this log holds starts
    /// again: the base of the batch holding the log start (batches are copied whole, so the
    /// follower's log must begin at a batch boundary).
    pub(super) async fn restart_offset(&self) -> Option<i64> {
        let start = self.log.log_start_offset();
        match self.log.read_replica_async(start, 1, i64::MAX).await {
            Ok(r) => Some(r.first_offset.unwrap_or(start)),
            Err(e) => {
                tracing::warn!(topic = %self.topic, partition = self.partition, error = %e,
                    "cannot find where a lagging follower starts again");
                None
            }
        }
    }

    /// Follower side: the leader holds nothing at or below this log's end any more; empty
    /// this log and start it again at `offset` (see `PartitionLog::reset_to`), forgetting its
    /// leader epochs. Returns `false` (and changes nothing) unless this replica still follows
    /// `leader` in `epoch` and `offset` is past its log end; checked, and the log reset,
    /// under the state lock, as for `append_fetched`.
    pub fn restart_at(&self, leader: BrokerId, epoch: i32, offset: i64) -> Result<bool, WalError> {
        let mut st = self.lock();
        if !follows(&st.role, leader, epoch) || offset <= self.log.log_end_offset() {
            return Ok(false);
        }
        tracing::warn!(topic = %self.topic, partition = self.partition, node = self.node_id,
            from = self.log.log_end_offset(), to = offset,
            "the leader no longer holds this log's end; starting the log again at its log start");
        self.log.reset_to(offset)?;
        st.epochs.truncate_from(i64::MIN);
        st.generation = self.log.generation();
        drop(st);
        self.hw.send_replace(offset);
        Ok(true)
    }
}
