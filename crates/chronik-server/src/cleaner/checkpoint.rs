//! The cleaner checkpoint: where the last clean of each partition ended (Kafka's
//! `cleaner-offset-checkpoint`), one file per node in the WAL root, lines
//! `topic partition offset`, replaced atomically with `chronik_durable` after every clean.
//! Below that offset a log is clean: the next clean's dirty section starts there.
//!
//! A missing or unreadable file only costs work (every log is dirty from its start, as for a
//! first clean). An offset outside its log (a truncated follower, a topic deleted and made
//! again) is reset to the log start by `chronik_cleaner::cleanable_range`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub const FILE_NAME: &str = "cleaner-offset-checkpoint";
const VERSION_LINE: &str = "chronik-cleaner-checkpoint v1";
/// Bound on the file read at start.
const MAX_BYTES: u64 = 64 * 1024 * 1024;

pub type Key = (String, i32);

/// The checkpoints of this node's partitions, in memory and on disk.
pub struct Checkpoints {
    dir: PathBuf,
    /// Guards the map and the file together: two threads' writes never interleave.
    offsets: Mutex<BTreeMap<Key, i64>>,
}

impl Checkpoints {
    /// Reads `dir/cleaner-offset-checkpoint`.
    pub fn load(dir: &Path) -> Checkpoints {
        Checkpoints {
            offsets: Mutex::new(read(dir)),
            dir: dir.to_path_buf(),
        }
    }

    pub fn get(&self, key: &Key) -> Option<i64> {
        self.lock().get(key).copied()
    }

    /// Records `offset` for `key`, keeps only the partitions in `hosted` (a deleted or moved
    /// partition's entry goes), and writes the file.
    pub fn set(&self, key: Key, offset: i64, hosted: &dyn Fn(&Key) -> bool) -> std::io::Result<()> {
        let mut offsets = self.lock();
        offsets.insert(key, offset);
        offsets.retain(|k, _| hosted(k));
        self.write(&offsets)
    }

    /// Lowers `key`'s offset to `offset` if it is above (its log was cut back there, so what
    /// follows may be new, uncleaned data) and writes the file. Returns the offset to use.
    pub fn lower(&self, key: &Key, offset: i64) -> std::io::Result<Option<i64>> {
        let mut offsets = self.lock();
        match offsets.get_mut(key) {
            Some(o) if *o > offset => {
                *o = offset;
                self.write(&offsets)?;
                Ok(Some(offset))
            }
            other => Ok(other.map(|o| *o)),
        }
    }

    fn write(&self, offsets: &BTreeMap<Key, i64>) -> std::io::Result<()> {
        let mut text = String::with_capacity(offsets.len() * 32 + 32);
        text.push_str(VERSION_LINE);
        text.push('\n');
        for ((t, p), o) in offsets.iter() {
            text.push_str(&format!("{t} {p} {o}\n"));
        }
        chronik_durable::replace(&self.dir, FILE_NAME, text.as_bytes())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Key, i64>> {
        self.offsets.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn read(dir: &Path) -> BTreeMap<Key, i64> {
    let path = dir.join(FILE_NAME);
    let mut out = BTreeMap::new();
    let Ok(meta) = std::fs::metadata(&path) else {
        return out;
    };
    let text = if meta.len() > MAX_BYTES {
        None
    } else {
        std::fs::read_to_string(&path).ok()
    };
    let Some(text) = text.filter(|t| t.lines().next() == Some(VERSION_LINE)) else {
        tracing::warn!(path = %path.display(), "cleaner checkpoint unreadable; every compacted log is dirty from its start");
        return out;
    };
    for line in text.lines().skip(1) {
        // Topic names hold no spaces (Kafka's legal characters), so rsplit is exact.
        let mut it = line.rsplitn(3, ' ');
        let (Some(o), Some(p), Some(topic)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        if let (Ok(p), Ok(o)) = (p.parse::<i32>(), o.parse::<i64>()) {
            out.insert((topic.to_string(), p), o);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_pruning() {
        let dir = tempfile::tempdir().unwrap();
        let c = Checkpoints::load(dir.path());
        assert_eq!(c.get(&("t".into(), 0)), None);
        c.set(("t".into(), 0), 42, &|_| true).unwrap();
        c.set(("u".into(), 1), 7, &|_| true).unwrap();
        let again = Checkpoints::load(dir.path());
        assert_eq!(again.get(&("t".into(), 0)), Some(42));
        assert_eq!(again.get(&("u".into(), 1)), Some(7));
        // A partition no longer hosted leaves the file at the next write.
        again.set(("u".into(), 1), 9, &|k| k.0 == "u").unwrap();
        let last = Checkpoints::load(dir.path());
        assert_eq!(last.get(&("t".into(), 0)), None);
        assert_eq!(last.get(&("u".into(), 1)), Some(9));
    }

    #[test]
    fn lowering_only_ever_lowers_and_is_durable() {
        let dir = tempfile::tempdir().unwrap();
        let c = Checkpoints::load(dir.path());
        let key: Key = ("t".into(), 0);
        assert_eq!(
            c.lower(&key, 5).unwrap(),
            None,
            "no checkpoint: nothing to lower"
        );
        c.set(key.clone(), 42, &|_| true).unwrap();
        assert_eq!(
            c.lower(&key, 50).unwrap(),
            Some(42),
            "a cut above it changes nothing"
        );
        assert_eq!(c.lower(&key, 10).unwrap(), Some(10));
        assert_eq!(Checkpoints::load(dir.path()).get(&key), Some(10));
    }
}
