//! Log compaction (`cleanup.policy=compact`) without I/O: the decisions of Kafka's
//! `LogCleaner`, over record batches given as bytes.
//!
//! One clean of a partition, as the broker drives it:
//! 1. [`schedule::assess`] each compacted log from its segment facts and
//!    [`CompactionConfig`]; [`schedule::pick_filthiest`] names the log to clean.
//! 2. Read the dirty section `[first_dirty_offset, first_uncleanable_offset)` batch by batch
//!    into an [`OffsetMap`] ([`OffsetMap::index_batch`]) until it ends or the map reports
//!    [`Indexed::Full`]; the pass covers offsets below [`OffsetMap::end_offset`].
//! 3. Pass every batch of the segments below that end (from the log start, in the runs
//!    [`schedule::group_segments`] forms) through [`filter_batch`] (or [`filter_batches`])
//!    with the map, and write what each run keeps into one replacement segment; the new
//!    cleaner checkpoint is the end offset. Another pass follows while the dirty section is
//!    not done. [`ActiveProducers`] names each producer's last batch, which stays (empty if
//!    need be) so its sequence state survives. A [`TxnTracker`] per walk (map build, filter
//!    pass), given the log's aborted transactions, tells aborted batches (dropped, never
//!    indexed) from committed ones and when a transaction marker may go.
//!
//! The crate owns no file, thread, clock or lock: the caller reads segments, gives the time,
//! swaps segments, throttles I/O and keeps the checkpoint (as `chronik-groups`' manager
//! leaves the log to the broker).

pub mod batch;
pub mod config;
pub mod filter;
pub mod offset_map;
pub mod schedule;
pub mod txn;

pub use batch::{split_batches, BatchHeader, CleanError};
pub use config::{CompactionConfig, ConfigError};
pub use filter::{
    filter_batch, filter_batches, ActiveProducers, FilterContext, FilterStats, Filtered,
};
pub use offset_map::{Indexed, MapError, OffsetMap};
pub use schedule::{
    assess, cleanable_range, dirtiness, group_segments, max_compaction_delay_ms, max_segment_ms,
    pick_filthiest, Assessment, CleanableRange, Dirtiness, LogFacts, SegmentFacts,
};
pub use txn::{AbortedTxn, ControlType, TxnTracker};

#[cfg(test)]
mod tests;
