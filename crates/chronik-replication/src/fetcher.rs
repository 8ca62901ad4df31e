//! Follower side: one task per leader node, one gRPC stream to it, fetching every partition
//! this node follows from that leader. The stream is a fetch session (see `session` and the
//! proto): once the leader says it keeps sessions, a request names only the partitions whose
//! fetch state changed since the previous one, and an answer only those with news; a
//! partition left out of an answer had none. After appending fetched batches the follower waits
//! until they are durable before its next fetch, so the offset it reports is one the leader
//! may count towards the high watermark. A partition far behind gets whole sealed segments
//! (`FetchSegment`) from a task beside the stream, at most two at a time per leader.
//!
//! Every wait on the leader has a deadline: a partition black-holes a connection rather than
//! failing it, and TCP's retransmission backoff would keep a stream from before the cut silent
//! for up to ~13 s after the heal (the follower out of the ISR all that time). A fetch not
//! answered within the leader's hold plus [`ANSWER_MARGIN`] ends the stream, and the next one
//! starts on a new connection after [`BACKOFF`].

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

use crate::manager::{upgrade, ReplicaManager};
use crate::pb::replication_client::ReplicationClient;
use crate::pb::{FetchRequest, FetchResponse, PartitionFetch, PartitionId, SegmentRequest};
use crate::replica::{code, BrokerId, Replica, Role};

/// Pause before reconnecting, and while there is nothing to follow.
const BACKOFF: Duration = Duration::from_millis(200);
/// How much longer than the leader's hold (`max_wait`) a fetch may take to be answered:
/// reading and sending up to 8 MiB on a busy machine. Past that the stream counts as dead.
const ANSWER_MARGIN: Duration = Duration::from_millis(1500);
/// Longest wait for the start of a whole-segment transfer or its next 1 MiB piece.
const PIECE_DEADLINE: Duration = Duration::from_secs(5);
/// Largest response accepted from a leader (its `max_bytes` plus framing).
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
/// Whole-segment transfers from one leader at a time; the others queue (holding nothing).
const MAX_CONCURRENT_TRANSFERS: usize = 2;

/// Partitions whose whole-segment transfer from this leader is queued or under way: left out
/// of fetches until it ends, so a long transfer never holds up the partitions that are in
/// sync (they would otherwise drop out of the ISR behind it).
#[derive(Clone)]
struct Transfers {
    running: Arc<Mutex<HashSet<(String, i32)>>>,
    permits: Arc<Semaphore>,
}

impl Transfers {
    fn new() -> Transfers {
        Transfers {
            running: Arc::default(),
            permits: Arc::new(Semaphore::new(MAX_CONCURRENT_TRANSFERS)),
        }
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashSet<(String, i32)>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub(crate) async fn run(manager: Weak<ReplicaManager>, leader: BrokerId, addr: String) {
    let endpoint = match chronik_rpc::endpoint(&addr) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(leader, error = %e, "bad leader RPC address");
            return;
        }
    };
    let transfers = Transfers::new();
    // Whether the previous stream was answered: a failure after answers is news, the
    // failures of attempts that follow it (while the leader stays unreachable) are not.
    let mut was_up = true;
    loop {
        let Some(m) = upgrade(&manager) else { return };
        if *m.stopping().borrow() {
            return;
        }
        if m.following(leader).is_empty() {
            drop(m);
            tokio::time::sleep(BACKOFF).await;
            continue;
        }
        let node = m.node_id;
        drop(m);
        let mut answered = false;
        let ended = stream_once(&manager, leader, &endpoint, &transfers, &mut answered).await;
        if let Err(e) = &ended {
            if answered || was_up {
                tracing::warn!(node, leader, error = %e,
                    "replication stream to the leader failed; reconnecting");
            } else {
                tracing::debug!(node, leader, error = %e,
                    "replication stream to the leader failed again");
            }
        }
        was_up = answered || ended.is_ok();
        tokio::time::sleep(BACKOFF).await;
    }
}

/// `fut`, failed with `what` unless done by `until`.
async fn by<T>(
    until: Instant,
    what: &str,
    fut: impl Future<Output = Result<T, String>>,
) -> Result<T, String> {
    tokio::time::timeout_at(until, fut)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "{what}: no answer in time, the stream is presumed dead"
            ))
        })
}

/// When an answer to `req`, sent now, is due.
fn answer_due(req: &FetchRequest) -> Instant {
    Instant::now() + Duration::from_millis(req.max_wait_ms as u64) + ANSWER_MARGIN
}

/// One stream's life: fetch, apply, repeat, until an error, a missed deadline or nothing is
/// left to follow. Sets `answered` once the leader answered a fetch.
async fn stream_once(
    manager: &Weak<ReplicaManager>,
    leader: BrokerId,
    endpoint: &Endpoint,
    transfers: &Transfers,
    answered: &mut bool,
) -> Result<(), String> {
    // A new connection for every stream: the previous stream may have died with its
    // connection black-holed, and a stream opened on that one would wait just as long.
    let channel = endpoint.connect_lazy();
    let mut client = ReplicationClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let (tx, rx) = mpsc::channel(1);
    // A new stream, a new session: its first request names every partition.
    let mut sent = Sent::default();
    let Some(first) = next_request(manager, leader, transfers, &mut sent) else {
        return Ok(());
    };
    let mut due = answer_due(&first);
    tx.send(first).await.map_err(|e| e.to_string())?;
    let open = async {
        client
            .fetch(ReceiverStream::new(rx))
            .await
            .map_err(|s| s.to_string())
    };
    let mut responses = by(due, "opening the stream", open).await?.into_inner();
    loop {
        let next = async {
            match responses.message().await {
                Ok(Some(r)) => Ok(r),
                Ok(None) => Err("leader closed the stream".to_string()),
                Err(s) => Err(s.to_string()),
            }
        };
        let resp = by(due, "fetch", next).await?;
        *answered = true;
        sent.incremental = resp.sessions;
        let backoff = apply(manager, leader, resp, &sent, &client, transfers).await;
        if backoff {
            tokio::time::sleep(BACKOFF).await;
        }
        let Some(req) = next_request(manager, leader, transfers, &mut sent) else {
            return Ok(());
        };
        due = answer_due(&req);
        // Bounded too: the request waits here while the connection cannot take it.
        by(due, "sending a fetch", async {
            tx.send(req).await.map_err(|e| e.to_string())
        })
        .await?;
    }
}

type Key = (String, i32);

/// A partition's fetch state, as a request names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FetchState {
    fetch_offset: i64,
    last_fetched_epoch: i32,
    durable_offset: i64,
    leader_epoch: i32,
    log_start_offset: i64,
}

impl FetchState {
    fn of(r: &Replica, epoch: i32) -> FetchState {
        FetchState {
            fetch_offset: r.log.log_end_offset(),
            last_fetched_epoch: r.last_epoch(),
            durable_offset: r.log.committed_offset(),
            leader_epoch: epoch,
            log_start_offset: r.log.log_start_offset(),
        }
    }

    fn named(self, key: &Key) -> PartitionFetch {
        PartitionFetch {
            topic: key.0.clone(),
            partition: key.1,
            fetch_offset: self.fetch_offset,
            last_fetched_epoch: self.last_fetched_epoch,
            durable_offset: self.durable_offset,
            leader_epoch: self.leader_epoch,
            log_start_offset: self.log_start_offset,
        }
    }
}

/// Follower side of the stream's fetch session (see `session` and the proto): each
/// partition's fetch state as last named, so a request names only what changed.
#[derive(Default)]
struct Sent {
    /// Per partition: its state as last named, and the request it was last fetched in.
    fetches: HashMap<Key, (FetchState, u64)>,
    requests: u64,
    /// The leader keeps sessions (its answers say so): requests may be incremental.
    incremental: bool,
}

impl Sent {
    /// Where the fetch in flight of `key` started: its batches are appended from there.
    fn fetched_from(&self, key: &Key) -> Option<i64> {
        self.fetches.get(key).map(|(s, _)| s.fetch_offset)
    }
}

/// The next request: every partition this node follows from `leader` (but those whose
/// whole-segment transfer runs), or, once the leader keeps sessions, those whose state changed
/// since the last request and those no longer fetched. `None` when nothing is left to follow.
fn next_request(
    manager: &Weak<ReplicaManager>,
    leader: BrokerId,
    transfers: &Transfers,
    sent: &mut Sent,
) -> Option<FetchRequest> {
    let m = upgrade(manager)?;
    if *m.stopping().borrow() {
        return None;
    }
    sent.requests += 1;
    let (round, whole) = (sent.requests, !sent.incremental);
    let mut named = Vec::new();
    let mut any = false;
    {
        let running = transfers.running();
        m.for_each_following(leader, |key, r, epoch| {
            if !running.is_empty() && running.contains(key) {
                return;
            }
            any = true;
            let now = FetchState::of(r, epoch);
            match sent.fetches.get_mut(key) {
                Some((was, seen)) => {
                    *seen = round;
                    if whole || *was != now {
                        *was = now;
                        named.push(now.named(key));
                    }
                }
                None => {
                    sent.fetches.insert(key.clone(), (now, round));
                    named.push(now.named(key));
                }
            }
        });
    }
    if !any {
        return None;
    }
    let mut removed = Vec::new();
    sent.fetches.retain(|key, (_, seen)| {
        if *seen != round && !whole {
            removed.push(PartitionId {
                topic: key.0.clone(),
                partition: key.1,
            });
        }
        *seen == round
    });
    Some(FetchRequest {
        follower_id: m.node_id as u64,
        partitions: named,
        max_wait_ms: m.config.max_wait.as_millis() as u32,
        max_bytes: m.config.max_bytes as u32,
        incremental: !whole,
        removed,
    })
}

/// Applies one response. Returns true if the follower should pause before fetching again
/// (the leader refused: its role or epoch differs from ours until the metadata catches up).
async fn apply(
    manager: &Weak<ReplicaManager>,
    leader: BrokerId,
    resp: FetchResponse,
    sent: &Sent,
    client: &ReplicationClient<Channel>,
    transfers: &Transfers,
) -> bool {
    let Some(m) = upgrade(manager) else {
        return false;
    };
    let node = m.node_id;
    let mut backoff = false;
    let mut waits = Vec::new();
    let mut starts: Vec<(Arc<Replica>, i32, i64)> = Vec::new();
    for pd in resp.partitions {
        let Some(replica) = m.get(&pd.topic, pd.partition) else {
            continue;
        };
        let Role::Follower { leader: l, epoch } = replica.role() else {
            continue;
        };
        if l != leader {
            continue;
        }
        if pd.error_code == code::OFFSET_OUT_OF_RANGE
            && pd.leader_epoch == epoch
            && pd.restart_offset > replica.log.log_end_offset()
        {
            if let Err(e) = replica.restart_at(leader, epoch, pd.restart_offset) {
                tracing::error!(topic = %pd.topic, partition = pd.partition, error = %e,
                    "cannot start the log again at the leader's log start");
                backoff = true;
            }
            continue;
        }
        if pd.error_code != code::NONE {
            backoff = true;
            tracing::debug!(topic = %pd.topic, partition = pd.partition, leader, code = pd.error_code,
                "leader refused a replica fetch");
            continue;
        }
        if pd.leader_epoch != epoch {
            // Served in an epoch this replica has left (see `replica::follows`); the
            // replica's own calls below check it again, under its lock.
            tracing::debug!(topic = %pd.topic, partition = pd.partition, leader,
                served = pd.leader_epoch, epoch, "dropped a fetch answer from an older epoch");
            continue;
        }
        if pd.diverging_end_offset >= 0 {
            if let Err(e) = replica.truncate_fetched(leader, epoch, pd.diverging_end_offset) {
                tracing::error!(topic = %pd.topic, partition = pd.partition, error = %e,
                    "cannot truncate a divergent tail");
                backoff = true;
            }
            continue;
        }
        if pd.segment_available {
            let key = (replica.topic.clone(), replica.partition);
            if transfers.running().insert(key.clone()) {
                tokio::spawn(transfer(
                    client.clone(),
                    node as u64,
                    leader,
                    replica,
                    transfers.clone(),
                    key,
                ));
            }
            continue;
        }
        if !pd.records.is_empty() {
            let Some(from) = sent.fetched_from(&(pd.topic.clone(), pd.partition)) else {
                continue; // not asked for in this fetch
            };
            match replica.append_fetched(leader, epoch, from, &pd.records) {
                Ok(true) => {}
                Ok(false) => continue, // no longer following this leader in this epoch
                Err(e) => {
                    tracing::error!(topic = %pd.topic, partition = pd.partition, error = %e,
                        "cannot append replicated batches");
                    backoff = true;
                    continue;
                }
            }
            let end = replica.log.log_end_offset();
            waits.push((replica.clone(), epoch, end, pd.high_watermark));
        } else {
            replica.set_follower_high_watermark(leader, epoch, pd.high_watermark);
        }
        if pd.log_start_offset > replica.log.log_start_offset() {
            starts.push((replica.clone(), epoch, pd.log_start_offset));
        }
    }
    drop(m);
    // Durable before the next fetch reports it.
    for (replica, epoch, end, hw) in waits {
        if let Err(e) = replica.log.wait_committed(end).await {
            tracing::error!(topic = %replica.topic, partition = replica.partition, error = %e,
                "replicated batches not durable");
            backoff = true;
        }
        replica.set_follower_high_watermark(leader, epoch, hw);
    }
    // After the high watermarks: the log start follows the leader's only up to there.
    for (replica, epoch, start) in starts {
        if let Err(e) = replica.follow_log_start(leader, epoch, start).await {
            tracing::error!(topic = %replica.topic, partition = replica.partition, error = %e,
                "cannot move the log start offset to the leader's");
            backoff = true;
        }
    }
    backoff
}

/// One queued transfer: waits for a permit, then fetches and installs whole segments for as
/// long as the leader has a sealed one at this replica's end (no round trip through the fetch
/// stream between them), waits until they are durable (the next fetch reports it), and
/// always takes the partition off the list.
async fn transfer(
    mut client: ReplicationClient<Channel>,
    node: u64,
    leader: BrokerId,
    replica: Arc<Replica>,
    transfers: Transfers,
    key: (String, i32),
) {
    if let Ok(_permit) = transfers.permits.clone().acquire_owned().await {
        let mut installed = false;
        loop {
            match fetch_segment(&mut client, node, leader, &replica).await {
                Ok(Transfer::Installed) => installed = true,
                Ok(Transfer::NoSegment | Transfer::NotFollowing) => break,
                Err(e) => {
                    tracing::warn!(topic = %replica.topic, partition = replica.partition, leader,
                        error = %e, "whole-segment transfer failed");
                    tokio::time::sleep(BACKOFF).await;
                    break;
                }
            }
        }
        if installed {
            let end = replica.log.log_end_offset();
            if let Err(e) = replica.log.wait_committed(end).await {
                tracing::error!(topic = %replica.topic, partition = replica.partition,
                    error = %e, "installed segment not durable");
            }
        }
    }
    transfers.running().remove(&key);
}

/// How one whole-segment fetch ended, when nothing went wrong.
enum Transfer {
    Installed,
    /// The leader has no sealed segment at this replica's end (it reached the active one).
    NoSegment,
    /// This replica no longer follows that leader.
    NotFollowing,
}

/// Fetches the whole sealed segment that starts at this replica's log end and installs it:
/// pieces go to a side file as they arrive (memory: one piece), then the file is synced and
/// verified on the blocking pool and installed under the replica's lock. `Ok(false)` if the
/// replica stopped following `leader` meanwhile.
async fn fetch_segment(
    client: &mut ReplicationClient<Channel>,
    node: u64,
    leader: BrokerId,
    replica: &Arc<Replica>,
) -> Result<Transfer, String> {
    let Role::Follower { leader: l, epoch } = replica.role() else {
        return Ok(Transfer::NotFollowing);
    };
    if l != leader {
        return Ok(Transfer::NotFollowing);
    }
    let base = replica.log.log_end_offset();
    let mut install = replica.log.begin_install(base).map_err(|e| e.to_string())?;
    let request = SegmentRequest {
        follower_id: node,
        topic: replica.topic.clone(),
        partition: replica.partition,
        leader_epoch: epoch,
        base_offset: base,
    };
    let start = async {
        client
            .fetch_segment(request)
            .await
            .map_err(|s| s.to_string())
    };
    let mut chunks = by(Instant::now() + PIECE_DEADLINE, "segment transfer", start)
        .await?
        .into_inner();
    let mut size = None;
    loop {
        let piece = async { chunks.message().await.map_err(|s| s.to_string()) };
        let Some(chunk) = by(Instant::now() + PIECE_DEADLINE, "segment piece", piece).await? else {
            break;
        };
        if chunk.error_code == code::OFFSET_OUT_OF_RANGE {
            return Ok(Transfer::NoSegment);
        }
        if chunk.error_code != code::NONE {
            return Err(format!(
                "the leader refused: error code {}",
                chunk.error_code
            ));
        }
        size = Some(chunk.size_bytes);
        install.write(&chunk.data).map_err(|e| e.to_string())?;
    }
    if size != Some(install.written()) {
        return Err(format!(
            "the transfer ended at {} of {size:?} bytes",
            install.written()
        ));
    }
    let log = replica.log.clone();
    let verified = tokio::task::spawn_blocking(move || log.verify_install(install))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    match replica.install_fetched(leader, epoch, verified) {
        Ok(true) => Ok(Transfer::Installed),
        Ok(false) => Ok(Transfer::NotFollowing),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;

    use chronik_wal::{LogConfig, PartitionLog};
    use tokio_stream::Stream;
    use tonic::{Request, Response, Status, Streaming};

    use super::*;
    use crate::pb::replication_server::{Replication, ReplicationServer};
    use crate::pb::SegmentChunk;
    use crate::{EpochCache, ReplicationConfig};

    /// A leader whose answers never arrive: what a follower sees of a black-holed connection.
    struct Silent;

    type Pending<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

    #[tonic::async_trait]
    impl Replication for Silent {
        type FetchStream = Pending<FetchResponse>;
        type FetchSegmentStream = Pending<SegmentChunk>;

        async fn fetch(
            &self,
            _req: Request<Streaming<FetchRequest>>,
        ) -> Result<Response<Self::FetchStream>, Status> {
            Ok(Response::new(Box::pin(futures::stream::pending())))
        }

        async fn fetch_segment(
            &self,
            _req: Request<SegmentRequest>,
        ) -> Result<Response<Self::FetchSegmentStream>, Status> {
            Ok(Response::new(Box::pin(futures::stream::pending())))
        }
    }

    /// A follower's requests in a session: the first names every partition; then only what
    /// changed (a new epoch here), and those it no longer follows from this leader.
    #[tokio::test]
    async fn a_request_names_only_what_changed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let manager = ReplicaManager::new(1, ReplicationConfig::default());
        for p in 0..3 {
            let log = PartitionLog::open(dir.path(), "t", p, LogConfig::default())
                .await
                .expect("open log");
            manager.add(Replica::new(log, 1, EpochCache::default(), 0));
            manager.set_role(
                "t",
                p,
                Role::Follower {
                    leader: 2,
                    epoch: 0,
                },
                None,
            );
        }
        let weak = Arc::downgrade(&manager);
        let transfers = Transfers::new();
        let mut sent = Sent::default();
        let first = next_request(&weak, 2, &transfers, &mut sent).expect("a request");
        assert!(!first.incremental);
        assert_eq!(first.partitions.len(), 3);
        // The leader said it keeps sessions.
        sent.incremental = true;
        let idle = next_request(&weak, 2, &transfers, &mut sent).expect("a request");
        assert!(idle.incremental);
        assert!(
            idle.partitions.is_empty() && idle.removed.is_empty(),
            "{idle:?}"
        );

        manager.set_role(
            "t",
            1,
            Role::Follower {
                leader: 2,
                epoch: 1,
            },
            None,
        );
        manager.set_role(
            "t",
            2,
            Role::Follower {
                leader: 3,
                epoch: 1,
            },
            None,
        );
        let next = next_request(&weak, 2, &transfers, &mut sent).expect("a request");
        assert_eq!(next.partitions.len(), 1);
        assert_eq!(
            (
                next.partitions[0].partition,
                next.partitions[0].leader_epoch
            ),
            (1, 1)
        );
        assert_eq!(next.removed.len(), 1);
        assert_eq!(next.removed[0].partition, 2);
        assert_eq!(sent.fetched_from(&("t".to_string(), 1)), Some(0));
        assert_eq!(sent.fetched_from(&("t".to_string(), 2)), None);
    }

    /// A fetch not answered within the leader's hold plus the margin ends the stream (so the
    /// fetcher reconnects) instead of waiting on it for as long as TCP would.
    #[tokio::test]
    async fn an_unanswered_fetch_ends_the_stream_at_its_deadline() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let server = tokio::spawn(
            chronik_rpc::server()
                .add_service(ReplicationServer::new(Silent))
                .serve_with_incoming(chronik_rpc::incoming(listener)),
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let log = PartitionLog::open(dir.path(), "t", 0, LogConfig::default())
            .await
            .expect("open log");
        let config = ReplicationConfig {
            max_wait: Duration::from_millis(100),
            ..ReplicationConfig::default()
        };
        let manager = ReplicaManager::new(1, config);
        manager.add(Replica::new(log, 1, EpochCache::default(), 0));
        manager
            .get("t", 0)
            .expect("registered")
            .set_role(Role::Follower {
                leader: 2,
                epoch: 0,
            });
        let endpoint = chronik_rpc::endpoint(&addr).expect("endpoint");
        let mut answered = false;
        let start = Instant::now();
        let weak = Arc::downgrade(&manager);
        let ended = tokio::time::timeout(
            Duration::from_secs(20),
            stream_once(&weak, 2, &endpoint, &Transfers::new(), &mut answered),
        )
        .await
        .expect("the stream ends by itself");
        let took = start.elapsed();
        assert!(
            matches!(&ended, Err(e) if e.contains("presumed dead")),
            "{ended:?}"
        );
        assert!(!answered);
        assert!(took >= config.max_wait + ANSWER_MARGIN, "{took:?}");
        assert!(took < config.max_wait + ANSWER_MARGIN * 3, "{took:?}");
        server.abort();
    }
}
