//! Test support: a partition manager on a real one-node metadata member and real WAL
//! directories, without sockets (no listener, no Kafka requests).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chronik_cluster::{MetadataNode, NodeConfig, PeerList};
use chronik_groups::OFFSETS_TOPIC;
use chronik_metadata::{BrokerInfo, BrokerState, MetadataCommand};
use chronik_wal::FsyncPolicy;
use uuid::Uuid;

use super::{PartitionManager, PartitionSettings};
use crate::meta::Meta;
use crate::shutdown::Shutdown;
use crate::topic_config::TopicDefaults;

const WAIT: Duration = Duration::from_secs(10);

/// A one-node metadata member on `dir`, ready, without a listener.
pub(crate) async fn meta(dir: &Path) -> Meta {
    let node = MetadataNode::start(NodeConfig {
        node_id: 1,
        peers: PeerList(BTreeMap::from([(1, "standalone".to_string())])),
        dir: dir.join("metadata"),
        rpc_listener: None,
        propose_timeout: WAIT,
        heartbeat: Duration::from_millis(100),
        snapshot_after_logs: 1000,
        services: None,
        join: None,
    })
    .await
    .expect("metadata member");
    node.wait_ready(WAIT).await.expect("ready");
    Meta {
        node,
        timeout: WAIT,
    }
}

/// A registered manager (it may lead) on `dir`.
pub(crate) async fn manager(dir: &Path) -> Arc<PartitionManager> {
    let wal_root = dir.join("wal");
    std::fs::create_dir_all(&wal_root).expect("wal root");
    let pm = PartitionManager::new(
        PartitionSettings {
            node_id: 1,
            wal_root,
            fsync: FsyncPolicy::default(),
            topic_defaults: TopicDefaults::default(),
            replica_lag_time_max: Duration::from_secs(30),
        },
        meta(dir).await,
        Shutdown::new(),
    );
    pm.set_registration(BrokerInfo {
        node_id: 1,
        host: "127.0.0.1".into(),
        port: 9092,
        listeners: Vec::new(),
        rack: None,
        rpc_addr: String::new(),
        state: BrokerState::Alive,
        incarnation: 0,
    });
    pm.register_new_incarnation().await.expect("registered");
    pm
}

/// Creates topic `name` with `partitions` partitions on this node and opens them.
pub(crate) async fn create(pm: &PartitionManager, name: &str, partitions: usize) {
    let cmd = MetadataCommand::CreateTopic {
        name: name.to_string(),
        id: Uuid::new_v4(),
        assignments: vec![vec![1]; partitions],
        configs: BTreeMap::new(),
        internal: name == OFFSETS_TOPIC,
        partitions: None,
        replication_factor: None,
    };
    let state = pm
        .meta
        .propose(cmd, |s| s.topic(name).is_some())
        .await
        .expect("created");
    pm.sync(&state).await.expect("opened");
}
