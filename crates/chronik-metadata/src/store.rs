//! Durable single-node store for the metadata state machine.
//!
//! Files in the metadata directory:
//! - `node.json`: `{ "version": 1, "node_id": N, "cluster_id": "..." }`, written once on first
//!   start; it pins the node's identity across restarts.
//! - `state.json`: `{ "version": 1, "state": MetadataState }`, the whole state, replaced
//!   atomically after every applied command (write temp file, fsync, rename, fsync dir).
//!
//! A command is acknowledged to its proposer only after the new state is on disk.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::command::{MetadataCommand, Outcome};
use crate::error::MetadataError;
use crate::state::MetadataState;

const FORMAT_VERSION: u32 = 1;
const NODE_FILE: &str = "node.json";
const STATE_FILE: &str = "state.json";
/// A metadata file larger than this is refused as corrupt rather than read into memory.
const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

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

fn io_err(path: &Path, source: std::io::Error) -> MetadataError {
    MetadataError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn corrupt(path: &Path, reason: String) -> MetadataError {
    MetadataError::Corrupt {
        path: path.display().to_string(),
        reason,
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, MetadataError> {
    let len = fs::metadata(path).map_err(|e| io_err(path, e))?.len();
    if len > MAX_FILE_BYTES {
        return Err(corrupt(
            path,
            format!("{len} bytes is over the {MAX_FILE_BYTES} limit"),
        ));
    }
    let bytes = fs::read(path).map_err(|e| io_err(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| corrupt(path, e.to_string()))
}

/// Replaces `dir/name` atomically and durably: temp file, fsync, rename, fsync directory.
fn write_json_atomic<T: Serialize>(dir: &Path, name: &str, value: &T) -> Result<(), MetadataError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let dst = dir.join(name);
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| corrupt(&dst, e.to_string()))?;
    let mut f = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| io_err(&tmp, e))?;
    f.write_all(&bytes).map_err(|e| io_err(&tmp, e))?;
    f.sync_all().map_err(|e| io_err(&tmp, e))?;
    drop(f);
    fs::rename(&tmp, &dst).map_err(|e| io_err(&dst, e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, e))?;
    Ok(())
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
