//! The partition manager and the group coordinator on a real one-node metadata member and real
//! WAL directories, without sockets: no listener, no Kafka requests.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chronik_cluster::{MetadataNode, NodeConfig, PeerList};
use chronik_groups::{OffsetKey, OffsetValue, OFFSETS_TOPIC};
use chronik_metadata::{BrokerInfo, BrokerState, MetadataCommand};
use uuid::Uuid;

use super::*;
use crate::coordinators::{GroupCoordinator, GroupSettings};

const WAIT: Duration = Duration::from_secs(10);

/// Records every leadership change it is told of.
#[derive(Default)]
struct Recorder(Mutex<Vec<(String, i32, bool)>>);

impl LeadershipListener for Recorder {
    fn changed<'a>(&'a self, c: &'a Leadership) -> BoxFuture<'a> {
        Box::pin(async move {
            let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
            seen.push((c.topic.clone(), c.partition, c.leads));
        })
    }
}

async fn meta(dir: &Path) -> Meta {
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

/// A registered manager (it may lead) with a [`Recorder`] subscribed.
async fn manager(dir: &Path) -> (Arc<PartitionManager>, Arc<Recorder>) {
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
    let recorder = Arc::new(Recorder::default());
    pm.subscribe(recorder.clone());
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
    (pm, recorder)
}

async fn create(pm: &PartitionManager, name: &str, partitions: usize) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_the_metadata_and_publishes_each_leadership_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pm, recorder) = manager(dir.path()).await;
    create(&pm, "t", 2).await;
    assert!(pm.partition("t", 0).is_some() && pm.partition("t", 1).is_some());
    assert!(pm.partition("t", 2).is_none());
    assert!(dir.path().join("wal/t/0").is_dir());
    // Applying the same state again changes no role and tells nobody anything.
    pm.sync(&pm.metadata()).await.expect("again");
    let seen = recorder.0.lock().unwrap().clone();
    assert_eq!(seen, vec![("t".into(), 0, true), ("t".into(), 1, true)]);

    let state = pm
        .meta
        .propose(MetadataCommand::DeleteTopic { name: "t".into() }, |s| {
            s.topic("t").is_none()
        })
        .await
        .expect("deleted");
    pm.sync(&state).await.expect("synced");
    assert!(pm.partition("t", 0).is_none() && pm.all_partitions().is_empty());
    assert!(
        !dir.path().join("wal/t").exists(),
        "the topic's data is gone"
    );
    pm.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_change_reaches_the_typed_config_and_the_leader_role() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pm, _) = manager(dir.path()).await;
    create(&pm, "t", 1).await;
    let part = pm.partition("t", 0).expect("led");
    assert_eq!(part.config().max_message_bytes, 1_048_588);
    assert_eq!(part.config().min_insync_replicas, 1);
    let configs = BTreeMap::from([
        ("max.message.bytes".to_string(), "2000".to_string()),
        ("min.insync.replicas".to_string(), "2".to_string()),
        ("compression.type".to_string(), "zstd".to_string()),
    ]);
    let cmd = MetadataCommand::SetTopicConfigs {
        name: "t".into(),
        configs: configs.clone(),
    };
    let state = pm
        .meta
        .propose(cmd, |s| s.topic("t").is_some_and(|t| t.configs == configs))
        .await
        .expect("altered");
    pm.sync(&state).await.expect("synced");
    let now = part.config();
    assert_eq!((now.max_message_bytes, now.min_insync_replicas), (2000, 2));
    assert!(now.policy.codec.is_some());
    // The replica's min ISR is capped by its replica count (1): the high watermark moves.
    assert!(matches!(
        part.replica.role(),
        chronik_replication::Role::Leader { min_isr: 1, .. }
    ));
    pm.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_group_coordinator_follows_offsets_leadership() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pm, _) = manager(dir.path()).await;
    let settings = GroupSettings {
        offsets_topic_partitions: 2,
        offsets_compact_after_records: 1000,
        offsets_retention_minutes: 60,
        initial_rebalance_delay: Duration::ZERO,
    };
    let first = GroupCoordinator::new(pm.clone(), settings.clone(), Shutdown::new());
    create(&pm, OFFSETS_TOPIC, 2).await;
    first.open().await.expect("opened");
    assert!(first.is_coordinator("g"));
    let key = OffsetKey {
        group: "g".into(),
        topic: "t".into(),
        partition: 0,
    };
    let value = OffsetValue {
        offset: 42,
        leader_epoch: -1,
        metadata: String::new(),
        commit_timestamp_ms: 0,
    };
    first
        .offsets()
        .commit(&pm, "g", vec![(key, value)])
        .await
        .expect("committed");

    // A second coordinator opened on the same partitions replays the commit.
    let second = GroupCoordinator::new(pm.clone(), settings, Shutdown::new());
    second.open().await.expect("opened");
    assert_eq!(
        second.offsets().get("g", "t", 0).map(|v| v.offset),
        Some(42)
    );
    // Told it leads the group's offsets partition (again), it reloads it; other topics'
    // changes are not its business.
    let p = second.offsets().partition_of("g");
    let part = pm.partition(OFFSETS_TOPIC, p).expect("led here");
    for topic in ["other", OFFSETS_TOPIC] {
        let change = Leadership {
            topic: topic.into(),
            partition: p,
            part: part.clone(),
            leads: true,
        };
        second.changed(&change).await;
    }
    assert_eq!(
        second.offsets().get("g", "t", 0).map(|v| v.offset),
        Some(42)
    );
    pm.close().await;
}
