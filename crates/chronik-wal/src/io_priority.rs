//! Commits before cold reads: the disk's queue goes to the fdatasyncs acknowledgements wait for.
//!
//! A consumer far behind the log end reads as fast as the disk allows. On a virtual disk
//! whose queue takes 128 requests of up to 4 MiB, with the kernel's read-ahead at 8 MiB, its
//! reads fill the queue, and every fdatasync waits behind megabytes of them: measured on the
//! 2-core VM (docs/performance.md, cold-read scenario), fdatasync went from 0.2 ms mean / 4 ms
//! max to 0.65 ms / 29 ms, and acks=all p99 with it. I/O priorities do not help there (the
//! requests are already in the device's queue), so the WAL orders them itself:
//! - a commit pass holds a [`CommitInFlight`] while it syncs;
//! - a cold read (on a cold-read thread, [`mark_cold_reader`]) reads in chunks of at most
//!   [`COLD_CHUNK_BYTES`], without the kernel's read-ahead, and before each chunk waits up to
//!   [`MAX_YIELD`] for the commits in flight to finish.
//!
//! So a sync waits behind at most one chunk per cold-read thread, and cold reads still move
//! (at least a chunk per [`MAX_YIELD`] per thread) under a continuous stream of commits.

use std::cell::Cell;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Largest `pread` of a cold read: about 0.2-0.4 ms of a fast disk's time.
pub const COLD_CHUNK_BYTES: usize = 128 * 1024;
/// Longest a cold read waits for commits before each chunk.
pub const MAX_YIELD: Duration = Duration::from_millis(2);

/// Commit passes in flight. An atomic, so a pass (every partition's, on the commit path)
/// touches no lock unless a cold read is waiting for it.
static COMMITS: AtomicUsize = AtomicUsize::new(0);
/// Cold reads waiting in [`yield_to_commits`]; the last commit to finish wakes them.
static WAITERS: AtomicUsize = AtomicUsize::new(0);
/// Taken only to wait and to wake, so that a wake-up between a waiter's check and its wait
/// is not lost.
static WAKE: Mutex<()> = Mutex::new(());
static NO_COMMITS: Condvar = Condvar::new();

thread_local! {
    static COLD_READER: Cell<bool> = const { Cell::new(false) };
}

/// Marks this thread as one that serves cold reads: its segment reads yield to commits.
pub fn mark_cold_reader() {
    COLD_READER.with(|c| c.set(true));
}

/// The nice value of background threads (0 is the default, 19 the lowest priority): a weight
/// of about a tenth of a default thread's under contention, without starving them.
pub const BACKGROUND_NICE: i32 = 10;

/// Lowers this thread's CPU priority to [`BACKGROUND_NICE`] and its I/O priority to the lowest
/// of the best-effort class (honoured by the bfq and mq-deadline schedulers), for background
/// work (cold reads, the log cleaner) that must yield to produce handling and commits. Failing
/// to do so is logged and harmless: the work then runs at the default priority. A lowered
/// thread cannot be raised back without privileges: call it on threads of their own.
#[cfg(target_os = "linux")]
pub fn lower_this_thread() {
    const IOPRIO_WHO_PROCESS: libc::c_long = 1;
    const IOPRIO_CLASS_BE: libc::c_long = 2;
    const IOPRIO_CLASS_SHIFT: libc::c_long = 13;
    const LOWEST_BE_LEVEL: libc::c_long = 7;
    // SAFETY: plain syscalls with integer arguments, applied to this thread only (Linux keeps
    // the nice value and the I/O priority per thread).
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid);
        if libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, BACKGROUND_NICE) != 0 {
            tracing::warn!(error = %std::io::Error::last_os_error(), "cannot lower the CPU priority of a background thread");
        }
        let prio = (IOPRIO_CLASS_BE << IOPRIO_CLASS_SHIFT) | LOWEST_BE_LEVEL;
        if libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, tid, prio) != 0 {
            tracing::warn!(error = %std::io::Error::last_os_error(), "cannot lower the I/O priority of a background thread");
        }
    }
}

#[cfg(not(target_os = "linux"))]
pub fn lower_this_thread() {}

/// Held by a commit pass while it syncs; cold reads wait for it to drop.
pub struct CommitInFlight(());

impl CommitInFlight {
    pub fn start() -> Self {
        COMMITS.fetch_add(1, Ordering::SeqCst);
        CommitInFlight(())
    }
}

impl Drop for CommitInFlight {
    fn drop(&mut self) {
        // SeqCst with the waiter's increment of WAITERS before its check of COMMITS: either
        // the waiter sees no commit, or this sees the waiter and wakes it under WAKE.
        if COMMITS.fetch_sub(1, Ordering::SeqCst) == 1 && WAITERS.load(Ordering::SeqCst) > 0 {
            let _w = WAKE.lock().unwrap_or_else(|p| p.into_inner());
            NO_COMMITS.notify_all();
        }
    }
}

/// Waits until no commit is in flight, at most [`MAX_YIELD`].
fn yield_to_commits() {
    if COMMITS.load(Ordering::SeqCst) == 0 {
        return;
    }
    let deadline = Instant::now() + MAX_YIELD;
    WAITERS.fetch_add(1, Ordering::SeqCst);
    let mut guard = WAKE.lock().unwrap_or_else(|p| p.into_inner());
    while COMMITS.load(Ordering::SeqCst) > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        guard = match NO_COMMITS.wait_timeout(guard, left) {
            Ok((g, _)) => g,
            Err(p) => p.into_inner().0,
        };
    }
    drop(guard);
    WAITERS.fetch_sub(1, Ordering::SeqCst);
}

/// Fills `buf` from `pos` of a segment file. On a cold-read thread: in chunks, each after the
/// commits in flight (up to [`MAX_YIELD`]), with the kernel's read-ahead off for the file
/// (read-ahead would put megabytes in the disk's queue at once; the chunks are sequential and
/// large enough without it). Elsewhere: one `pread`.
pub fn read_segment_at(file: &File, buf: &mut [u8], pos: u64) -> io::Result<()> {
    if !COLD_READER.with(Cell::get) {
        return file.read_exact_at(buf, pos);
    }
    // SAFETY: posix_fadvise only reads its integer arguments; the fd is open for the lifetime
    // of `file`. Advisory: a failure leaves read-ahead on.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_RANDOM);
    }
    let mut at = pos;
    for chunk in buf.chunks_mut(COLD_CHUNK_BYTES) {
        yield_to_commits();
        file.read_exact_at(chunk, at)?;
        at += chunk.len() as u64;
    }
    Ok(())
}

/// Size and free space (for unprivileged users) of the filesystem holding `path`, in bytes.
pub fn disk_space(path: &std::path::Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a NUL-terminated path and `st` is a valid out-pointer for statvfs.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    // The field types differ between targets (u32 on some 32-bit ones): widen them all.
    #[allow(clippy::useless_conversion)]
    let (frsize, blocks, avail) = (
        u64::from(st.f_frsize),
        u64::from(st.f_blocks),
        u64::from(st.f_bavail),
    );
    Ok((blocks.saturating_mul(frsize), avail.saturating_mul(frsize)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cold_reads_wait_for_commits_but_not_forever() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..3 * COLD_CHUNK_BYTES + 17).map(|i| i as u8).collect();
        std::fs::write(&path, &data).expect("write");
        let file = File::open(&path).expect("open");
        let commit = CommitInFlight::start();
        let reader = std::thread::spawn(move || {
            mark_cold_reader();
            let mut buf = vec![0u8; data.len() - 5];
            let started = Instant::now();
            read_segment_at(&file, &mut buf, 5).expect("read");
            assert_eq!(buf, data[5..]);
            started.elapsed()
        });
        // Four chunks, each waiting out MAX_YIELD behind the commit that never ends.
        let took = reader.join().expect("reader");
        drop(commit);
        assert!(took >= 4 * MAX_YIELD, "{took:?}");
        assert!(took < 4 * MAX_YIELD + Duration::from_secs(1), "{took:?}");
    }
}
