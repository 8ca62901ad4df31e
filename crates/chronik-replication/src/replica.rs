//! One partition's replica on this node: its log, its role, its leader epochs and its high
//! watermark.
//!
//! Invariants, enforced here:
//! - The high watermark never exceeds this log's durable end, and on a leader never exceeds
//!   the durable end reported by any ISR member: data below it is on every ISR member's disk.
//! - A leader's high watermark never moves backwards while it leads.
//! - Role changes carry the leader epoch from the metadata; requests from an older epoch are
//!   refused (FENCED_LEADER_EPOCH), from a newer one too (UNKNOWN_LEADER_EPOCH: not told yet).
//! - A write waiting for the high watermark succeeds only if the high watermark reached it
//!   while this replica still led in the epoch the write was appended in. Once it stops
//!   leading, its high watermark is the new leader's, and that may count offsets this log is
//!   about to truncate and refill with other data.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chronik_wal::{PartitionLog, WalError};
use tokio::sync::watch;

use crate::epochs::EpochCache;

mod log_start;
mod serve;

pub type BrokerId = i32;

/// Kafka error codes a replica answers with.
pub mod code {
    pub const NONE: i32 = 0;
    pub const OFFSET_OUT_OF_RANGE: i32 = 1;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i32 = 3;
    pub const NOT_LEADER_OR_FOLLOWER: i32 = 6;
    pub const KAFKA_STORAGE_ERROR: i32 = 56;
    pub const FENCED_LEADER_EPOCH: i32 = 74;
    pub const UNKNOWN_LEADER_EPOCH: i32 = 75;
}

/// What this node is for the partition, as the metadata says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Not yet told (a partition just opened).
    Unknown,
    Leader {
        epoch: i32,
        isr: Vec<BrokerId>,
        /// The effective min.insync.replicas: the topic's, capped by its replica count. The
        /// high watermark does not advance while the ISR is smaller (KAFKA-15583, Kafka 3.7+).
        min_isr: usize,
    },
    Follower {
        leader: BrokerId,
        epoch: i32,
    },
}

/// How far one follower trails its leader ([`Replica::follower_lags`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FollowerLag {
    pub replica: BrokerId,
    /// Offsets the leader has that the follower has not fetched.
    pub messages: i64,
    /// Time since the follower last had everything the leader had when it fetched before.
    pub behind: Duration,
}

/// A follower as its leader sees it.
#[derive(Debug, Clone, Copy)]
struct Progress {
    /// The follower's log end (its last fetch offset).
    log_end: i64,
    /// The follower's durable end: what the high watermark may count.
    durable: i64,
    /// The last time the follower had everything the leader had written as of its
    /// previous fetch (Kafka's lastCaughtUpTime: under steady load a follower is never level
    /// with the leader's latest end, but it keeps reaching where the leader was).
    caught_up_at: Instant,
    /// The leader's log end when this follower fetched last.
    leader_end_at_last_fetch: i64,
    /// The follower's log start offset as of its last fetch.
    log_start: i64,
}

struct State {
    role: Role,
    epochs: EpochCache,
    /// Followers' progress while this node leads (reset on every leadership change).
    followers: HashMap<BrokerId, Progress>,
    /// When the current leadership began: followers count as caught up from then on.
    leading_since: Instant,
    /// The log generation `epochs` describes. A heal (the WAL cut back to its last synced
    /// offset after a storage error) bumps the log's; the epochs recorded at or past the cut
    /// are then stale and are dropped before the next one is recorded (`reconcile`).
    generation: u64,
}

/// A follower's fetch of this partition, as the leader receives it.
#[derive(Debug, Clone, Copy)]
pub struct FollowerFetch {
    pub follower: BrokerId,
    pub fetch_offset: i64,
    pub last_fetched_epoch: i32,
    pub durable_offset: i64,
    pub leader_epoch: i32,
    /// The follower's log start offset.
    pub log_start_offset: i64,
}

/// The leader's answer for one partition.
#[derive(Debug, Clone, Default)]
pub struct ServedFetch {
    pub error_code: i32,
    pub records: Bytes,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    /// `Some((epoch, end_offset))`: the follower must truncate to `end_offset`.
    pub diverging: Option<(i32, i64)>,
    /// The fetch offset starts a whole sealed segment: fetch it with `FetchSegment`.
    pub segment_available: bool,
    /// The epoch the answer was served in (-1: this replica does not lead).
    pub leader_epoch: i32,
    /// With OFFSET_OUT_OF_RANGE below this log's start: where the follower starts again.
    pub restart_offset: Option<i64>,
}

/// How often a commit wait whose leadership moved looks at its write's fate again.
const FATE_POLL: Duration = Duration::from_millis(50);

/// Why a write's wait for the high watermark ended without success.
#[derive(Debug, thiserror::Error)]
pub enum CommitWaitError {
    /// The replica stopped leading in the epoch the write was appended in (or never led):
    /// the write may or may not survive on the new leader. Kafka's answer is
    /// NOT_LEADER_OR_FOLLOWER, and an idempotent producer's retry is deduplicated there.
    #[error("{topic}-{partition}: leadership moved before the write was replicated to the ISR")]
    LeadershipLost { topic: String, partition: i32 },
    #[error("{topic}-{partition}: replica closed")]
    Closed { topic: String, partition: i32 },
    /// After leadership moved, this replica's log dropped the write (a divergent tail cut
    /// to match the new leader, or a heal): it is stored nowhere this log follows.
    #[error("{topic}-{partition}: the write was cut from the log after leadership moved")]
    Truncated { topic: String, partition: i32 },
}

pub struct Replica {
    pub topic: String,
    pub partition: i32,
    pub log: Arc<PartitionLog>,
    pub node_id: BrokerId,
    state: Mutex<State>,
    hw: watch::Sender<i64>,
    /// The epoch this replica leads in (`None`: it does not lead). Changed with the role,
    /// under the state lock, so it moves before any follower high watermark is applied.
    leading: watch::Sender<Option<i32>>,
    /// Bumped when this log's start moves through [`Replica::advance_log_start`] or a
    /// follower reports a new log start: wakes held follower fetches (so they learn the new
    /// start at once) and DeleteRecords waiting for the low watermark.
    log_start_moved: watch::Sender<i64>,
    /// Bumped with everything a follower's fetch would learn (see [`Replica::version`]).
    version: AtomicU64,
    /// The manager's signal, bumped with `version` (set when the replica is registered).
    changes: OnceLock<Arc<crate::changes::Changes>>,
}

impl Replica {
    /// A replica of `log` whose batches carry the epochs in `epochs` (rebuilt by the caller's
    /// header scan). The high watermark starts at `hw_checkpoint`, capped by the durable end.
    pub fn new(
        log: Arc<PartitionLog>,
        node_id: BrokerId,
        epochs: EpochCache,
        hw_checkpoint: i64,
    ) -> Arc<Replica> {
        let hw = hw_checkpoint.clamp(log.log_start_offset(), log.committed_offset());
        Arc::new(Replica {
            topic: log.topic().to_string(),
            partition: log.partition(),
            node_id,
            state: Mutex::new(State {
                role: Role::Unknown,
                epochs,
                followers: HashMap::new(),
                leading_since: Instant::now(),
                generation: log.generation(),
            }),
            hw: watch::channel(hw).0,
            leading: watch::channel(None).0,
            log_start_moved: watch::channel(0).0,
            version: AtomicU64::new(0),
            changes: OnceLock::new(),
            log,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn role(&self) -> Role {
        self.lock().role.clone()
    }

    /// Whether this replica leads, without cloning the role (checked on every produce and
    /// fetch).
    pub fn is_leader(&self) -> bool {
        matches!(self.lock().role, Role::Leader { .. })
    }

    /// The epoch this replica follows `leader` in, if it does (without cloning the role: a
    /// follower looks at every replica for every fetch).
    pub fn follower_epoch(&self, leader: BrokerId) -> Option<i32> {
        match self.lock().role {
            Role::Follower { leader: l, epoch } if l == leader => Some(epoch),
            _ => None,
        }
    }

    pub fn high_watermark(&self) -> i64 {
        *self.hw.borrow()
    }

    /// On a leader, how far each of `replicas` (other than itself) trails: messages between
    /// its log end and this log's, and time since it last caught up (Kafka's lastCaughtUpTime;
    /// since leadership began for one that has not fetched yet). Empty unless this replica
    /// leads.
    pub fn follower_lags(&self, replicas: &[BrokerId]) -> Vec<FollowerLag> {
        let st = self.lock();
        if !matches!(st.role, Role::Leader { .. }) {
            return Vec::new();
        }
        let log_end = self.log.log_end_offset();
        let now = Instant::now();
        replicas
            .iter()
            .filter(|r| **r != self.node_id)
            .map(|r| {
                let p = st.followers.get(r);
                FollowerLag {
                    replica: *r,
                    messages: (log_end - p.map_or(self.log.log_start_offset(), |p| p.log_end))
                        .max(0),
                    behind: now.duration_since(p.map_or(st.leading_since, |p| p.caught_up_at)),
                }
            })
            .collect()
    }

    /// Follows the high watermark.
    pub fn subscribe_hw(&self) -> watch::Receiver<i64> {
        self.hw.subscribe()
    }

    /// The epoch this replica leads in, if it leads. Read it with the append it belongs to.
    pub fn leading_epoch(&self) -> Option<i32> {
        *self.leading.borrow()
    }

    /// Resolves once the high watermark reached `end` (every ISR member has the data durably)
    /// while this replica leads in `epoch`, the epoch read with the append. Fails with
    /// [`CommitWaitError::LeadershipLost`] as soon as it does not (see the module invariants).
    pub async fn wait_high_watermark(
        &self,
        end: i64,
        epoch: Option<i32>,
    ) -> Result<(), CommitWaitError> {
        let lost = || CommitWaitError::LeadershipLost {
            topic: self.topic.clone(),
            partition: self.partition,
        };
        let Some(epoch) = epoch else {
            return Err(lost());
        };
        let mut leading = self.leading.subscribe();
        let mut hw = self.hw.subscribe();
        tokio::select! {
            r = hw.wait_for(|hw| *hw >= end) => {
                if r.is_err() {
                    return Err(CommitWaitError::Closed {
                        topic: self.topic.clone(),
                        partition: self.partition,
                    });
                }
            }
            _ = leading.wait_for(|l| *l != Some(epoch)) => return Err(lost()),
        }
        // Reached: it counts only if this replica still leads in that epoch (a follower's
        // high watermark is applied only after the role, and with it `leading`, changed).
        if *self.leading.borrow() == Some(epoch) {
            Ok(())
        } else {
            Err(lost())
        }
    }

    /// Resolves once the write ending at `end`, appended while this replica led in `epoch`,
    /// is committed, wherever leadership went since. While this replica leads in `epoch` that
    /// is [`wait_high_watermark`](Self::wait_high_watermark). Once leadership moved, the
    /// write's fate is what the log this replica now follows (or leads in a later epoch) makes
    /// of it: still held in `epoch` and below the high watermark, it is committed (`Ok`); cut
    /// away, it is [`CommitWaitError::Truncated`]. Answering "not the leader" for a write the
    /// new leader holds would tell an idempotent client it was not stored: librdkafka then
    /// bumps its producer epoch and sends it again, and nobody can recognise the duplicate.
    /// The caller bounds the wait; a timeout means the fate is still unknown.
    pub async fn wait_committed_anywhere(
        &self,
        end: i64,
        epoch: Option<i32>,
    ) -> Result<(), CommitWaitError> {
        let waited = self.wait_high_watermark(end, epoch).await;
        let (Err(CommitWaitError::LeadershipLost { .. }), Some(epoch)) = (&waited, epoch) else {
            return waited;
        };
        let mut hw = self.hw.subscribe();
        loop {
            if let Some(fate) = self.fate(epoch, end) {
                return fate;
            }
            // Truncations lower the high watermark only when it was above the cut, so the
            // watch alone may not wake this: look again every FATE_POLL as well.
            tokio::select! {
                r = hw.changed() => if r.is_err() {
                    return Err(CommitWaitError::Closed {
                        topic: self.topic.clone(),
                        partition: self.partition,
                    });
                },
                _ = tokio::time::sleep(FATE_POLL) => {}
            }
        }
    }

    /// The fate of the write ending at `end` in leader epoch `epoch`, if decided: `Ok` once it
    /// is below the high watermark and this log still holds it in that epoch, `Truncated`
    /// once this log no longer does. Read under the state lock, which truncations, heals and
    /// high watermark changes hold, so the two checks see one state.
    fn fate(&self, epoch: i32, end: i64) -> Option<Result<(), CommitWaitError>> {
        let st = self.lock();
        if st.generation != self.log.generation() {
            // The log healed and its epochs are not reconciled yet: undecided until they are
            // (the heal kept what was synced, which may include the write).
            return None;
        }
        let log_end = self.log.log_end_offset();
        let held = st
            .epochs
            .end_offset_for(epoch, log_end)
            .is_some_and(|(e, last)| e == epoch && last >= end);
        if !held {
            return Some(Err(CommitWaitError::Truncated {
                topic: self.topic.clone(),
                partition: self.partition,
            }));
        }
        (*self.hw.borrow() >= end).then_some(Ok(()))
    }

    /// Applies the metadata's view. Becoming leader (or a new epoch) resets follower progress:
    /// every follower counts as caught up from now, so none is dropped from the ISR before it
    /// had a chance to fetch.
    pub fn set_role(&self, role: Role) {
        let mut st = self.lock();
        if st.role == role {
            return;
        }
        let new_leadership = match (&st.role, &role) {
            (Role::Leader { epoch: a, .. }, Role::Leader { epoch: b, .. }) => a != b,
            (_, Role::Leader { .. }) => true,
            _ => false,
        };
        if new_leadership {
            st.followers.clear();
            st.leading_since = Instant::now();
        }
        tracing::info!(topic = %self.topic, partition = self.partition, node = self.node_id,
            ?role, "replica role");
        let leading = match &role {
            Role::Leader { epoch, .. } => Some(*epoch),
            _ => None,
        };
        st.role = role;
        // Under the state lock: before any follower high watermark can be applied.
        self.leading.send_if_modified(|cur| {
            let changed = *cur != leading;
            *cur = leading;
            changed
        });
        drop(st);
        self.changed();
        self.update_high_watermark();
    }

    /// Notes a batch a leader appended at `base` with `epoch`, in log `generation`
    /// ([`chronik_wal::Appended::generation`]). A batch of an older generation than the one the
    /// epochs describe was cut by a heal: it is not recorded.
    pub fn record_epoch(&self, epoch: i32, base: i64, generation: u64) {
        let mut st = self.lock();
        if generation == st.generation {
            st.epochs.record(epoch, base);
        }
    }

    pub fn last_epoch(&self) -> i32 {
        self.lock().epochs.last_epoch()
    }

    /// Kafka's OffsetForLeaderEpoch on this log: the largest epoch `<= epoch` and where it
    /// ends (the log end for the latest). `None` when the log holds no such epoch.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        let log_end = self.log.log_end_offset();
        self.lock().epochs.end_offset_for(epoch, log_end)
    }

    /// Recomputes the high watermark: on a leader the smallest durable end over itself and
    /// its ISR followers (a follower not heard from since this leadership began holds it
    /// where it is); on a follower, see [`Replica::follower_high_watermark`]. It stays where it
    /// is while the ISR is below the effective min.insync.replicas, as in Kafka 3.7+
    /// (KAFKA-15583): data then on fewer replicas than the topic asks for is not shown to
    /// consumers, whatever acks it was written with.
    pub fn update_high_watermark(&self) {
        let st = self.lock();
        let Role::Leader { isr, min_isr, .. } = &st.role else {
            return;
        };
        if isr.len() < *min_isr {
            return;
        }
        let mut hw = self.log.committed_offset();
        for f in isr.iter().filter(|f| **f != self.node_id) {
            match st.followers.get(f) {
                Some(p) => hw = hw.min(p.durable),
                None => hw = hw.min(self.high_watermark()),
            }
        }
        drop(st);
        let moved = self.hw.send_if_modified(|cur| {
            if hw > *cur {
                *cur = hw;
                true
            } else {
                false
            }
        });
        if moved {
            self.changed();
        }
    }

    /// On a follower of `leader`: the leader's high watermark from an answer served in
    /// `epoch`, capped by what this log holds durably. Ignored unless this replica still
    /// follows `leader` in that epoch (see [`follows`]: a fetch answered before it became
    /// leader must not move its high watermark, which only grows while it leads); checked
    /// under the state lock, which role changes take.
    pub fn set_follower_high_watermark(&self, leader: BrokerId, epoch: i32, leader_hw: i64) {
        let st = self.lock();
        if !follows(&st.role, leader, epoch) {
            return;
        }
        let hw = leader_hw.min(self.log.committed_offset());
        self.hw.send_if_modified(|cur| {
            if hw != *cur {
                *cur = hw;
                true
            } else {
                false
            }
        });
    }

    /// The ISR this leader should propose, if it differs from the current one: followers
    /// that have not caught up within `max_lag` leave; replicas whose durable end reached the
    /// high watermark join. `None` when nothing changes or this node does not lead.
    /// False when [`isr_change`](Self::isr_change) cannot propose anything: not the leader,
    /// or leading alone (an ISR of itself) with no follower heard from, as every RF=1
    /// partition does. A follower joins only after it fetched, so that state is stable; the
    /// ISR tick skips such partitions without looking them up in the metadata, thousands of
    /// them per node.
    pub fn isr_may_change(&self) -> bool {
        let st = self.lock();
        match &st.role {
            Role::Leader { isr, .. } => {
                !(st.followers.is_empty() && isr.as_slice() == [self.node_id])
            }
            _ => false,
        }
    }

    pub fn isr_change(
        &self,
        replicas: &[BrokerId],
        max_lag: Duration,
    ) -> Option<(i32, Vec<BrokerId>)> {
        let st = self.lock();
        let Role::Leader { epoch, isr, .. } = &st.role else {
            return None;
        };
        let now = Instant::now();
        let hw = self.high_watermark();
        let keep = |r: &BrokerId| {
            if *r == self.node_id {
                return true;
            }
            let progress = st.followers.get(r);
            if isr.contains(r) {
                let since = progress.map_or(st.leading_since, |p| p.caught_up_at);
                now.duration_since(since) <= max_lag
            } else {
                // Back in (Kafka's rule) once it durably holds everything below the high
                // watermark, so counting it never lowers it, on a recent fetch that caught up:
                // the progress a follower left behind when it died can look caught up on an
                // idle partition, and would flap it in and out of the ISR every tick. Not
                // "at this log's end": under steady appends a fetch rarely lands exactly
                // there, and the join would wait on that race for ticks after a heal.
                progress.is_some_and(|p| {
                    p.durable >= hw && now.duration_since(p.caught_up_at) <= max_lag
                })
            }
        };
        // Checked before anything is collected: the ISR tick asks every leader on the node,
        // and almost always nothing changes.
        let mut kept = 0;
        for r in replicas {
            match (keep(r), isr.contains(r)) {
                (true, true) => kept += 1,
                (false, false) => {}
                _ => {
                    kept = usize::MAX;
                    break;
                }
            }
        }
        if kept == isr.len() {
            return None;
        }
        let next: Vec<BrokerId> = replicas.iter().copied().filter(|r| keep(r)).collect();
        let mut a = next.clone();
        let mut b = isr.clone();
        a.sort_unstable();
        b.sort_unstable();
        (a != b).then_some((*epoch, next))
    }

    /// Counts `members` towards the high watermark from now on, before the metadata has the
    /// ISR expansion that adds them (Kafka's "maximal ISR"): the controller may elect a new ISR
    /// member as soon as the expansion commits, so it must already hold everything this leader
    /// acknowledges. Only widens; the next role from the metadata replaces it.
    /// The high watermark is recomputed: an ISR reaching min.insync.replicas lets it move,
    /// and no follower fetch may come to do it (in a fetch session an idle one serves none).
    pub fn widen_isr(&self, members: &[BrokerId]) {
        let mut st = self.lock();
        if let Role::Leader { isr, .. } = &mut st.role {
            for m in members {
                if !isr.contains(m) {
                    isr.push(*m);
                }
            }
        }
        drop(st);
        self.update_high_watermark();
    }

    /// Leader side of a whole-segment transfer: the sealed segment at `base_offset`, if this
    /// replica leads in `leader_epoch` and the segment is ready to ship.
    pub fn segment_for(
        &self,
        leader_epoch: i32,
        base_offset: i64,
    ) -> Result<chronik_wal::SealedSegment, i32> {
        match &self.lock().role {
            Role::Leader { epoch, .. } if *epoch == leader_epoch => {}
            Role::Leader { epoch, .. } if *epoch > leader_epoch => {
                return Err(code::FENCED_LEADER_EPOCH)
            }
            Role::Leader { .. } => return Err(code::UNKNOWN_LEADER_EPOCH),
            _ => return Err(code::NOT_LEADER_OR_FOLLOWER),
        }
        self.log
            .sealed_segment_at(base_offset)
            .ok_or(code::OFFSET_OUT_OF_RANGE)
    }

    /// Follower side: installs a whole segment fetched from `leader` in `epoch` and verified,
    /// at this log's end, and records its leader epochs. `Ok(false)` (nothing installed) if
    /// this replica no longer follows `leader` in that epoch; checked under the state lock, as
    /// for [`Replica::append_fetched`].
    pub fn install_fetched(
        &self,
        leader: BrokerId,
        epoch: i32,
        verified: chronik_wal::VerifiedInstall,
    ) -> Result<bool, WalError> {
        let mut st = self.lock();
        if !follows(&st.role, leader, epoch) {
            return Ok(false);
        }
        let epochs = verified.epochs().to_vec();
        self.log.finish_install(verified)?;
        for (epoch, start) in epochs {
            st.epochs.record(epoch, start);
        }
        Ok(true)
    }

    /// Follower side: appends batches `leader` served in `epoch` for a fetch at
    /// `fetch_offset`, unchanged. Returns `false` (and appends nothing) unless this replica
    /// still follows `leader` in that epoch (see [`follows`]): the role is checked and the
    /// batches appended under the state lock, so once [`Replica::set_role`] moved the replica
    /// away from following, no fetched batch lands after it (a new leader's producer-state
    /// scan then sees the whole log).
    ///
    /// A compacted leader's log has gaps: a batch may start above the offset fetched (or above
    /// the end of the batch before it), and is appended there with the gap
    /// (`append_replica_after`); this log must still end exactly where the fetch started, so a
    /// truncation or heal since the fetch is refused (`ReplicaGap`) rather than papered over.
    pub fn append_fetched(
        &self,
        leader: BrokerId,
        epoch: i32,
        fetch_offset: i64,
        records: &[u8],
    ) -> Result<bool, WalError> {
        let mut st = self.lock();
        if !follows(&st.role, leader, epoch) {
            return Ok(false);
        }
        let mut log_end = fetch_offset;
        let mut pos = 0;
        while pos < records.len() {
            let header = chronik_wal::BatchHeader::parse(&records[pos..])?;
            let len = header.total_size();
            let end = pos + len;
            if end > records.len() {
                return Err(WalError::InvalidBatch(
                    chronik_wal::BatchError::TrailingBytes {
                        expected: len,
                        actual: records.len() - pos,
                    },
                ));
            }
            let mut batch = records[pos..end].to_vec();
            let appended = self.log.append_replica_after(&mut batch, log_end)?;
            log_end = appended.last_offset + 1;
            if appended.generation != st.generation {
                // The log healed since the last append here: nothing was appended since the
                // cut (appends take this lock and reconcile), so this batch starts at it.
                st.epochs.truncate_from(appended.base_offset);
                st.generation = appended.generation;
            }
            st.epochs
                .record(header.partition_leader_epoch, appended.base_offset);
            pos = end;
        }
        Ok(true)
    }

    /// After the log healed (was cut back to its last synced offset outside replication):
    /// forgets the leader epochs recorded at or past the cut and lowers the high watermark to
    /// the log end. Exact as long as nothing was appended since the heal except through
    /// `append_fetched` (which reconciles itself, under the same lock): the broker keeps a
    /// healed partition's leader appends closed until it called this.
    pub fn reconcile_heal(&self) {
        let end = self.log.log_end_offset();
        {
            let mut st = self.lock();
            let generation = self.log.generation();
            if generation != st.generation {
                st.epochs.truncate_from(end);
                st.generation = generation;
            }
        }
        let lowered = self.hw.send_if_modified(|cur| {
            let lower = *cur > end;
            if lower {
                *cur = end;
            }
            lower
        });
        if lowered {
            self.changed();
        }
    }

    /// Follower side: cuts a divergent tail at `offset` (a batch boundary in both logs), as
    /// `leader` answered in `epoch`. Returns `false` (and cuts nothing) unless this replica
    /// still follows `leader` in that epoch: checked, and the tail cut, under the state lock,
    /// as for [`Replica::append_fetched`].
    pub fn truncate_fetched(
        &self,
        leader: BrokerId,
        epoch: i32,
        offset: i64,
    ) -> Result<bool, WalError> {
        let mut st = self.lock();
        if !follows(&st.role, leader, epoch) {
            return Ok(false);
        }
        let offset = offset.max(self.log.log_start_offset());
        if offset >= self.log.log_end_offset() {
            return Ok(true);
        }
        tracing::warn!(topic = %self.topic, partition = self.partition, node = self.node_id,
            from = self.log.log_end_offset(), to = offset, "truncating a divergent tail");
        self.log.truncate_to(offset)?;
        st.epochs.truncate_from(offset);
        self.hw.send_if_modified(|cur| {
            if *cur > offset {
                *cur = offset;
                true
            } else {
                false
            }
        });
        Ok(true)
    }
}

/// Whether a replica in `role` may apply what `leader` served in leader epoch `epoch`: it
/// follows that leader in that very epoch. A fetch stream carries every partition from one
/// leader node across epoch changes, so an answer can arrive after the metadata moved the
/// partition to a newer epoch, even under the same leader (it lost and regained leadership,
/// and may have truncated what the answer carried): such an answer is stale whatever its
/// offsets say, and is dropped. (A newer epoch than this replica knows cannot be served: the
/// leader answers only fetches in its own epoch, and a fetch names the follower's.)
fn follows(role: &Role, leader: BrokerId, epoch: i32) -> bool {
    matches!(role, Role::Follower { leader: l, epoch: e } if *l == leader && *e == epoch)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use chronik_wal::LogConfig;

    async fn replica(dir: &std::path::Path) -> Arc<Replica> {
        let log = PartitionLog::open(dir, "t", 0, LogConfig::default())
            .await
            .expect("open log");
        Replica::new(log, 1, EpochCache::default(), 0)
    }

    fn leader(epoch: i32) -> Role {
        Role::Leader {
            epoch,
            isr: vec![1],
            min_isr: 1,
        }
    }

    #[tokio::test]
    async fn a_commit_wait_counts_only_while_leading_in_its_epoch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = replica(dir.path()).await;
        // Not leading yet: nothing can be confirmed.
        assert_eq!(r.leading_epoch(), None);
        assert!(matches!(
            r.wait_high_watermark(0, r.leading_epoch()).await,
            Err(CommitWaitError::LeadershipLost { .. })
        ));

        r.set_role(leader(3));
        assert_eq!(r.leading_epoch(), Some(3));
        r.wait_high_watermark(0, Some(3))
            .await
            .expect("reached while leading in epoch 3");
        // Reached, but in another epoch than the append's.
        assert!(matches!(
            r.wait_high_watermark(0, Some(2)).await,
            Err(CommitWaitError::LeadershipLost { .. })
        ));

        // A wait still pending when leadership moves fails at once, whatever the follower's
        // high watermark does afterwards.
        let waiting = {
            let r = r.clone();
            tokio::spawn(async move { r.wait_high_watermark(10, Some(3)).await })
        };
        tokio::task::yield_now().await;
        r.set_role(Role::Follower {
            leader: 2,
            epoch: 4,
        });
        let result = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the wait ends with the leadership")
            .expect("task");
        assert!(matches!(
            result,
            Err(CommitWaitError::LeadershipLost { .. })
        ));
        assert_eq!(r.leading_epoch(), None);
    }

    /// KAFKA-15583: below the effective min.insync.replicas the high watermark stays, even
    /// over data every ISR member holds; it moves once the topic's value allows it again.
    #[tokio::test]
    async fn the_high_watermark_stays_while_the_isr_is_below_min_isr() {
        use chronik_wal::batch::test_util::batch;
        let dir = tempfile::tempdir().expect("tempdir");
        let r = replica(dir.path()).await;
        let lead = |min_isr| Role::Leader {
            epoch: 1,
            isr: vec![1],
            min_isr,
        };
        r.set_role(lead(2));
        let written = r.log.append(&mut batch(3, 32), 1).expect("append");
        let end = written.last_offset + 1;
        r.log.wait_committed(end).await.expect("synced");
        r.update_high_watermark();
        assert_eq!(
            r.high_watermark(),
            0,
            "ISR of 1 below min.insync.replicas 2"
        );
        // Widened to min.insync.replicas (an ISR expansion proposed), with the follower
        // already holding everything: the high watermark moves with no fetch to move it.
        r.record_epoch(1, written.base_offset, written.generation);
        r.serve_fetch(
            FollowerFetch {
                follower: 2,
                fetch_offset: end,
                last_fetched_epoch: 1,
                durable_offset: end,
                leader_epoch: 1,
                log_start_offset: 0,
            },
            1 << 20,
        )
        .await;
        assert_eq!(r.high_watermark(), 0, "follower 2 is not in the ISR");
        r.widen_isr(&[1, 2]);
        assert_eq!(r.high_watermark(), end);
        r.set_role(lead(1));
        assert_eq!(r.high_watermark(), end);
    }

    /// A write appended while leading whose wait outlives the leadership: committed once the
    /// log this replica now follows holds it below the high watermark, lost once that log cut
    /// it; never "not the leader" while the new leader may hold it.
    #[tokio::test]
    async fn a_commit_wait_follows_its_write_after_leadership_moves() {
        use chronik_wal::batch::test_util::batch;
        let dir = tempfile::tempdir().expect("tempdir");
        let r = replica(dir.path()).await;
        r.set_role(Role::Leader {
            epoch: 1,
            isr: vec![1, 2],
            min_isr: 1,
        });
        let written = r.log.append(&mut batch(3, 32), 1).expect("append");
        r.record_epoch(1, written.base_offset, written.generation);
        let end = written.last_offset + 1;
        r.log.wait_committed(end).await.expect("synced");
        let wait = |r: &Arc<Replica>| {
            let r = r.clone();
            tokio::spawn(async move { r.wait_committed_anywhere(end, Some(1)).await })
        };
        // Follower 2 has not fetched: the high watermark stays below the write.
        let committed = wait(&r);
        tokio::task::yield_now().await;
        r.set_role(Role::Follower {
            leader: 2,
            epoch: 2,
        });
        tokio::time::sleep(FATE_POLL * 2).await;
        assert!(!committed.is_finished(), "the fate is not known yet");
        // The new leader holds it and its high watermark passed it.
        r.set_follower_high_watermark(2, 2, end);
        let got = tokio::time::timeout(Duration::from_secs(5), committed)
            .await
            .expect("decided")
            .expect("task");
        assert!(got.is_ok(), "{got:?}");

        // Another write, then leadership moves and the new leader's log does not have it.
        r.set_role(Role::Leader {
            epoch: 3,
            isr: vec![1, 2],
            min_isr: 1,
        });
        let second = r.log.append(&mut batch(2, 32), 3).expect("append");
        r.record_epoch(3, second.base_offset, second.generation);
        let end2 = second.last_offset + 1;
        let lost = {
            let r = r.clone();
            tokio::spawn(async move { r.wait_committed_anywhere(end2, Some(3)).await })
        };
        tokio::task::yield_now().await;
        r.set_role(Role::Follower {
            leader: 2,
            epoch: 4,
        });
        assert!(r.truncate_fetched(2, 4, second.base_offset).expect("cut"));
        let got = tokio::time::timeout(Duration::from_secs(5), lost)
            .await
            .expect("decided")
            .expect("task");
        assert!(
            matches!(got, Err(CommitWaitError::Truncated { .. })),
            "{got:?}"
        );
    }

    /// A follower that fetched once and died leaves the ISR after `max_lag`, and its stale
    /// progress (caught up, on an idle partition) does not bring it back; a fresh fetch does.
    #[tokio::test]
    async fn a_dead_follower_leaves_the_isr_and_stays_out_until_it_fetches() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = replica(dir.path()).await;
        r.set_role(Role::Leader {
            epoch: 1,
            isr: vec![1, 2],
            min_isr: 1,
        });
        let fetch = FollowerFetch {
            follower: 2,
            fetch_offset: 0,
            last_fetched_epoch: -1,
            durable_offset: 0,
            leader_epoch: 1,
            log_start_offset: 0,
        };
        let served = r.serve_fetch(fetch, 1 << 20).await;
        assert_eq!(served.error_code, code::NONE);
        let max_lag = Duration::from_millis(50);
        assert_eq!(r.isr_change(&[1, 2], max_lag), None);
        tokio::time::sleep(Duration::from_millis(80)).await;
        let (epoch, shrunk) = r.isr_change(&[1, 2], max_lag).expect("follower 2 lags");
        assert_eq!((epoch, shrunk.as_slice()), (1, &[1][..]));
        r.set_role(leader(1));
        assert_eq!(r.isr_change(&[1, 2], max_lag), None, "no flapping back in");
        r.serve_fetch(fetch, 1 << 20).await;
        let (_, grown) = r.isr_change(&[1, 2], max_lag).expect("caught up again");
        assert_eq!(grown, vec![1, 2]);
    }

    /// A v2 record batch of one record as a leader serves it: base offset `base`, stamped
    /// with `epoch`, CRC32C valid (the record bytes themselves are opaque to the WAL).
    pub(crate) fn served_batch(base: i64, epoch: i32) -> Vec<u8> {
        let mut b = vec![0u8; 61 + 8];
        let batch_length = (b.len() - 12) as i32;
        b[0..8].copy_from_slice(&base.to_be_bytes());
        b[8..12].copy_from_slice(&batch_length.to_be_bytes());
        b[12..16].copy_from_slice(&epoch.to_be_bytes());
        b[16] = 2; // magic
        b[43..51].copy_from_slice(&(-1i64).to_be_bytes()); // no producer id
        b[51..53].copy_from_slice(&(-1i16).to_be_bytes());
        b[53..57].copy_from_slice(&(-1i32).to_be_bytes());
        b[57..61].copy_from_slice(&1i32.to_be_bytes()); // one record
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    /// A compacted leader serves batches with gaps between them (and after the offset
    /// fetched): the follower appends them at their offsets, with the same gaps, as long as
    /// its log still ends where the fetch started.
    #[tokio::test]
    async fn batches_of_a_compacted_leader_keep_their_gaps() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = replica(dir.path()).await;
        r.set_role(Role::Follower {
            leader: 2,
            epoch: 5,
        });
        let served: Vec<u8> = [served_batch(3, 5), served_batch(7, 5)].concat();
        assert_eq!(r.append_fetched(2, 5, 0, &served).ok(), Some(true));
        assert_eq!(r.log.log_end_offset(), 8);
        // A fetch that started elsewhere than this log's end appends nothing.
        assert!(r.append_fetched(2, 5, 5, &served_batch(9, 5)).is_err());
        assert_eq!(r.log.log_end_offset(), 8);
        r.log.wait_committed(8).await.expect("durable");
        let read = r.log.read(0, 1 << 20, i64::MAX).expect("read");
        assert_eq!(read.first_offset, Some(3));
        assert_eq!(read.batches, 2);
    }

    /// The fetch stream outlives leader epochs: an answer the same leader served in an older
    /// epoch, arriving after the metadata moved on, changes nothing (no append, no
    /// truncation, no high watermark), even though its offsets would fit.
    #[tokio::test]
    async fn an_answer_from_an_older_leader_epoch_is_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = replica(dir.path()).await;
        r.set_role(Role::Follower {
            leader: 2,
            epoch: 5,
        });
        assert_eq!(
            r.append_fetched(2, 5, r.log.log_end_offset(), &served_batch(0, 5))
                .ok(),
            Some(true)
        );
        r.log.wait_committed(1).await.expect("durable");
        assert_eq!(r.log.log_end_offset(), 1);

        // Node 2 lost and regained leadership: same leader, epoch 6.
        r.set_role(Role::Follower {
            leader: 2,
            epoch: 6,
        });
        // Late answers from epoch 5: offsets fit (the log ends at 1), yet all are refused.
        assert_eq!(
            r.append_fetched(2, 5, r.log.log_end_offset(), &served_batch(1, 5))
                .ok(),
            Some(false)
        );
        assert_eq!(r.log.log_end_offset(), 1, "nothing appended");
        assert_eq!(r.truncate_fetched(2, 5, 0).ok(), Some(false));
        assert_eq!(r.log.log_end_offset(), 1, "nothing truncated");
        r.set_follower_high_watermark(2, 5, 1);
        assert_eq!(r.high_watermark(), 0, "high watermark unmoved");
        // Another leader's answer in the current epoch number is refused too.
        assert_eq!(
            r.append_fetched(3, 6, r.log.log_end_offset(), &served_batch(1, 6))
                .ok(),
            Some(false)
        );

        // The current epoch's answers apply.
        r.set_follower_high_watermark(2, 6, 1);
        assert_eq!(r.high_watermark(), 1);
        assert_eq!(
            r.append_fetched(2, 6, r.log.log_end_offset(), &served_batch(1, 6))
                .ok(),
            Some(true)
        );
        assert_eq!(r.log.log_end_offset(), 2);
        assert_eq!(r.last_epoch(), 6);
        assert_eq!(r.truncate_fetched(2, 6, 1).ok(), Some(true));
        assert_eq!(r.log.log_end_offset(), 1);
        assert_eq!(r.last_epoch(), 5);
    }

    /// The leader names the epoch it served in, and only its own: a fetch in another epoch is
    /// refused with the Kafka error, so a follower never gets an answer newer than it asked.
    #[tokio::test]
    async fn a_leader_answers_in_its_own_epoch_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = replica(dir.path()).await;
        let fetch = |leader_epoch| FollowerFetch {
            follower: 2,
            fetch_offset: 0,
            last_fetched_epoch: -1,
            durable_offset: 0,
            leader_epoch,
            log_start_offset: 0,
        };
        assert_eq!(
            r.serve_fetch(fetch(7), 1024).await.leader_epoch,
            -1,
            "not leading"
        );
        r.set_role(Role::Leader {
            epoch: 7,
            isr: vec![1, 2],
            min_isr: 1,
        });
        let served = r.serve_fetch(fetch(7), 1024).await;
        assert_eq!((served.error_code, served.leader_epoch), (code::NONE, 7));
        assert_eq!(
            r.serve_fetch(fetch(6), 1024).await.error_code,
            code::FENCED_LEADER_EPOCH
        );
        assert_eq!(
            r.serve_fetch(fetch(8), 1024).await.error_code,
            code::UNKNOWN_LEADER_EPOCH
        );
    }

    #[tokio::test]
    async fn an_isr_change_in_the_same_epoch_keeps_waits_alive() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = replica(dir.path()).await;
        r.set_role(Role::Leader {
            epoch: 1,
            isr: vec![1, 2],
            min_isr: 1,
        });
        let waiting = {
            let r = r.clone();
            tokio::spawn(async move { r.wait_high_watermark(10, Some(1)).await })
        };
        tokio::task::yield_now().await;
        r.set_role(leader(1));
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "same epoch: still leading");
        waiting.abort();
    }

    /// The log start across replicas: the leader's low watermark counts every named follower
    /// (-1 until it fetched), a follower moves its start only up to its high watermark, and one
    /// whose log ends below the leader's restarts at the offset it is given.
    #[tokio::test]
    async fn log_start_follows_the_leader_and_the_low_watermark_counts_every_replica() {
        let (dl, df) = (
            tempfile::tempdir().expect("tempdir"),
            tempfile::tempdir().expect("tempdir"),
        );
        let l = replica(dl.path()).await;
        l.set_role(Role::Leader {
            epoch: 1,
            isr: vec![1, 2],
            min_isr: 1,
        });
        for i in 0..5 {
            l.log.append(&mut served_batch(i, 1), 1).expect("append");
        }
        l.log.wait_committed(5).await.expect("committed");
        l.record_epoch(1, 0, l.log.generation());
        let fetch = |log_start_offset| FollowerFetch {
            follower: 2,
            fetch_offset: 5,
            last_fetched_epoch: 1,
            durable_offset: 5,
            leader_epoch: 1,
            log_start_offset,
        };
        assert_eq!(l.low_watermark(&[1, 2]), Some(-1), "2 has not fetched yet");
        l.serve_fetch(fetch(0), 1 << 20).await;
        assert_eq!(l.low_watermark(&[1, 2]), Some(0));
        let moved = l.subscribe_log_start();
        l.advance_log_start(3).await.expect("advance");
        assert!(moved.has_changed().expect("watch"));
        assert_eq!(l.log.log_start_offset(), 3);
        assert_eq!(l.low_watermark(&[1, 2]), Some(0), "2 still starts at 0");
        assert_eq!(l.low_watermark(&[1, 2, 3]), Some(-1), "3 never fetched");
        let served = l.serve_fetch(fetch(3), 1 << 20).await;
        assert_eq!(served.log_start_offset, 3);
        assert_eq!(l.low_watermark(&[1, 2]), Some(3));

        let f = replica(df.path()).await;
        f.set_role(Role::Follower {
            leader: 1,
            epoch: 1,
        });
        for i in 0..5 {
            assert_eq!(
                f.append_fetched(1, 1, f.log.log_end_offset(), &served_batch(i, 1))
                    .ok(),
                Some(true)
            );
        }
        f.log.wait_committed(5).await.expect("committed");
        f.set_follower_high_watermark(1, 1, 2);
        f.follow_log_start(1, 1, 4).await.expect("follow");
        assert_eq!(f.log.log_start_offset(), 2, "never past its high watermark");
        f.follow_log_start(1, 0, 4).await.expect("stale epoch");
        assert_eq!(
            f.log.log_start_offset(),
            2,
            "an answer of another epoch changes nothing"
        );
        assert_eq!(
            f.restart_at(1, 1, 3).ok(),
            Some(false),
            "not past its log end"
        );
        assert_eq!(f.restart_at(1, 1, 100).ok(), Some(true));
        assert_eq!(
            (f.log.log_start_offset(), f.log.log_end_offset()),
            (100, 100)
        );
        assert_eq!((f.high_watermark(), f.last_epoch()), (100, -1));
        assert_eq!(
            f.append_fetched(1, 1, f.log.log_end_offset(), &served_batch(100, 1))
                .ok(),
            Some(true)
        );
    }
}
