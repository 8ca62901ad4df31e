//! The metadata state machine under Raft, and its durable snapshot.
//!
//! Applying entries changes only memory; durability comes from the Raft log plus the
//! snapshot: on start the state is the last snapshot, and openraft re-applies the committed
//! entries after it. A snapshot is written atomically (`snapshot.bin`: temp, fsync, rename,
//! fsync dir) before it is reported built or installed, so the log may be purged behind it.
//!
//! `snapshot.bin` is `[meta length: u32 LE][meta JSON][state JSON]`.
//!
//! Every applied batch publishes the new state on a watch channel: readers take cheap
//! `Arc` snapshots and can wait for changes.

use std::io::{self, Cursor};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};
use tokio::sync::watch;

use super::{CommandReply, NodeId, TypeConfig};
use crate::command::Outcome;
use crate::state::MetadataState;

const SNAPSHOT_FILE: &str = "snapshot.bin";
/// Bound on a snapshot read from disk or received from a leader.
const MAX_SNAPSHOT_BYTES: usize = 256 * 1024 * 1024;

type Meta = SnapshotMeta<NodeId, BasicNode>;

struct Inner {
    dir: PathBuf,
    state: MetadataState,
    last_applied: Option<LogId<NodeId>>,
    last_membership: StoredMembership<NodeId, BasicNode>,
    /// The current snapshot: its meta and its encoded state.
    snapshot: Option<(Meta, Arc<Vec<u8>>)>,
    /// Makes snapshot ids unique among snapshots of the same log id.
    snapshot_seq: u64,
    published: watch::Sender<Arc<MetadataState>>,
}

/// The state machine store. Clones share one state machine; a clone is also the snapshot
/// builder.
#[derive(Clone)]
pub struct StateMachineStore {
    inner: Arc<Mutex<Inner>>,
}

fn encode_snapshot(meta: &Meta, state: &[u8]) -> io::Result<Vec<u8>> {
    let meta = serde_json::to_vec(meta).map_err(io::Error::other)?;
    let mut out = Vec::with_capacity(4 + meta.len() + state.len());
    out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    out.extend_from_slice(&meta);
    out.extend_from_slice(state);
    Ok(out)
}

fn decode_snapshot(bytes: &[u8]) -> io::Result<(Meta, Vec<u8>)> {
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, format!("snapshot: {why}"));
    let len = bytes
        .get(..4)
        .ok_or_else(|| bad("shorter than its header"))?;
    let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
    let meta = bytes
        .get(4..4 + len)
        .ok_or_else(|| bad("meta runs past the end"))?;
    let meta: Meta = serde_json::from_slice(meta).map_err(|e| bad(&e.to_string()))?;
    Ok((meta, bytes[4 + len..].to_vec()))
}

fn decode_state(bytes: &[u8]) -> io::Result<MetadataState> {
    let state: MetadataState = serde_json::from_slice(bytes)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("snapshot state: {e}")))?;
    state
        .check_invariants()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("snapshot state: {e}")))?;
    Ok(state)
}

fn write_snapshot_file(dir: &Path, bytes: &[u8]) -> io::Result<()> {
    chronik_durable::replace(dir, SNAPSHOT_FILE, bytes)
}

impl StateMachineStore {
    /// Opens the state machine in `dir`: the last snapshot if there is one, else empty.
    pub fn open(dir: &Path) -> io::Result<StateMachineStore> {
        std::fs::create_dir_all(dir)?;
        let _ = std::fs::remove_file(chronik_durable::temp_path(dir, SNAPSHOT_FILE));
        let path = dir.join(SNAPSHOT_FILE);
        let (state, last_applied, last_membership, snapshot) = if path.exists() {
            let len = std::fs::metadata(&path)?.len();
            if len > MAX_SNAPSHOT_BYTES as u64 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {len} bytes is over the limit", path.display()),
                ));
            }
            let (meta, data) = decode_snapshot(&std::fs::read(&path)?)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
            let state = decode_state(&data)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
            (
                state,
                meta.last_log_id,
                meta.last_membership.clone(),
                Some((meta, Arc::new(data))),
            )
        } else {
            (
                MetadataState::new(String::new()),
                None,
                StoredMembership::default(),
                None,
            )
        };
        let (published, _) = watch::channel(Arc::new(state.clone()));
        Ok(StateMachineStore {
            inner: Arc::new(Mutex::new(Inner {
                dir: dir.to_path_buf(),
                state,
                last_applied,
                last_membership,
                snapshot,
                snapshot_seq: 0,
                published,
            })),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Follows the applied state: the current value, and a wake-up on every applied batch.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataState>> {
        self.lock().published.subscribe()
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let mut inner = self.lock();
        let data =
            serde_json::to_vec(&inner.state).map_err(|e| StorageIOError::read_state_machine(&e))?;
        inner.snapshot_seq += 1;
        let snapshot_id = match inner.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, inner.snapshot_seq),
            None => format!("--{}", inner.snapshot_seq),
        };
        let meta = Meta {
            last_log_id: inner.last_applied,
            last_membership: inner.last_membership.clone(),
            snapshot_id,
        };
        let file = encode_snapshot(&meta, &data)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        write_snapshot_file(&inner.dir, &file)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        let data = Arc::new(data);
        inner.snapshot = Some((meta.clone(), data.clone()));
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data.to_vec())),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = StateMachineStore;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StorageError<NodeId>>
    {
        let inner = self.lock();
        Ok((inner.last_applied, inner.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandReply>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut inner = self.lock();
        let mut replies = Vec::new();
        for entry in entries {
            inner.last_applied = Some(entry.log_id);
            let reply = match entry.payload {
                EntryPayload::Blank => Ok(Outcome::Done),
                EntryPayload::Normal(cmd) => inner.state.apply(&cmd),
                EntryPayload::Membership(m) => {
                    inner.last_membership = StoredMembership::new(Some(entry.log_id), m);
                    Ok(Outcome::Done)
                }
            };
            replies.push(reply);
        }
        let next = Arc::new(inner.state.clone());
        inner.published.send_replace(next);
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let data = snapshot.into_inner();
        let read_err = |e: &io::Error| StorageIOError::read_snapshot(Some(meta.signature()), e);
        if data.len() > MAX_SNAPSHOT_BYTES {
            let e = io::Error::new(io::ErrorKind::InvalidData, "snapshot over the size limit");
            return Err(read_err(&e).into());
        }
        let state = decode_state(&data).map_err(|e| read_err(&e))?;
        let mut inner = self.lock();
        let file = encode_snapshot(meta, &data)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        write_snapshot_file(&inner.dir, &file)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        inner.state = state;
        inner.last_applied = meta.last_log_id;
        inner.last_membership = meta.last_membership.clone();
        inner.snapshot = Some((meta.clone(), Arc::new(data)));
        let next = Arc::new(inner.state.clone());
        inner.published.send_replace(next);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let inner = self.lock();
        Ok(inner.snapshot.as_ref().map(|(meta, data)| Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(Cursor::new(data.to_vec())),
        }))
    }
}
