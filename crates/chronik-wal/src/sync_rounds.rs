//! Sync rounds: one `syncfs` makes many partitions' appends durable at once.
//!
//! A partition's commit pass fdatasyncs its own active segment. That is the right cost while a
//! few partitions each carry many appends per pass, but with thousands of busy partitions each
//! pass carries one or two appends, and a blocking thread plus a device flush per partition per
//! message bound the node. So while many partitions are syncing at the same moment ([`CROWD`]),
//! a pass that has nothing but its active segment to sync joins a *round* instead: group
//! commit one level up. The round thread (one per WAL root) runs `syncfs`, which writes back
//! every dirty file of the filesystem, commits its journal and flushes the device once; every
//! pass that joined before that call began is then durable. Passes that join while a round
//! runs are served by the next one, which starts as soon as it ends. Members wait on a watch
//! channel from their async commit task, holding no thread; the thread keeps counters only,
//! no queue, so nothing here grows with the number of waiters.
//!
//! Measured (release, 10,000 partitions, keyed acks=all, c=2048, docs/performance.md): rounds
//! doubled the throughput (10k → 19k msg/s) and did not slow 16 partitions. What is left is the
//! disk: each round writes one page per partition to as many places (~620 files in 22 ms), so
//! random-write IOPS, not flushes, bound a file-per-partition log when every message is synced.
//!
//! Errors: `syncfs` reports a writeback error once per open file description, whichever file it
//! hit, so each member afterwards asks its own file with `sync_file_range(WAIT_BEFORE)`, which
//! returns that file's unreported writeback error (its errseq) without issuing I/O. A round whose
//! `syncfs` failed (journal or flush error) fails every member. Both poison the partition, which
//! heals as after a failed fdatasync.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};

use tokio::sync::watch;

/// Partitions syncing their active segment at once from which a further pass joins a round
/// instead of fdatasyncing alone. Below it, each pass's own fdatasync is as cheap as a round
/// and touches nothing else on the filesystem. (4 and 16 measured the same.)
pub const CROWD: usize = 4;

/// Outcomes of this many recent rounds are kept for members that have not read theirs yet;
/// a member whose round fell out (it slept through that many rounds) counts it as failed.
const OUTCOMES: usize = 256;

/// The sync rounds of one WAL root.
pub struct SyncRounds {
    /// Any descriptor on the filesystem: `syncfs` syncs the whole of it.
    fs: File,
    state: Mutex<State>,
    /// Wakes the round thread when a member joins.
    joined: Condvar,
    /// The last round ended; members wait on it.
    ended: watch::Sender<u64>,
    /// Passes between [`SyncRounds::enter`] and the drop of its [`Syncing`].
    syncing: AtomicUsize,
}

struct State {
    /// Rounds begun and rounds ended; `started - ended` is 0 or 1.
    started: u64,
    ended: u64,
    /// Members waiting for the round after `started`.
    joined_next: usize,
    /// `outcomes[round % OUTCOMES]` = (round, its error if it failed).
    outcomes: Vec<(u64, Option<String>)>,
}

/// A pass counted as syncing (see [`CROWD`]) until dropped.
pub struct Syncing<'a> {
    rounds: &'a SyncRounds,
}

impl Drop for Syncing<'_> {
    fn drop(&mut self) {
        self.rounds.syncing.fetch_sub(1, Ordering::Relaxed);
    }
}

impl SyncRounds {
    /// The rounds of the WAL root `root`, shared by every partition under it. The first call
    /// for a root starts its round thread, which lives as long as the process. (Per root, not
    /// per filesystem: a broker has one root; two roots on one filesystem would each run
    /// rounds, which costs only some sharing.)
    pub fn for_root(root: &Path) -> std::io::Result<Arc<SyncRounds>> {
        static BY_ROOT: OnceLock<Mutex<HashMap<PathBuf, Arc<SyncRounds>>>> = OnceLock::new();
        let root = root.canonicalize()?;
        let mut map = BY_ROOT
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(r) = map.get(&root) {
            return Ok(r.clone());
        }
        let rounds = SyncRounds::start(File::open(&root)?)?;
        map.insert(root, rounds.clone());
        Ok(rounds)
    }

    fn start(fs: File) -> std::io::Result<Arc<SyncRounds>> {
        let rounds = Arc::new(SyncRounds {
            fs,
            state: Mutex::new(State {
                started: 0,
                ended: 0,
                joined_next: 0,
                outcomes: vec![(u64::MAX, None); OUTCOMES],
            }),
            joined: Condvar::new(),
            ended: watch::Sender::new(0),
            syncing: AtomicUsize::new(0),
        });
        let r = rounds.clone();
        std::thread::Builder::new()
            .name("wal-sync-rounds".into())
            .spawn(move || r.run())?;
        Ok(rounds)
    }

    /// Whether enough passes are syncing now that one more should join a round.
    pub fn crowded(&self) -> bool {
        self.syncing.load(Ordering::Relaxed) >= CROWD
    }

    /// Counts a pass as syncing its active segment until the guard drops.
    pub fn enter(&self) -> Syncing<'_> {
        self.syncing.fetch_add(1, Ordering::Relaxed);
        Syncing { rounds: self }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes durable everything written to `file` (its first `len` bytes) before the call:
    /// waits for the next round, then checks `file`'s own writeback errors.
    pub async fn sync(&self, file: &File, len: u64) -> Result<(), String> {
        self.join().await?;
        wait_written(file, len)
    }

    /// Returns once a round that began after this call has ended, with its outcome.
    async fn join(&self) -> Result<(), String> {
        let (mine, mut ended) = {
            let mut st = self.lock();
            st.joined_next += 1;
            self.joined.notify_one();
            // Writes before this call are covered by a round that begins after it: the next.
            (st.started + 1, self.ended.subscribe())
        };
        // The sender lives in `self`, so it outlives the wait.
        let _ = ended.wait_for(|e| *e >= mine).await;
        let st = self.lock();
        match &st.outcomes[slot(mine)] {
            (round, None) if *round == mine => Ok(()),
            (round, Some(e)) if *round == mine => Err(e.clone()),
            _ => Err(format!("the outcome of sync round {mine} was not kept")),
        }
    }

    /// The round thread: a round whenever members joined, back to back while they keep coming.
    fn run(&self) {
        loop {
            let mut st = self.lock();
            while st.joined_next == 0 {
                st = self.joined.wait(st).unwrap_or_else(PoisonError::into_inner);
            }
            let round = st.started + 1;
            st.started = round;
            st.joined_next = 0;
            drop(st);
            metrics::counter!(crate::metric_names::SYNC_ROUNDS).increment(1);
            let outcome = syncfs(&self.fs)
                .err()
                .map(|e| format!("syncfs failed: {e}"));
            let mut st = self.lock();
            st.ended = round;
            st.outcomes[slot(round)] = (round, outcome);
            drop(st);
            self.ended.send_replace(round);
        }
    }

    /// Rounds ended since the process started.
    #[cfg(test)]
    pub(crate) fn rounds_ended(&self) -> u64 {
        self.lock().ended
    }
}

fn slot(round: u64) -> usize {
    (round % OUTCOMES as u64) as usize
}

/// Writes back and makes durable every file of the filesystem holding `fs`.
pub(crate) fn syncfs(fs: &File) -> std::io::Result<()> {
    // SAFETY: syncfs takes a valid open descriptor, which `fs` holds for the call.
    if unsafe { libc::syncfs(fs.as_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// `file`'s writeback error not yet reported to this descriptor, if any. The round wrote back
/// the range, so nothing is in flight there and this issues no I/O and does not wait.
fn wait_written(file: &File, len: u64) -> Result<(), String> {
    // SAFETY: sync_file_range only reads its integer arguments; `file` is open for the call.
    let r = unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            0,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WAIT_BEFORE,
        )
    };
    if r != 0 {
        return Err(format!(
            "writeback of the active segment failed: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_round_serves_every_member_that_joined_before_it() {
        let dir = tempfile::tempdir().unwrap();
        // Not the shared registry's: other tests sync on the same filesystem.
        let rounds = SyncRounds::start(File::open(dir.path()).unwrap()).unwrap();
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let rounds = rounds.clone();
                let path = dir.path().join(format!("f{i}"));
                tokio::spawn(async move {
                    let mut f = File::create(path).unwrap();
                    for n in 1..=20u64 {
                        f.write_all(b"data").unwrap();
                        let _s = rounds.enter();
                        rounds.sync(&f, 4 * n).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let ended = rounds.rounds_ended();
        // 320 syncs in fewer rounds: members shared them (each member's 20 calls took a
        // round each, so at least 20).
        assert!((20..320).contains(&ended), "{ended} rounds");
        assert_eq!(rounds.lock().started, ended);
        assert_eq!(rounds.syncing.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn crowded_from_the_crowd_th_concurrent_pass() {
        let dir = tempfile::tempdir().unwrap();
        let rounds = SyncRounds::start(File::open(dir.path()).unwrap()).unwrap();
        let held: Vec<_> = (0..CROWD - 1).map(|_| rounds.enter()).collect();
        assert!(!rounds.crowded());
        let one_more = rounds.enter();
        assert!(rounds.crowded());
        drop((held, one_more));
        assert!(!rounds.crowded());
    }
}
