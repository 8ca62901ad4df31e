//! Keeps glibc's allocator from handing request-sized memory back to the kernel.
//!
//! A produce request in the throughput scenario is up to 1 MiB. With glibc's defaults the heap
//! top is trimmed (`brk`) as soon as such a buffer is freed and grown again for the next one,
//! so every request lands on fresh pages: measured 146k page faults/s and 2.8k `brk`/s in the
//! load generator, about 10% of the machine's CPU, stolen from the broker it measures. Keeping
//! up to 512 MiB of freed heap and serving allocations below 64 MiB from the heap removes that
//! (throughput scenario 433 → 498 MB/s in back-to-back runs).

/// Freed heap glibc may keep instead of trimming it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD_BYTES: libc::c_int = 512 << 20;
/// Allocations at least this large get their own mapping (and its page faults).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD_BYTES: libc::c_int = 64 << 20;

/// Applies the settings above; a no-op where the allocator is not glibc's. Call before the
/// runtime starts any thread.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called before other threads
    // exist, and a refused setting (return 0) just leaves glibc's default in place.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
    }
}
