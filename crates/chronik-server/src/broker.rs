//! The broker: its identity and settings, and the rooms requests are served from. The
//! partition manager owns the local replicas; the coordinators (groups with their offsets,
//! producer ids) follow its leadership changes; topic administration (`topics`) and users
//! (`users`) change the metadata through [`Meta`]. Start-up wiring is in `start`.

mod internal_topic;
mod offsets_topic;
mod start;
mod topics;
mod txn_topic;
mod users;

pub use topics::Layout;

use std::sync::Arc;

use chronik_cluster::ClusterError;
use chronik_metadata::{MetadataCommand, MetadataError, MetadataState, TopicInfo};
use chronik_wal::WalError;
use thiserror::Error;

use crate::config::BrokerConfig;
use crate::coordinators::{GroupCoordinator, ProducerIds, TransactionCoordinator};
pub use crate::meta::{Meta, TopicError};
use crate::partitions::PartitionManager;
use crate::shutdown::Shutdown;
use crate::topic_config::TopicConfig;
use crate::txn::{TxnVerifier, UncheckedTxnVerifier};

/// Why the broker could not start. Printed once; the process exits non-zero.
#[derive(Debug, Error)]
pub enum StartError {
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(
        "{path} was written by an older chronik-server whose metadata was not replicated; \
         this version keeps metadata in a Raft log and cannot read it: start with an empty \
         data directory"
    )]
    OldMetadata { path: String },
    #[error("shut down before the metadata cluster was ready")]
    Interrupted,
    #[error("no Kafka listener to advertise")]
    NoListener,
    #[error("cannot register this broker in the metadata: {0}")]
    Register(String),
    #[error("cannot open partition {topic}-{partition}: {source}")]
    Wal {
        topic: String,
        partition: i32,
        #[source]
        source: WalError,
    },
    #[error("cannot prepare data directory {path}: {source}")]
    DataDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the committed offsets: {0}")]
    Offsets(String),
    #[error("cannot create the bootstrap user: {0}")]
    BootstrapUser(String),
    #[error(
        "data directory {path} is in use by another chronik-server (lock file {path}/chronik.lock)"
    )]
    Locked { path: String },
}

pub struct Broker {
    pub config: BrokerConfig,
    pub node_id: i32,
    pub advertised_host: String,
    pub advertised_port: i32,
    pub meta: Meta,
    /// This node's replicas: roles, ISR, retention, heals.
    pub partitions: Arc<PartitionManager>,
    /// Consumer groups and their committed offsets.
    pub groups: Arc<GroupCoordinator>,
    /// Transactions (the coordinator of the transactional ids whose `__transaction_state`
    /// partition this node leads).
    pub txns: Arc<TransactionCoordinator>,
    pub producer_ids: ProducerIds,
    /// Set while `__transaction_state` is being created (it is created on first need).
    txn_topic_creating: std::sync::atomic::AtomicBool,
    /// Serializes topic create/delete/grow so WAL directories follow metadata.
    topic_admin: tokio::sync::Mutex<()>,
    /// An exclusive lock on the data directory, held for the broker's life: two processes
    /// writing one WAL would corrupt it. The OS releases it when the process dies.
    _data_dir_lock: std::fs::File,
    pub shutdown: Shutdown,
    /// Set once the background work started; joined at close.
    cleaner: std::sync::Mutex<Option<crate::cleaner::CleanerThreads>>,
    /// KIP-890's check before a transaction's first batch on a partition
    /// (`crate::txn::verify`); a placeholder until the transaction coordinator sets its own.
    txn_verifier: std::sync::RwLock<Arc<dyn TxnVerifier>>,
}

/// What a broker is made of; assembled by `crate::wiring`.
pub struct BrokerParts {
    pub config: BrokerConfig,
    pub advertised_host: String,
    pub advertised_port: i32,
    pub meta: Meta,
    pub partitions: Arc<PartitionManager>,
    pub groups: Arc<GroupCoordinator>,
    pub txns: Arc<TransactionCoordinator>,
    pub producer_ids: ProducerIds,
    pub data_dir_lock: std::fs::File,
    pub shutdown: Shutdown,
}

impl Broker {
    pub fn new(p: BrokerParts) -> Broker {
        Broker {
            node_id: p.config.node_id,
            advertised_host: p.advertised_host,
            advertised_port: p.advertised_port,
            meta: p.meta,
            partitions: p.partitions,
            groups: p.groups,
            txns: p.txns,
            producer_ids: p.producer_ids,
            txn_topic_creating: std::sync::atomic::AtomicBool::new(false),
            topic_admin: tokio::sync::Mutex::new(()),
            _data_dir_lock: p.data_dir_lock,
            shutdown: p.shutdown,
            cleaner: std::sync::Mutex::new(None),
            config: p.config,
            txn_verifier: std::sync::RwLock::new(Arc::new(UncheckedTxnVerifier)),
        }
    }

    /// The KIP-890 verifier the produce path asks.
    pub fn txn_verifier(&self) -> Arc<dyn TxnVerifier> {
        self.txn_verifier
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the KIP-890 verifier (the transaction coordinator, once it runs).
    pub fn set_txn_verifier(&self, verifier: Arc<dyn TxnVerifier>) {
        *self.txn_verifier.write().unwrap_or_else(|e| e.into_inner()) = verifier;
    }

    /// A consistent snapshot of the metadata as this node has applied it.
    pub fn metadata(&self) -> Arc<MetadataState> {
        self.meta.state()
    }

    /// The cluster id from the metadata.
    pub fn cluster_id(&self) -> String {
        self.metadata().cluster_id.clone()
    }

    /// The controller id given to clients: this broker, as in Kafka's KRaft mode. Any broker
    /// takes admin requests and forwards their metadata changes to the Raft leader, so a
    /// client never waits on a dead leader it was told about.
    pub fn controller_id(&self) -> i32 {
        self.node_id
    }

    /// The Raft leader, if this node knows one.
    pub fn raft_leader(&self) -> Option<i32> {
        self.meta.node.leader().map(|l| l as i32)
    }

    /// Raft membership and this node's log position.
    pub fn raft_status(&self) -> chronik_cluster::RaftStatus {
        self.meta.node.status()
    }

    /// Ok while a metadata leader with a quorum is reachable; else why not.
    pub fn check_leader_contact(&self) -> Result<(), String> {
        self.meta.node.check_leader_contact()
    }

    /// A Raft membership change, carried out by the leader.
    pub async fn change_membership(
        &self,
        op: &chronik_cluster::membership::MembershipOp,
    ) -> Result<(), String> {
        self.meta.node.change_membership(op).await
    }

    /// Waits (bounded by the metadata timeout) until this node sees a membership where `done`
    /// holds; a committed change reaches every member shortly after the leader.
    pub async fn wait_membership(&self, done: impl Fn(&chronik_cluster::RaftStatus) -> bool) {
        self.meta
            .node
            .wait_membership(done, self.config.metadata_timeout)
            .await;
    }

    /// Commits a metadata command (from any node) and waits, bounded, until this node applied
    /// a state where `done` holds.
    pub async fn propose(
        &self,
        cmd: MetadataCommand,
        done: impl Fn(&MetadataState) -> bool,
    ) -> Result<Arc<MetadataState>, TopicError> {
        self.meta.propose(cmd, done).await
    }

    /// The effective config of `topic`.
    pub fn topic_config(&self, topic: &TopicInfo) -> TopicConfig {
        self.partitions.topic_config(topic)
    }

    /// Flushes and closes every partition; the last step of a graceful shutdown.
    /// Stops the background work that writes to the logs, then closes them.
    pub async fn close(&self) {
        self.shutdown.trigger();
        let cleaner = self
            .cleaner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let cleaner_stopped = match cleaner {
            Some(threads) => threads.join().await,
            None => true,
        };
        // The clean-shutdown marker only when nothing may still write to the logs.
        self.partitions.close(cleaner_stopped).await;
    }
}
