//! Consumer groups: committed offsets (the record format of the `__consumer_offsets` topic in
//! [`record`], the per-partition state and the replay that rebuilds it from the log in
//! [`store`]) and membership with Kafka's classic protocol ([`membership`]).
//!
//! Nothing here touches sockets or Kafka requests: the broker decodes requests, appends the
//! records this crate encodes through the partition's WAL, and applies them here once they
//! are durable.

pub mod membership;
pub mod record;
pub mod store;

pub use membership::{GroupConfig, GroupManager};
pub use record::{
    encode_group_batch, encode_offsets_batch, encode_raw_batch, encode_txn_offsets_batch,
    group_key, GroupMemberRecord, GroupRecord, Key, OffsetKey, OffsetValue, RecordError,
};
pub use store::{for_each_record, partition_for, Committed, OffsetStore, ReplayError};

/// The internal topic that holds committed offsets and (later) group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Kafka's `offset.metadata.max.bytes` default: longer commit metadata is refused.
pub const MAX_OFFSET_METADATA_BYTES: usize = 4096;
