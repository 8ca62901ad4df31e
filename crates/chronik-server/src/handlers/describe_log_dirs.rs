//! DescribeLogDirs: this broker's one log dir (`<data dir>/wal`) with every partition replica
//! it hosts, leader or follower: its size on disk (the WAL segment files) and, as Kafka's
//! `ReplicaManager.getLogEndOffsetLag` answers for a current (not future) replica,
//! max(high watermark - log end, 0). Chronik never moves replicas between log dirs, so
//! is_future is always false. v4 adds the filesystem's total and usable bytes (statvfs).

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, ResponseKind};
use kafka_protocol::ResponseError;

use super::{str_bytes, topic_name, topic_str, Reply};
use crate::broker::Broker;

pub fn handle(broker: &Arc<Broker>, req: DescribeLogDirsRequest, version: i16) -> Reply {
    // None: every partition; Some: only those named.
    let wanted: Option<BTreeMap<String, Vec<i32>>> = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (topic_str(&t.topic).to_string(), t.partitions))
            .collect()
    });
    let mut by_topic: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    for part in broker.partitions.all_partitions() {
        let asked = wanted.as_ref().is_none_or(|w| {
            w.get(&part.topic)
                .is_some_and(|ps| ps.contains(&part.index))
        });
        if !asked {
            continue;
        }
        let lag = (part.replica.high_watermark() - part.log.log_end_offset()).max(0);
        by_topic.entry(part.topic.clone()).or_default().push(
            DescribeLogDirsPartition::default()
                .with_partition_index(part.index)
                .with_partition_size(i64::try_from(part.log.size_bytes()).unwrap_or(i64::MAX))
                .with_offset_lag(lag)
                .with_is_future_key(false),
        );
    }
    let topics = by_topic
        .into_iter()
        .map(|(name, mut partitions)| {
            partitions.sort_unstable_by_key(|p| p.partition_index);
            DescribeLogDirsTopic::default()
                .with_name(topic_name(&name))
                .with_partitions(partitions)
        })
        .collect();
    let dir = broker.config.data_dir.join("wal");
    let shown = std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone());
    let mut result = DescribeLogDirsResult::default()
        .with_log_dir(str_bytes(shown.display().to_string()))
        .with_topics(topics)
        .with_total_bytes(-1)
        .with_usable_bytes(-1);
    if version >= 4 {
        match chronik_wal::disk_space(&dir) {
            Ok((total, usable)) => {
                result = result
                    .with_total_bytes(i64::try_from(total).unwrap_or(i64::MAX))
                    .with_usable_bytes(i64::try_from(usable).unwrap_or(i64::MAX));
            }
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "statvfs failed");
                result = result.with_error_code(ResponseError::KafkaStorageError.code());
            }
        }
    }
    Reply::now(ResponseKind::DescribeLogDirs(
        DescribeLogDirsResponse::default().with_results(vec![result]),
    ))
}
