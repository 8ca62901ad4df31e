//! The partition manager on a real one-node metadata member and real WAL directories, without
//! sockets (`test_support`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chronik_metadata::MetadataCommand;

use super::test_support::{create, manager};
use super::*;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_the_metadata_and_publishes_each_leadership_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pm = manager(dir.path()).await;
    let recorder = Arc::new(Recorder::default());
    pm.subscribe(recorder.clone());
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
    pm.close(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_change_reaches_the_typed_config_and_the_leader_role() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pm = manager(dir.path()).await;
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
    pm.close(true).await;
}
