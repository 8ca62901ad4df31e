//! After producing: did the broker store what it acknowledged?
//!
//! `count` compares how far the high watermarks moved with what was acknowledged: every
//! acknowledged message must be accounted for (`acked <= stored`), and nothing may appear
//! from nowhere (`stored <= sent`). `full` reads the range back and checks each message by
//! its stamp: every acknowledged (task, seq) present, none twice, every payload intact.
//! Both assume nobody else writes to the topic during the run.
//!
//! Transactions (`--transactional-id`): every ended transaction wrote one marker per partition
//! it added, which takes an offset too, so `count` expects the acknowledged (committed)
//! messages plus those markers; `full` reads back with read_committed, so only what was
//! committed (and whatever aborted data the answer lists as aborted) comes back.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;

use crate::args::Verify;
use crate::cluster::{end_offsets, TopicLayout};
use crate::driver::SlotOutcome;
use crate::fetch::{fetch, Isolation};
use crate::payload;
use crate::report::VerifyReport;
use crate::workload::Bits;

/// Upper bound on reading one leader's share back.
const READ_BACK_TIMEOUT: Duration = Duration::from_secs(300);

/// What the run leads the verification to expect besides the messages themselves.
#[derive(Debug, Clone, Copy, Default)]
pub struct Expect {
    /// acks=0: nothing was acknowledged, so a loss cannot be told from a failure.
    pub acks_none: bool,
    /// Transaction markers written: (certainly, at most); (0, 0) without transactions.
    pub markers: (u64, u64),
}

impl Expect {
    fn transactional(&self) -> bool {
        self.markers.1 > 0
    }
}

pub async fn verify(
    mode: Verify,
    layout: &TopicLayout,
    before: &BTreeMap<i32, i64>,
    tasks: &[SlotOutcome],
    expect: Expect,
    timeout: Duration,
) -> Result<VerifyReport> {
    if mode == Verify::None {
        return Ok(VerifyReport {
            mode: "none".into(),
            ok: true,
            detail: "not checked (--verify none)".into(),
            ..Default::default()
        });
    }
    let after = settled_end_offsets(layout, before, tasks, expect).await?;
    let mut r = count_check(mode, before, &after, tasks, expect);
    if mode == Verify::Count {
        return Ok(r);
    }
    let count_ok = r.ok;
    let isolation = if expect.transactional() {
        Isolation::ReadCommitted
    } else {
        Isolation::ReadUncommitted
    };
    let tally = read_back(layout, before, &after, tasks, timeout, isolation).await?;
    let mut missing = 0u64;
    for (t, s) in tasks.iter().zip(&tally.seen) {
        for seq in 0..t.sent {
            if t.acked_seqs.get(seq) && !s.get(seq) {
                missing += 1;
            }
        }
    }
    let found: u64 = tally.seen.iter().map(Bits::count).sum();
    r.missing = missing;
    r.duplicates = tally.duplicates;
    r.corrupt = tally.corrupt + tally.foreign;
    r.ok = count_ok && missing == 0 && r.duplicates == 0 && r.corrupt == 0;
    r.detail += &format!(
        "; read back {found} intact messages: {missing} acknowledged missing, {} duplicated, {} corrupt or foreign",
        r.duplicates, r.corrupt
    );
    Ok(r)
}

/// How long the last transaction's markers may take to land: EndTxn is answered once the
/// coordinator logged its decision, and the markers are written after that (as in Kafka).
const MARKERS_TIMEOUT: Duration = Duration::from_secs(10);

/// The partitions' end offsets; with transactions, once they include every marker expected
/// (polled until `MARKERS_TIMEOUT`, after which the count check reports what is missing).
async fn settled_end_offsets(
    layout: &TopicLayout,
    before: &BTreeMap<i32, i64>,
    tasks: &[SlotOutcome],
    expect: Expect,
) -> Result<BTreeMap<i32, i64>> {
    let deadline = tokio::time::Instant::now() + MARKERS_TIMEOUT;
    let acked: u64 = tasks.iter().map(|t| t.acked).sum();
    loop {
        let after = end_offsets(layout).await?;
        let stored: u64 = after
            .iter()
            .map(|(p, e)| (e - before.get(p).copied().unwrap_or(0)).max(0) as u64)
            .sum();
        if !expect.transactional()
            || stored >= acked + expect.markers.0
            || tokio::time::Instant::now() > deadline
        {
            return Ok(after);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `count`: how far the high watermarks moved against what was sent and acknowledged.
fn count_check(
    mode: Verify,
    before: &BTreeMap<i32, i64>,
    after: &BTreeMap<i32, i64>,
    tasks: &[SlotOutcome],
    expect: Expect,
) -> VerifyReport {
    let acks_none = expect.acks_none;
    let (markers_min, markers_max) = expect.markers;
    let sent: u64 = tasks.iter().map(|t| t.sent).sum();
    let acked: u64 = tasks.iter().map(|t| t.acked).sum();
    let stored: u64 = after
        .iter()
        .map(|(p, e)| (e - before.get(p).copied().unwrap_or(0)).max(0) as u64)
        .sum();
    let mut r = VerifyReport {
        mode: if mode == Verify::Full {
            "full"
        } else {
            "count"
        }
        .into(),
        stored: Some(stored),
        ..Default::default()
    };
    // With acks=0 nothing is acknowledged: only "no more than sent" can be checked.
    let floor = if acks_none { 0 } else { acked } + markers_min;
    let ceiling = sent + markers_max;
    r.missing = floor.saturating_sub(stored);
    r.detail = format!(
        "high watermarks advanced by {stored}; sent {sent}, acknowledged {acked}{}{}",
        if acks_none {
            " (acks=0: a loss cannot be told from a failure)"
        } else {
            ""
        },
        if expect.transactional() {
            format!(", transaction markers {markers_min}..={markers_max}")
        } else {
            String::new()
        }
    );
    if stored < floor {
        r.detail += &format!("; {} acknowledged messages are not stored", floor - stored);
    }
    if stored > ceiling {
        r.detail += &format!("; {} more messages stored than were sent", stored - ceiling);
    }
    r.ok = stored >= floor && stored <= ceiling;
    r
}

/// What reading the produced range back found, message by message.
struct Tally {
    /// Per task, the sequence numbers read back.
    seen: Vec<Bits>,
    duplicates: u64,
    /// Values that are not a bench stamp.
    corrupt: u64,
    /// Stamps of a task or sequence this run did not send.
    foreign: u64,
}

impl Tally {
    fn record(&mut self, value: Option<&[u8]>, tasks: &[SlotOutcome]) {
        match value.and_then(payload::parse) {
            None => self.corrupt += 1,
            Some(s) => match self.seen.get_mut(s.task as usize) {
                Some(bits) if s.seq < tasks[s.task as usize].sent => {
                    if bits.set(s.seq) {
                        self.duplicates += 1;
                    }
                }
                _ => self.foreign += 1,
            },
        }
    }
}

/// `full`: reads `[before, after)` of every partition from its leader.
async fn read_back(
    layout: &TopicLayout,
    before: &BTreeMap<i32, i64>,
    after: &BTreeMap<i32, i64>,
    tasks: &[SlotOutcome],
    timeout: Duration,
    isolation: Isolation,
) -> Result<Tally> {
    let mut tally = Tally {
        seen: vec![Bits::default(); tasks.len()],
        duplicates: 0,
        corrupt: 0,
        foreign: 0,
    };
    for (broker, parts) in layout.by_leader() {
        let conn = &layout.leaders[&broker];
        let mut positions: BTreeMap<i32, i64> = parts
            .iter()
            .filter(|p| before[p] < after[p])
            .map(|p| (*p, before[p]))
            .collect();
        let deadline = tokio::time::Instant::now() + READ_BACK_TIMEOUT;
        while !positions.is_empty() {
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!(
                    "reading back partitions {:?} made no progress within {READ_BACK_TIMEOUT:?}",
                    positions
                );
            }
            let got = fetch(
                conn,
                &layout.topic,
                &positions,
                Duration::from_millis(100),
                timeout,
                isolation,
            )
            .await?;
            for pf in got {
                let end = after[&pf.partition];
                let mut progressed = false;
                for rec in pf.records {
                    if rec.offset >= end {
                        break;
                    }
                    if rec.offset < positions[&pf.partition] {
                        continue;
                    }
                    progressed = true;
                    positions.insert(pf.partition, rec.offset + 1);
                    tally.record(rec.value.as_deref(), tasks);
                }
                // Past transaction markers, which `records` leaves out.
                if let Some(next) = pf.next_offset.map(|n| n.min(end)) {
                    if next > positions[&pf.partition] {
                        progressed = true;
                        positions.insert(pf.partition, next);
                    }
                }
                if positions[&pf.partition] >= end {
                    positions.remove(&pf.partition);
                } else if !progressed && pf.high_watermark < end {
                    anyhow::bail!(
                        "partition {} high watermark went back from {end} to {}",
                        pf.partition,
                        pf.high_watermark
                    );
                }
            }
        }
    }
    Ok(tally)
}
