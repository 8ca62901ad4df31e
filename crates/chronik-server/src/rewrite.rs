//! Runs a topic's batch policy (`chronik_protocol::batch`) on a produced batch, keeping the
//! heavy cases from starving the async runtime and from taking unbounded memory: recompression,
//! and reading the records of a compressed batch that is large or expands far (every batch's
//! records are read under CreateTime, as Kafka does, to check their timestamps).
//!
//! Recompression decodes up to `max.decompressed.message.bytes` (64 MiB by default) and
//! compresses again: milliseconds of CPU for a 1 MiB batch. The produce handler appends
//! partitions in request order without awaiting, so the work runs in place under
//! `block_in_place` (the runtime moves this worker's other tasks to another thread) rather
//! than through `spawn_blocking`, which would need the handler to await between partitions.
//! At most [`MAX_CONCURRENT`] heavy batches are worked on at once (the machine's cores are the limit
//! anyway); others wait for a slot, so memory stays bounded by MAX_CONCURRENT times the
//! decompression bound plus the output.

use std::sync::{Condvar, Mutex};

use chronik_protocol::batch::{self, BatchError, Outcome, Policy};

/// Heavy batches worked on at once, broker-wide.
pub const MAX_CONCURRENT: usize = 2;

static SLOTS: Mutex<usize> = Mutex::new(0);
static FREED: Condvar = Condvar::new();

/// A recompression slot, released on drop.
struct Slot;

impl Slot {
    fn take() -> Slot {
        let mut used = SLOTS.lock().unwrap_or_else(|e| e.into_inner());
        while *used >= MAX_CONCURRENT {
            used = FREED.wait(used).unwrap_or_else(|e| e.into_inner());
        }
        *used += 1;
        Slot
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        *SLOTS.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        FREED.notify_one();
    }
}

/// [`batch::apply`], off the async worker when it is heavy (recompression, or a large
/// compressed batch whose records must be read).
pub fn apply(records: &[u8], policy: &Policy, now_ms: i64) -> Result<Outcome, BatchError> {
    if !policy.is_heavy(records) {
        // A walk over records in memory, expanding a compressed batch only a little:
        // microseconds. One that expands further is heavy work after all.
        let inline = policy.inline_bounded(records);
        match batch::apply(records, &inline, now_ms) {
            Err(BatchError::TooLarge(_)) if inline != *policy => {}
            done => return done,
        }
    }
    let heavy = || {
        let _slot = Slot::take();
        batch::apply(records, policy, now_ms)
    };
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(heavy),
        // A current-thread runtime (unit tests) or none: nothing else to keep running.
        _ => heavy(),
    }
}
