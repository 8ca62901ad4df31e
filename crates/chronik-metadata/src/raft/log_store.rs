//! The durable Raft log: one append-only file of CRC-framed records, plus the vote in its
//! own atomically replaced file.
//!
//! Files in the Raft directory:
//! - `log.bin`: records `[len: u32 LE][crc32: u32 LE][JSON payload]`. A record is an entry,
//!   or a marker that truncates or purges entries, or the committed log id. Replaying the
//!   records in order rebuilds the log. Appends and markers are fdatasynced before openraft
//!   is told they are flushed; the committed id rides along unsynced (openraft allows it to
//!   lag).
//! - `vote.json`: the vote, replaced atomically and durably (temp, fsync, rename, fsync dir)
//!   before `save_vote` returns.
//!
//! Invariants, enforced where the log changes:
//! - entries are contiguous: indexes `first..=last` with no hole;
//! - every entry index is above `last_purged`.
//!
//! A record that fails its length or CRC check can only be a torn append that was never
//! acknowledged (appends are synced before the flush callback), so recovery cuts the file
//! there and logs how many bytes it cut. The file is rewritten with only the live records
//! once purged bytes dominate it.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote};
use serde::{Deserialize, Serialize};
use tracing::warn;

use super::{NodeId, TypeConfig};
use crate::files::{read_json, write_json_atomic, MAX_FILE_BYTES};

const LOG_FILE: &str = "log.bin";
const VOTE_FILE: &str = "vote.json";
const RECORD_HEADER_BYTES: usize = 8;
/// Bound on one record: a metadata command is a few KiB at most.
const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;
/// Rewrite the file once it is this large and over twice its live records.
const COMPACT_MIN_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Serialize, Deserialize)]
enum Record {
    Entry(Entry<TypeConfig>),
    /// Entries with index >= `since` are gone.
    Truncate {
        since: u64,
    },
    /// Entries with index <= `upto.index` are gone.
    Purge {
        upto: LogId<NodeId>,
    },
    Committed(Option<LogId<NodeId>>),
}

struct Inner {
    dir: PathBuf,
    file: File,
    file_len: u64,
    /// Entry by index, with its encoded record length (for the live-bytes count).
    entries: BTreeMap<u64, (Entry<TypeConfig>, u64)>,
    live_bytes: u64,
    last_purged: Option<LogId<NodeId>>,
    committed: Option<LogId<NodeId>>,
    vote: Option<Vote<NodeId>>,
}

/// The durable Raft log store. Clones share one log; a clone is also the log reader.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Serialize, Deserialize)]
struct VoteFile {
    version: u32,
    vote: Vote<NodeId>,
}

fn encode(record: &Record) -> io::Result<Vec<u8>> {
    let payload = serde_json::to_vec(record).map_err(io::Error::other)?;
    if payload.len() > MAX_RECORD_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "raft log record of {} bytes is over the {MAX_RECORD_BYTES} limit",
                payload.len()
            ),
        ));
    }
    let mut out = Vec::with_capacity(RECORD_HEADER_BYTES + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Decodes the record at the start of `buf`: `Some((record, length))`, or `None` if what is
/// there is not a whole valid record.
fn decode(buf: &[u8]) -> Option<(Record, usize)> {
    let header = buf.get(..RECORD_HEADER_BYTES)?;
    let len = u32::from_le_bytes(header[0..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    if len == 0 || len > MAX_RECORD_BYTES {
        return None;
    }
    let payload = buf.get(RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + len)?;
    if crc32fast::hash(payload) != crc {
        return None;
    }
    let record = serde_json::from_slice(payload).ok()?;
    Some((record, RECORD_HEADER_BYTES + len))
}

impl Inner {
    fn apply_record(&mut self, record: Record, len: u64) {
        match record {
            Record::Entry(e) => {
                let index = e.log_id.index;
                // A re-append at an index replaces what was there (and everything after).
                self.drop_from(index);
                self.live_bytes += len;
                self.entries.insert(index, (e, len));
            }
            Record::Truncate { since } => self.drop_from(since),
            Record::Purge { upto } => self.drop_through(upto),
            Record::Committed(c) => self.committed = c,
        }
    }

    fn drop_from(&mut self, since: u64) {
        for (_, (_, len)) in self.entries.split_off(&since) {
            self.live_bytes -= len;
        }
    }

    fn drop_through(&mut self, upto: LogId<NodeId>) {
        let keep = self.entries.split_off(&(upto.index + 1));
        for (_, (_, len)) in std::mem::replace(&mut self.entries, keep) {
            self.live_bytes -= len;
        }
        if self.last_purged.is_none_or(|p| p.index < upto.index) {
            self.last_purged = Some(upto);
        }
    }

    /// Appends encoded records and (if `sync`) fdatasyncs them.
    fn write(&mut self, bytes: &[u8], sync: bool) -> io::Result<()> {
        self.file.write_all(bytes)?;
        self.file_len += bytes.len() as u64;
        if sync {
            self.file.sync_data()?;
        }
        Ok(())
    }

    /// Rewrites the file with only the live state once purged records dominate it.
    fn maybe_compact(&mut self) -> io::Result<()> {
        if self.file_len < COMPACT_MIN_BYTES || self.file_len < 2 * self.live_bytes {
            return Ok(());
        }
        let mut out = Vec::with_capacity(self.live_bytes as usize + 1024);
        if let Some(p) = self.last_purged {
            out.extend(encode(&Record::Purge { upto: p })?);
        }
        out.extend(encode(&Record::Committed(self.committed))?);
        for (e, _) in self.entries.values() {
            out.extend(encode(&Record::Entry(e.clone()))?);
        }
        chronik_durable::replace(&self.dir, LOG_FILE, &out)?;
        self.file = OpenOptions::new()
            .append(true)
            .open(self.dir.join(LOG_FILE))?;
        self.file_len = out.len() as u64;
        Ok(())
    }
}

impl LogStore {
    /// Index of the last entry openraft reported committed to this node (0 before any).
    pub fn committed_index(&self) -> u64 {
        self.lock().committed.map_or(0, |c| c.index)
    }

    /// Opens (or creates) the log in `dir`, replaying it and cutting a torn tail.
    pub fn open(dir: &Path) -> io::Result<LogStore> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(LOG_FILE);
        let _ = std::fs::remove_file(chronik_durable::temp_path(dir, LOG_FILE));
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let len = file.metadata()?.len();
        if len > MAX_FILE_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: {len} bytes is over the {MAX_FILE_BYTES} limit",
                    path.display()
                ),
            ));
        }
        let bytes = std::fs::read(&path)?;
        let vote = match read_json::<VoteFile>(&dir.join(VOTE_FILE)) {
            Ok(v) => Some(v.vote),
            Err(_) if !dir.join(VOTE_FILE).exists() => None,
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
        };
        let mut inner = Inner {
            dir: dir.to_path_buf(),
            file,
            file_len: 0,
            entries: BTreeMap::new(),
            live_bytes: 0,
            last_purged: None,
            committed: None,
            vote,
        };
        let mut pos = 0;
        while pos < bytes.len() {
            match decode(&bytes[pos..]) {
                Some((record, n)) => {
                    inner.apply_record(record, n as u64);
                    pos += n;
                }
                None => break,
            }
        }
        if pos < bytes.len() {
            warn!(
                path = %path.display(),
                cut_bytes = bytes.len() - pos,
                "raft log ends in a torn record; cutting it (it was never acknowledged)"
            );
            inner.file.set_len(pos as u64)?;
            inner.file.sync_all()?;
        }
        inner.file_len = pos as u64;
        Ok(LogStore {
            inner: Arc::new(Mutex::new(inner)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let inner = self.lock();
        Ok(inner
            .entries
            .range(range)
            .map(|(_, (e, _))| e.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let inner = self.lock();
        let last = inner
            .entries
            .values()
            .next_back()
            .map(|(e, _)| e.log_id)
            .or(inner.last_purged);
        Ok(LogState {
            last_purged_log_id: inner.last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.lock();
        let file = VoteFile {
            version: 1,
            vote: *vote,
        };
        write_json_atomic(&inner.dir, VOTE_FILE, &file)
            .map_err(|e| StorageIOError::write_vote(&e))?;
        inner.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(self.lock().vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.lock();
        let bytes = encode(&Record::Committed(committed)).map_err(|e| StorageIOError::write(&e))?;
        // Not synced: the committed id may lag after a crash, which openraft tolerates.
        inner
            .write(&bytes, false)
            .map_err(|e| StorageIOError::write(&e))?;
        inner.committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self.lock().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut inner = self.lock();
        let mut bytes = Vec::new();
        let mut staged = Vec::new();
        for e in entries {
            let rec = Record::Entry(e);
            let enc = encode(&rec).map_err(|e| StorageIOError::write_logs(&e))?;
            staged.push((rec, enc.len() as u64));
            bytes.extend(enc);
        }
        let result = inner.write(&bytes, true);
        if result.is_ok() {
            for (rec, len) in staged {
                inner.apply_record(rec, len);
            }
        }
        drop(inner);
        // Durable (or failed) before openraft hears of it.
        callback.log_io_completed(result);
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.lock();
        let rec = Record::Truncate {
            since: log_id.index,
        };
        let bytes = encode(&rec).map_err(|e| StorageIOError::write_logs(&e))?;
        inner
            .write(&bytes, true)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        inner.apply_record(rec, 0);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.lock();
        let rec = Record::Purge { upto: log_id };
        let bytes = encode(&rec).map_err(|e| StorageIOError::write_logs(&e))?;
        inner
            .write(&bytes, true)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        inner.apply_record(rec, 0);
        inner
            .maybe_compact()
            .map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(term: u64, index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    fn append_direct(store: &LogStore, entries: &[Entry<TypeConfig>]) {
        let mut inner = store.lock();
        for e in entries {
            let rec = Record::Entry(e.clone());
            let enc = encode(&rec).unwrap();
            inner.write(&enc, true).unwrap();
            inner.apply_record(rec, enc.len() as u64);
        }
    }

    #[tokio::test]
    async fn replays_entries_truncation_and_purge_and_cuts_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = LogStore::open(dir.path()).unwrap();
        append_direct(&store, &(1..=10).map(|i| entry(1, i)).collect::<Vec<_>>());
        store
            .truncate(LogId::new(CommittedLeaderId::new(1, 1), 8))
            .await
            .unwrap();
        store
            .purge(LogId::new(CommittedLeaderId::new(1, 1), 3))
            .await
            .unwrap();
        append_direct(&store, &[entry(2, 8)]);
        drop(store);
        // A torn record at the end: half a header.
        let path = dir.path().join(LOG_FILE);
        let good_len = std::fs::metadata(&path).unwrap().len();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[9, 0, 0]).unwrap();
        drop(f);

        let mut store = LogStore::open(dir.path()).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), good_len);
        let all = store.try_get_log_entries(0..100).await.unwrap();
        let ids: Vec<(u64, u64)> = all
            .iter()
            .map(|e| (e.log_id.leader_id.term, e.log_id.index))
            .collect();
        assert_eq!(ids, vec![(1, 4), (1, 5), (1, 6), (1, 7), (2, 8)]);
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id.unwrap().index, 3);
        assert_eq!(state.last_log_id.unwrap().index, 8);
    }

    #[tokio::test]
    async fn compaction_keeps_the_live_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = LogStore::open(dir.path()).unwrap();
        // Big enough entries to pass COMPACT_MIN_BYTES.
        let big = |i: u64| Entry::<TypeConfig> {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), i),
            payload: EntryPayload::Normal(crate::MetadataCommand::InitCluster {
                cluster_id: "x".repeat(64 * 1024),
            }),
        };
        append_direct(&store, &(1..=100).map(big).collect::<Vec<_>>());
        let before = std::fs::metadata(dir.path().join(LOG_FILE)).unwrap().len();
        store
            .purge(LogId::new(CommittedLeaderId::new(1, 1), 90))
            .await
            .unwrap();
        let after = std::fs::metadata(dir.path().join(LOG_FILE)).unwrap().len();
        assert!(after * 5 < before, "{before} -> {after}");
        drop(store);
        let mut store = LogStore::open(dir.path()).unwrap();
        let left = store.try_get_log_entries(0..1000).await.unwrap();
        assert_eq!(left.len(), 10);
        assert_eq!(left[0].log_id.index, 91);
        assert_eq!(
            store
                .get_log_state()
                .await
                .unwrap()
                .last_purged_log_id
                .unwrap()
                .index,
            90
        );
    }
}
