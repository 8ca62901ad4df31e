//! The produce load: `--concurrency` producers ("slots"), each with exactly one message in
//! flight, driven by one task.
//!
//! A slot's next message is made the moment its previous one is answered (or when its
//! `--rate-limit` turn comes), so a slot behaves like an application thread that sends and
//! waits. Running all slots in one task instead of one task each keeps the client cheap: no
//! task wake-up, channel or oneshot per message, which on 2 cores leaves the CPU to the broker
//! under test. Messages to one broker are coalesced the way a Kafka producer does: at most one
//! batch per partition per request (`--batch-size` value bytes), a request leaves when a batch
//! is full, when the oldest message has lingered `--linger-ms`, or at once with linger 0, and
//! at most `--max-in-flight` requests are outstanding per connection. Requests on a connection
//! are written in order, which keeps idempotent sequence numbers in order.
//!
//! With `--transactional-id` the messages go in transactions of `--messages-per-transaction`
//! (txn.rs): a slot whose message would overfill the open transaction waits ("parked") until
//! it commits; once every message of the transaction is answered, the driver ends it (EndTxn)
//! and begins the next (AddPartitionsToTxn) before anything else is sent. A message is
//! acknowledged when its transaction commits, so its latency runs from send to commit.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};
use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{InitProducerIdRequest, ProduceRequest, ProduceResponse};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::client::Connection;
use crate::cluster::{topic_name, TopicLayout};
use crate::payload::{self, Stamp};
use crate::report::{error_name, new_histogram, record};
use crate::txn::{Transactions, TxnReport};
use crate::workload::{Bits, Live, Timing};

pub struct DriverConfig {
    pub acks: i16,
    pub compression: Compression,
    pub linger: Duration,
    pub batch_size: usize,
    pub max_in_flight: usize,
    pub idempotence: bool,
    pub request_timeout: Duration,
    pub concurrency: u32,
    pub message_size: usize,
    /// `--keys`: how many distinct keys the messages cycle through; None sends no key.
    pub keys: Option<u64>,
    /// Messages per second over all slots; 0 is unlimited.
    pub rate: u64,
    /// Total messages to send (`--messages`); None runs until `Timing::end`.
    pub budget: Option<u64>,
}

/// The key of message `seq` of `slot` among `n` keys: consecutive messages of a slot take
/// different keys and the slots are spread over them, so every key gets new versions evenly.
fn message_key(slot: u32, seq: u64, n: u64) -> bytes::Bytes {
    let k = u64::from(slot).wrapping_mul(1_000_003).wrapping_add(seq) % n;
    bytes::Bytes::from(format!("key-{k}"))
}

/// What one slot did; verification reads `sent` and `acked_seqs`.
#[derive(Default)]
pub struct SlotOutcome {
    /// Sequence numbers 0..sent were sent.
    pub sent: u64,
    pub acked: u64,
    pub failed: u64,
    pub acked_seqs: Bits,
}

pub struct ProduceOutcome {
    pub slots: Vec<SlotOutcome>,
    /// Send → acknowledgement of each message sent in the measured window.
    pub hist: Histogram<u64>,
    pub measured: u64,
    pub measured_bytes: u64,
    pub errors: BTreeMap<String, u64>,
    /// When the last answer arrived.
    pub last_done: Instant,
    /// What the transactions did (`--transactional-id` only).
    pub txn: Option<TxnReport>,
}

/// The open transaction, as the driver fills it.
#[derive(Default)]
struct OpenTxn {
    /// AddPartitionsToTxn was sent (and EndTxn not yet).
    begun: bool,
    /// Messages made in it so far (at most `per_txn`).
    made: u64,
    /// Acknowledged by their partition, waiting for the commit.
    held: Vec<Msg>,
    /// Slots waiting for the next transaction.
    parked: Vec<u32>,
    /// Why it must be aborted: a message of it failed, or beginning it did.
    failed: Option<String>,
}

struct Msg {
    slot: u32,
    seq: u64,
    partition: i32,
    value: Bytes,
    sent_at: Instant,
}

/// One leader broker: its connection and what waits to be sent to it.
struct Leader {
    conn: Connection,
    pending: VecDeque<Msg>,
    /// Value bytes pending per partition, to tell when a batch is full.
    pending_bytes: HashMap<i32, usize>,
    in_flight: usize,
    next_sequence: HashMap<i32, i32>,
}

/// An answered (or failed) request: which leader, and what it carried.
type Done = (i32, Vec<Msg>, Result<Option<ProduceResponse>, String>);

/// Runs the load. `txns`: a transactional producer, initialized (its coordinator found, its
/// producer id given) before the clock started; None produces plain or idempotent batches.
pub async fn produce(
    layout: &TopicLayout,
    cfg: DriverConfig,
    txns: Option<Transactions>,
    live: Arc<Live>,
    timing: Arc<Timing>,
) -> Result<ProduceOutcome> {
    let (producer_id, producer_epoch) = match &txns {
        Some(t) => (t.producer_id, t.producer_epoch),
        None => init_producer(layout, &cfg).await?,
    };
    let mut d = Driver {
        topic: layout.topic.clone(),
        partitions: layout.partitions.clone(),
        leader_of: layout.leader_of.clone(),
        leaders: layout
            .leaders
            .iter()
            .map(|(b, c)| {
                let parts = layout.leader_of.iter().filter(|(_, l)| *l == b);
                (
                    *b,
                    Leader {
                        conn: c.clone(),
                        pending: VecDeque::new(),
                        pending_bytes: HashMap::new(),
                        in_flight: 0,
                        next_sequence: parts.map(|(p, _)| (*p, 0)).collect(),
                    },
                )
            })
            .collect(),
        slots: (0..cfg.concurrency)
            .map(|_| SlotOutcome::default())
            .collect(),
        due: BinaryHeap::new(),
        requests: JoinSet::new(),
        budget: cfg.budget,
        producer_id,
        producer_epoch,
        txns,
        open: OpenTxn::default(),
        cfg,
        live,
        timing,
        out_hist: new_histogram(),
        measured: 0,
        measured_bytes: 0,
        errors: BTreeMap::new(),
        last_done: Instant::now(),
    };
    d.run().await;
    Ok(ProduceOutcome {
        slots: d.slots,
        hist: d.out_hist,
        measured: d.measured,
        measured_bytes: d.measured_bytes,
        errors: d.errors,
        last_done: d.last_done,
        txn: d.txns.map(Transactions::finish),
    })
}

/// Errors of InitProducerId that go away when asked again: the broker's producer-id manager
/// or coordinator is still loading (Apache Kafka right after start), or the request timed out.
fn init_producer_retriable(code: i16) -> bool {
    matches!(code, 7 | 14 | 15)
}

/// How long InitProducerId is retried while the broker answers a retriable error.
const INIT_PRODUCER_TIMEOUT: Duration = Duration::from_secs(30);

async fn init_producer(layout: &TopicLayout, cfg: &DriverConfig) -> Result<(i64, i16)> {
    if !cfg.idempotence {
        return Ok((-1, -1));
    }
    let Some(conn) = layout.leaders.values().next() else {
        bail!("topic has no leaders")
    };
    let deadline = Instant::now() + INIT_PRODUCER_TIMEOUT;
    loop {
        // An idempotent (not transactional) producer sends a null transactional id, as the
        // Java client does. kafka-protocol's default is the empty string, which Apache Kafka
        // refuses with INVALID_REQUEST (an empty transactional id is not a valid one).
        let resp = conn
            .send_timeout(
                InitProducerIdRequest::default()
                    .with_transactional_id(None)
                    .with_transaction_timeout_ms(60_000)
                    .with_producer_id((-1).into())
                    .with_producer_epoch(-1),
                cfg.request_timeout,
            )
            .await?;
        if resp.error_code == 0 {
            return Ok((resp.producer_id.0, resp.producer_epoch));
        }
        if !init_producer_retriable(resp.error_code) || Instant::now() > deadline {
            bail!("InitProducerId failed with {}", error_name(resp.error_code));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Driver {
    topic: String,
    partitions: Vec<i32>,
    leader_of: BTreeMap<i32, i32>,
    leaders: BTreeMap<i32, Leader>,
    slots: Vec<SlotOutcome>,
    /// Rate-limited slots waiting for their turn: (due, slot).
    due: BinaryHeap<Reverse<(Instant, u32)>>,
    requests: JoinSet<Done>,
    budget: Option<u64>,
    producer_id: i64,
    producer_epoch: i16,
    txns: Option<Transactions>,
    open: OpenTxn,
    cfg: DriverConfig,
    live: Arc<Live>,
    timing: Arc<Timing>,
    out_hist: Histogram<u64>,
    measured: u64,
    measured_bytes: u64,
    errors: BTreeMap<String, u64>,
    last_done: Instant,
}

impl Driver {
    async fn run(&mut self) {
        if self.txns.is_some() {
            self.begin_txn().await;
        }
        for slot in 0..self.cfg.concurrency {
            self.next_message(slot);
        }
        loop {
            self.release_due();
            self.send_ready().await;
            let idle =
                self.requests.is_empty() && self.leaders.values().all(|l| l.pending.is_empty());
            // A transaction ends once nothing of it is in flight and it is full, or nothing
            // more will come (time or budget up, no rate-limited turn pending).
            if idle
                && self.open.begun
                && (self.open.made >= self.txns.as_ref().map_or(0, |t| t.per_txn)
                    || self.due.is_empty())
            {
                self.end_txn().await;
                continue;
            }
            if idle && self.due.is_empty() {
                return;
            }
            let deadline = self.next_deadline();
            tokio::select! {
                done = self.requests.join_next(), if !self.requests.is_empty() => {
                    if let Some(Ok(done)) = done {
                        self.complete(done);
                    }
                }
                _ = sleep_until_opt(deadline), if deadline.is_some() => {}
                // Unreachable: with pending messages there is a request to await or a
                // deadline to sleep to. Stop rather than spin.
                else => return,
            }
        }
    }

    /// Makes `slot`'s next message now, or queues its turn under a rate limit; a slot whose
    /// time or budget is up makes none.
    fn next_message(&mut self, slot: u32) {
        let seq = self.slots[slot as usize].sent;
        if self.cfg.rate > 0 {
            // Slot i's k-th message is due at (k·C + i) / R seconds: an even global rate.
            let turn = seq * u64::from(self.cfg.concurrency) + u64::from(slot);
            let due =
                self.timing.origin + Duration::from_secs_f64(turn as f64 / self.cfg.rate as f64);
            if due > Instant::now() {
                if self.timing.end.is_none_or(|end| due < end) {
                    self.due.push(Reverse((due, slot)));
                }
                return;
            }
        }
        self.make_message(slot);
    }

    fn make_message(&mut self, slot: u32) {
        let now = Instant::now();
        if self.timing.end.is_some_and(|end| now >= end) {
            return;
        }
        if let Some(t) = &self.txns {
            if self.open.made >= t.per_txn {
                self.open.parked.push(slot);
                return;
            }
        }
        if let Some(b) = &mut self.budget {
            if *b == 0 {
                return;
            }
            *b -= 1;
        }
        self.open.made += 1;
        let s = &mut self.slots[slot as usize];
        let seq = s.sent;
        s.sent += 1;
        self.live.sent.fetch_add(1, Ordering::Relaxed);
        let np = self.partitions.len() as u64;
        let partition = self.partitions[((u64::from(slot) + seq) % np) as usize];
        let value = payload::build(
            self.cfg.message_size,
            Stamp {
                task: slot,
                seq,
                sent_us: self.timing.us_since_origin(now),
            },
        );
        let leader = self.leader_of[&partition];
        let l = self
            .leaders
            .get_mut(&leader)
            .expect("every partition's leader has a connection");
        *l.pending_bytes.entry(partition).or_default() += value.len();
        l.pending.push_back(Msg {
            slot,
            seq,
            partition,
            value,
            sent_at: now,
        });
    }

    fn release_due(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((due, slot))) = self.due.peek().copied() {
            if due > now {
                break;
            }
            self.due.pop();
            self.make_message(slot);
        }
    }

    /// The earliest of: the next rate-limited turn, the next linger expiry.
    fn next_deadline(&self) -> Option<Instant> {
        let turn = self.due.peek().map(|Reverse((t, _))| *t);
        let linger = self
            .leaders
            .values()
            .filter(|l| l.in_flight < self.cfg.max_in_flight)
            .filter_map(|l| l.pending.front().map(|m| m.sent_at + self.cfg.linger))
            .min();
        match (turn, linger) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    async fn send_ready(&mut self) {
        let now = Instant::now();
        let ids: Vec<i32> = self.leaders.keys().copied().collect();
        for id in ids {
            loop {
                let l = &self.leaders[&id];
                let ready = !l.pending.is_empty()
                    && l.in_flight < self.cfg.max_in_flight
                    && (self.cfg.linger.is_zero()
                        || l.pending_bytes.values().any(|b| *b >= self.cfg.batch_size)
                        || l.pending
                            .front()
                            .is_some_and(|m| m.sent_at + self.cfg.linger <= now));
                if !ready {
                    break;
                }
                self.send_one(id).await;
            }
        }
    }

    /// Takes up to `batch_size` value bytes per partition off the leader's queue into one
    /// request and submits it.
    async fn send_one(&mut self, id: i32) {
        let batch_size = self.cfg.batch_size;
        let l = self.leaders.get_mut(&id).expect("known leader");
        let mut taken: BTreeMap<i32, (usize, Vec<Msg>)> = BTreeMap::new();
        let mut rest = VecDeque::with_capacity(l.pending.len());
        for m in l.pending.drain(..) {
            let e = taken.entry(m.partition).or_default();
            if e.0 >= batch_size {
                rest.push_back(m);
            } else {
                e.0 += m.value.len();
                e.1.push(m);
            }
        }
        l.pending = rest;
        for (p, (bytes, _)) in &taken {
            if let Some(b) = l.pending_bytes.get_mut(p) {
                *b -= *bytes;
            }
        }
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let options = RecordEncodeOptions {
            version: 2,
            compression: self.cfg.compression,
        };
        let mut partition_data = Vec::with_capacity(taken.len());
        let mut carried = Vec::new();
        let mut failed = Vec::new();
        for (p, (bytes, msgs)) in taken {
            let base_sequence = if self.producer_id >= 0 {
                let s = l.next_sequence.entry(p).or_insert(0);
                let base = *s;
                *s = s.wrapping_add(msgs.len() as i32) & i32::MAX;
                base
            } else {
                -1
            };
            // The encoder keeps records in one batch while offset - sequence stays constant.
            let records: Vec<Record> = msgs
                .iter()
                .enumerate()
                .map(|(i, m)| Record {
                    transactional: self.txns.is_some(),
                    control: false,
                    delete_horizon: false,
                    partition_leader_epoch: -1,
                    producer_id: self.producer_id,
                    producer_epoch: self.producer_epoch,
                    timestamp_type: TimestampType::Creation,
                    offset: i as i64,
                    sequence: base_sequence.wrapping_add(i as i32),
                    timestamp: now_ms,
                    key: self.cfg.keys.map(|n| message_key(m.slot, m.seq, n)),
                    value: Some(m.value.clone()),
                    headers: IndexMap::new(),
                })
                .collect();
            let mut buf = BytesMut::with_capacity(bytes + 64 + msgs.len() * 8);
            match RecordBatchEncoder::encode(&mut buf, &records, &options) {
                Ok(()) => {
                    partition_data.push(
                        PartitionProduceData::default()
                            .with_index(p)
                            .with_records(Some(buf.freeze())),
                    );
                    carried.extend(msgs);
                }
                Err(e) => failed.push((msgs, format!("encoding the batch: {e}"))),
            }
        }
        for (msgs, e) in failed {
            for m in msgs {
                self.settle(m, Err(e.clone()), Instant::now());
            }
        }
        if carried.is_empty() {
            return;
        }
        let req = ProduceRequest::default()
            .with_transactional_id(self.txns.as_ref().map(Transactions::transactional_id))
            .with_acks(self.cfg.acks)
            .with_timeout_ms(self.cfg.request_timeout.as_millis().min(i32::MAX as u128) as i32)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(&self.topic))
                .with_partition_data(partition_data)]);
        let l = self.leaders.get_mut(&id).expect("known leader");
        l.in_flight += 1;
        let timeout = self.cfg.request_timeout;
        // Submitted here, in order; only the wait for the answer runs in its own task.
        if self.cfg.acks == 0 {
            let written = l.conn.submit_no_response(req).await;
            self.requests.spawn(async move {
                let outcome = match written {
                    Ok(w) => w
                        .await
                        .map(|_| None)
                        .map_err(|_| "connection closed".to_string()),
                    Err(e) => Err(e.to_string()),
                };
                (id, carried, outcome)
            });
        } else {
            let pending = l.conn.submit(req).await;
            self.requests.spawn(async move {
                let outcome = match pending {
                    Ok(p) => p
                        .wait_timeout(timeout)
                        .await
                        .map(Some)
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                (id, carried, outcome)
            });
        }
    }

    fn complete(&mut self, (id, msgs, outcome): Done) {
        let now = Instant::now();
        self.last_done = now;
        if let Some(l) = self.leaders.get_mut(&id) {
            l.in_flight -= 1;
        }
        let mut by_partition: HashMap<i32, Result<(), String>> = HashMap::new();
        let default = match &outcome {
            Err(e) => Err(e.clone()),
            Ok(None) => Ok(()),
            Ok(Some(resp)) => {
                for t in &resp.responses {
                    for p in &t.partition_responses {
                        let r = if p.error_code == 0 {
                            Ok(())
                        } else {
                            Err(error_name(p.error_code))
                        };
                        by_partition.insert(p.index, r);
                    }
                }
                Err("partition missing from the Produce response".to_string())
            }
        };
        for m in msgs {
            let r = by_partition
                .get(&m.partition)
                .cloned()
                .unwrap_or_else(|| default.clone());
            let slot = m.slot;
            if self.txns.is_some() {
                // Acknowledged only when the transaction commits; one failure aborts it.
                match r {
                    Ok(()) => self.open.held.push(m),
                    Err(e) => {
                        self.open.failed.get_or_insert_with(|| e.clone());
                        self.settle(m, Err(e), now);
                    }
                }
            } else {
                self.settle(m, r, now);
            }
            self.next_message(slot);
        }
    }

    /// AddPartitionsToTxn for the next transaction; a failure dooms it (its messages are sent,
    /// refused and the transaction aborted), which the report shows.
    async fn begin_txn(&mut self) {
        let Some(t) = self.txns.as_mut() else { return };
        if let Err(e) = t.begin().await {
            *self.errors.entry(e.clone()).or_default() += 1;
            self.open.failed = Some(e);
        }
        self.open.begun = true;
    }

    /// Commits the open transaction (aborts it if one of its messages failed), settles its
    /// messages by the outcome, lets the parked slots go on, and begins the next transaction
    /// if they made messages.
    async fn end_txn(&mut self) {
        let Some(t) = self.txns.as_mut() else { return };
        let open = std::mem::take(&mut self.open);
        let commit = open.failed.is_none();
        let verdict = match (t.end(commit).await, open.failed) {
            (Ok(()), None) => Ok(()),
            (Ok(()), Some(cause)) => Err(format!("transaction aborted after {cause}")),
            (Err(e), _) => Err(e),
        };
        let now = Instant::now();
        self.last_done = now;
        for m in open.held {
            self.settle(m, verdict.clone(), now);
        }
        for slot in open.parked {
            self.next_message(slot);
        }
        if !self.due.is_empty() || self.leaders.values().any(|l| !l.pending.is_empty()) {
            self.begin_txn().await;
        }
    }

    fn settle(&mut self, m: Msg, result: Result<(), String>, now: Instant) {
        let s = &mut self.slots[m.slot as usize];
        match result {
            Ok(()) => {
                s.acked += 1;
                s.acked_seqs.set(m.seq);
                self.live.acked.fetch_add(1, Ordering::Relaxed);
                self.live
                    .bytes
                    .fetch_add(m.value.len() as u64, Ordering::Relaxed);
                if m.sent_at >= self.timing.measure_start {
                    self.measured += 1;
                    self.measured_bytes += m.value.len() as u64;
                    record(&mut self.out_hist, (now - m.sent_at).as_micros() as u64);
                }
            }
            Err(e) => {
                s.failed += 1;
                self.live.failed.fetch_add(1, Ordering::Relaxed);
                *self.errors.entry(e).or_default() += 1;
            }
        }
    }
}

async fn sleep_until_opt(t: Option<Instant>) {
    if let Some(t) = t {
        tokio::time::sleep_until(t).await;
    }
}
