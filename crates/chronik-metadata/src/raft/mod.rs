//! The metadata state machine under openraft: type configuration, the durable log store and
//! the snapshotting state machine. No networking here; the cluster crate carries Raft's
//! messages between nodes.

mod log_store;
mod state_machine;

pub use log_store::LogStore;
pub use state_machine::StateMachineStore;

use crate::command::{MetadataCommand, Outcome};
use crate::error::Refusal;

/// A Raft node id. Kafka broker ids are the same numbers (as i32).
pub type NodeId = u64;

/// What applying one entry gave its proposer.
pub type CommandReply = Result<Outcome, Refusal>;

openraft::declare_raft_types!(
    /// Chronik's Raft types: metadata commands in, command replies out; a node is known by
    /// its RPC address.
    pub TypeConfig:
        D = MetadataCommand,
        R = CommandReply,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = std::io::Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// Opens the durable log and state machine kept in `dir`.
pub fn open_storage(dir: &std::path::Path) -> std::io::Result<(LogStore, StateMachineStore)> {
    Ok((
        LogStore::open(&dir.join("log"))?,
        StateMachineStore::open(&dir.join("state"))?,
    ))
}

#[cfg(test)]
mod suite {
    use openraft::testing::{StoreBuilder, Suite};
    use openraft::StorageError;

    use super::*;

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for Builder {
        async fn build(
            &self,
        ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError<NodeId>>
        {
            let dir = tempfile::tempdir().expect("tempdir");
            let (log, sm) = open_storage(dir.path()).expect("open storage");
            Ok((dir, log, sm))
        }
    }

    /// openraft's own storage test suite against the durable store.
    #[test]
    fn openraft_storage_suite() {
        Suite::test_all(Builder).unwrap();
    }
}
