//! The raw disk's limits, so broker figures can be shown as ratios to them:
//! - a 4 KiB append followed by fdatasync, repeated (what one acks=all produce costs at least);
//! - sequential 1 MiB appends with an fdatasync after each (the best a durable log can stream).
//!
//! Both append to a growing file, as the WAL does, so the fdatasync also carries the size change.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::report::{new_histogram, record};

/// Files never grow beyond this; the probe starts a new one (bounds disk use).
const MAX_FILE_BYTES: u64 = 1 << 30;

#[derive(Debug, Serialize)]
pub struct DiskReport {
    pub dir: String,
    pub fsync_4k_samples: u64,
    pub fsync_4k_p50_us: u64,
    pub fsync_4k_p99_us: u64,
    pub fsync_4k_p999_us: u64,
    pub fsync_4k_max_us: u64,
    pub fsync_4k_per_s: f64,
    pub seq_fsync_mib_written: u64,
    /// MB = 10^6 bytes, as in the broker figures.
    pub seq_fsync_mb_per_s: f64,
}

pub fn probe(dir: &Path, seconds: u64) -> Result<DiskReport> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let half = Duration::from_secs_f64(seconds as f64 / 2.0);
    let small = dir.join("chronik-disk-probe-4k.tmp");
    let big = dir.join("chronik-disk-probe-seq.tmp");
    let result = (|| {
        let (hist, n, elapsed) = small_appends(&small, half)?;
        let (mib, seq_elapsed) = sequential(&big, half)?;
        Ok(DiskReport {
            dir: dir.display().to_string(),
            fsync_4k_samples: n,
            fsync_4k_p50_us: hist.value_at_quantile(0.5),
            fsync_4k_p99_us: hist.value_at_quantile(0.99),
            fsync_4k_p999_us: hist.value_at_quantile(0.999),
            fsync_4k_max_us: hist.max(),
            fsync_4k_per_s: n as f64 / elapsed.as_secs_f64(),
            seq_fsync_mib_written: mib,
            seq_fsync_mb_per_s: (mib * 1024 * 1024) as f64 / 1e6 / seq_elapsed.as_secs_f64(),
        })
    })();
    let _ = std::fs::remove_file(&small);
    let _ = std::fs::remove_file(&big);
    result
}

fn open(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

fn small_appends(
    path: &Path,
    time: Duration,
) -> Result<(hdrhistogram::Histogram<u64>, u64, Duration)> {
    let mut f = open(path)?;
    let block = vec![0xA5u8; 4096];
    let mut hist = new_histogram();
    let (start, mut n, mut size) = (Instant::now(), 0u64, 0u64);
    // At least 100 samples, so the percentiles mean something even on a slow disk.
    while start.elapsed() < time || n < 100 {
        if size >= MAX_FILE_BYTES {
            f = open(path)?;
            size = 0;
        }
        let t = Instant::now();
        f.write_all(&block).context("4 KiB append")?;
        f.sync_data().context("fdatasync")?;
        record(&mut hist, t.elapsed().as_micros() as u64);
        n += 1;
        size += 4096;
    }
    Ok((hist, n, start.elapsed()))
}

fn sequential(path: &Path, time: Duration) -> Result<(u64, Duration)> {
    let mut f = open(path)?;
    let chunk = vec![0x5Au8; 1024 * 1024];
    let (start, mut mib, mut size) = (Instant::now(), 0u64, 0u64);
    while start.elapsed() < time || mib < 16 {
        if size >= MAX_FILE_BYTES {
            f = open(path)?;
            size = 0;
        }
        f.write_all(&chunk).context("1 MiB append")?;
        f.sync_data().context("fdatasync")?;
        mib += 1;
        size += chunk.len() as u64;
    }
    Ok((mib, start.elapsed()))
}

pub fn print_text(r: &DiskReport) {
    println!("disk probe in {}", r.dir);
    println!(
        "  4 KiB append + fdatasync: p50 {} µs  p99 {} µs  p99.9 {} µs  max {} µs  ({:.0}/s, {} samples)",
        r.fsync_4k_p50_us,
        r.fsync_4k_p99_us,
        r.fsync_4k_p999_us,
        r.fsync_4k_max_us,
        r.fsync_4k_per_s,
        r.fsync_4k_samples
    );
    println!(
        "  sequential 1 MiB appends, fdatasync each: {:.1} MB/s ({} MiB)",
        r.seq_fsync_mb_per_s, r.seq_fsync_mib_written
    );
}
