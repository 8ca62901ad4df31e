//! Leader side of a fetch session (see `proto/replication.proto`): what one follower's stream
//! fetches and what this leader last told it, per partition. A pass over the session serves
//! only the partitions the request named or whose [`Replica::version`] moved since they were
//! last served; the others cost one atomic load. The answer carries only partitions with news
//! (or named in the request), so an idle follower's fetch of thousands of partitions is an
//! empty request, an empty answer and no `serve_fetch` at all.
//!
//! A partition left out of the request still counts as fetched, at the offsets last named:
//! [`Replica::note_unchanged_fetch`] keeps its caught-up clock moving (at most every
//! [`Session::touch_every`]), so an idle, live follower stays in the ISR.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::manager::ReplicaManager;
use crate::pb::{FetchRequest, PartitionData};
use crate::replica::{code, BrokerId, FollowerFetch, Replica, ServedFetch};

/// Partitions one session may hold (a full request may name as many).
pub(crate) const MAX_PARTITIONS_PER_SESSION: usize = 100_000;

type Key = (String, i32);

/// One partition of a session.
struct Entry {
    /// The follower's fetch state as it last named it.
    fetch: FollowerFetch,
    /// The replica as last looked up (`None`: not on this node); looked up again on every
    /// serve, so a partition deleted or created again is found as it now is.
    replica: Option<Arc<Replica>>,
    /// The replica's version before it was last served.
    seen: u64,
    /// Serve it on the next pass whatever its version: named in the request, or its last
    /// answer asked the follower to act (records, an error, a divergence, a segment). The
    /// follower may have failed to: an unchanged fetch state must then get the same answer
    /// again, as a whole request would.
    dirty: bool,
    /// Named in the request being answered: answered even without news.
    asked: bool,
    /// (high watermark, log start, leader epoch) as last sent.
    told: Option<(i64, i64, i32)>,
    /// The last request that named it.
    named_in: u64,
}

/// Why a request cannot be applied to the session; the stream ends with it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    #[error("a fetch session may hold at most {MAX_PARTITIONS_PER_SESSION} partitions")]
    TooManyPartitions,
}

pub(crate) struct Session {
    follower: BrokerId,
    entries: HashMap<Key, Entry>,
    /// Last time every partition left out of the requests was noted as fetched.
    touched: Option<Instant>,
    touch_every: Duration,
    /// Answers gathered over the passes of one request, by partition.
    pending: HashMap<Key, PartitionData>,
    /// Requests taken in.
    requests: u64,
}

impl Session {
    /// A session of `follower`'s stream. Its unchanged partitions are noted as fetched at
    /// least every `replica_lag_max / 4` (at most every second).
    pub(crate) fn new(follower: BrokerId, replica_lag_max: Duration) -> Session {
        Session {
            follower,
            entries: HashMap::new(),
            touched: None,
            touch_every: (replica_lag_max / 4).min(Duration::from_secs(1)),
            pending: HashMap::new(),
            requests: 0,
        }
    }

    pub(crate) fn follower(&self) -> BrokerId {
        self.follower
    }

    /// Takes in a request: a whole one replaces the partition set, an incremental one
    /// removes and updates partitions. Every partition it names is served on the next pass.
    pub(crate) fn update(&mut self, req: &FetchRequest) -> Result<(), SessionError> {
        self.requests += 1;
        let round = self.requests;
        for id in &req.removed {
            self.entries.remove(&(id.topic.clone(), id.partition));
        }
        for pf in &req.partitions {
            let fetch = FollowerFetch {
                follower: self.follower,
                fetch_offset: pf.fetch_offset,
                last_fetched_epoch: pf.last_fetched_epoch,
                durable_offset: pf.durable_offset,
                leader_epoch: pf.leader_epoch,
                log_start_offset: pf.log_start_offset,
            };
            let key = (pf.topic.clone(), pf.partition);
            let e = self.entries.entry(key).or_insert(Entry {
                fetch,
                replica: None,
                seen: 0,
                dirty: true,
                asked: true,
                told: None,
                named_in: round,
            });
            e.named_in = round;
            e.fetch = fetch;
            e.dirty = true;
            e.asked = true;
        }
        if !req.incremental {
            // A whole request (an older follower sends nothing else) replaces the set but
            // keeps what was told of the partitions it still names: else each of its answers
            // would be all news, and no request of it ever held.
            self.entries.retain(|_, e| e.named_in == round);
        }
        if self.entries.len() > MAX_PARTITIONS_PER_SESSION {
            return Err(SessionError::TooManyPartitions);
        }
        Ok(())
    }

    /// Serves every partition due (see [`Entry::dirty`], [`Replica::version`]), reading at
    /// most `budget` record bytes (at least one batch). Returns whether an answer has news
    /// the follower should get now rather than at the end of the hold.
    pub(crate) async fn pass(&mut self, manager: &ReplicaManager, budget: &mut usize) -> bool {
        let mut urgent = false;
        for (key, e) in self.entries.iter_mut() {
            let moved = e.replica.as_ref().is_none_or(|r| r.version() != e.seen);
            if !e.dirty && !moved {
                continue;
            }
            let mut pd = PartitionData {
                topic: key.0.clone(),
                partition: key.1,
                leader_epoch: -1,
                ..Default::default()
            };
            e.replica = manager.get_key(key);
            let acts = match &e.replica {
                None => {
                    pd.error_code = code::UNKNOWN_TOPIC_OR_PARTITION;
                    true
                }
                Some(r) => {
                    e.seen = r.version();
                    let served = r.serve_fetch(e.fetch, *budget).await;
                    *budget = budget.saturating_sub(served.records.len()).max(1);
                    fill(&mut pd, served)
                }
            };
            e.dirty = acts;
            let told = (pd.high_watermark, pd.log_start_offset, pd.leader_epoch);
            let news = acts || e.told != Some(told);
            urgent |= news;
            if news || e.asked {
                self.pending.insert(key.clone(), pd);
            }
        }
        urgent
    }

    /// The answer to the request: every partition gathered by the passes, noted as told.
    /// Partitions not served are noted as fetched (see the module docs), at most every
    /// `touch_every`.
    pub(crate) fn answer(&mut self) -> Vec<PartitionData> {
        let out: Vec<PartitionData> = self.pending.drain().map(|(_, pd)| pd).collect();
        for pd in &out {
            if let Some(e) = self.entries.get_mut(&(pd.topic.clone(), pd.partition)) {
                e.told = Some((pd.high_watermark, pd.log_start_offset, pd.leader_epoch));
                e.asked = false;
            }
        }
        let now = Instant::now();
        if self
            .touched
            .is_none_or(|t| now.duration_since(t) >= self.touch_every)
        {
            self.touched = Some(now);
            // Not those whose last answer asked the follower to act: their progress is
            // what `serve_fetch` makes of their next fetch.
            for e in self.entries.values().filter(|e| !e.dirty) {
                if let Some(r) = &e.replica {
                    r.note_unchanged_fetch(self.follower);
                }
            }
        }
        out
    }
}

/// Copies a served fetch into its answer; true if it asks the follower to act.
fn fill(pd: &mut PartitionData, served: ServedFetch) -> bool {
    let acts = !served.records.is_empty()
        || served.error_code != code::NONE
        || served.diverging.is_some()
        || served.segment_available;
    pd.segment_available = served.segment_available;
    pd.leader_epoch = served.leader_epoch;
    pd.error_code = served.error_code;
    pd.records = served.records;
    pd.high_watermark = served.high_watermark;
    pd.log_start_offset = served.log_start_offset;
    pd.restart_offset = served.restart_offset.unwrap_or(0);
    (pd.diverging_epoch, pd.diverging_end_offset) = served.diverging.unwrap_or((-1, -1));
    acts
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chronik_wal::{LogConfig, PartitionLog};

    use super::*;
    use crate::pb::PartitionFetch;
    use crate::replica::Role;
    use crate::{EpochCache, ReplicationConfig};

    fn fetch(partition: i32, offset: i64) -> PartitionFetch {
        PartitionFetch {
            topic: "t".into(),
            partition,
            fetch_offset: offset,
            last_fetched_epoch: if offset > 0 { 0 } else { -1 },
            durable_offset: offset,
            leader_epoch: 0,
            log_start_offset: 0,
        }
    }

    fn request(incremental: bool, partitions: Vec<PartitionFetch>) -> FetchRequest {
        FetchRequest {
            follower_id: 2,
            partitions,
            max_wait_ms: 0,
            max_bytes: 1 << 20,
            incremental,
            removed: vec![],
        }
    }

    /// One round of a follower that has nothing new to say: its answer.
    async fn idle_round(s: &mut Session, m: &ReplicaManager) -> Vec<PartitionData> {
        s.update(&request(true, vec![])).expect("update");
        s.pass(m, &mut (1 << 20)).await;
        s.answer()
    }

    /// The point of sessions: once the follower has everything, a round names no partition
    /// and answers none; an append is news for its partition only; a follower that says
    /// nothing stays in the ISR (its partitions count as fetched at the offsets last named).
    #[tokio::test]
    async fn an_idle_follower_hears_only_news_and_stays_in_the_isr() {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = ReplicaManager::new(1, ReplicationConfig::default());
        let mut replicas = Vec::new();
        for p in 0..3 {
            let log = PartitionLog::open(dir.path(), "t", p, LogConfig::default())
                .await
                .expect("open log");
            let r = Replica::new(log, 1, EpochCache::default(), 0);
            m.add(r.clone());
            r.set_role(Role::Leader {
                epoch: 0,
                isr: vec![1, 2],
                min_isr: 1,
            });
            replicas.push(r);
        }
        let lag = Duration::from_millis(300);
        let mut s = Session::new(2, lag);
        s.update(&request(false, (0..3).map(|p| fetch(p, 0)).collect()))
            .expect("update");
        assert!(s.pass(&m, &mut (1 << 20)).await, "a first answer is news");
        assert_eq!(s.answer().len(), 3);

        // Idle for longer than replica.lag.time.max: nothing served, nothing answered, and
        // the follower stays in the ISR.
        let until = Instant::now() + lag * 2;
        while Instant::now() < until {
            let versions: Vec<u64> = replicas.iter().map(|r| r.version()).collect();
            assert!(idle_round(&mut s, &m).await.is_empty());
            let after: Vec<u64> = replicas.iter().map(|r| r.version()).collect();
            assert_eq!(
                versions, after,
                "an idle round changes nothing on the leader"
            );
            tokio::time::sleep(lag / 6).await;
        }
        for r in &replicas {
            assert_eq!(r.isr_change(&[1, 2], lag), None, "follower 2 stays in");
        }

        // An append to partition 1 (seen through the manager's watch of its log end) wakes a
        // hold and is the only news.
        let seen = m.changes.version();
        let mut batch = crate::replica::tests::served_batch(0, 0);
        let appended = replicas[1]
            .log
            .append_replica_after(&mut batch, 0)
            .expect("append");
        replicas[1].record_epoch(0, appended.base_offset, appended.generation);
        m.changes
            .wait_past(seen, Instant::now() + Duration::from_secs(5))
            .await;
        let answer = idle_round(&mut s, &m).await;
        assert_eq!(answer.len(), 1, "{answer:?}");
        assert_eq!(answer[0].partition, 1);
        assert!(!answer[0].records.is_empty());

        // The follower names the partition once it holds the batch durably: the high
        // watermark it moves reaches the follower.
        replicas[1].log.wait_committed(1).await.expect("committed");
        let mut hw = -1;
        let deadline = Instant::now() + Duration::from_secs(5);
        s.update(&request(true, vec![fetch(1, 1)])).expect("update");
        while hw < 1 && Instant::now() < deadline {
            let seen = m.changes.version();
            s.pass(&m, &mut (1 << 20)).await;
            if let Some(pd) = s.answer().into_iter().find(|pd| pd.partition == 1) {
                hw = pd.high_watermark;
            }
            m.changes
                .wait_past(seen, Instant::now() + Duration::from_millis(100))
                .await;
        }
        assert_eq!(hw, 1);
        assert!(idle_round(&mut s, &m).await.is_empty());

        // A follower that sends whole requests only (an older one) gets every partition it
        // names, but is held as long as none has news.
        let whole = vec![fetch(0, 0), fetch(1, 1), fetch(2, 0)];
        s.update(&request(false, whole)).expect("update");
        assert!(!s.pass(&m, &mut (1 << 20)).await, "nothing new: held");
        assert_eq!(s.answer().len(), 3);
    }
}
