//! Start-up wiring, in one place: the data directory, the Raft metadata member with the broker
//! assembled on it (the partition manager first, then the coordinators that subscribe to it),
//! the RPC services served beside Raft (replication, admin), then the broker's own opening
//! (`Broker::register_and_open`) and background work.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use chronik_admin::pb::admin_server::AdminServer;
use chronik_cluster::{MetadataNode, NodeConfig, PeerList, ServicesFn};
use chronik_metadata::Endpoint;
use chronik_replication::pb::replication_server::ReplicationServer;
use chronik_replication::ReplicationService;

use crate::admin::AdminService;
use crate::broker::{Broker, BrokerParts, StartError};
use crate::config::BrokerConfig;
use crate::coordinators::{GroupCoordinator, GroupSettings, ProducerIds, TransactionCoordinator};
use crate::meta::Meta;
use crate::partitions::{PartitionManager, PartitionSettings};
use crate::shutdown::Shutdown;
use crate::startup::StartupPhase;

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
    let peers = match &config.cluster {
        Some(c) => c.peers.clone(),
        // A one-node cluster nobody dials: the address is a name, never connected to.
        None => PeerList(BTreeMap::from([(
            config.node_id as u64,
            "standalone".to_string(),
        )])),
    };
    // Kafka clients that know one address (old metadata) get the PLAINTEXT listener's,
    // else the first one's.
    let main = endpoints
        .iter()
        .find(|e| e.name == "PLAINTEXT")
        .or(endpoints.first())
        .cloned()
        .ok_or(StartError::NoListener)?;
    let (host, port) = (main.host, main.port);
    let node_config = node_config(&config, &peers, meta_dir, rpc_listener);
    // The broker is assembled on the metadata node before it serves (see
    // `NodeConfig::services`), so the RPC services hold it from the start.
    let (built_tx, built_rx) = tokio::sync::oneshot::channel();
    let parts = Parts {
        config,
        wal_root,
        data_dir_lock,
        host: host.clone(),
        port,
        shutdown: shutdown.clone(),
    };
    let services: ServicesFn = Box::new(move |node| {
        let broker = assemble(node, parts);
        let _ = built_tx.send(broker.clone());
        services(&broker)
    });
    phase.set(StartupPhase::METADATA);
    start_metadata(node_config, services, &shutdown, &phase).await?;
    let broker = built_rx.await.map_err(|_| StartError::Interrupted)?;
    broker
        .register_and_open(host, port, endpoints, &phase, peers.0.len())
        .await?;
    broker.start_background_work();
    Ok(broker)
}

/// The broker's rooms, wired once: the partition manager, then the coordinators that
/// subscribe to it.
fn assemble(node: &Arc<MetadataNode>, parts: Parts) -> Arc<Broker> {
    let Parts {
        config,
        wal_root,
        data_dir_lock,
        host,
        port,
        shutdown,
    } = parts;
    let meta = Meta {
        node: node.clone(),
        timeout: config.metadata_timeout,
    };
    let partitions = PartitionManager::new(
        PartitionSettings {
            node_id: config.node_id,
            wal_root,
            fsync: config.fsync,
            topic_defaults: config.topic_defaults.clone(),
            replica_lag_time_max: config.replica_lag_time_max,
        },
        meta.clone(),
        shutdown.clone(),
    );
    let groups = GroupCoordinator::new(
        partitions.clone(),
        GroupSettings {
            offsets_topic_partitions: config.offsets_topic_partitions,
            offsets_retention_minutes: config.offsets_retention_minutes,
            initial_rebalance_delay: std::time::Duration::from_millis(
                config.group_initial_rebalance_delay_ms,
            ),
        },
        shutdown.clone(),
    );
    let txns = TransactionCoordinator::new(
        partitions.clone(),
        chronik_txn::TxnConfig {
            transaction_state_partitions: config.transaction_state_partitions,
            transaction_max_timeout_ms: config.transaction_max_timeout_ms,
            transactional_id_expiration_ms: config.transactional_id_expiration_ms,
            ..chronik_txn::TxnConfig::default()
        },
        shutdown.clone(),
    );
    let broker = Arc::new(Broker::new(BrokerParts {
        advertised_host: host,
        advertised_port: port,
        producer_ids: ProducerIds::new(meta.clone()),
        meta,
        partitions,
        groups,
        txns: txns.clone(),
        data_dir_lock,
        shutdown,
        config,
    }));
    // Before the broker opens its partitions: taking a __transaction_state partition then
    // loads it, and the produce path asks this coordinator (KIP-890).
    txns.attach(&broker);
    broker
}

/// What [`assemble`] takes, moved into the services closure.
struct Parts {
    config: BrokerConfig,
    wal_root: PathBuf,
    data_dir_lock: std::fs::File,
    host: String,
    port: i32,
    shutdown: Shutdown,
}

/// The gRPC services served beside Raft: WAL replication, the transaction coordinator's calls
/// between nodes (node certificates only, checked in each call) and admin. Admin calls need an
/// operator's or a node's certificate (with RPC TLS). The admin service holds the broker
/// weakly: a server still draining must not keep a stopped broker (and its data directory
/// lock) alive.
fn services(broker: &Arc<Broker>) -> tonic::service::Routes {
    tonic::service::Routes::new(ReplicationServer::new(Arc::new(ReplicationService {
        manager: broker.partitions.replicas.clone(),
    })))
    .add_service(crate::coordinators::transactions::remote::service(broker))
    .add_service(AdminServer::with_interceptor(
        AdminService {
            broker: Arc::downgrade(broker),
        },
        chronik_rpc::auth::admin_interceptor,
    ))
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

fn node_config(
    config: &BrokerConfig,
    peers: &PeerList,
    meta_dir: PathBuf,
    rpc_listener: Option<tokio::net::TcpListener>,
) -> NodeConfig {
    NodeConfig {
        node_id: config.node_id as u64,
        peers: peers.clone(),
        dir: meta_dir,
        rpc_listener,
        propose_timeout: config.metadata_timeout,
        heartbeat: std::time::Duration::from_millis(100),
        snapshot_after_logs: 1000,
        services: None,
        join: config.cluster.as_ref().and_then(|c| c.join.clone()),
    }
}

/// Starts this node's Raft metadata member (serving `services` beside Raft's RPCs) and waits
/// until it has caught up with the cluster, or shutdown.
async fn start_metadata(
    mut node_config: NodeConfig,
    services: ServicesFn,
    shutdown: &Shutdown,
    phase: &StartupPhase,
) -> Result<(), StartError> {
    let node_id = node_config.node_id;
    node_config.services = Some(services);
    let node = MetadataNode::start(node_config).await?;
    phase.set(StartupPhase::METADATA_CATCH_UP);
    loop {
        tokio::select! {
            _ = shutdown.wait() => {
                node.shutdown().await;
                return Err(StartError::Interrupted);
            }
            r = node.wait_ready(std::time::Duration::from_secs(5)) => match r {
                Ok(_) => return Ok(()),
                Err(e) => tracing::warn!(node = node_id, error = %e, "waiting for the metadata cluster"),
            }
        }
    }
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
