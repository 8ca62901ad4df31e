//! The high-watermark checkpoint: one file per node (`replication-offset-checkpoint` in the
//! WAL root, like Kafka's), lines `topic partition high_watermark`, replaced atomically
//! (temp, fsync, rename) once a second when a high watermark moved. On start each replica's
//! high watermark begins there instead of at its log start.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Weak;
use std::time::Duration;

use crate::manager::ReplicaManager;

pub const FILE_NAME: &str = "replication-offset-checkpoint";
const VERSION_LINE: &str = "chronik-hw-checkpoint v1";
/// Bound on the file read at start.
const MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Reads the checkpoint; a missing, oversized or unreadable file gives an empty map (every
/// replica then starts at its log start, which is safe, only slower to expose data).
pub fn load(dir: &Path) -> HashMap<(String, i32), i64> {
    let path = dir.join(FILE_NAME);
    let mut out = HashMap::new();
    let Ok(meta) = std::fs::metadata(&path) else {
        return out;
    };
    if meta.len() > MAX_BYTES {
        tracing::warn!(path = %path.display(), "high-watermark checkpoint too large; ignored");
        return out;
    }
    let Ok(text) = std::fs::read_to_string(&path) else {
        tracing::warn!(path = %path.display(), "high-watermark checkpoint unreadable; ignored");
        return out;
    };
    let mut lines = text.lines();
    if lines.next() != Some(VERSION_LINE) {
        tracing::warn!(path = %path.display(), "high-watermark checkpoint of an unknown version; ignored");
        return out;
    }
    for line in lines {
        // Topic names hold no spaces (Kafka's legal characters), so rsplit is exact.
        let mut it = line.rsplitn(3, ' ');
        let (Some(hw), Some(p), Some(topic)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        if let (Ok(p), Ok(hw)) = (p.parse::<i32>(), hw.parse::<i64>()) {
            out.insert((topic.to_string(), p), hw);
        }
    }
    out
}

fn write(dir: &Path, entries: &[(String, i32, i64)]) -> std::io::Result<()> {
    let mut text = String::with_capacity(entries.len() * 32 + 32);
    text.push_str(VERSION_LINE);
    text.push('\n');
    for (t, p, hw) in entries {
        text.push_str(&format!("{t} {p} {hw}\n"));
    }
    chronik_durable::replace(dir, FILE_NAME, text.as_bytes())
}

/// Writes the checkpoint every second while any high watermark moved, until the manager
/// stops.
pub(crate) fn spawn(manager: Weak<ReplicaManager>, dir: PathBuf) {
    tokio::spawn(async move {
        let mut last: Vec<(String, i32, i64)> = Vec::new();
        let mut last_print = None;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let Some(m) = manager.upgrade() else { return };
            if *m.stopping().borrow() {
                return;
            }
            // A node may hold thousands of idle replicas: compare a fingerprint first, and
            // copy and sort the names only when some high watermark (or replica) changed.
            let print = fingerprint(&m);
            if last_print == Some(print) {
                continue;
            }
            let mut now: Vec<(String, i32, i64)> = m
                .all()
                .iter()
                .map(|r| (r.topic.clone(), r.partition, r.high_watermark()))
                .collect();
            drop(m);
            now.sort();
            if now == last {
                last_print = Some(print);
                continue;
            }
            let (d, entries) = (dir.clone(), now.clone());
            match tokio::task::spawn_blocking(move || write(&d, &entries)).await {
                Ok(Ok(())) => {
                    last = now;
                    last_print = Some(print);
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot write the high-watermark checkpoint")
                }
                Err(e) => tracing::warn!(error = %e, "high-watermark checkpoint task failed"),
            }
        }
    });
}

/// An order-independent digest of every replica's (topic, partition, high watermark), made
/// without allocating: equal digests mean (up to a 2^-64 chance) nothing to write.
fn fingerprint(m: &ReplicaManager) -> (usize, u64) {
    use std::hash::{Hash, Hasher};
    m.replicas.iter().fold((0, 0u64), |(n, sum), e| {
        let r = e.value();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (&r.topic, r.partition, r.high_watermark()).hash(&mut h);
        (n + 1, sum.wrapping_add(h.finish()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).is_empty());
        write(dir.path(), &[("a.b-c".into(), 0, 10), ("t".into(), 7, 0)]).unwrap();
        let m = load(dir.path());
        assert_eq!(m.get(&("a.b-c".to_string(), 0)), Some(&10));
        assert_eq!(m.get(&("t".to_string(), 7)), Some(&0));
        std::fs::write(dir.path().join(FILE_NAME), "something else\nx 1 2\n").unwrap();
        assert!(load(dir.path()).is_empty());
    }
}
