//! Compacted logs: offset gaps left by replacing sealed segments with cleaned ones (reads,
//! indexes, truncation and replica catch-up across them) and the replacement itself (refusals,
//! reopen, a crash at every step, a reader in flight).

use std::time::Duration;

use super::*;
use crate::batch::test_util::{batch_at, Spec};
use crate::index::load_index_files;
use crate::{CatchUp, WalError};

/// Records per batch in these tests: gaps are then several offsets wide.
const RECORDS: i32 = 3;

/// A log with at least `sealed` sealed segments whose seal finished, batches of [`RECORDS`]
/// records with increasing timestamps (10 ms apart, the first at 10_000).
async fn log_with_sealed(
    root: &Path,
    config: LogConfig,
    sealed: usize,
) -> (Arc<PartitionLog>, Vec<Stored>) {
    let log = open(root, config).await;
    let mut stored = Vec::new();
    for i in 0..60 {
        let ts = 10_000 + 10 * i as i64;
        stored.push(append_spec(
            &log,
            Spec {
                records: RECORDS,
                payload_bytes: 20 + (i * 37) % 120,
                base_timestamp: ts,
                max_timestamp: ts,
                ..Spec::default()
            },
        ));
    }
    log.wait_committed(log.log_end_offset()).await.unwrap();
    wait_sealed(&log, root, sealed).await;
    (log, stored)
}

/// Waits until the first `n` segments' seals finished (the commit task persists them).
async fn wait_sealed(log: &PartitionLog, root: &Path, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let bases = segment_bases(root);
        if bases.len() > n
            && bases[..n]
                .iter()
                .all(|b| log.sealed_segment_at(*b).is_some())
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "segments never sealed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The stored batches of the segments `bases[from..to]` (to the log end if `to` is the last).
fn batches_in(stored: &[Stored], bases: &[i64], from: usize, to: usize) -> Vec<Stored> {
    let lo = bases[from];
    let hi = bases.get(to).copied().unwrap_or(i64::MAX);
    stored
        .iter()
        .filter(|s| (lo..hi).contains(&s.base))
        .cloned()
        .collect()
}

/// Compacts segments `bases[from..to]`: keeps the batches `keep` chooses (by their index in
/// the whole log), unchanged. Returns the log's batches afterwards.
fn compact(
    log: &PartitionLog,
    stored: &[Stored],
    bases: &[i64],
    (from, to): (usize, usize),
    keep: impl Fn(usize) -> bool,
) -> Vec<Stored> {
    let (lo, hi) = (bases[from], bases[to]);
    let kept: Vec<Stored> = stored
        .iter()
        .enumerate()
        .filter(|(i, s)| !(lo..hi).contains(&s.base) || keep(*i))
        .map(|(_, s)| s.clone())
        .collect();
    let cleaned: Vec<&[u8]> = kept
        .iter()
        .filter(|s| (lo..hi).contains(&s.base))
        .map(|s| s.bytes.as_slice())
        .collect();
    let out = log
        .replace_segments_with(&bases[from..to], &cleaned)
        .unwrap();
    assert_eq!(out.base_offset, lo);
    assert_eq!(out.next_offset, hi);
    kept
}

/// Checks every read that can start in `[log_start, log_end)`: the first batch returned is the
/// first one ending at or after the offset, and a read to the end returns all from there.
fn check_reads(log: &PartitionLog, kept: &[Stored]) {
    let (start, end) = (log.log_start_offset(), log.log_end_offset());
    for o in start..end {
        let i = kept.iter().position(|s| s.last >= o).unwrap();
        let one = log.read(o, 1, i64::MAX).unwrap();
        assert_eq!(one.first_offset, Some(kept[i].base), "read at {o}");
        assert_eq!(one.data.as_ref(), kept[i].bytes.as_slice(), "read at {o}");
        assert_eq!(
            read_all(log, o),
            concat(&kept[i..]),
            "read to the end at {o}"
        );
        let mut seen = Vec::new();
        log.scan_headers(o, &mut |h| seen.push(h.base_offset))
            .unwrap();
        let want: Vec<i64> = kept[i..].iter().map(|s| s.base).collect();
        assert_eq!(seen, want, "scan_headers at {o}");
        // A read bounded below the next batch (which lies after a gap) is empty, not wrong.
        if o < kept[i].base {
            assert_eq!(log.read(o, usize::MAX, kept[i].base).unwrap().batches, 0);
        }
    }
}

/// Every `ts` from before the first batch to after the last: the batch found is the first
/// kept one whose max timestamp reaches it.
async fn check_timestamps(log: &PartitionLog, kept: &[Stored]) {
    for ts in (9_990..10_000 + 10 * 61).step_by(5) {
        let want = kept
            .iter()
            .find(|s| crate::BatchHeader::parse(&s.bytes).unwrap().max_timestamp >= ts);
        let got = log.find_batch_by_timestamp(ts).await.unwrap();
        assert_eq!(
            got.as_deref(),
            want.map(|s| s.bytes.as_slice()),
            "timestamp {ts}"
        );
    }
}

#[tokio::test]
async fn reads_and_indexes_across_gaps_from_every_offset() {
    // Dense (every batch) and sparse indexes, so lookups land before, in and after gaps.
    for interval in [0, 200] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig {
            index_interval_bytes: interval,
            ..small_config()
        };
        let (log, stored) = log_with_sealed(dir.path(), cfg.clone(), 5).await;
        let bases = segment_bases(dir.path());
        let (start, end) = (log.log_start_offset(), log.log_end_offset());
        // Segment 1 loses its first and last batches (gaps at both ends), segments 2..4 are
        // merged into one keeping every third batch, segment 4 keeps only one batch.
        let first_of = |k: usize| stored.iter().position(|s| s.base == bases[k]).unwrap();
        let (s1, s2) = (first_of(1), first_of(2));
        let kept = compact(&log, &stored, &bases, (1, 2), |i| i > s1 && i + 1 < s2);
        let kept = compact(&log, &kept, &bases, (2, 4), |i| i.is_multiple_of(3));
        let k4 = kept.iter().position(|s| s.base == bases[4]).unwrap();
        let kept = compact(&log, &kept, &bases, (4, 5), |i| i == k4 + 1);
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (start, end));
        assert_eq!(log.segment_count(), bases.len() - 1);
        let infos = log.segments();
        assert_eq!(infos[1].next_offset, bases[2]);
        assert_eq!(infos[1].batches_end, stored[s2 - 2].last + 1);
        assert!(infos[1].replaceable && !infos.last().unwrap().replaceable);
        assert!(infos
            .windows(2)
            .all(|w| w[0].next_offset == w[1].base_offset));
        check_reads(&log, &kept);
        check_timestamps(&log, &kept).await;
        // Reopened: trusted index files; then rebuilt by scanning (gaps at segment ends).
        log.close().await.unwrap();
        for rebuild in [false, true] {
            if rebuild {
                for b in segment_bases(dir.path()) {
                    std::fs::remove_file(index_path(dir.path(), b, FileKind::OffsetIndex)).unwrap();
                }
            }
            let log = open(dir.path(), cfg.clone()).await;
            assert_eq!((log.log_start_offset(), log.log_end_offset()), (start, end));
            check_reads(&log, &kept);
            check_timestamps(&log, &kept).await;
            log.close().await.unwrap();
        }
        // The rebuilt index files are valid and name where the batches end.
        let bases_now = segment_bases(dir.path());
        let size = std::fs::metadata(log_path(dir.path(), bases[1]))
            .unwrap()
            .len();
        let (_, meta) = load_index_files(
            &part_dir(dir.path()),
            PARTITION,
            bases[1],
            bases_now[2],
            size,
        )
        .unwrap();
        assert_eq!(meta.next_offset, bases[2]);
        assert_eq!(meta.batches_end, stored[s2 - 2].last + 1);
    }
}

#[tokio::test]
async fn a_replacement_refuses_what_is_not_a_cleaned_run_of_sealed_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (log, stored) = log_with_sealed(dir.path(), small_config(), 4).await;
    let bases = segment_bases(dir.path());
    let invalid = |r: Result<_, WalError>| matches!(r, Err(WalError::InvalidReplacement(_)));
    let active = *bases.last().unwrap();
    assert!(invalid(log.begin_replace(&[]).map(|_| ())));
    assert!(invalid(log.begin_replace(&[active]).map(|_| ())));
    assert!(invalid(
        log.begin_replace(&bases[bases.len() - 2..]).map(|_| ())
    ));
    assert!(invalid(
        log.begin_replace(&[bases[0], bases[2]]).map(|_| ())
    ));
    assert!(invalid(log.begin_replace(&[bases[0] + 1]).map(|_| ())));

    let seg1 = batches_in(&stored, &bases, 1, 2);
    let mut r = log.begin_replace(&bases[1..2]).unwrap();
    // A second replacement starting at the same segment while this one is open.
    assert!(log.begin_replace(&bases[1..2]).is_err());
    // A batch from before the range, then one past it, then one overlapping the previous.
    assert!(invalid(r.append(&stored[0].bytes)));
    assert!(invalid(
        r.append(&batches_in(&stored, &bases, 2, 3)[0].bytes)
    ));
    r.append(&seg1[1].bytes).unwrap();
    assert!(invalid(r.append(&seg1[1].bytes)));
    assert!(invalid(r.append(&seg1[0].bytes)));
    // A damaged batch.
    let mut bad = seg1[2].bytes.clone();
    let n = bad.len();
    bad[n - 1] ^= 1;
    assert!(matches!(r.append(&bad), Err(WalError::InvalidBatch(_))));
    // The log is truncated before the swap (even below the replaced segment, whose file
    // then stays in place): refused, the log is untouched.
    log.truncate_to(bases[2]).unwrap();
    assert!(invalid(log.replace_segments(r).map(|_| ())));
    let left: Vec<Stored> = stored
        .iter()
        .filter(|s| s.base < bases[2])
        .cloned()
        .collect();
    assert_eq!(read_all(&log, 0), concat(&left));
    assert_eq!(leftovers(dir.path()), Vec::<String>::new());
    drop(log);
    let log = open(dir.path(), small_config()).await;
    assert_eq!(read_all(&log, 0), concat(&left));
}

/// Files of a replacement left in the partition directory.
fn leftovers(root: &Path) -> Vec<String> {
    std::fs::read_dir(part_dir(root))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".cleaned") || n.ends_with(".swap") || n.ends_with(".deleted"))
        .collect()
}

#[tokio::test]
async fn a_crash_at_every_step_of_a_replacement_leaves_the_old_or_the_new_log() {
    let mut outcomes = Vec::new();
    for step in 1.. {
        let dir = tempfile::tempdir().unwrap();
        let (log, stored) = log_with_sealed(dir.path(), small_config(), 4).await;
        let bases = segment_bases(dir.path());
        let (start, end) = (log.log_start_offset(), log.log_end_offset());
        log.crash_replace_at(step);
        let first = stored.iter().position(|s| s.base == bases[1]).unwrap();
        let kept: Vec<Stored> = stored
            .iter()
            .enumerate()
            .filter(|(i, s)| !(bases[1]..bases[4]).contains(&s.base) || (*i - first) % 4 == 1)
            .map(|(_, s)| s.clone())
            .collect();
        let cleaned: Vec<&[u8]> = kept
            .iter()
            .filter(|s| (bases[1]..bases[4]).contains(&s.base))
            .map(|s| s.bytes.as_slice())
            .collect();
        let result = log.replace_segments_with(&bases[1..4], &cleaned);
        let finished = result.is_ok();
        // The crash: no close, nothing cleaned up.
        drop(log);
        let log = open(dir.path(), small_config()).await;
        assert_eq!(leftovers(dir.path()), Vec::<String>::new(), "step {step}");
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (start, end));
        let now = read_all(&log, 0);
        let new = now == concat(&kept);
        assert!(
            new || now == concat(&stored),
            "step {step}: neither old nor new"
        );
        let want_bases: Vec<i64> = if new {
            bases
                .iter()
                .copied()
                .filter(|b| !(bases[2]..bases[4]).contains(b))
                .collect()
        } else {
            bases.clone()
        };
        assert_eq!(segment_bases(dir.path()), want_bases, "step {step}");
        // The log goes on: appends, and a reopen after a clean close.
        let more = append_many(&log, 3, 1);
        log.close().await.unwrap();
        let log = open(dir.path(), small_config()).await;
        let base = if new { kept.clone() } else { stored.clone() };
        let all: Vec<Stored> = base.into_iter().chain(more).collect();
        assert_eq!(read_all(&log, 0), concat(&all), "step {step}");
        log.close().await.unwrap();
        outcomes.push(new);
        if finished {
            break;
        }
    }
    // Before the commit point (cleaned files, index renames) the old log; from it on, the new.
    let flip = outcomes.iter().position(|n| *n).unwrap();
    assert!(flip >= 3, "{outcomes:?}");
    assert!(outcomes[flip..].iter().all(|n| *n), "{outcomes:?}");
    assert!(outcomes.len() > 20, "{outcomes:?}");
}

#[tokio::test]
async fn a_reader_in_flight_during_a_replacement_sees_each_offset_once() {
    let dir = tempfile::tempdir().unwrap();
    let (log, stored) = log_with_sealed(dir.path(), small_config(), 4).await;
    let bases = segment_bases(dir.path());
    let first = stored.iter().position(|s| s.base == bases[1]).unwrap();
    let keep = |i: usize| i.is_multiple_of(2) || i == first;
    let kept: Vec<Stored> = stored
        .iter()
        .enumerate()
        .filter(|(i, s)| !(bases[1]..bases[4]).contains(&s.base) || keep(*i))
        .map(|(_, s)| s.clone())
        .collect();
    let cleaned: Vec<Vec<u8>> = kept
        .iter()
        .filter(|s| (bases[1]..bases[4]).contains(&s.base))
        .map(|s| s.bytes.clone())
        .collect();
    // The walk is inside segment 1 (old file) when the replacement happens.
    let mut seen = Vec::new();
    let mut replaced = false;
    log.scan_headers(0, &mut |h| {
        seen.push(h.base_offset);
        if h.base_offset == bases[1] && !replaced {
            let refs: Vec<&[u8]> = cleaned.iter().map(Vec::as_slice).collect();
            log.replace_segments_with(&bases[1..4], &refs).unwrap();
            replaced = true;
        }
    })
    .unwrap();
    assert!(replaced);
    // Old batches up to the end of the old segment 1, then the new ones from there.
    let want: Vec<i64> = stored
        .iter()
        .filter(|s| s.base < bases[2])
        .chain(kept.iter().filter(|s| s.base >= bases[2]))
        .map(|s| s.base)
        .collect();
    assert_eq!(seen, want);
    assert_eq!(read_all(&log, 0), concat(&kept));

    // A thread reading in small steps while segments are replaced: offsets only increase,
    // every batch is an old or a new one, and each pass reaches the end.
    let all: std::collections::HashSet<Vec<u8>> = stored.iter().map(|s| s.bytes.clone()).collect();
    let end = log.log_end_offset();
    let reader = {
        let log = log.clone();
        std::thread::spawn(move || {
            for _ in 0..30 {
                let mut o = 0;
                while o < end {
                    let r = log.read(o, 700, i64::MAX).unwrap();
                    let mut prev = o - 1;
                    for range in crate::split_batches(&r.data).unwrap() {
                        let b = &r.data[range];
                        assert!(all.contains(b));
                        let h = crate::BatchHeader::parse(b).unwrap();
                        assert!(h.last_offset() > prev);
                        prev = h.last_offset();
                    }
                    o = prev + 1;
                }
            }
        })
    };
    let bases = segment_bases(dir.path());
    let now: Vec<Stored> = kept;
    let _ = compact(&log, &now, &bases, (1, 3), |i| i.is_multiple_of(4));
    reader.join().unwrap();
}

#[tokio::test]
async fn truncation_into_a_gap_ends_the_log_there_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (log, stored) = log_with_sealed(dir.path(), small_config(), 3).await;
    let bases = segment_bases(dir.path());
    let mtime = |b: i64| {
        std::fs::metadata(log_path(dir.path(), b))
            .unwrap()
            .modified()
            .unwrap()
    };
    let before = mtime(bases[1]);
    let kept = compact(&log, &stored, &bases, (1, 2), |i| i.is_multiple_of(2));
    // Retention's clock for batches without timestamps: kept from the replaced file.
    assert_eq!(mtime(bases[1]), before);
    let seg1: Vec<&Stored> = kept
        .iter()
        .filter(|s| (bases[1]..bases[2]).contains(&s.base))
        .collect();
    // Inside a batch: refused. In the gap after a batch: the log ends there.
    assert!(matches!(
        log.truncate_to(seg1[0].base + 1),
        Err(WalError::NotBatchBoundary { .. })
    ));
    let gap = seg1[0].last + 2;
    assert!(gap < seg1[1].base);
    log.truncate_to(gap).unwrap();
    assert_eq!(log.log_end_offset(), gap);
    let below: Vec<Stored> = kept.iter().filter(|s| s.base < gap).cloned().collect();
    assert_eq!(read_all(&log, 0), concat(&below));
    drop(log); // a crash right after
    let log = open(dir.path(), small_config()).await;
    assert_eq!(log.log_end_offset(), gap);
    let more = append_many(&log, 2, 1);
    assert_eq!(more[0].base, gap);
    let all: Vec<Stored> = below.into_iter().chain(more).collect();
    assert_eq!(read_all(&log, 0), concat(&all));
    log.close().await.unwrap();
}

#[tokio::test]
async fn a_follower_copies_a_compacted_leader_by_segments_and_batches() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let (leader, stored) = log_with_sealed(a.path(), small_config(), 5).await;
    let bases = segment_bases(a.path());
    // Segment 1 keeps nothing at its end (the follower lands in that gap), segment 3 nothing
    // at all.
    let first_of = |k: usize| stored.iter().position(|s| s.base == bases[k]).unwrap();
    let (s1, s2) = (first_of(1), first_of(2));
    let kept = compact(&leader, &stored, &bases, (1, 2), |i| i == s1 + 1);
    let kept = compact(&leader, &kept, &bases, (3, 4), |_| false);
    assert_eq!(
        leader.catch_up_plan(stored[s1 + 1].last + 1),
        CatchUp::ReadTo(bases[3]),
        "from the tail gap of segment 1: to the end of segment 2"
    );
    assert!(s2 > s1 + 2);
    let follower = open(b.path(), small_config()).await;
    let mut rounds = 0;
    while follower.log_end_offset() < leader.log_end_offset() {
        rounds += 1;
        assert!(rounds < 200, "no progress");
        let at = follower.log_end_offset();
        match leader.catch_up_plan(at) {
            CatchUp::WholeSegment => {
                let seg = leader.sealed_segment_at(at).unwrap();
                let mut inst = follower.begin_install(at).unwrap();
                let mut bytes = vec![0u8; seg.size_bytes as usize];
                seg.read_at(0, &mut bytes).unwrap();
                inst.write(&bytes).unwrap();
                let verified = follower.verify_install(inst).unwrap();
                follower.finish_install(verified).unwrap();
            }
            CatchUp::ReadTo(limit) => {
                let r = leader.read_replica_async(at, 300, limit).await.unwrap();
                assert!(r.batches > 0, "an empty read at {at} (limit {limit})");
                let mut end = at;
                for range in crate::split_batches(&r.data).unwrap() {
                    let mut batch = r.data[range].to_vec();
                    // Not at the fetch offset: a gap this log does not know about.
                    if end != at {
                        assert!(follower
                            .append_replica_after(&mut batch.clone(), at)
                            .is_err());
                    }
                    end = follower
                        .append_replica_after(&mut batch, end)
                        .unwrap()
                        .last_offset
                        + 1;
                }
            }
        }
    }
    assert_eq!(follower.log_end_offset(), leader.log_end_offset());
    assert_eq!(read_all(&follower, 0), concat(&kept));
    follower
        .wait_committed(follower.log_end_offset())
        .await
        .unwrap();
    drop(follower);
    let follower = open(b.path(), small_config()).await;
    assert_eq!(follower.log_end_offset(), leader.log_end_offset());
    assert_eq!(read_all(&follower, 0), concat(&kept));
    // The gaps it copied live in cleaned segments (installed ones, or its own made cleaned).
    let cleaned = segment_bases(b.path())
        .into_iter()
        .filter(|base| header_of(b.path(), *base).cleaned_to.is_some())
        .count();
    assert!(cleaned >= 2, "{cleaned} cleaned segments");
    // The strict replica append still refuses a gap.
    let mut next = batch_at(1, 10);
    crate::set_base_offset(&mut next, follower.log_end_offset() + 5);
    assert!(matches!(
        follower.append_replica(&mut next),
        Err(WalError::ReplicaGap { .. })
    ));
}

#[test]
fn a_scan_accepts_gaps_only_in_a_cleaned_segment_and_stops_at_an_overlap() {
    use crate::segment::{
        create_segment_file, frame_header, scan_segment, write_frame, SegmentHeader,
    };
    let dir = tempfile::tempdir().unwrap();
    // 102..=104 (a gap at the start), 110..=112 (a gap), then 112..=114 (an overlap).
    let write = |name: &str, header: SegmentHeader| {
        let file = create_segment_file(&dir.path().join(name), header).unwrap();
        for base in [102, 110, 112] {
            let mut b = crate::batch::test_util::batch(3, 20);
            crate::set_base_offset(&mut b, base);
            write_frame(&file, &frame_header(&b), &b).unwrap();
        }
        let len = file.metadata().unwrap().len();
        (file, len)
    };
    let cleaned = SegmentHeader {
        base_offset: 100,
        created_ms: 0,
        cleaned_to: Some(120),
    };
    let (file, len) = write("cleaned.log", cleaned);
    let out = scan_segment(&file, len, &cleaned, 0, i64::MAX).unwrap();
    assert_eq!((out.frames, out.next_offset), (2, 113));
    let (pos, problem) = out.problem.unwrap();
    assert_eq!(pos, out.valid_len);
    assert!(
        problem.to_string().contains("expected base offset 113"),
        "{problem}"
    );
    // A batch below the segment's base is refused too.
    let above = SegmentHeader {
        base_offset: 103,
        ..cleaned
    };
    let out = scan_segment(&file, len, &above, 0, i64::MAX).unwrap();
    assert_eq!(out.frames, 0);
    // A plain (version-1) segment has no gaps: not even at its start.
    let plain = SegmentHeader::plain(100, 0);
    let (file, len) = write("plain.log", plain);
    let out = scan_segment(&file, len, &plain, 0, i64::MAX).unwrap();
    assert_eq!((out.frames, out.next_offset), (0, 100));
    let problem = out.problem.unwrap().1.to_string();
    assert!(
        problem.contains("expected base offset 100, found 102"),
        "{problem}"
    );
    let from_102 = SegmentHeader::plain(102, 0);
    let out = scan_segment(&file, len, &from_102, 0, i64::MAX).unwrap();
    assert_eq!((out.frames, out.next_offset), (1, 105));
    let problem = out.problem.unwrap().1.to_string();
    assert!(
        problem.contains("expected base offset 105, found 110"),
        "{problem}"
    );
}

#[tokio::test]
async fn a_committed_replacement_with_a_damaged_swap_index_still_opens() {
    let dir = tempfile::tempdir().unwrap();
    let (log, stored) = log_with_sealed(dir.path(), small_config(), 4).await;
    let bases = segment_bases(dir.path());
    let end = log.log_end_offset();
    // Segments 1 and 2 merged, without their last two batches: a gap at the end.
    let in_range: Vec<&Stored> = stored
        .iter()
        .filter(|s| (bases[1]..bases[3]).contains(&s.base))
        .collect();
    let dropped: Vec<i64> = in_range[in_range.len() - 2..]
        .iter()
        .map(|s| s.base)
        .collect();
    let cleaned: Vec<&[u8]> = in_range[..in_range.len() - 2]
        .iter()
        .map(|s| s.bytes.as_slice())
        .collect();
    // Stop right after the commit point: `.log.swap` and both `.index.swap` files exist.
    log.crash_replace_at(4);
    assert!(log.replace_segments_with(&bases[1..3], &cleaned).is_err());
    drop(log);
    for kind in [FileKind::OffsetIndex, FileKind::TimeIndex] {
        let p =
            crate::swap::suffixed_path(&part_dir(dir.path()), PARTITION, bases[1], kind, "swap");
        assert!(p.exists(), "{}", p.display());
        std::fs::write(&p, b"damaged").unwrap();
    }
    // The swap segment's header names the range end (the index, its fallback, is unreadable):
    // both replaced segments go, and the gap at the end survives without any index.
    let log = open(dir.path(), small_config()).await;
    assert_eq!(leftovers(dir.path()), Vec::<String>::new());
    let mut want = bases.clone();
    want.remove(2);
    assert_eq!(segment_bases(dir.path()), want);
    assert_eq!(log.log_end_offset(), end);
    let kept: Vec<Stored> = stored
        .iter()
        .filter(|s| !dropped.contains(&s.base))
        .cloned()
        .collect();
    assert_eq!(read_all(&log, 0), concat(&kept));
    log.close().await.unwrap();
}

/// The header of segment `base` as it is on disk.
fn header_of(root: &Path, base: i64) -> crate::segment::SegmentHeader {
    let bytes = std::fs::read(log_path(root, base)).unwrap();
    crate::segment::SegmentHeader::decode(&bytes[..bytes.len().min(48)]).unwrap()
}

fn remove_index_files(root: &Path) {
    for b in segment_bases(root) {
        for kind in [FileKind::OffsetIndex, FileKind::TimeIndex] {
            let _ = std::fs::remove_file(index_path(root, b, kind));
        }
    }
}

#[tokio::test]
async fn a_cleaned_segment_header_survives_reopens_a_second_replacement_and_a_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (log, stored) = log_with_sealed(root, small_config(), 4).await;
    let bases = segment_bases(root);
    let end = log.log_end_offset();
    // Segment 1 loses its last two batches: a gap at its end only its header vouches for.
    let s2 = stored.iter().position(|s| s.base == bases[2]).unwrap();
    let kept = compact(&log, &stored, &bases, (1, 2), |i| i + 2 < s2);
    assert_eq!(header_of(root, bases[1]).cleaned_to, Some(bases[2]));
    // Segments nobody replaced keep the version-1 header.
    assert_eq!(header_of(root, bases[0]).cleaned_to, None);
    assert_eq!(header_of(root, bases[2]).cleaned_to, None);
    log.close().await.unwrap();
    for _ in 0..2 {
        remove_index_files(root);
        let log = open(root, small_config()).await;
        assert_eq!(segment_bases(root), bases);
        assert_eq!(log.log_end_offset(), end);
        assert_eq!(log.segments()[1].batches_end, stored[s2 - 2].base);
        assert_eq!(read_all(&log, 0), concat(&kept));
        log.close().await.unwrap();
        assert_eq!(header_of(root, bases[1]).cleaned_to, Some(bases[2]));
    }

    // Replaced again, merged with segment 2 (which loses its last batch): the new header
    // names the new range's end.
    let log = open(root, small_config()).await;
    let k3 = kept.iter().position(|s| s.base == bases[3]).unwrap();
    let kept = compact(&log, &kept, &bases, (1, 3), |i| i + 1 != k3);
    assert_eq!(header_of(root, bases[1]).cleaned_to, Some(bases[3]));
    log.close().await.unwrap();
    remove_index_files(root);
    let log = open(root, small_config()).await;
    let mut want = bases.clone();
    want.remove(2);
    assert_eq!(segment_bases(root), want);
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(read_all(&log, 0), concat(&kept));

    // A truncation at a batch boundary inside it moves its range end there: what is appended
    // after it is contiguous again, and a tail lost from that can no longer pass for a gap.
    let k1 = kept.iter().position(|s| s.base > bases[1]).unwrap() + 1;
    let cut = kept[k1].base;
    log.truncate_to(cut).unwrap();
    assert_eq!(header_of(root, bases[1]).cleaned_to, Some(cut));
    log.close().await.unwrap();
    remove_index_files(root);
    let log = open(root, small_config()).await;
    assert_eq!(segment_bases(root), bases[..2].to_vec());
    assert_eq!(log.log_end_offset(), cut);
    assert_eq!(read_all(&log, 0), concat(&kept[..k1]));
    log.close().await.unwrap();
}

#[tokio::test]
async fn a_damaged_cleaned_header_keeps_its_frames_but_no_longer_vouches_for_its_tail() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (log, stored) = log_with_sealed(root, small_config(), 3).await;
    let bases = segment_bases(root);
    // Segment 1 loses its last batch: a gap at its end.
    let s2 = stored.iter().position(|s| s.base == bases[2]).unwrap();
    let kept = compact(&log, &stored, &bases, (1, 2), |i| i + 1 < s2);
    log.close().await.unwrap();
    // Its range end is torn (as by an interrupted truncation's header rewrite).
    let path = log_path(root, bases[1]);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[30] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let log = open(root, small_config()).await;
    // Still a cleaned segment, frames intact, but the gap at its end is now a torn tail.
    assert_eq!(header_of(root, bases[1]).cleaned_to, Some(bases[1]));
    assert_eq!(segment_bases(root), bases[..2].to_vec());
    assert_eq!(log.log_end_offset(), stored[s2 - 1].base);
    let want: Vec<Stored> = kept.iter().filter(|s| s.base < bases[2]).cloned().collect();
    assert_eq!(read_all(&log, 0), concat(&want));
    log.close().await.unwrap();
}
