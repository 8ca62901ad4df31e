//! Transactions through the cleaner (Kafka's LogCleanerTest transaction cases): aborted
//! batches go, committed ones compact by key, markers stay while their transaction has a
//! batch and go after their delete horizon, a producer's state batch stays.

use super::*;

const ABORT: &str = "\0\0\0\0";
const COMMIT: &str = "\0\0\0\u{1}";

fn txn(producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Opts {
    Opts {
        producer_id,
        producer_epoch,
        base_sequence,
        transactional: true,
        ..Opts::default()
    }
}

fn marker(base: i64, kind: &str, producer_id: i64, producer_epoch: i16) -> Vec<u8> {
    let o = Opts {
        control: true,
        base_sequence: -1,
        ..txn(producer_id, producer_epoch, 0)
    };
    batch(base, &[(Some(kind), Some("\0\0\0\0\0\0"))], o)
}

/// (key, value, offset) of the data records of a log (control batches aside).
fn data(log: &[Vec<u8>]) -> Vec<(String, String, i64)> {
    let data: Vec<Vec<u8>> = log
        .iter()
        .filter(|b| !BatchHeader::parse(b).unwrap().is_control())
        .cloned()
        .collect();
    contents(&data)
        .into_iter()
        .map(|(k, v, o)| (k, v.unwrap_or_default(), o))
        .collect()
}

/// (offset, has a delete horizon) of each control batch.
fn markers(log: &[Vec<u8>]) -> Vec<(i64, bool)> {
    log.iter()
        .map(|b| BatchHeader::parse(b).unwrap())
        .filter(|h| h.is_control())
        .map(|h| (h.base_offset, h.delete_horizon_ms().is_some()))
        .collect()
}

fn clean_at(
    log: &[Vec<u8>],
    now: i64,
    p: &ActiveProducers,
    aborted: &[AbortedTxn],
) -> Vec<Vec<u8>> {
    clean_txn(log, 1 << 20, now, p, aborted, &mut FilterStats::default()).0
}

/// Producer 1 commits `a` (superseding a plain write) and later `b` (superseded by a plain
/// write); producer 2 aborts `a` and `b` between them.
fn interleaved() -> (Vec<Vec<u8>>, Vec<AbortedTxn>) {
    let log = vec![
        batch(0, &kv(&[("a", "plain")]), Opts::default()),
        batch(1, &kv(&[("a", "committed")]), txn(1, 0, 0)),
        batch(2, &kv(&[("a", "aborted"), ("b", "aborted")]), txn(2, 0, 0)),
        marker(4, ABORT, 2, 0),
        marker(5, COMMIT, 1, 0),
        batch(6, &kv(&[("b", "committed")]), txn(1, 0, 1)),
        marker(7, COMMIT, 1, 0),
        batch(8, &kv(&[("b", "plain")]), Opts::default()),
    ];
    let aborted = vec![AbortedTxn {
        producer_id: 2,
        first_offset: 2,
        last_offset: 4,
    }];
    (log, aborted)
}

#[test]
fn aborted_records_go_and_committed_ones_compact_by_key() {
    let (log, aborted) = interleaved();
    let none = ActiveProducers::new();
    let mut stats = FilterStats::default();
    let (out, _) = clean_txn(&log, 1 << 20, T0, &none, &aborted, &mut stats);
    assert_eq!(
        data(&out),
        vec![
            ("a".into(), "committed".into(), 1),
            ("b".into(), "plain".into(), 8)
        ]
    );
    assert_eq!((stats.aborted_removed, stats.superseded), (2, 2));
    // Each marker's transaction had a batch when the clean began: all stay, no horizon yet.
    assert_eq!(markers(&out), vec![(4, false), (5, false), (7, false)]);
    // A marker rebuilt transaction state could not tell from the map: the aborted records
    // never entered it, the committed ones did.
    let mut map = OffsetMap::new(1 << 16).unwrap();
    let mut walk = TxnTracker::new(aborted.clone());
    for b in &log {
        map.index_batch(b, 0, LIMIT, &mut walk).unwrap();
    }
    assert_eq!((map.get(b"a"), map.get(b"b")), (Some(1), Some(8)));
    // Without the index, the aborted records would have been taken for committed ones.
    let unaware = clean_at(&log, T0, &none, &[]);
    assert_eq!(data(&unaware)[0], ("a".into(), "aborted".into(), 2));
}

#[test]
fn markers_go_once_their_transaction_is_gone_and_their_horizon_passed() {
    let (log, aborted) = interleaved();
    let none = ActiveProducers::new();
    let once = clean_at(&log, T0, &none, &aborted);
    // Second clean: the abort marker (4) and the second commit marker (7) have no batch left:
    // they get a delete horizon. The first commit marker (5) still has its batch at 1.
    let twice = clean_at(&once, T0 + 1, &none, &aborted);
    assert_eq!(markers(&twice), vec![(4, true), (5, false), (7, true)]);
    let h = BatchHeader::parse(&twice[twice.len() - 2]).unwrap();
    assert_eq!(h.delete_horizon_ms(), Some(T0 + 1 + DAY_MS));
    let control = decode_all(&twice[twice.len() - 2]);
    assert_eq!(control.len(), 1, "the marker keeps its record");
    assert_eq!(control[0].timestamp, T0 + 7, "and its timestamp");
    // Before the horizon nothing more goes; at it, both markers do.
    let early = clean_at(&twice, T0 + DAY_MS, &none, &aborted);
    assert_eq!(markers(&early), markers(&twice));
    let mut stats = FilterStats::default();
    let (late, _) = clean_txn(
        &twice,
        1 << 20,
        T0 + 1 + DAY_MS,
        &none,
        &aborted,
        &mut stats,
    );
    assert_eq!(markers(&late), vec![(5, false)]);
    assert_eq!(stats.markers_removed, 2);
    assert_eq!(data(&late), data(&once));
    // Once `a` is written again, the committed batch at 1 goes, and its marker after it.
    let mut more = late.clone();
    more.push(batch(9, &kv(&[("a", "newer")]), Opts::default()));
    let out = clean_at(&more, T0 + 2 + DAY_MS, &none, &aborted);
    assert_eq!(markers(&out), vec![(5, false)]);
    let out = clean_at(&out, T0 + 3 + DAY_MS, &none, &aborted);
    assert_eq!(markers(&out), vec![(5, true)]);
    let out = clean_at(&out, T0 + 3 + 2 * DAY_MS, &none, &aborted);
    assert_eq!(markers(&out), vec![]);
}

#[test]
fn a_producers_last_batch_keeps_its_transaction_marker() {
    // Producer 7 aborts its only transaction: its batch is its state, so it stays, emptied,
    // and the abort marker stays with it (a rebuild then still finds the transaction ended).
    let log = vec![
        batch(0, &kv(&[("a", "aborted")]), txn(7, 3, 10)),
        marker(1, ABORT, 7, 3),
        batch(2, &kv(&[("b", "1")]), Opts::default()),
    ];
    let aborted = vec![AbortedTxn {
        producer_id: 7,
        first_offset: 0,
        last_offset: 1,
    }];
    let mut producers = ActiveProducers::new();
    for b in &log {
        producers.observe(&BatchHeader::parse(b).unwrap());
    }
    let mut out = log.clone();
    for i in 0..3 {
        out = clean_at(&out, T0 + i * 2 * DAY_MS, &producers, &aborted);
        assert_eq!(out.len(), 3);
        let h = BatchHeader::parse(&out[0]).unwrap();
        assert_eq!(
            (h.record_count, h.producer_epoch, h.base_sequence),
            (0, 3, 10)
        );
        assert_eq!(markers(&out), vec![(1, false)]);
    }
    // Once the producer expired, the empty batch goes, then its marker.
    let none = ActiveProducers::new();
    let out = clean_at(&out, T0 + 7 * DAY_MS, &none, &aborted);
    assert_eq!(markers(&out), vec![(1, false)]);
    let out = clean_at(&out, T0 + 8 * DAY_MS, &none, &aborted);
    assert_eq!(markers(&out), vec![(1, true)]);
    let out = clean_at(&out, T0 + 10 * DAY_MS, &none, &aborted);
    assert_eq!((markers(&out), data(&out).len()), (vec![], 1));
}

#[test]
fn a_marker_that_bumped_the_epoch_stays_as_the_producers_state() {
    // The coordinator aborted producer 4's transaction with a bumped epoch (a fenced
    // producer): the marker holds epoch 1, which a rebuild must fence epoch 0 with.
    let log = vec![
        batch(0, &kv(&[("a", "aborted")]), txn(4, 0, 0)),
        marker(1, ABORT, 4, 1),
        batch(2, &kv(&[("b", "1")]), Opts::default()),
    ];
    let aborted = vec![AbortedTxn {
        producer_id: 4,
        first_offset: 0,
        last_offset: 1,
    }];
    let mut producers = ActiveProducers::new();
    for b in &log {
        producers.observe(&BatchHeader::parse(b).unwrap());
    }
    let mut out = log.clone();
    for i in 0..3 {
        out = clean_at(&out, T0 + i * 2 * DAY_MS, &producers, &aborted);
    }
    // The aborted batch went (not the state); the marker stays whole, never stamped.
    assert_eq!(out.len(), 2);
    assert_eq!(out[0], log[1]);
}

#[test]
fn empty_control_batches_go() {
    let h = BatchHeader::parse(&marker(3, COMMIT, 1, 0)).unwrap();
    let empty = BatchHeader {
        record_count: 0,
        ..h
    }
    .encode(&[])
    .unwrap();
    let log = vec![
        batch(0, &kv(&[("a", "1")]), Opts::default()),
        empty,
        batch(4, &kv(&[("a", "2")]), Opts::default()),
    ];
    let out = clean_at(&log, T0, &ActiveProducers::new(), &[]);
    assert_eq!(markers(&out), vec![]);
    assert_eq!(data(&out), vec![("a".into(), "2".into(), 4)]);
}

#[test]
fn batches_past_the_pass_are_left_alone() {
    // A pass whose map ends at 1 (an open transaction from 2 on bounds the clean): the
    // transaction's batch and everything after stay as they are, and its key supersedes
    // nothing.
    let log = [
        batch(0, &kv(&[("a", "1")]), Opts::default()),
        batch(1, &kv(&[("a", "2")]), Opts::default()),
        batch(2, &kv(&[("a", "open")]), txn(5, 0, 0)),
        batch(3, &kv(&[("a", "3")]), Opts::default()),
    ];
    let mut map = OffsetMap::new(1 << 16).unwrap();
    let mut walk = TxnTracker::default();
    for b in &log[..2] {
        map.index_batch(b, 0, LIMIT, &mut walk).unwrap();
    }
    let ctx = FilterContext {
        map: &map,
        now_ms: T0,
        delete_retention_ms: DAY_MS,
        producers: &ActiveProducers::new(),
        max_decompressed_bytes: LIMIT,
    };
    let mut walk = TxnTracker::default();
    let mut stats = FilterStats::default();
    let fates: Vec<Filtered> = log
        .iter()
        .map(|b| filter_batch(b, &ctx, &mut walk, &mut stats).unwrap())
        .collect();
    assert_eq!(
        fates,
        vec![
            Filtered::Removed,
            Filtered::Unchanged,
            Filtered::Unchanged,
            Filtered::Unchanged
        ]
    );
}
