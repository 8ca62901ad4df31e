//! The transaction coordinator (KIP-98, KIP-447, KIP-890 part 1): chronik-txn's sans-IO
//! `TxnManager` with the I/O around it. This node coordinates the transactional ids whose
//! `__transaction_state` partition it leads; it follows that from the partition manager's
//! leadership changes (taking a partition replays its log into the manager, losing one
//! unloads it). Client requests are handed to the manager under a short lock; what it asks
//! for (`Effect`s) is carried out by [`effects`]: durable appends to `__transaction_state`,
//! transaction markers to the data partitions, answers to the parked requests.
//!
//! - [`effects`]: the effect executor and the marker writes.
//! - [`replay`]: reading a `__transaction_state` partition back.
//! - [`verifier`]: the KIP-890 part 1 check the produce path asks.

mod effects;
pub mod remote;
mod replay;
mod verifier;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use chronik_txn::{
    AddOffsets, AddPartitions, Effect, EndTxn, InitProducerId, ListFilter, ListedTxns, RequestId,
    Response, TxnConfig, TxnDescription, TxnManager, TRANSACTION_STATE_TOPIC,
};
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;

use crate::broker::Broker;
use crate::clock::now_ms;
use crate::partitions::{BoxFuture, Leadership, LeadershipListener, PartitionManager};
use crate::shutdown::Shutdown;

pub use verifier::CoordinatorVerifier;

/// How often the manager's timers run (transaction timeouts, id expiration, retries of
/// Complete records). Kafka checks timeouts every 10 s; a second keeps tests short and costs a
/// scan of the led ids.
pub const TXN_TICK: Duration = Duration::from_secs(1);

/// Longest a client request waits for the manager's answer. The manager answers every parked
/// request (a durable append fails after 30 s at most); this bound only keeps a bug from
/// holding a connection forever.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

pub struct TransactionCoordinator {
    local: Arc<PartitionManager>,
    /// Held only for the manager's own (non-blocking) calls, never across an await.
    manager: Mutex<TxnManager>,
    /// The requests waiting for a `Respond` effect. The manager parks at most one request per
    /// transactional id (others are answered CONCURRENT_TRANSACTIONS), and ids are capped by
    /// `TxnConfig::max_transactional_ids`, so this is bounded by them.
    waiters: Mutex<HashMap<RequestId, oneshot::Sender<Response>>>,
    next_request: AtomicU64,
    /// The broker, for the marker writes (set once it is built, before it serves).
    broker: OnceLock<Weak<Broker>>,
    /// Channels to the other nodes (markers for the partitions they lead, verification).
    peers: remote::Peers,
    shutdown: Shutdown,
}

impl TransactionCoordinator {
    /// A coordinator following `local`'s leadership changes from now on.
    pub fn new(local: Arc<PartitionManager>, config: TxnConfig, shutdown: Shutdown) -> Arc<Self> {
        let me = Arc::new(TransactionCoordinator {
            local: local.clone(),
            manager: Mutex::new(TxnManager::new(config)),
            waiters: Mutex::new(HashMap::new()),
            next_request: AtomicU64::new(1),
            broker: OnceLock::new(),
            peers: remote::Peers::default(),
            shutdown,
        });
        local.subscribe(me.clone());
        me
    }

    /// Gives the coordinator its broker (for marker writes), and makes it the broker's
    /// KIP-890 verifier.
    pub fn attach(self: &Arc<Self>, broker: &Arc<Broker>) {
        let _ = self.broker.set(Arc::downgrade(broker));
        broker.set_txn_verifier(Arc::new(CoordinatorVerifier::new(self)));
    }

    fn manager(&self) -> MutexGuard<'_, TxnManager> {
        self.manager.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// transaction.state.log.num.partitions.
    pub fn partitions(&self) -> i32 {
        self.manager().config().transaction_state_partitions
    }

    /// Whether this node coordinates `transactional_id` now (leads its partition, loaded).
    pub fn is_coordinator(&self, transactional_id: &str) -> bool {
        self.manager().is_coordinator(transactional_id)
    }

    /// The `__transaction_state` partition of `transactional_id`.
    pub fn partition_of(&self, transactional_id: &str) -> i32 {
        self.manager().partition_of(transactional_id)
    }

    /// Hands a request to the manager under a new request id, carries out what it asks for,
    /// and waits for its answer (`fallback` if none comes in [`ANSWER_TIMEOUT`]).
    async fn ask(
        self: &Arc<Self>,
        call: impl FnOnce(&mut TxnManager, RequestId, i64) -> Vec<Effect>,
        fallback: Response,
    ) -> Response {
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, tx);
        let effects = call(&mut self.manager(), id, now_ms());
        self.execute(effects);
        match tokio::time::timeout(ANSWER_TIMEOUT, rx).await {
            Ok(Ok(response)) => response,
            _ => {
                self.waiters
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
                tracing::warn!(request = id, "no answer from the transaction coordinator");
                fallback
            }
        }
    }

    /// InitProducerId with a transactional id. `spare_id`: a producer id reserved for the
    /// manager in case it needs a new one (an id it does not take is simply never used).
    pub async fn init_producer_id(
        self: &Arc<Self>,
        req: InitProducerId,
        spare_id: Option<i64>,
    ) -> Response {
        let mut spare = spare_id;
        let mut ids = move || spare.take();
        let fallback = Response::InitProducerId {
            error: ResponseError::CoordinatorNotAvailable.code(),
            producer_id: -1,
            producer_epoch: -1,
        };
        self.ask(
            |m, id, now| m.init_producer_id(id, &req, &mut ids, now),
            fallback,
        )
        .await
    }

    pub async fn add_partitions(self: &Arc<Self>, req: AddPartitions) -> Response {
        let fallback = Response::AddPartitions {
            error: ResponseError::CoordinatorNotAvailable.code(),
        };
        self.ask(|m, id, now| m.add_partitions(id, &req, now), fallback)
            .await
    }

    pub async fn add_offsets(self: &Arc<Self>, req: AddOffsets) -> Response {
        let fallback = Response::AddPartitions {
            error: ResponseError::CoordinatorNotAvailable.code(),
        };
        self.ask(|m, id, now| m.add_offsets(id, &req, now), fallback)
            .await
    }

    pub async fn end_txn(self: &Arc<Self>, req: EndTxn) -> Response {
        let fallback = Response::EndTxn {
            error: ResponseError::CoordinatorNotAvailable.code(),
        };
        self.ask(|m, id, now| m.end_txn(id, &req, now), fallback)
            .await
    }

    /// AddPartitionsToTxn v4+ verify_only: each partition's error (KIP-890 part 1).
    pub fn verify(&self, req: &AddPartitions) -> Vec<(chronik_txn::TopicPartition, i16)> {
        self.manager().verify_partitions(req)
    }

    pub fn describe(&self, transactional_id: &str) -> Result<TxnDescription, i16> {
        self.manager().describe(transactional_id)
    }

    pub fn list(&self, filter: &ListFilter) -> ListedTxns {
        self.manager().list(filter, now_ms())
    }

    /// Runs the manager's timers every [`TXN_TICK`] until shutdown. At shutdown the parked
    /// requests are let go (their waiters dropped: answered COORDINATOR_NOT_AVAILABLE, so the
    /// clients look for the next coordinator) rather than holding the drain until their appends
    /// fail.
    pub fn start_timer(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            shutdown.wait().await;
            if let Some(c) = me.upgrade() {
                c.waiters.lock().unwrap_or_else(|e| e.into_inner()).clear();
            }
        });
        crate::periodic::every(self, &self.shutdown.clone(), TXN_TICK, |c| async move {
            let effects = c.manager().tick(now_ms());
            c.execute(effects);
        });
    }

    /// This node took `__transaction_state` partition `p`: replay it into the manager.
    async fn load(self: &Arc<Self>, change: &Leadership) {
        let p = change.partition;
        let epoch = self
            .local
            .metadata()
            .topic(TRANSACTION_STATE_TOPIC)
            .and_then(|t| {
                t.partitions
                    .get(usize::try_from(p).ok()?)
                    .map(|i| i.leader_epoch)
            })
            .unwrap_or(0);
        let effects = self.manager().begin_load(p, epoch);
        self.execute(effects);
        let log = change.part.log.clone();
        // The log may be long out of the page cache: read it on the blocking pool.
        let records = match tokio::task::spawn_blocking(move || replay::read_records(&log)).await {
            Ok(Ok(records)) => records,
            Ok(Err(e)) => {
                tracing::error!(partition = p, error = %e, "cannot replay a transaction state partition");
                return;
            }
            Err(e) => {
                tracing::error!(partition = p, error = %e, "transaction state replay panicked");
                return;
            }
        };
        let n = records.len();
        let effects = self.manager().load(p, epoch, records, now_ms());
        tracing::info!(
            partition = p,
            coordinator_epoch = epoch,
            records = n,
            "took over a transaction state partition"
        );
        self.execute(effects);
    }
}

impl LeadershipListener for TransactionCoordinator {
    fn changed<'a>(&'a self, change: &'a Leadership) -> BoxFuture<'a> {
        Box::pin(async move {
            if change.topic != TRANSACTION_STATE_TOPIC {
                return;
            }
            // The effects spawn tasks that outlive this call: they need the Arc.
            let Some(me) = self.me() else { return };
            if change.leads {
                me.load(change).await;
            } else {
                let effects = me.manager().unload(change.partition);
                me.execute(effects);
            }
        })
    }
}

impl TransactionCoordinator {
    /// This coordinator as an `Arc`, through the broker that owns it.
    fn me(&self) -> Option<Arc<TransactionCoordinator>> {
        let broker = self.broker.get()?.upgrade()?;
        Some(broker.txns.clone())
    }
}
