//! The append path: checking a batch, assigning its offsets under the partition lock, rolling
//! the active segment when it is full or old, and writing the frame into the page cache. The
//! group commit (commit.rs) makes it durable.

use std::io::{Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use tracing::warn;

use super::{now_ms, Appended, Inner, PartitionLog, Shared, MAX_PENDING_SEALS};
use crate::batch::{
    set_base_offset, set_partition_leader_epoch, verify_batch_crc, BatchError, BatchHeader,
};
use crate::config::FsyncPolicy;
use crate::error::WalError;
use crate::segment::{
    frame_header, write_frame, FRAME_HEADER_BYTES, MAX_FRAME_PAYLOAD_BYTES, MAX_RELATIVE_OFFSET,
    MAX_SEGMENT_FILE_BYTES,
};

impl PartitionLog {
    /// Appends one v2 batch: checks it (header, exact length, CRC32C, at most
    /// [`MAX_FRAME_PAYLOAD_BYTES`]), then under the partition lock assigns offsets (patching the
    /// base offset and `leader_epoch` into `batch`), rolls the segment if needed, writes the frame
    /// to the active segment (page cache, one `writev`), updates the indexes and queues it for
    /// the group commit. Returns without waiting for durability; see
    /// [`wait_committed`](Self::wait_committed). Fails with `Sealed` if sealed, `Failed` if
    /// poisoned, `Closed` after close.
    pub fn append(&self, batch: &mut [u8], leader_epoch: i32) -> Result<Appended, WalError> {
        self.append_batch(batch, Place::Assign(leader_epoch))
    }

    /// Appends a batch its leader already placed, unchanged: its base offset must be this
    /// log's end (`ReplicaGap` otherwise) and its leader epoch is kept, so a replica holds
    /// byte-identical frames at the same offsets. Same checks and durability as `append`.
    pub fn append_replica(&self, batch: &mut [u8]) -> Result<Appended, WalError> {
        self.append_batch(batch, Place::AtEnd)
    }

    /// [`append_replica`](Self::append_replica) for a leader whose log has gaps (compaction):
    /// the batch may start above this log's end, but this log must still end at `log_end`,
    /// the offset the caller fetched from or the end its previous batch left (`ReplicaGap`
    /// otherwise), so a gap is only ever one the leader's log has, never one left by a
    /// truncation or heal of this log between the fetch and the append.
    pub fn append_replica_after(
        &self,
        batch: &mut [u8],
        log_end: i64,
    ) -> Result<Appended, WalError> {
        self.append_batch(batch, Place::AtOrAfter(log_end))
    }

    fn append_batch(&self, batch: &mut [u8], place: Place) -> Result<Appended, WalError> {
        if batch.len() > MAX_FRAME_PAYLOAD_BYTES {
            return Err(WalError::BatchTooLarge {
                size: batch.len(),
                max: MAX_FRAME_PAYLOAD_BYTES,
            });
        }
        let header = BatchHeader::parse(batch)?;
        if header.total_size() != batch.len() {
            return Err(WalError::InvalidBatch(BatchError::TrailingBytes {
                expected: header.total_size(),
                actual: batch.len(),
            }));
        }
        verify_batch_crc(batch)?;
        let now = now_ms();
        let frame_bytes = FRAME_HEADER_BYTES + batch.len() as u64;

        let s = &*self.shared;
        let mut guard = s.lock();
        let inner = &mut *guard;
        s.check_open(inner)?;
        if inner.sealed {
            return Err(WalError::Sealed {
                topic: s.topic.clone(),
                partition: s.partition,
            });
        }
        let end = inner.log_end;
        let (base, last) = placement(place, end, &header)?;

        if let Some(reason) = roll_reason(inner, frame_bytes, last, now) {
            if inner.pending_seals.len() < MAX_PENDING_SEALS {
                s.roll(inner, now, reason)?;
            } else if !inner.deferred_roll_warned {
                inner.deferred_roll_warned = true;
                warn!(topic = %s.topic, partition = s.partition, reason,
                    pending = inner.pending_seals.len(), "segment roll deferred: too many segments waiting to be sealed");
            }
        }
        if base > end && inner.active().cleaned_to.is_none() {
            // A replica copying a compacted leader's gap: only a cleaned segment may hold one.
            s.make_active_cleaned(inner, now)?;
        }
        let seg = inner
            .segments
            .back_mut()
            .expect("partition log has no segment");
        if seg.size_bytes + frame_bytes > MAX_SEGMENT_FILE_BYTES
            || last - seg.base_offset > MAX_RELATIVE_OFFSET
        {
            return Err(WalError::SegmentFull {
                size_bytes: seg.size_bytes,
            });
        }

        if let Place::Assign(leader_epoch) = place {
            set_base_offset(batch, base);
            set_partition_leader_epoch(batch, leader_epoch);
        }
        let fh = frame_header(batch);
        let position = seg.size_bytes;
        if let Err(e) = write_frame(seg.file(), &fh, batch) {
            let path = seg.path.to_path_buf();
            s.poison(inner, format!("write to {} failed: {e}", path.display()));
            return Err(WalError::Io {
                op: "append",
                path,
                source: e,
            });
        }
        seg.size_bytes += frame_bytes;
        seg.allocated_bytes = seg.allocated_bytes.max(seg.size_bytes);
        seg.max_timestamp = seg.max_timestamp.max(header.max_timestamp);
        let max_ts = seg.max_timestamp;
        Arc::make_mut(&mut seg.index).on_append(
            inner.config.index_interval_bytes,
            (base - seg.base_offset) as u32,
            position as u32,
            frame_bytes,
            max_ts,
        );
        seg.roll_clock_ms.get_or_insert(now);
        seg.next_offset = last + 1;
        seg.batches_end = last + 1;
        inner.total_bytes += frame_bytes;
        inner.log_end = last + 1;
        // Only replication watches the end (a standalone log has no receiver); a receiver that
        // subscribes later reads the log itself before it waits for the next change.
        if s.end_tx.receiver_count() > 0 {
            s.end_tx.send_replace(inner.log_end);
        }

        match inner.config.fsync {
            FsyncPolicy::Always => s.wake.notify_one(),
            FsyncPolicy::Interval(_) => {
                if inner.synced_end == end {
                    // Clean -> dirty: start the interval timer.
                    s.wake.notify_one();
                }
                s.publish_committed(inner, inner.log_end);
            }
            FsyncPolicy::Never => s.publish_committed(inner, inner.log_end),
        }
        inner.check_invariants();
        Ok(Appended {
            base_offset: base,
            last_offset: last,
            generation: inner.generation,
        })
    }
}

/// Where a batch goes in a log ending at `end`: its base and last offsets, or why it may not
/// be appended there.
fn placement(place: Place, end: i64, header: &BatchHeader) -> Result<(i64, i64), WalError> {
    let base = match place {
        Place::Assign(_) => end,
        Place::AtEnd if header.base_offset == end => end,
        Place::AtOrAfter(expected) if expected == end && header.base_offset >= end => {
            header.base_offset
        }
        Place::AtEnd | Place::AtOrAfter(_) => {
            return Err(WalError::ReplicaGap {
                log_end: end,
                got: header.base_offset,
            })
        }
    };
    let last = base
        .checked_add(i64::from(header.last_offset_delta))
        .filter(|l| *l < i64::MAX)
        .ok_or(WalError::OffsetOverflow {
            log_end: base,
            last_offset_delta: header.last_offset_delta,
        })?;
    Ok((base, last))
}

impl Shared {
    /// Makes the active segment a cleaned one (version-2 header, see `segment.rs`) before a
    /// replica appends a batch above the log end: an empty one gets the longer header in
    /// place (it holds no data, so nothing moves; the next commit pass syncs it with the
    /// batch), a non-empty one is rolled. Its range end is its base: a gap between its batches
    /// is legal, one at its end never is (a replica's segment always ends at its last batch).
    fn make_active_cleaned(&self, inner: &mut Inner, now: i64) -> Result<(), WalError> {
        let active = inner.active();
        if !active.is_empty() {
            if inner.pending_seals.len() >= MAX_PENDING_SEALS {
                return Err(WalError::SegmentFull {
                    size_bytes: active.size_bytes,
                });
            }
            let base = inner.log_end;
            return self.roll_to(inner, now, "replica gap", Some(base));
        }
        let seg = inner
            .segments
            .back_mut()
            .expect("partition log has no segment");
        let mut header = seg.header();
        header.cleaned_to = Some(seg.base_offset);
        let start = header.data_start();
        let written = seg
            .file()
            .write_all_at(&header.encode(), 0)
            .and_then(|()| (&**seg.file()).seek(SeekFrom::Start(start)).map(drop));
        if let Err(e) = written {
            let path = seg.path.to_path_buf();
            self.poison(
                inner,
                format!("rewriting the header of {} failed: {e}", path.display()),
            );
            return Err(WalError::Io {
                op: "rewrite segment header",
                path,
                source: e,
            });
        }
        let grown = start - seg.size_bytes;
        seg.cleaned_to = header.cleaned_to;
        seg.size_bytes = start;
        seg.allocated_bytes = seg.allocated_bytes.max(start);
        seg.synced_bytes = seg.synced_bytes.min(seg.size_bytes);
        inner.total_bytes += grown;
        Ok(())
    }
}

/// Where an appended batch goes.
#[derive(Clone, Copy)]
enum Place {
    /// At the log end, with offsets assigned and this leader epoch (a leader).
    Assign(i32),
    /// Unchanged, starting exactly at the log end (a replica).
    AtEnd,
    /// Unchanged, at or above the log end, which must be this offset (a replica of a
    /// compacted log).
    AtOrAfter(i64),
}

/// Why the active segment must roll before an append of `frame_bytes` ending at `last_offset`.
fn roll_reason(
    inner: &Inner,
    frame_bytes: u64,
    last_offset: i64,
    now_ms: i64,
) -> Option<&'static str> {
    let active = inner.active();
    if active.is_empty() {
        // Whatever its size, a batch goes into an empty segment.
        return None;
    }
    if active.size_bytes + frame_bytes > inner.config.segment_bytes {
        return Some("segment.bytes");
    }
    let segment_ms = i64::try_from(inner.config.segment_ms).unwrap_or(i64::MAX);
    if active
        .roll_clock_ms
        .is_some_and(|t| now_ms.saturating_sub(t) >= segment_ms)
    {
        return Some("segment.ms");
    }
    if last_offset - active.base_offset > MAX_RELATIVE_OFFSET {
        return Some("offset span");
    }
    None
}
