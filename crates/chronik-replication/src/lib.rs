//! WAL replication. The leader of each partition serves its WAL batches, byte for byte, to
//! the partition's followers; followers append them at the same offsets and report how far
//! they are durable; the leader's high watermark is the smallest durable end over the ISR.
//! Leader epochs fence stale leaders and let a follower find and cut a divergent tail.
//!
//! Knows nothing of Kafka requests or of Raft: the broker feeds it roles from the metadata
//! and asks it for high watermarks and ISR changes.

pub mod changes;
pub mod checkpoint;
pub mod epochs;
pub mod fetcher;
pub mod manager;
pub mod replica;
pub mod service;
mod session;

pub use epochs::EpochCache;
pub use manager::{ReplicaManager, ReplicationConfig};
pub use replica::{BrokerId, CommitWaitError, FollowerLag, Replica, Role};
pub use service::ReplicationService;

/// Generated gRPC code for `proto/replication.proto`.
pub mod pb {
    #![allow(clippy::all)]
    tonic::include_proto!("chronik.replication");
}
