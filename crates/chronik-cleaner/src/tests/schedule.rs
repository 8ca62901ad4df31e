//! The cleanable range, dirty ratio and choice of log, against Kafka's LogCleanerManager
//! rules (LogCleanerManagerTest's cases, in facts instead of files).

use crate::config::CompactionConfig;
use crate::schedule::*;

const NOW: i64 = 1_700_000_000_000;
const MIN: i64 = 60_000;

/// Segments of 100 offsets and 1000 bytes each; the last is active. Segment i's records are
/// `age_min[i]` minutes old.
fn segments(age_min: &[i64]) -> Vec<SegmentFacts> {
    let n = age_min.len();
    age_min
        .iter()
        .enumerate()
        .map(|(i, age)| SegmentFacts {
            base_offset: 100 * i as i64,
            size_bytes: 1000,
            largest_timestamp_ms: NOW - age * MIN,
            first_batch_timestamp_ms: NOW - (age + 1) * MIN,
            is_active: i + 1 == n,
        })
        .collect()
}

fn log(segs: &[SegmentFacts], cleaned_up_to: Option<i64>) -> LogFacts<'_> {
    let end = segs.last().map_or(0, |s| s.base_offset + 50);
    LogFacts {
        segments: segs,
        log_start_offset: 0,
        log_end_offset: end,
        last_stable_offset: end,
        cleaned_up_to,
    }
}

#[test]
fn the_active_segment_is_never_cleanable() {
    let segs = segments(&[50, 40, 30, 0]);
    let r = cleanable_range(&log(&segs, None), &CompactionConfig::default(), NOW);
    assert_eq!(
        r,
        CleanableRange {
            first_dirty_offset: 0,
            first_uncleanable_offset: 300,
            checkpoint_reset: false
        }
    );
    // A log of only its active segment has nothing to clean.
    let one = segments(&[0]);
    let r = cleanable_range(&log(&one, None), &CompactionConfig::default(), NOW);
    assert_eq!((r.first_dirty_offset, r.first_uncleanable_offset), (0, 0));
}

#[test]
fn nothing_past_the_last_stable_offset_is_cleanable() {
    let segs = segments(&[50, 40, 30, 0]);
    let mut facts = log(&segs, None);
    facts.last_stable_offset = 150;
    let r = cleanable_range(&facts, &CompactionConfig::default(), NOW);
    assert_eq!(r.first_uncleanable_offset, 150);
    // Kafka's ratio counts whole segments: the one holding 150 is not cleanable.
    let d = dirtiness(&segs, &r);
    assert_eq!((d.first_uncleanable_offset, d.cleanable_bytes), (100, 1000));
}

#[test]
fn min_compaction_lag_holds_back_newer_segments() {
    let segs = segments(&[50, 40, 5, 0]);
    let config = CompactionConfig {
        min_compaction_lag_ms: 10 * MIN,
        ..CompactionConfig::default()
    };
    let r = cleanable_range(&log(&segs, None), &config, NOW);
    assert_eq!(
        r.first_uncleanable_offset, 200,
        "segment 2 is 5 min old, under the 10 min lag"
    );
    let config = CompactionConfig {
        min_compaction_lag_ms: 60 * MIN,
        ..config
    };
    let r = cleanable_range(&log(&segs, None), &config, NOW);
    assert_eq!(r.first_uncleanable_offset, 0, "nothing is old enough");
}

#[test]
fn a_checkpoint_outside_the_log_resets_to_its_start() {
    let segs = segments(&[50, 40, 30, 0]);
    let mut facts = log(&segs, Some(10_000));
    let r = cleanable_range(&facts, &CompactionConfig::default(), NOW);
    assert_eq!((r.first_dirty_offset, r.checkpoint_reset), (0, true));
    facts.log_start_offset = 100;
    facts.cleaned_up_to = Some(50);
    let r = cleanable_range(&facts, &CompactionConfig::default(), NOW);
    assert_eq!((r.first_dirty_offset, r.checkpoint_reset), (100, true));
    facts.cleaned_up_to = Some(200);
    let r = cleanable_range(&facts, &CompactionConfig::default(), NOW);
    assert_eq!((r.first_dirty_offset, r.checkpoint_reset), (200, false));
}

#[test]
fn dirty_ratio_is_cleanable_over_total_bytes() {
    let segs = segments(&[50, 40, 30, 20, 0]);
    // Cleaned up to the start of segment 1: 1000 clean bytes, 3000 cleanable.
    let a = assess(&log(&segs, Some(100)), &CompactionConfig::default(), NOW);
    assert_eq!(
        (a.dirtiness.clean_bytes, a.dirtiness.cleanable_bytes),
        (1000, 3000)
    );
    assert_eq!(a.dirtiness.ratio, 0.75);
    assert!(a.is_cleanable());
    // Cleaned up to segment 3: 3000 clean, 1000 cleanable: 0.25 is under 0.5.
    let a = assess(&log(&segs, Some(300)), &CompactionConfig::default(), NOW);
    assert_eq!(a.dirtiness.ratio, 0.25);
    assert!(!a.is_cleanable());
    // The ratio must be strictly above the minimum.
    let config = CompactionConfig {
        min_cleanable_dirty_ratio: 0.25,
        ..CompactionConfig::default()
    };
    assert!(!assess(&log(&segs, Some(300)), &config, NOW).is_cleanable());
}

#[test]
fn max_compaction_lag_forces_a_clean_whatever_the_ratio() {
    let segs = segments(&[50, 40, 30, 20, 0]);
    let config = CompactionConfig {
        max_compaction_lag_ms: 30 * MIN,
        min_cleanable_dirty_ratio: 0.9,
        ..CompactionConfig::default()
    };
    let facts = log(&segs, Some(300));
    let a = assess(&facts, &config, NOW);
    // Segment 3's first batch is 21 minutes old: not overdue.
    assert_eq!(a.compaction_delay_ms, 0);
    assert!(!a.is_cleanable());
    let facts = log(&segs, Some(200));
    let a = assess(&facts, &config, NOW);
    // Segment 2's first batch is 31 minutes old: one minute overdue.
    assert_eq!(a.compaction_delay_ms, MIN);
    assert!(a.dirtiness.ratio < 0.9 && a.is_cleanable());
    assert_eq!(
        max_compaction_delay_ms(&segs, 200, &CompactionConfig::default(), NOW),
        0
    );
}

#[test]
fn the_filthiest_cleanable_log_is_picked() {
    let segs = segments(&[50, 40, 30, 20, 0]);
    let config = CompactionConfig::default();
    let at = |checkpoint| assess(&log(&segs, Some(checkpoint)), &config, NOW);
    let picked = pick_filthiest([("p0", at(300)), ("p1", at(100)), ("p2", at(200))]);
    assert_eq!(picked.map(|(id, _)| id), Some("p1"));
    assert_eq!(pick_filthiest([("p0", at(300))]).map(|(id, _)| id), None);
    // An overdue log is a candidate but ranks by its ratio like the others.
    let overdue = CompactionConfig {
        max_compaction_lag_ms: MIN,
        ..config
    };
    let late = assess(&log(&segs, Some(300)), &overdue, NOW);
    assert!(late.compaction_delay_ms > 0);
    assert_eq!(
        pick_filthiest([("late", late)]).map(|(id, _)| id),
        Some("late")
    );
    assert_eq!(
        pick_filthiest([("late", late), ("p1", at(100))]).map(|(id, _)| id),
        Some("p1")
    );
    // Exactly at its minimum ratio (0.5) a log is not dirty enough.
    assert!(!at(200).is_cleanable());
    // An empty log is never picked.
    let empty: Vec<SegmentFacts> = Vec::new();
    let a = assess(&log(&empty, None), &config, NOW);
    assert_eq!(pick_filthiest([("empty", a)]).map(|(id, _)| id), None);
}

#[test]
fn max_compaction_lag_shortens_the_active_segments_life() {
    let config = CompactionConfig {
        max_compaction_lag_ms: 1000,
        ..CompactionConfig::default()
    };
    assert_eq!(max_segment_ms(&config, true), 1000);
    assert_eq!(max_segment_ms(&config, false), config.segment_ms);
    assert_eq!(
        max_segment_ms(&CompactionConfig::default(), true),
        604_800_000
    );
}

fn sized(sizes: &[u64], bases: &[i64]) -> Vec<SegmentFacts> {
    sizes
        .iter()
        .zip(bases)
        .enumerate()
        .map(|(i, (size, base))| SegmentFacts {
            base_offset: *base,
            size_bytes: *size,
            largest_timestamp_ms: NOW,
            first_batch_timestamp_ms: NOW,
            is_active: i + 1 == sizes.len(),
        })
        .collect()
}

#[test]
fn cleaned_segments_are_grouped_up_to_segment_bytes() {
    let segs = sized(
        &[300, 300, 500, 100, 900, 50],
        &[0, 100, 200, 300, 400, 500],
    );
    // 300+300 fit 1000, +500 does not; 500+100 fit, +900 does not; 900 alone; active never.
    assert_eq!(group_segments(&segs, 1000, 500), vec![0..2, 2..4, 4..5]);
    // Only segments below the pass's end are rewritten.
    assert_eq!(group_segments(&segs, 1000, 250), vec![0..2, 2..3]);
    // A group never spans more offsets than a 32-bit delta holds.
    let far = sized(
        &[10, 10, 10],
        &[0, i64::from(i32::MAX), i64::from(i32::MAX) + 10],
    );
    assert_eq!(group_segments(&far, 1000, i64::MAX), vec![0..1, 1..2]);
}
