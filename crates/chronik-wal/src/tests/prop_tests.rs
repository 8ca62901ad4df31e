//! Property tests: crash recovery at every cut point, single-byte corruption, and random
//! operation sequences checked against a simple in-memory model.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::batch::test_util::{build, Spec};
use crate::WalError;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn spec(records: i32, payload_bytes: usize, ts: i64) -> Spec {
    Spec {
        records,
        payload_bytes,
        base_timestamp: ts,
        max_timestamp: ts,
        ..Spec::default()
    }
}

/// Snapshot of every file in the partition directory.
fn snapshot(root: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(part_dir(root))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn restore(root: &Path, files: &BTreeMap<String, Vec<u8>>) {
    let pd = part_dir(root);
    std::fs::remove_dir_all(&pd).unwrap();
    std::fs::create_dir_all(&pd).unwrap();
    for (name, bytes) in files {
        std::fs::write(pd.join(name), bytes).unwrap();
    }
}

/// Builds a closed log holding `sizes.len()` batches; returns what was stored and a snapshot.
fn build_log(
    rt: &tokio::runtime::Runtime,
    root: &Path,
    cfg: &LogConfig,
    sizes: &[(i32, usize)],
) -> (Vec<Stored>, BTreeMap<String, Vec<u8>>) {
    rt.block_on(async {
        let log = open(root, cfg.clone()).await;
        let stored: Vec<Stored> = sizes
            .iter()
            .enumerate()
            .map(|(i, (r, p))| append_spec(&log, spec(*r, *p, 1000 + i as i64)))
            .collect();
        log.close().await.unwrap();
        (stored, snapshot(root))
    })
}

/// Reopens after damage and checks that exactly `kept` survive, then that appends work.
fn check_recovers_to(
    rt: &tokio::runtime::Runtime,
    root: &Path,
    cfg: &LogConfig,
    kept: &[Stored],
    cut_file: (&Path, u64),
) -> Result<(), TestCaseError> {
    rt.block_on(async {
        let log = open(root, cfg.clone()).await;
        prop_assert_eq!(std::fs::metadata(cut_file.0).unwrap().len(), cut_file.1);
        let end = kept.last().map_or(0, |s| s.last + 1);
        prop_assert_eq!(log.log_end_offset(), end);
        prop_assert_eq!(log.committed_offset(), end);
        prop_assert_eq!(read_all(&log, 0), concat(kept));
        let new = append_spec(&log, spec(2, 5, 5));
        prop_assert_eq!(new.base, end);
        log.wait_committed(end + 2).await.unwrap();
        let r = log.read(end, 1 << 20, i64::MAX).unwrap();
        prop_assert_eq!(&r.data[..], &new.bytes[..]);
        log.close().await.unwrap();
        Ok(())
    })
}

fn batch_sizes() -> impl Strategy<Value = Vec<(i32, usize)>> {
    proptest::collection::vec((1i32..4, 0usize..48), 1..12)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// (a) A crash can leave the last frame cut at any byte: recovery keeps exactly the earlier
    /// batches, and the log keeps working.
    #[test]
    fn recovery_after_truncation_at_every_byte_of_the_last_frame(
        sizes in batch_sizes(),
        segment_bytes in 300u64..2000,
    ) {
        let rt = runtime();
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig { segment_bytes, index_interval_bytes: 100, ..small_config() };
        let (stored, files) = build_log(&rt, dir.path(), &cfg, &sizes);
        let last_base = *segment_bases(dir.path()).last().unwrap();
        let name = log_path(dir.path(), last_base).file_name().unwrap().to_str().unwrap().to_string();
        let full = files[&name].clone();
        let frame_len = 8 + stored.last().unwrap().bytes.len();
        let frame_start = full.len() - frame_len;
        for cut in frame_start..full.len() {
            let mut damaged = files.clone();
            damaged.insert(name.clone(), full[..cut].to_vec());
            restore(dir.path(), &damaged);
            let path = log_path(dir.path(), last_base);
            check_recovers_to(&rt, dir.path(), &cfg, &stored[..stored.len() - 1], (&path, frame_start as u64))?;
        }
    }

    /// (b) Any single damaged byte in the last frame is detected: that frame is cut, earlier
    /// ones are intact.
    #[test]
    fn flipped_byte_in_last_frame_cuts_only_that_frame(
        sizes in batch_sizes(),
        mask in 1u8..=255,
    ) {
        let rt = runtime();
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig { segment_bytes: 1 << 20, ..small_config() };
        let (stored, files) = build_log(&rt, dir.path(), &cfg, &sizes);
        let name = log_path(dir.path(), 0).file_name().unwrap().to_str().unwrap().to_string();
        let full = files[&name].clone();
        let frame_len = 8 + stored.last().unwrap().bytes.len();
        let frame_start = full.len() - frame_len;
        for at in frame_start..full.len() {
            let mut bytes = full.clone();
            bytes[at] ^= mask;
            let mut damaged = files.clone();
            damaged.insert(name.clone(), bytes);
            restore(dir.path(), &damaged);
            let path = log_path(dir.path(), 0);
            check_recovers_to(&rt, dir.path(), &cfg, &stored[..stored.len() - 1], (&path, frame_start as u64))?;
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Append {
        records: i32,
        payload: usize,
    },
    Read {
        start_pick: u16,
        max_bytes: usize,
        limit_pick: u16,
    },
    Truncate {
        pick: u16,
    },
    Retention {
        keep_bytes: u64,
    },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1i32..5, 0usize..200).prop_map(|(records, payload)| Op::Append { records, payload }),
        4 => (any::<u16>(), 0usize..1500, any::<u16>())
            .prop_map(|(start_pick, max_bytes, limit_pick)| Op::Read { start_pick, max_bytes, limit_pick }),
        1 => any::<u16>().prop_map(|pick| Op::Truncate { pick }),
        1 => (1000u64..6000).prop_map(|keep_bytes| Op::Retention { keep_bytes }),
        1 => Just(Op::Reopen),
    ]
}

/// What `read` should return, computed from the model.
fn model_read(model: &[Stored], start: i64, max_bytes: usize, limit: i64) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut n = 0;
    for s in model.iter().filter(|s| s.last >= start) {
        if s.last >= limit || (n > 0 && out.len() + s.bytes.len() > max_bytes) {
            break;
        }
        out.extend_from_slice(&s.bytes);
        n += 1;
        if out.len() >= max_bytes {
            break;
        }
    }
    (out, n)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// (c) Random appends, reads, truncations, retention and reopens match a simple model.
    #[test]
    fn random_operations_match_model(
        ops in proptest::collection::vec(op(), 1..60),
        segment_bytes in 200u64..3000,
        index_interval_bytes in 0u32..600,
    ) {
        let rt = runtime();
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig { segment_bytes, index_interval_bytes, fsync: FsyncPolicy::Never, ..small_config() };
        rt.block_on(async {
            let mut log = open(dir.path(), cfg.clone()).await;
            let mut model: Vec<Stored> = Vec::new();
            let mut log_start = 0i64;
            let mut ts = 0i64;
            for op in ops {
                let log_end = model.last().map_or(log_start, |s| s.last + 1);
                match op {
                    Op::Append { records, payload } => {
                        ts += 1;
                        let mut b = build(spec(records, payload, ts));
                        let a = log.append(&mut b, 1).unwrap();
                        prop_assert_eq!(a.base_offset, log_end);
                        model.push(Stored { base: a.base_offset, last: a.last_offset, bytes: b });
                    }
                    Op::Read { start_pick, max_bytes, limit_pick } => {
                        let span = (log_end - log_start + 2) as u64;
                        let start = log_start - 1 + (u64::from(start_pick) % span) as i64;
                        let limit = log_start + (u64::from(limit_pick) % span) as i64;
                        let r = log.read(start, max_bytes, limit);
                        if start < log_start || start > log_end {
                            let is_out_of_range = matches!(r, Err(WalError::OffsetOutOfRange { .. }));
                            prop_assert!(is_out_of_range);
                        } else {
                            let r = r.unwrap();
                            let (data, n) = model_read(&model, start, max_bytes, limit);
                            prop_assert_eq!(r.batches, n);
                            prop_assert_eq!(&r.data[..], &data[..]);
                        }
                    }
                    Op::Truncate { pick } => {
                        let kept: Vec<&Stored> = model.iter().filter(|s| s.base >= log_start).collect();
                        let i = usize::from(pick) % (kept.len() + 1);
                        let offset = kept.get(i).map_or(log_end, |s| s.base);
                        log.truncate_to(offset).unwrap();
                        model.retain(|s| s.base < offset);
                        prop_assert_eq!(log.log_end_offset(), offset);
                    }
                    Op::Retention { keep_bytes } => {
                        let mut c = cfg.clone();
                        c.retention_bytes = Some(keep_bytes);
                        log.set_config(c);
                        let out = log.enforce_retention(0).unwrap();
                        log.set_config(cfg.clone());
                        log_start = out.log_start_offset;
                        model.retain(|s| s.base >= log_start);
                        prop_assert!(out.deleted.is_empty() || log.size_bytes() >= keep_bytes);
                    }
                    Op::Reopen => {
                        log.close().await.unwrap();
                        drop(log);
                        log = open(dir.path(), cfg.clone()).await;
                    }
                }
                let log_end = model.last().map_or(log_start, |s| s.last + 1);
                prop_assert_eq!(log.log_start_offset(), log_start);
                prop_assert_eq!(log.log_end_offset(), log_end);
                prop_assert_eq!(log.committed_offset(), log_end);
            }
            prop_assert_eq!(read_all(&log, log_start), concat(&model));
            let mut headers = Vec::new();
            log.scan_headers(0, &mut |h| headers.push(h.base_offset)).unwrap();
            prop_assert_eq!(headers, model.iter().map(|s| s.base).collect::<Vec<_>>());
            log.close().await.unwrap();
            Ok(())
        })?;
    }
}
