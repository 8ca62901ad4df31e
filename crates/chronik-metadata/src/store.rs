//! Durable single-node store for the metadata state machine.
//!
//! Files in the metadata directory:
//! - `node.json`: `{ "version": 1, "node_id": N, "cluster_id": "..." }`, written once on first
//!   start; it pins the node's identity across restarts.
//! - `state.json`: `{ "version": 1, "state": MetadataState }`, the whole state, replaced
//!   atomically after every applied command (write temp file, fsync, rename, fsync dir).
//!
//! A command is acknowledged to its proposer only after the new state is on disk.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::command::{MetadataCommand, Outcome};
use crate::error::MetadataError;
use crate::files::{corrupt, io_err, read_json, write_json_atomic};
use crate::state::MetadataState;

const FORMAT_VERSION: u32 = 1;
const NODE_FILE: &str = "node.json";
const STATE_FILE: &str = "state.json";

/// Who this node is, stable across restarts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeIdentity {
    pub version: u32,
    pub node_id: i32,
    pub cluster_id: String,
}

#[derive(Serialize, Deserialize)]
struct StateFile {
    version: u32,
    state: MetadataState,
}

/// The state machine plus its file. Readers take cheap snapshots; writers serialize.
pub struct LocalStore {
    dir: PathBuf,
    state: RwLock<Arc<MetadataState>>,
    /// Serializes apply + persist so files are written in command order.
    write: Mutex<()>,
}

impl LocalStore {
    /// Opens the store in `dir`, creating the node identity on first start.
    ///
    /// Refuses to start when the directory belongs to a different node id.
    pub fn open(dir: &Path, node_id: i32) -> Result<(LocalStore, NodeIdentity), MetadataError> {
        fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let node_path = dir.join(NODE_FILE);
        let identity = if node_path.exists() {
            let identity: NodeIdentity = read_json(&node_path)?;
            if identity.version != FORMAT_VERSION {
                return Err(corrupt(
                    &node_path,
                    format!("unknown version {}", identity.version),
                ));
            }
            if identity.node_id != node_id {
                return Err(corrupt(
                    &node_path,
                    format!(
                        "data directory belongs to node {}, but this node was started as node {node_id}",
                        identity.node_id
                    ),
                ));
            }
            identity
        } else {
            let identity = NodeIdentity {
                version: FORMAT_VERSION,
                node_id,
                cluster_id: Uuid::new_v4().simple().to_string(),
            };
            write_json_atomic(dir, NODE_FILE, &identity)?;
            identity
        };

        let state_path = dir.join(STATE_FILE);
        let state = if state_path.exists() {
            let file: StateFile = read_json(&state_path)?;
            if file.version != FORMAT_VERSION {
                return Err(corrupt(
                    &state_path,
                    format!("unknown version {}", file.version),
                ));
            }
            file.state
                .check_invariants()
                .map_err(|reason| corrupt(&state_path, reason))?;
            if file.state.cluster_id != identity.cluster_id {
                return Err(corrupt(
                    &state_path,
                    format!(
                        "cluster id {} does not match node.json's {}",
                        file.state.cluster_id, identity.cluster_id
                    ),
                ));
            }
            file.state
        } else {
            MetadataState::new(identity.cluster_id.clone())
        };
        let store = LocalStore {
            dir: dir.to_path_buf(),
            state: RwLock::new(Arc::new(state)),
            write: Mutex::new(()),
        };
        Ok((store, identity))
    }

    /// A consistent snapshot of the current state.
    pub fn snapshot(&self) -> Arc<MetadataState> {
        self.state.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Applies `cmd` and makes the result durable before returning it.
    pub fn apply(&self, cmd: &MetadataCommand) -> Result<Outcome, MetadataError> {
        let _serial = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = (*self.snapshot()).clone();
        let outcome = next.apply(cmd)?;
        write_json_atomic(
            &self.dir,
            STATE_FILE,
            &StateFile {
                version: FORMAT_VERSION,
                state: next.clone(),
            },
        )?;
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::BrokerInfo;

    #[test]
    fn identity_and_state_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (store, id1) = LocalStore::open(dir.path(), 1).unwrap();
        store
            .apply(&MetadataCommand::RegisterBroker(BrokerInfo {
                node_id: 1,
                host: "127.0.0.1".into(),
                port: 9092,
                rack: None,
            }))
            .unwrap();
        store
            .apply(&MetadataCommand::AllocateProducerIds { count: 5 })
            .unwrap();
        drop(store);
        let (store, id2) = LocalStore::open(dir.path(), 1).unwrap();
        assert_eq!(id1, id2);
        assert_eq!(store.snapshot().next_producer_id, 5);
        assert_eq!(store.snapshot().brokers.len(), 1);
    }

    #[test]
    fn refuses_other_node_id_and_corrupt_files() {
        let dir = tempfile::tempdir().unwrap();
        LocalStore::open(dir.path(), 1).unwrap();
        assert!(matches!(
            LocalStore::open(dir.path(), 2),
            Err(MetadataError::Corrupt { .. })
        ));
        fs::write(dir.path().join(STATE_FILE), b"{not json").unwrap();
        assert!(matches!(
            LocalStore::open(dir.path(), 1),
            Err(MetadataError::Corrupt { .. })
        ));
    }
}
