//! What chronik-admin prints: tables (comfy-table, borderless columns) by default, JSON with
//! `--output json`.

use comfy_table::presets::NOTHING;
use comfy_table::Table;
use serde_json::{json, Value};

use crate::pb::{
    ChangeReply, DescribeClusterReply, DescribeTopicsReply, ListReassignmentsReply, PartitionInfo,
    ReassignReply,
};

/// What stands in the way of restarting a node.
pub struct RestartCheck {
    /// topic-partition: replicas not in the ISR.
    pub under_replicated: Vec<(String, i32, Vec<i32>)>,
    pub fenced: Vec<i32>,
    pub controller: i32,
}

impl RestartCheck {
    pub fn safe(&self) -> bool {
        self.under_replicated.is_empty() && self.fenced.is_empty() && self.controller != 0
    }
}

/// One command's answer, ready to print.
pub enum Printed {
    RestartCheck(RestartCheck),
    Cluster(DescribeClusterReply),
    Topics(DescribeTopicsReply),
    Change(ChangeReply),
    Moves(ReassignReply),
    Reassignments(ListReassignmentsReply),
}

fn partition_json(p: &PartitionInfo) -> Value {
    let mut v = json!({
        "partition": p.partition, "replicas": p.replicas, "leader": p.leader,
        "leader_epoch": p.leader_epoch, "isr": p.isr, "sealed": p.sealed,
    });
    if !p.adding.is_empty() || !p.removing.is_empty() {
        v["adding"] = json!(p.adding);
        v["removing"] = json!(p.removing);
    }
    if !p.replica_stats.is_empty() {
        v["replica_stats"] = json!(p
            .replica_stats
            .iter()
            .map(|r| if r.reachable {
                json!({
                    "node_id": r.node_id, "reachable": true, "log_end": r.log_end,
                    "high_watermark": r.high_watermark, "lag": r.lag,
                    "size_bytes": r.size_bytes, "segments": r.segments,
                })
            } else {
                json!({"node_id": r.node_id, "reachable": false, "error": r.error})
            })
            .collect::<Vec<_>>());
    }
    if p.local {
        v["local"] = json!({
            "log_end": p.local_log_end, "high_watermark": p.local_high_watermark,
            "size_bytes": p.local_size_bytes, "segments": p.local_segments,
        });
    }
    v
}

fn ids(v: &[i32]) -> String {
    v.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

impl Printed {
    pub fn json(&self) -> Value {
        match self {
            Printed::Cluster(r) => json!({
                "cluster_id": r.cluster_id, "controller": r.controller,
                "voters": r.voters, "learners": r.learners, "answered_by": r.answered_by,
                "last_log_index": r.last_log_index, "last_applied_index": r.last_applied_index,
                "brokers": r.brokers.iter().map(|b| json!({
                    "node_id": b.node_id, "host": b.host, "port": b.port, "rpc_addr": b.rpc_addr,
                    "rack": b.rack, "state": b.state,
                })).collect::<Vec<_>>(),
                "raft_log": r.nodes.iter().map(|n| if n.reachable {
                    json!({"node_id": n.node_id, "reachable": true,
                           "last_log_index": n.last_log_index, "last_applied_index": n.last_applied_index})
                } else {
                    json!({"node_id": n.node_id, "reachable": false, "error": n.error})
                }).collect::<Vec<_>>(),
            }),
            Printed::Topics(r) => json!(r
                .topics
                .iter()
                .map(|t| json!({
                    "name": t.name, "id": t.id, "internal": t.internal, "configs": t.configs,
                    "partitions": t.partitions.iter().map(partition_json).collect::<Vec<_>>(),
                }))
                .collect::<Vec<_>>()),
            Printed::Change(r) => r.partition.as_ref().map_or(Value::Null, partition_json),
            Printed::RestartCheck(r) => json!({
                "safe": r.safe(), "controller": r.controller, "fenced": r.fenced,
                "under_replicated": r.under_replicated.iter().map(|(t, p, m)| json!({
                    "topic": t, "partition": p, "out_of_isr": m,
                })).collect::<Vec<_>>(),
            }),
            Printed::Moves(r) => json!(r.partitions.iter().map(partition_json).collect::<Vec<_>>()),
            Printed::Reassignments(r) => json!(r
                .reassignments
                .iter()
                .map(|x| json!({
                    "topic": x.topic, "target": x.target, "caught_up": x.caught_up,
                    "partition": x.partition.as_ref().map_or(Value::Null, partition_json),
                }))
                .collect::<Vec<_>>()),
        }
    }

    pub fn table(&self) -> String {
        match self {
            Printed::Cluster(r) => cluster_table(r),
            Printed::Topics(r) => topics_table(r),
            Printed::RestartCheck(r) => restart_text(r),
            Printed::Moves(r) => r
                .partitions
                .iter()
                .map(|p| {
                    format!(
                        "partition {}: reassigning, replicas {} adding {} removing {} isr {}\n",
                        p.partition,
                        ids(&p.replicas),
                        ids(&p.adding),
                        ids(&p.removing),
                        ids(&p.isr)
                    )
                })
                .collect(),
            Printed::Reassignments(r) => reassignments_table(r),
            Printed::Change(r) => r.partition.as_ref().map_or(String::new(), |p| {
                format!(
                    "partition {}: leader {} epoch {} replicas {} isr {} sealed {}\n",
                    p.partition,
                    p.leader,
                    p.leader_epoch,
                    ids(&p.replicas),
                    ids(&p.isr),
                    p.sealed
                )
            }),
        }
    }
}

/// A borderless table with `header`, as text ending in a newline.
fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut t = Table::new();
    t.load_preset(NOTHING).set_header(header.to_vec());
    for row in rows {
        t.add_row(row);
    }
    format!("{t}\n")
}

fn cluster_table(r: &DescribeClusterReply) -> String {
    let rows = r
        .brokers
        .iter()
        .map(|b| {
            let raft = r
                .nodes
                .iter()
                .find(|n| n.node_id == b.node_id)
                .map_or(String::new(), |n| {
                    if n.reachable {
                        format!("{}/{}", n.last_log_index, n.last_applied_index)
                    } else {
                        format!("unreachable: {}", n.error)
                    }
                });
            vec![
                b.node_id.to_string(),
                format!("{}:{}", b.host, b.port),
                b.rpc_addr.clone(),
                b.rack.clone(),
                b.state.clone(),
                raft,
            ]
        })
        .collect();
    format!(
        "cluster {}  controller {}  voters {}  learners {}\n",
        r.cluster_id,
        r.controller,
        ids(&r.voters),
        ids(&r.learners)
    ) + &table(
        &[
            "ID",
            "KAFKA",
            "RPC",
            "RACK",
            "STATE",
            "RAFT LOG (LAST/APPLIED)",
        ],
        rows,
    )
}

/// One row per partition; then, if the server reported them, one row per replica.
fn topics_table(r: &DescribeTopicsReply) -> String {
    let mut partitions = Vec::new();
    let mut replicas = Vec::new();
    for t in &r.topics {
        for p in &t.partitions {
            partitions.push(vec![
                t.name.clone(),
                p.partition.to_string(),
                ids(&p.replicas),
                p.leader.to_string(),
                p.leader_epoch.to_string(),
                ids(&p.isr),
                p.sealed.to_string(),
            ]);
            for s in &p.replica_stats {
                let (state, rest) = if s.reachable {
                    (
                        format!("lag {}", s.lag),
                        [s.log_end, s.high_watermark].map(|v| v.to_string()),
                    )
                } else {
                    (format!("unreachable: {}", s.error), Default::default())
                };
                let size = if s.reachable {
                    format!("{} bytes in {} segment(s)", s.size_bytes, s.segments)
                } else {
                    String::new()
                };
                let [end, hw] = rest;
                replicas.push(vec![
                    t.name.clone(),
                    p.partition.to_string(),
                    s.node_id.to_string(),
                    state,
                    end,
                    hw,
                    size,
                ]);
            }
        }
    }
    let mut out = table(
        &[
            "TOPIC", "PART", "REPLICAS", "LEADER", "EPOCH", "ISR", "SEALED",
        ],
        partitions,
    );
    if !replicas.is_empty() {
        out += "\n";
        out += &table(
            &["TOPIC", "PART", "REPLICA", "STATE", "LOG END", "HW", "SIZE"],
            replicas,
        );
    }
    out
}

fn restart_text(r: &RestartCheck) -> String {
    if r.safe() {
        return "safe: every partition has all its replicas in sync; the next node may restart\n"
            .into();
    }
    let mut s = String::from("not safe to restart a node yet:\n");
    if r.controller == 0 {
        s += "  no metadata controller is known\n";
    }
    for b in &r.fenced {
        s += &format!("  broker {b} is fenced\n");
    }
    for (t, p, m) in &r.under_replicated {
        s += &format!("  {t}-{p}: replicas {} not in the ISR\n", ids(m));
    }
    s
}

fn reassignments_table(r: &ListReassignmentsReply) -> String {
    let rows = r
        .reassignments
        .iter()
        .map(|x| {
            let p = x.partition.clone().unwrap_or_default();
            vec![
                x.topic.clone(),
                p.partition.to_string(),
                ids(&x.target),
                ids(&p.adding),
                ids(&x.caught_up),
                ids(&p.removing),
            ]
        })
        .collect();
    table(
        &["TOPIC", "PART", "TARGET", "ADDING", "CAUGHT-UP", "REMOVING"],
        rows,
    )
}
