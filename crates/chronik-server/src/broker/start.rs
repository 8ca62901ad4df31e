//! Starting a broker: the data directory, the Raft metadata member, registration under a
//! new incarnation, the local partitions and the committed offsets, then the background work.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use chronik_admin::pb::admin_server::AdminServer;
use chronik_cluster::{LivenessConfig, MetadataNode, NodeConfig, PeerList};
use chronik_groups::{GroupConfig, GroupManager};
use chronik_metadata::{BrokerInfo, BrokerState, Endpoint, MetadataState};
use chronik_replication::pb::replication_server::ReplicationServer;
use chronik_replication::{ReplicaManager, ReplicationConfig, ReplicationService};
use dashmap::DashMap;

use super::{Broker, StartError};
use crate::admin::{AdminService, BrokerSlot};
use crate::config::BrokerConfig;
use crate::shutdown::Shutdown;
use crate::startup::StartupPhase;

impl Broker {
    /// Joins (or, standalone, forms) the metadata cluster, registers this broker, opens the
    /// partitions it hosts (recovering each WAL) and the committed offsets.
    pub async fn start(
        config: BrokerConfig,
        endpoints: Vec<Endpoint>,
        rpc_listener: Option<tokio::net::TcpListener>,
        shutdown: Shutdown,
        phase: StartupPhase,
    ) -> Result<Arc<Broker>, StartError> {
        let (meta_dir, wal_root, data_dir_lock) = prepare_data_dir(&config)?;
        let node_id = config.node_id;
        let peers = match &config.cluster {
            Some(c) => c.peers.clone(),
            // A one-node cluster nobody dials: the address is a name, never connected to.
            None => PeerList(BTreeMap::from([(node_id as u64, "standalone".to_string())])),
        };
        let replicas = ReplicaManager::new(
            node_id,
            ReplicationConfig {
                replica_lag_max: config.replica_lag_time_max,
                ..ReplicationConfig::default()
            },
        );
        let slot: BrokerSlot = Arc::new(OnceLock::new());
        let routes =
            tonic::service::Routes::new(ReplicationServer::new(Arc::new(ReplicationService {
                manager: replicas.clone(),
            })))
            // Every admin call needs an operator's or a node's certificate (with RPC TLS).
            .add_service(AdminServer::with_interceptor(
                AdminService {
                    broker: slot.clone(),
                },
                chronik_rpc::auth::admin_interceptor,
            ));
        phase.set(StartupPhase::METADATA);
        let (node, state) = start_metadata(
            &config,
            &peers,
            meta_dir,
            rpc_listener,
            routes,
            &shutdown,
            &phase,
        )
        .await?;
        // Kafka clients that know one address (old metadata) get the PLAINTEXT listener's,
        // else the first one's.
        let main = endpoints
            .iter()
            .find(|e| e.name == "PLAINTEXT")
            .or(endpoints.first())
            .cloned()
            .ok_or(StartError::NoListener)?;
        let (host, port) = (main.host, main.port);
        let hw_checkpoints = chronik_replication::checkpoint::load(&wal_root);
        let broker = Arc::new(Broker {
            node_id,
            cluster_id: state.cluster_id.clone(),
            advertised_host: host.clone(),
            advertised_port: port,
            metadata: node,
            wal_root,
            partitions: DashMap::new(),
            topic_admin: tokio::sync::Mutex::new(()),
            partition_sync: tokio::sync::Mutex::new(()),
            replicas,
            hw_checkpoints,
            producer_ids: tokio::sync::Mutex::new((0, 0)),
            offsets: OnceLock::new(),
            _data_dir_lock: data_dir_lock,
            groups: std::sync::Mutex::new(GroupManager::new(GroupConfig {
                initial_rebalance_delay: std::time::Duration::from_millis(
                    config.group_initial_rebalance_delay_ms,
                ),
                ..GroupConfig::default()
            })),
            registration: std::sync::Mutex::new(BrokerInfo {
                node_id,
                host: String::new(),
                port: 0,
                listeners: Vec::new(),
                rack: None,
                rpc_addr: String::new(),
                state: BrokerState::Alive,
                incarnation: 0,
            }),
            shutdown,
            config,
        });
        let _ = slot.set(Arc::downgrade(&broker));
        let me = broker.own_info(host, port, endpoints);
        // Every start registers a new incarnation: the partitions this broker led get a new
        // leader epoch before it leads them again (see `MetadataCommand::RegisterBroker`).
        *broker.registration() = me;
        broker
            .register_new_incarnation()
            .await
            .map_err(|e| StartError::Register(e.message))?;
        broker.remove_orphan_dirs();
        if let Some((user, password)) = broker.config.security.bootstrap_user.clone() {
            broker.ensure_bootstrap_user(&user, &password).await?;
        }
        let state = broker.metadata();
        phase.set(StartupPhase::WAL_RECOVERY);
        broker
            .sync_partitions(&state)
            .await
            .map_err(|(topic, partition, source)| StartError::Wal {
                topic,
                partition,
                source,
            })?;
        phase.set(StartupPhase::OFFSETS);
        broker.open_offsets(peers.0.len()).await?;
        broker.start_background_work();
        Ok(broker)
    }

    /// This broker as it registers in the metadata (incarnation 0 until it registers).
    fn own_info(&self, host: String, port: i32, listeners: Vec<Endpoint>) -> BrokerInfo {
        BrokerInfo {
            node_id: self.node_id,
            host,
            port,
            listeners,
            rack: self.config.rack.clone(),
            rpc_addr: match &self.config.cluster {
                Some(c) => c
                    .peers
                    .0
                    .get(&(self.node_id as u64))
                    .cloned()
                    .unwrap_or_default(),
                None => String::new(),
            },
            state: BrokerState::Alive,
            incarnation: 0,
        }
    }

    /// The tasks that run until shutdown: group timers, metadata following, ISR changes, HW
    /// checkpoints, the heal watch and, on the Raft leader, the controller's liveness checks.
    fn start_background_work(self: &Arc<Self>) {
        self.start_group_timer();
        self.start_metadata_follower();
        self.start_isr_updates();
        self.replicas.start_checkpoints(self.wal_root.clone());
        self.start_heal_watch();
        let session = self.config.broker_session_timeout;
        self.metadata.start_liveness(LivenessConfig {
            heartbeat_interval: (session / 4).min(std::time::Duration::from_millis(500)),
            session_timeout: session,
            auto_leader_rebalance: self.config.auto_leader_rebalance,
        });
    }
}

/// Creates the WAL root and locks the data directory; refuses a directory written by the
/// metadata format before Raft. Returns the metadata dir, the WAL root and the lock.
fn prepare_data_dir(
    config: &BrokerConfig,
) -> Result<(PathBuf, PathBuf, std::fs::File), StartError> {
    let meta_dir = config.data_dir.join("metadata");
    let wal_root = config.data_dir.join("wal");
    std::fs::create_dir_all(&wal_root).map_err(|source| StartError::DataDir {
        path: wal_root.display().to_string(),
        source,
    })?;
    let data_dir_lock = lock_data_dir(&config.data_dir)?;
    let old = meta_dir.join("state.json");
    if old.exists() {
        return Err(StartError::OldMetadata {
            path: old.display().to_string(),
        });
    }
    Ok((meta_dir, wal_root, data_dir_lock))
}

/// Starts this node's Raft metadata member (serving `routes` beside Raft's RPCs) and waits
/// until it has caught up with the cluster, or shutdown.
async fn start_metadata(
    config: &BrokerConfig,
    peers: &PeerList,
    meta_dir: PathBuf,
    rpc_listener: Option<tokio::net::TcpListener>,
    routes: tonic::service::Routes,
    shutdown: &Shutdown,
    phase: &StartupPhase,
) -> Result<(Arc<MetadataNode>, Arc<MetadataState>), StartError> {
    let node_id = config.node_id;
    let node = MetadataNode::start(NodeConfig {
        node_id: node_id as u64,
        peers: peers.clone(),
        dir: meta_dir,
        rpc_listener,
        propose_timeout: config.metadata_timeout,
        heartbeat: std::time::Duration::from_millis(100),
        snapshot_after_logs: 1000,
        extra_routes: Some(routes),
        join: config.cluster.as_ref().and_then(|c| c.join.clone()),
    })
    .await?;
    phase.set(StartupPhase::METADATA_CATCH_UP);
    let state = loop {
        tokio::select! {
            _ = shutdown.wait() => {
                node.shutdown().await;
                return Err(StartError::Interrupted);
            }
            r = node.wait_ready(std::time::Duration::from_secs(5)) => match r {
                Ok(s) => break s,
                Err(e) => tracing::warn!(node = node_id, error = %e, "waiting for the metadata cluster"),
            }
        }
    };
    Ok((node, state))
}

/// Takes the data directory's lock file, or fails if another process holds it.
fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File, StartError> {
    let path = dir.join("chronik.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| StartError::DataDir {
            path: path.display().to_string(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StartError::Locked {
            path: dir.display().to_string(),
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(StartError::DataDir {
            path: path.display().to_string(),
            source,
        }),
    }
}
