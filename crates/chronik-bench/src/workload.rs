//! Shared state of a run (live counters, the clock), the roundtrip consumer and the consume
//! mode. The produce load itself is in `driver.rs`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use hdrhistogram::Histogram;
use tokio::time::Instant;

use crate::args::RunArgs;
use crate::cluster::TopicLayout;
use crate::fetch::{fetch, Isolation};
use crate::payload;
use crate::report::{new_histogram, record};

/// Counters the progress line reads while the run goes on.
#[derive(Default)]
pub struct Live {
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub failed: AtomicU64,
    pub bytes: AtomicU64,
}

/// A growable bit set over one task's sequence numbers.
#[derive(Default, Clone)]
pub struct Bits(Vec<u64>);

impl Bits {
    pub fn set(&mut self, i: u64) -> bool {
        let (w, b) = ((i / 64) as usize, i % 64);
        if w >= self.0.len() {
            self.0.resize(w + 1, 0);
        }
        let was = self.0[w] & (1 << b) != 0;
        self.0[w] |= 1 << b;
        was
    }
    pub fn get(&self, i: u64) -> bool {
        let (w, b) = ((i / 64) as usize, i % 64);
        self.0.get(w).is_some_and(|x| x & (1 << b) != 0)
    }
    pub fn count(&self) -> u64 {
        self.0.iter().map(|w| u64::from(w.count_ones())).sum()
    }
}

pub struct Timing {
    /// The clock origin that payload stamps count microseconds from.
    pub origin: Instant,
    pub measure_start: Instant,
    /// None with --messages.
    pub end: Option<Instant>,
}

impl Timing {
    pub fn new(args: &RunArgs) -> Timing {
        let origin = Instant::now();
        let measure_start = origin + Duration::from_secs(args.warmup);
        let end = match args.messages {
            Some(_) => None,
            None => Some(measure_start + Duration::from_secs(args.duration)),
        };
        Timing {
            origin,
            measure_start,
            end,
        }
    }
    pub fn us_since_origin(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.origin).as_micros() as u64
    }
}

/// The consumer half of a roundtrip run: reads from `from` onwards and times each bench
/// message from its send stamp to the moment a fetch returned it.
pub struct RoundtripConsumer {
    pub seen: Arc<AtomicU64>,
    /// Set to the number of acknowledged messages once producing ends.
    pub target: Arc<AtomicU64>,
    handles: Vec<tokio::task::JoinHandle<Result<Histogram<u64>>>>,
}

impl RoundtripConsumer {
    pub fn start(
        layout: &TopicLayout,
        from: &BTreeMap<i32, i64>,
        timing: Arc<Timing>,
        timeout: Duration,
    ) -> RoundtripConsumer {
        let seen = Arc::new(AtomicU64::new(0));
        let target = Arc::new(AtomicU64::new(u64::MAX));
        let mut handles = Vec::new();
        for (broker, parts) in layout.by_leader() {
            let conn = layout.leaders[&broker].clone();
            let topic = layout.topic.clone();
            let mut positions: BTreeMap<i32, i64> = parts.iter().map(|p| (*p, from[p])).collect();
            let (seen, target, timing) = (seen.clone(), target.clone(), timing.clone());
            handles.push(tokio::spawn(async move {
                let mut hist = new_histogram();
                while seen.load(Ordering::Relaxed) < target.load(Ordering::Relaxed) {
                    let got = fetch(
                        &conn,
                        &topic,
                        &positions,
                        Duration::from_millis(100),
                        timeout,
                        Isolation::ReadUncommitted,
                    )
                    .await?;
                    let now_us = timing.us_since_origin(Instant::now());
                    let start_us = timing.us_since_origin(timing.measure_start);
                    for pf in got {
                        for r in pf.records {
                            // Move past every record, ours or not, or a foreign record would
                            // be fetched again forever.
                            positions.insert(pf.partition, r.offset + 1);
                            let Some(stamp) = r.value.as_deref().and_then(payload::parse) else {
                                continue;
                            };
                            if stamp.sent_us >= start_us {
                                record(&mut hist, now_us.saturating_sub(stamp.sent_us));
                            }
                            seen.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Ok(hist)
            }));
        }
        RoundtripConsumer {
            seen,
            target,
            handles,
        }
    }

    /// Waits until every acknowledged message was read, or `grace` has passed.
    pub async fn finish(self, acked: u64, grace: Duration) -> Result<(Histogram<u64>, u64)> {
        self.target.store(acked, Ordering::Relaxed);
        let deadline = Instant::now() + grace;
        let mut hist = new_histogram();
        for h in self.handles {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, h).await {
                Ok(Ok(Ok(part))) => {
                    let _ = hist.add(&part);
                }
                Ok(Ok(Err(e))) => return Err(e),
                Ok(Err(e)) => bail!("roundtrip consumer died: {e}"),
                Err(_) => bail!(
                    "the consumer read {} of {acked} acknowledged messages within {grace:?} after producing ended",
                    self.seen.load(Ordering::Relaxed)
                ),
            }
        }
        Ok((hist, self.seen.load(Ordering::Relaxed)))
    }
}

/// What the consume mode read.
pub struct ConsumeOutcome {
    pub hist: Histogram<u64>,
    pub messages: u64,
    pub bytes: u64,
    pub last_done: Instant,
}

/// Reads the topic from its log start to the end offsets it had when the run began (or
/// until --duration or --messages), timing each Fetch.
pub async fn consume(
    args: &RunArgs,
    layout: &TopicLayout,
    from: BTreeMap<i32, i64>,
    to: BTreeMap<i32, i64>,
    live: Arc<Live>,
    timing: Arc<Timing>,
) -> Result<ConsumeOutcome> {
    let total: i64 = to.iter().map(|(p, e)| e - from[p]).sum();
    if total <= 0 {
        bail!(
            "topic {} holds no messages to consume; produce some first",
            layout.topic
        );
    }
    let limit = args.messages.unwrap_or(u64::MAX);
    let timeout = Duration::from_millis(args.request_timeout_ms);
    let mut handles = Vec::new();
    for (broker, parts) in layout.by_leader() {
        let conn = layout.leaders[&broker].clone();
        let topic = layout.topic.clone();
        let mut positions: BTreeMap<i32, i64> = parts
            .iter()
            .filter(|p| from[p] < to[p])
            .map(|p| (*p, from[p]))
            .collect();
        let ends: BTreeMap<i32, i64> = parts.iter().map(|p| (*p, to[p])).collect();
        let (live, timing) = (live.clone(), timing.clone());
        handles.push(tokio::spawn(async move {
            let mut o = ConsumeOutcome {
                hist: new_histogram(),
                messages: 0,
                bytes: 0,
                last_done: Instant::now(),
            };
            while !positions.is_empty() {
                let start = Instant::now();
                if timing.end.is_some_and(|e| start >= e)
                    || live.acked.load(Ordering::Relaxed) >= limit
                {
                    break;
                }
                let got = fetch(
                    &conn,
                    &topic,
                    &positions,
                    Duration::from_millis(500),
                    timeout,
                    Isolation::ReadUncommitted,
                )
                .await?;
                let done = Instant::now();
                o.last_done = done;
                let measured = start >= timing.measure_start;
                if measured {
                    record(&mut o.hist, (done - start).as_micros() as u64);
                }
                for pf in got {
                    let end = ends[&pf.partition];
                    for r in pf.records {
                        if r.offset >= end {
                            break;
                        }
                        let len = r.value.as_ref().map_or(0, |v| v.len()) as u64;
                        live.acked.fetch_add(1, Ordering::Relaxed);
                        live.bytes.fetch_add(len, Ordering::Relaxed);
                        if measured {
                            o.messages += 1;
                            o.bytes += len;
                        }
                    }
                    // Past the last whole batch, transaction markers (no record) included.
                    if let Some(next) = pf.next_offset {
                        positions.insert(pf.partition, next.min(end));
                    }
                    if positions.get(&pf.partition).is_some_and(|p| *p >= end) {
                        positions.remove(&pf.partition);
                    }
                }
            }
            Ok::<_, anyhow::Error>(o)
        }));
    }
    let mut all = ConsumeOutcome {
        hist: new_histogram(),
        messages: 0,
        bytes: 0,
        last_done: timing.measure_start,
    };
    for h in handles {
        let o = h.await??;
        let _ = all.hist.add(&o.hist);
        all.messages += o.messages;
        all.bytes += o.bytes;
        all.last_done = all.last_done.max(o.last_done);
    }
    Ok(all)
}
