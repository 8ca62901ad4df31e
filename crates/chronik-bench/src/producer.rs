//! A shared producer: many tasks hand it one message each and await the acknowledgement.
//!
//! Per leader broker, one sender loop drains the queued messages into one Produce request
//! (one batch per partition, at most `batch_size` value bytes each) while up to
//! `max_in_flight` earlier requests are outstanding: the same coalescing a Kafka client does
//! when many threads share one producer. Requests on a connection are answered in order,
//! which keeps idempotent sequence numbers in order too.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};
use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{InitProducerIdRequest, ProduceRequest};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::Instant;

use crate::client::Connection;
use crate::cluster::{topic_name, TopicLayout};
use crate::report::error_name;

/// Why one message was not acknowledged.
pub type SendError = String;

pub struct ProducerConfig {
    pub acks: i16,
    pub compression: Compression,
    pub linger: Duration,
    pub batch_size: usize,
    pub max_in_flight: usize,
    pub idempotence: bool,
    pub request_timeout: Duration,
    /// Bound of each leader's message queue (the number of producing tasks suffices).
    pub queue_len: usize,
}

struct Message {
    partition: i32,
    value: Bytes,
    enqueued: Instant,
    done: oneshot::Sender<Result<(), SendError>>,
}

#[derive(Clone)]
pub struct Producer {
    queues: Arc<HashMap<i32, mpsc::Sender<Message>>>,
}

impl Producer {
    pub async fn start(layout: &TopicLayout, cfg: ProducerConfig) -> Result<Producer> {
        let cfg = Arc::new(cfg);
        let (pid, epoch) = if cfg.idempotence {
            let any = layout.leaders.values().next();
            let Some(conn) = any else {
                bail!("topic has no leaders")
            };
            let resp = conn
                .send_timeout(
                    InitProducerIdRequest::default()
                        .with_transaction_timeout_ms(60_000)
                        .with_producer_id((-1).into())
                        .with_producer_epoch(-1),
                    cfg.request_timeout,
                )
                .await?;
            if resp.error_code != 0 {
                bail!("InitProducerId failed with {}", error_name(resp.error_code));
            }
            (resp.producer_id.0, resp.producer_epoch)
        } else {
            (-1, -1)
        };
        let mut queues = HashMap::new();
        for (broker, parts) in layout.by_leader() {
            let (tx, rx) = mpsc::channel(cfg.queue_len.max(1));
            let sender = LeaderSender {
                conn: layout.leaders[&broker].clone(),
                topic: layout.topic.clone(),
                cfg: cfg.clone(),
                in_flight: Arc::new(Semaphore::new(cfg.max_in_flight)),
                producer_id: pid,
                producer_epoch: epoch,
                next_sequence: parts.iter().map(|p| (*p, 0)).collect(),
                carry: VecDeque::new(),
            };
            tokio::spawn(sender.run(rx));
            for p in parts {
                queues.insert(p, tx.clone());
            }
        }
        Ok(Producer {
            queues: Arc::new(queues),
        })
    }

    /// Sends one message and waits for its acknowledgement (or for its write, with acks=0).
    pub async fn send(&self, partition: i32, value: Bytes) -> Result<(), SendError> {
        let Some(q) = self.queues.get(&partition) else {
            return Err(format!("no leader for partition {partition}"));
        };
        let (done, wait) = oneshot::channel();
        let msg = Message {
            partition,
            value,
            enqueued: Instant::now(),
            done,
        };
        q.send(msg)
            .await
            .map_err(|_| "producer stopped".to_string())?;
        wait.await
            .unwrap_or_else(|_| Err("producer dropped the message".to_string()))
    }
}

/// How full the pending batches are.
struct Fill {
    batch_size: usize,
    per_partition: HashMap<i32, usize>,
    bytes: usize,
    /// Some partition has a full batch.
    full: bool,
}

impl Fill {
    fn new(batch_size: usize) -> Fill {
        Fill {
            batch_size,
            per_partition: HashMap::new(),
            bytes: 0,
            full: false,
        }
    }

    fn add(&mut self, m: &Message) {
        let b = self.per_partition.entry(m.partition).or_default();
        *b += m.value.len();
        self.full |= *b >= self.batch_size;
        self.bytes += m.value.len();
    }
}

struct LeaderSender {
    conn: Connection,
    topic: String,
    cfg: Arc<ProducerConfig>,
    in_flight: Arc<Semaphore>,
    producer_id: i64,
    producer_epoch: i16,
    next_sequence: HashMap<i32, i32>,
    /// Messages taken off the queue that did not fit in the last request, oldest first.
    carry: VecDeque<Message>,
}

impl LeaderSender {
    async fn run(mut self, mut rx: mpsc::Receiver<Message>) {
        let partitions = self.next_sequence.len().max(1);
        let request_limit = self.cfg.batch_size.saturating_mul(partitions);
        loop {
            if self.carry.is_empty() {
                match rx.recv().await {
                    Some(m) => self.carry.push_back(m),
                    None => return,
                }
            }
            // Wait for a slot first: messages keep queueing meanwhile and go out together.
            let Ok(permit) = self.in_flight.clone().acquire_owned().await else {
                return;
            };
            // Let tasks that are already runnable (typically the ones the last answer just
            // acknowledged) queue their next message first, as a producer's sender thread
            // does by the time it wakes: one request per wave instead of a lone first message.
            tokio::task::yield_now().await;
            // Ready (Kafka's rule): some partition's batch is full, or the oldest message
            // has lingered long enough. Then everything pending for this broker goes out.
            let mut fill = Fill::new(self.cfg.batch_size);
            for m in &self.carry {
                fill.add(m);
            }
            while fill.bytes < request_limit {
                match rx.try_recv() {
                    Ok(m) => {
                        fill.add(&m);
                        self.carry.push_back(m);
                    }
                    Err(_) => break,
                }
            }
            if !self.cfg.linger.is_zero() && !fill.full {
                let deadline = self.carry[0].enqueued + self.cfg.linger;
                while !fill.full && fill.bytes < request_limit {
                    tokio::select! {
                        m = rx.recv() => match m {
                            Some(m) => { fill.add(&m); self.carry.push_back(m); }
                            None => break,
                        },
                        _ = tokio::time::sleep_until(deadline) => break,
                    }
                }
            }
            let (req, waiting) = self.build_request();
            // Submit here, in order: idempotent sequences must reach the broker in the
            // order they were assigned. Only the wait for the answer runs concurrently.
            let timeout = self.cfg.request_timeout;
            if self.cfg.acks == 0 {
                let written = self.conn.submit_no_response(req).await;
                tokio::spawn(async move {
                    let outcome = match written {
                        Ok(w) => w
                            .await
                            .map(|_| None)
                            .map_err(|_| "connection closed".to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                    drop(permit);
                    complete(outcome, waiting);
                });
            } else {
                let pending = self.conn.submit(req).await;
                tokio::spawn(async move {
                    let outcome = match pending {
                        Ok(p) => p
                            .wait_timeout(timeout)
                            .await
                            .map(Some)
                            .map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                    drop(permit);
                    complete(outcome, waiting);
                });
            }
        }
    }

    /// Takes up to `batch_size` value bytes per partition off `carry` into one request.
    fn build_request(&mut self) -> (ProduceRequest, BTreeMap<i32, Vec<Message>>) {
        let mut taken: BTreeMap<i32, (usize, Vec<Message>)> = BTreeMap::new();
        let mut rest = VecDeque::new();
        for m in self.carry.drain(..) {
            let e = taken.entry(m.partition).or_default();
            if e.0 >= self.cfg.batch_size {
                rest.push_back(m);
            } else {
                e.0 += m.value.len();
                e.1.push(m);
            }
        }
        self.carry = rest;
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let options = RecordEncodeOptions {
            version: 2,
            compression: self.cfg.compression,
        };
        let mut partition_data = Vec::with_capacity(taken.len());
        let mut waiting = BTreeMap::new();
        for (p, (bytes, msgs)) in taken {
            let base_sequence = if self.producer_id >= 0 {
                let s = self.next_sequence.entry(p).or_insert(0);
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
                    transactional: false,
                    control: false,
                    delete_horizon: false,
                    partition_leader_epoch: -1,
                    producer_id: self.producer_id,
                    producer_epoch: self.producer_epoch,
                    timestamp_type: TimestampType::Creation,
                    offset: i as i64,
                    sequence: base_sequence.wrapping_add(i as i32),
                    timestamp: now_ms,
                    key: None,
                    value: Some(m.value.clone()),
                    headers: IndexMap::new(),
                })
                .collect();
            let mut buf = BytesMut::with_capacity(bytes + 64 + msgs.len() * 8);
            if let Err(e) = RecordBatchEncoder::encode(&mut buf, &records, &options) {
                for m in msgs {
                    let _ = m.done.send(Err(format!("encoding the batch: {e}")));
                }
                continue;
            }
            partition_data.push(
                PartitionProduceData::default()
                    .with_index(p)
                    .with_records(Some(buf.freeze())),
            );
            waiting.insert(p, msgs);
        }
        let req = ProduceRequest::default()
            .with_acks(self.cfg.acks)
            .with_timeout_ms(self.cfg.request_timeout.as_millis().min(i32::MAX as u128) as i32)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(&self.topic))
                .with_partition_data(partition_data)]);
        (req, waiting)
    }
}

/// Tells every waiting task what became of its message.
fn complete(
    outcome: Result<Option<kafka_protocol::messages::ProduceResponse>, String>,
    mut waiting: BTreeMap<i32, Vec<Message>>,
) {
    match outcome {
        Err(e) => {
            for m in waiting.into_values().flatten() {
                let _ = m.done.send(Err(e.clone()));
            }
        }
        Ok(None) => {
            for m in waiting.into_values().flatten() {
                let _ = m.done.send(Ok(()));
            }
        }
        Ok(Some(resp)) => {
            for t in resp.responses {
                for p in t.partition_responses {
                    if let Some(msgs) = waiting.remove(&p.index) {
                        let r = if p.error_code == 0 {
                            Ok(())
                        } else {
                            Err(error_name(p.error_code))
                        };
                        for m in msgs {
                            let _ = m.done.send(r.clone());
                        }
                    }
                }
            }
            for m in waiting.into_values().flatten() {
                let _ = m
                    .done
                    .send(Err("partition missing from the Produce response".into()));
            }
        }
    }
}
