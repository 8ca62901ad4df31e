//! The gauges read from the broker's state at each scrape (this node's replicas,
//! under-replication, poisoned partitions, consumer-group lag, Raft), rather than counted as
//! things happen (`crate::metrics`).

use std::collections::{BTreeMap, BTreeSet};

use metrics::gauge;

use crate::broker::Broker;
use crate::metrics::{OpenConnection, CONNECTIONS};

/// Sets the gauges read from state: this node's replicas, under-replication, Raft.
pub fn refresh(broker: &Broker) {
    let state = broker.metadata();
    let per_partition = broker.config.metrics_partition_labels;
    let mut under_replicated_total = 0u64;
    // topic -> (under-replicated partitions led here, bytes, segments)
    let mut per_topic: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    // topic -> (most messages, longest time) any follower of a partition led here trails
    let mut per_topic_lag: BTreeMap<String, (i64, f64)> = BTreeMap::new();
    for t in state.topics.values() {
        for (i, p) in t.partitions.iter().enumerate() {
            let Some(r) = broker.partitions.replicas.get(&t.name, i as i32) else {
                continue;
            };
            let leads = p.leader == broker.node_id;
            let under = leads && p.isr.len() < p.target_replicas().len();
            under_replicated_total += u64::from(under);
            let size = r.log.size_bytes();
            let segments = r.log.segment_count() as u64;
            let e = per_topic.entry(t.name.clone()).or_default();
            e.0 += u64::from(under);
            e.1 += size;
            e.2 += segments;
            if per_partition {
                let labels = [("topic", t.name.clone()), ("partition", i.to_string())];
                gauge!("chronik_partition_log_end_offset", &labels)
                    .set(r.log.log_end_offset() as f64);
                gauge!("chronik_partition_high_watermark", &labels).set(r.high_watermark() as f64);
                gauge!("chronik_partition_isr_size", &labels).set(p.isr.len() as f64);
                gauge!("chronik_partition_under_replicated", &labels)
                    .set(f64::from(u8::from(under)));
                gauge!("chronik_partition_size_bytes", &labels).set(size as f64);
                gauge!("chronik_partition_segments", &labels).set(segments as f64);
                gauge!("chronik_partition_leader", &labels).set(f64::from(u8::from(leads)));
            }
            for lag in r.follower_lags(&p.replicas) {
                let e = per_topic_lag.entry(t.name.clone()).or_default();
                e.0 = e.0.max(lag.messages);
                e.1 = e.1.max(lag.behind.as_secs_f64());
                if per_partition {
                    let labels = [
                        ("topic", t.name.clone()),
                        ("partition", i.to_string()),
                        ("replica", lag.replica.to_string()),
                    ];
                    gauge!("chronik_replica_lag_messages", &labels).set(lag.messages as f64);
                    gauge!("chronik_replica_lag_seconds", &labels).set(lag.behind.as_secs_f64());
                }
            }
        }
    }
    if !per_partition {
        for (topic, (messages, seconds)) in per_topic_lag {
            let labels = [("topic", topic)];
            gauge!("chronik_topic_max_replica_lag_messages", &labels).set(messages as f64);
            gauge!("chronik_topic_max_replica_lag_seconds", &labels).set(seconds);
        }
    }
    group_lag(broker, per_partition);
    for (topic, (under, size, segments)) in per_topic {
        let labels = [("topic", topic)];
        gauge!("chronik_topic_under_replicated_partitions", &labels).set(under as f64);
        gauge!("chronik_topic_size_bytes", &labels).set(size as f64);
        gauge!("chronik_topic_segments", &labels).set(segments as f64);
    }
    gauge!("chronik_under_replicated_partitions").set(under_replicated_total as f64);
    poisoned_partitions(broker);
    let raft = broker.raft_status();
    gauge!("chronik_raft_term").set(raft.term as f64);
    gauge!("chronik_raft_last_log_index").set(raft.last_log_index as f64);
    gauge!("chronik_raft_last_applied_index").set(raft.last_applied_index as f64);
    gauge!("chronik_raft_commit_index").set(raft.committed_index as f64);
    gauge!("chronik_raft_apply_lag")
        .set(raft.last_log_index.saturating_sub(raft.last_applied_index) as f64);
    gauge!("chronik_raft_is_leader").set(f64::from(u8::from(raft.leader == Some(broker.node_id))));
    gauge!("chronik_raft_voters").set(raft.voters.len() as f64);
    gauge!(CONNECTIONS).set(OpenConnection::count() as f64);
    // The descriptor budget (crate::fd_budget): what is open against the cache's bound.
    if let Some(n) = crate::fd_budget::open_fds() {
        gauge!("chronik_open_file_descriptors").set(n as f64);
    }
    gauge!("chronik_wal_open_segment_files").set(chronik_wal::open_segment_files() as f64);
    gauge!("chronik_wal_max_open_segment_files").set(chronik_wal::max_open_segment_files() as f64);
}

/// `chronik_partition_poisoned{topic,partition}` = 1 for every partition a storage error
/// poisoned (whatever `--metrics-partition-labels` says: there are few, and each needs an
/// operator's eye), 0 once at the scrape after it healed (then dropped as idle), and
/// `chronik_poisoned_partitions`, their count.
fn poisoned_partitions(broker: &Broker) {
    static REPORTED: std::sync::Mutex<BTreeSet<(String, i32)>> =
        std::sync::Mutex::new(BTreeSet::new());
    let mut reported = REPORTED.lock().unwrap_or_else(|e| e.into_inner());
    let now: BTreeSet<(String, i32)> = broker
        .partitions
        .all_partitions()
        .iter()
        .filter(|p| p.storage_failure().is_some())
        .map(|p| (p.topic.clone(), p.index))
        .collect();
    for key in reported.iter().chain(&now) {
        let labels = [("topic", key.0.clone()), ("partition", key.1.to_string())];
        gauge!("chronik_partition_poisoned", &labels).set(f64::from(u8::from(now.contains(key))));
    }
    gauge!("chronik_poisoned_partitions").set(now.len() as f64);
    *reported = now;
}

/// Consumer-group lag, on the node that coordinates each group (it leads the group's offsets
/// partition, so its committed offsets are current): the partition's high watermark minus the
/// group's committed offset, for partitions this node holds a replica of (with RF = the
/// number of nodes, all of them). Folded per group and topic without partition labels.
fn group_lag(broker: &Broker, per_partition: bool) {
    let offsets = broker.groups.offsets();
    for group in offsets.group_ids() {
        if !broker.groups.is_coordinator(&group) {
            continue;
        }
        for (topic, committed) in offsets.group(&group) {
            let mut total = 0i64;
            for (partition, v) in committed {
                let Some(r) = broker.partitions.replicas.get(&topic, partition) else {
                    continue;
                };
                let lag = (r.high_watermark() - v.offset).max(0);
                total += lag;
                if per_partition {
                    let labels = [
                        ("group", group.clone()),
                        ("topic", topic.clone()),
                        ("partition", partition.to_string()),
                    ];
                    gauge!("chronik_consumer_group_lag", &labels).set(lag as f64);
                }
            }
            if !per_partition {
                let labels = [("group", group.clone()), ("topic", topic)];
                gauge!("chronik_consumer_group_topic_lag", &labels).set(total as f64);
            }
        }
    }
}
