//! The process-wide bounded cache of open sealed-segment files.
//!
//! Why: a segment that keeps its file open costs one descriptor for as long as it exists, so a
//! node with 10,000 partitions of a few segments each would need tens of thousands of
//! descriptors, and would fail (`EMFILE`) on accept, segment rolls or reads once it passed
//! `ulimit -n`. Only the active segment and the segments waiting for their seal keep a file of
//! their own (the commit path writes and syncs them); a sealed segment whose seal finished
//! holds none, and reads and whole-segment transfers open it on demand through this cache.
//!
//! Bound: at most [`FileCache::capacity`] handles. When it is full an insert evicts one, the
//! least recently used by the CLOCK approximation (a handle used since the hand last passed it
//! gets a second chance). Eviction only drops the cache's reference: a read holding the
//! `Arc<File>` keeps its descriptor until it finishes, and reads of sealed segments in flight
//! are bounded elsewhere (the cold-read slots, whole-segment transfers per follower). Capacity
//! 0 caches nothing: each read opens its file and closes it when done.
//!
//! Keys: [`FileId`], unique in the process for every file a segment was created or opened
//! with and never reused. A file that replaced another under the same name (compaction, a
//! segment install, a log reset) gets a new id, so a cached handle never serves another file's
//! bytes. How a handle gets in (open the path, check it is the inode the id names, insert only
//! while the segment is still in its log): `Shared::open_sealed` in `log/files.rs`. Entries of
//! segments that leave their log (retention, truncation, replacement, close) are removed then,
//! so a deleted file's blocks are freed at once, not when the cache happens to evict it.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

/// Capacity of the process-wide cache until [`set_max_open_segment_files`] changes it.
pub const DEFAULT_MAX_OPEN_SEGMENT_FILES: usize = 4096;

/// Identity of one segment file: a sequence number unique in the process, and the inode the
/// file was opened as (to check that a path opened again still names that file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    seq: u64,
    dev: u64,
    ino: u64,
}

static NEXT_SEQ: AtomicU64 = AtomicU64::new(1);

impl FileId {
    /// A new identity for `file` (one `fstat`).
    pub fn of(file: &File) -> io::Result<FileId> {
        let m = file.metadata()?;
        Ok(FileId {
            seq: NEXT_SEQ.fetch_add(1, Ordering::Relaxed),
            dev: m.dev(),
            ino: m.ino(),
        })
    }

    /// Whether `file` is the inode this id was made for. Only meaningful while that inode is
    /// known to be alive (inode numbers are reused once a file is gone).
    pub fn same_inode(&self, file: &File) -> io::Result<bool> {
        let m = file.metadata()?;
        Ok(m.dev() == self.dev && m.ino() == self.ino)
    }
}

/// A bounded cache of open files keyed by [`FileId`] (see the module docs).
#[derive(Debug)]
pub struct FileCache {
    state: Mutex<Clock>,
}

#[derive(Debug)]
struct Clock {
    capacity: usize,
    /// At most `capacity` entries.
    slots: Vec<Slot>,
    /// `FileId::seq` -> index in `slots`.
    index: HashMap<u64, usize>,
    hand: usize,
    evictions: u64,
}

#[derive(Debug)]
struct Slot {
    seq: u64,
    file: Arc<File>,
    /// Used since the hand last passed: spared once.
    referenced: bool,
}

impl Clock {
    fn remove_at(&mut self, i: usize) -> Arc<File> {
        let slot = self.slots.swap_remove(i);
        self.index.remove(&slot.seq);
        if let Some(moved) = self.slots.get(i) {
            self.index.insert(moved.seq, i);
        }
        slot.file
    }

    /// Evicts the first entry the hand finds unreferenced. At most two sweeps: the first
    /// clears every reference bit it passes.
    fn evict_one(&mut self) -> Option<Arc<File>> {
        for _ in 0..2 * self.slots.len() {
            if self.hand >= self.slots.len() {
                self.hand = 0;
            }
            let slot = &mut self.slots[self.hand];
            if slot.referenced {
                slot.referenced = false;
                self.hand += 1;
            } else {
                self.evictions += 1;
                return Some(self.remove_at(self.hand));
            }
        }
        None
    }

    fn check(&self) {
        debug_assert!(self.slots.len() <= self.capacity);
        debug_assert_eq!(self.slots.len(), self.index.len());
    }
}

impl FileCache {
    pub fn new(capacity: usize) -> FileCache {
        FileCache {
            state: Mutex::new(Clock {
                capacity,
                slots: Vec::new(),
                index: HashMap::new(),
                hand: 0,
                evictions: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Clock> {
        // The state is a few vectors updated in place; a panic elsewhere never leaves it torn.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached handle of `id`, marked as recently used.
    pub fn get(&self, id: FileId) -> Option<Arc<File>> {
        let mut c = self.lock();
        let i = *c.index.get(&id.seq)?;
        let slot = &mut c.slots[i];
        slot.referenced = true;
        Some(slot.file.clone())
    }

    /// Caches `file` as `id`'s handle and returns the handle to use: the one already cached if
    /// another reader got there first. Evicts one entry when full (closed after the cache's
    /// lock is released: closing the last descriptor of a deleted file frees its blocks).
    pub fn insert(&self, id: FileId, file: Arc<File>) -> Arc<File> {
        let evicted;
        let file = {
            let mut c = self.lock();
            if let Some(&i) = c.index.get(&id.seq) {
                c.slots[i].referenced = true;
                return c.slots[i].file.clone();
            }
            if c.capacity == 0 {
                return file;
            }
            evicted = if c.slots.len() >= c.capacity {
                c.evict_one()
            } else {
                None
            };
            let i = c.slots.len();
            c.slots.push(Slot {
                seq: id.seq,
                file: file.clone(),
                referenced: false,
            });
            c.index.insert(id.seq, i);
            c.check();
            file
        };
        if evicted.is_some() {
            metrics::counter!(crate::metric_names::SEGMENT_FILE_EVICTIONS).increment(1);
        }
        drop(evicted);
        file
    }

    /// Forgets the handles of these files (their segments left the log).
    pub fn remove(&self, ids: impl IntoIterator<Item = FileId>) {
        let mut dropped = Vec::new();
        {
            let mut c = self.lock();
            for id in ids {
                if let Some(&i) = c.index.get(&id.seq) {
                    dropped.push(c.remove_at(i));
                }
            }
            c.check();
        }
        drop(dropped);
    }

    /// Changes the bound; a smaller one evicts at once.
    pub fn set_capacity(&self, capacity: usize) {
        let mut dropped = Vec::new();
        {
            let mut c = self.lock();
            c.capacity = capacity;
            while c.slots.len() > capacity {
                match c.evict_one() {
                    Some(f) => dropped.push(f),
                    None => break,
                }
            }
            c.check();
        }
        drop(dropped);
    }

    /// Whether `id` is cached (without marking it used).
    #[cfg(test)]
    pub fn contains(&self, id: FileId) -> bool {
        self.lock().index.contains_key(&id.seq)
    }

    pub fn capacity(&self) -> usize {
        self.lock().capacity
    }

    /// Handles cached now.
    pub fn len(&self) -> usize {
        self.lock().slots.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries evicted to make room since the cache was made.
    #[cfg(test)]
    pub fn evictions(&self) -> u64 {
        self.lock().evictions
    }
}

static SEGMENT_FILES: LazyLock<FileCache> =
    LazyLock::new(|| FileCache::new(DEFAULT_MAX_OPEN_SEGMENT_FILES));

/// The cache every partition log of the process shares.
pub(crate) fn segment_files() -> &'static FileCache {
    &SEGMENT_FILES
}

/// Bounds how many sealed-segment files the process keeps open (the cache of this module; see
/// docs/operations.md, "File descriptors"). Takes effect at once.
pub fn set_max_open_segment_files(n: usize) {
    SEGMENT_FILES.set_capacity(n);
}

/// The bound set by [`set_max_open_segment_files`].
pub fn max_open_segment_files() -> usize {
    SEGMENT_FILES.capacity()
}

/// Sealed-segment files the cache holds open now (readers may hold a few evicted ones a
/// little longer).
pub fn open_segment_files() -> usize {
    SEGMENT_FILES.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(n: usize) -> (tempfile::TempDir, Vec<(FileId, Arc<File>)>) {
        let dir = tempfile::tempdir().unwrap();
        let v = (0..n)
            .map(|i| {
                let f = File::create(dir.path().join(i.to_string())).unwrap();
                (FileId::of(&f).unwrap(), Arc::new(f))
            })
            .collect();
        (dir, v)
    }

    #[test]
    fn never_holds_more_than_its_capacity() {
        let (_d, fs) = files(50);
        let cache = FileCache::new(8);
        cache.insert(fs[0].0, fs[0].1.clone());
        for (id, f) in &fs[1..] {
            cache.insert(*id, f.clone());
            assert!(cache.len() <= 8);
            // The file used between inserts is never the one evicted.
            assert!(cache.get(fs[0].0).is_some());
        }
        assert_eq!(cache.len(), 8);
        assert!(cache.get(fs[0].0).is_some());
        assert_eq!(cache.evictions(), 42);
        // Evicted handles the cache dropped are closed: only our own references remain.
        let cached = fs.iter().filter(|(_, f)| Arc::strong_count(f) == 2).count();
        assert_eq!(cached, 8);
        cache.set_capacity(3);
        assert_eq!(cache.len(), 3);
        cache.remove(fs.iter().map(|(id, _)| *id));
        assert!(cache.is_empty());
        assert!(fs.iter().all(|(_, f)| Arc::strong_count(f) == 1));
    }

    #[test]
    fn capacity_zero_caches_nothing_and_a_second_insert_keeps_the_first() {
        let (_d, fs) = files(2);
        let cache = FileCache::new(0);
        let got = cache.insert(fs[0].0, fs[0].1.clone());
        assert!(Arc::ptr_eq(&got, &fs[0].1));
        assert!(cache.is_empty() && cache.get(fs[0].0).is_none());
        cache.set_capacity(4);
        cache.insert(fs[0].0, fs[0].1.clone());
        // Same id, another handle (a racing reader's): the cached one wins.
        let other = Arc::new(File::open(_d.path().join("0")).unwrap());
        let got = cache.insert(fs[0].0, other);
        assert!(Arc::ptr_eq(&got, &fs[0].1));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn ids_are_unique_and_name_their_inode() {
        let (d, fs) = files(2);
        assert_ne!(fs[0].0, fs[1].0);
        let again = File::open(d.path().join("0")).unwrap();
        assert!(fs[0].0.same_inode(&again).unwrap());
        assert!(!fs[1].0.same_inode(&again).unwrap());
        assert_ne!(FileId::of(&again).unwrap(), fs[0].0);
    }
}
