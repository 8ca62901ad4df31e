//! The transactional API of a [`Partition`]: what the coordinator (through WriteTxnMarkers),
//! Fetch, ListOffsets and the produce path's KIP-890 hook call.

use chronik_wal::BatchHeader;

use super::control::{self, EndTxnMarker};
use super::verify::VerifyRequest;
use crate::partition::{Accepted, AppendError, Partition};
use crate::producer_state::MarkerCheck;

impl Partition {
    /// Appends the control batch of `marker` (Kafka's `appendEndTxnMarker`, origin
    /// coordinator) and ends the producer's ongoing transaction here; an abort is recorded in
    /// the aborted-transaction index. Refused with INVALID_PRODUCER_EPOCH if the producer
    /// already wrote with a newer epoch, and with TRANSACTION_COORDINATOR_FENCED if a newer
    /// coordinator already wrote a marker for it. The marker is an ordinary batch to the log
    /// and to replication; the caller waits for it like an acks=all produce.
    #[tracing::instrument(name = "partition", skip_all,
        fields(topic = %self.topic, partition = self.index))]
    pub fn append_marker(
        &self,
        marker: &EndTxnMarker,
        leader_epoch: i32,
    ) -> Result<Accepted, AppendError> {
        let now_ms = crate::clock::now_ms();
        let mut batch = control::encode_marker(marker, now_ms)
            .map_err(|e| AppendError::Corrupt(e.to_string()))?;
        let mut producers = self.producers.lock().unwrap_or_else(|e| e.into_inner());
        self.serving_check()?;
        let (pid, epoch) = (marker.producer_id, marker.producer_epoch);
        match producers.check_marker(pid, epoch, marker.coordinator_epoch) {
            MarkerCheck::Append => {}
            MarkerCheck::Fenced { current, got } => {
                tracing::info!(producer_id = pid, current, got,
                    "transaction marker from an old producer epoch; answering INVALID_PRODUCER_EPOCH");
                return Err(AppendError::Fenced { current, got });
            }
            MarkerCheck::CoordinatorFenced { current, got } => {
                tracing::info!(producer_id = pid, current, got,
                    "transaction marker from an old coordinator; answering TRANSACTION_COORDINATOR_FENCED");
                return Err(AppendError::CoordinatorFenced { current, got });
            }
        }
        let leading = self.replica.leading_epoch();
        let mut txns = self.txns.lock().unwrap_or_else(|e| e.into_inner());
        let appended = self.log.append(&mut batch, leader_epoch)?;
        self.replica
            .record_epoch(leader_epoch, appended.base_offset, appended.generation);
        let offset = appended.base_offset;
        producers.record_marker(pid, epoch, marker.coordinator_epoch, offset, now_ms);
        let hw = self.replica.high_watermark();
        // Bounds the index by what the log still holds even if no read_committed fetch asks.
        txns.forget_aborted_below(self.log.log_start_offset());
        if let Some(aborted) = txns.on_marker(pid, marker.marker, offset, hw) {
            tracing::debug!(
                producer_id = pid,
                first_offset = aborted.first_offset,
                marker_offset = offset,
                "transaction aborted"
            );
        }
        Ok(Accepted {
            base_offset: offset,
            end_offset: appended.last_offset + 1,
            duplicate: false,
            leader_epoch: leading,
            generation: appended.generation,
            log_append_time_ms: None,
        })
    }

    /// Kafka's last stable offset: the high watermark, or the first offset of the earliest
    /// transaction not yet stable (ongoing, or ended by a marker the high watermark has not
    /// passed) if that is lower. read_committed consumers read below it only.
    pub fn last_stable_offset(&self) -> i64 {
        let mut txns = self.txns.lock().unwrap_or_else(|e| e.into_inner());
        // Read under `txns`: an append that changes it holds it (module invariant).
        txns.last_stable_offset(self.replica.high_watermark())
    }

    /// The aborted transactions overlapping a read_committed fetch of `[from, upper)`, as
    /// (producer id, first offset), the FetchResponse's `aborted_transactions`.
    pub fn aborted_transactions(&self, from: i64, upper: i64) -> Vec<(i64, i64)> {
        let log_start = self.log.log_start_offset();
        self.txns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .aborted_overlapping(from, upper, log_start)
    }

    /// The log cleaner removes the abort markers at `marker_offsets` (ascending): their
    /// entries leave the aborted index.
    pub fn forget_aborted_markers(&self, marker_offsets: &[i64]) {
        self.txns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .forget_aborted_markers(marker_offsets);
    }

    /// KIP-890 part 1: the question to put to the coordinator before `records` are appended,
    /// or `None` if there is none to ask. Only the first transactional batch of a producer's
    /// transaction on this partition asks; later batches of that transaction do not.
    pub fn needs_txn_verification(
        &self,
        records: &[u8],
        transactional_id: &str,
    ) -> Option<VerifyRequest> {
        let h = BatchHeader::parse(records).ok()?;
        let begins = self
            .txns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .begins_txn(&h);
        begins.then(|| VerifyRequest {
            transactional_id: transactional_id.to_string(),
            producer_id: h.producer_id,
            producer_epoch: h.producer_epoch,
            topic: self.topic.clone(),
            partition: self.index,
        })
    }

    /// Ongoing transactions as (producer id, first offset) and the aborted index (tests,
    /// diagnostics).
    pub fn txn_snapshot(&self) -> (Vec<(i64, i64)>, Vec<super::AbortedTxn>) {
        let txns = self.txns.lock().unwrap_or_else(|e| e.into_inner());
        (txns.ongoing(), txns.aborted())
    }
}
