//! Consumer groups. This first part holds committed offsets: the record format of the
//! `__consumer_offsets` topic ([`record`]), the per-partition state and the replay that
//! rebuilds it from the log ([`store`]). Group membership (join, sync, heartbeats) builds on
//! the same store and is still to come.
//!
//! Nothing here touches sockets or Kafka requests: the broker decodes requests, appends the
//! records this crate encodes through the partition's WAL, and applies them here once they
//! are durable.

pub mod record;
pub mod store;

pub use record::{encode_commit_batch, Key, OffsetKey, OffsetValue, RecordError};
pub use store::{partition_for, Committed, OffsetStore, ReplayError};

/// The internal topic that holds committed offsets and (later) group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Kafka's `offset.metadata.max.bytes` default: longer commit metadata is refused.
pub const MAX_OFFSET_METADATA_BYTES: usize = 4096;
