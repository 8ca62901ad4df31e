//! `chronik-admin --server HOST:RPC <command>`: the operator's CLI over the admin gRPC API.
//! Tables by default, `--output json` for scripts. Exit codes: 0 success, 1 the operation
//! failed (the server's reason is printed), 2 usage error.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use chronik_admin::cli::{
    BrokerCmd, Cli, ClusterCmd, Command, LeaderCmd, Output, PartitionArgs, PartitionCmd,
    ReassignmentCmd, TopicCmd,
};
use chronik_admin::pb::admin_client::AdminClient;
use chronik_admin::pb::{
    BrokerRef, ChangeReply, DescribeClusterReply, DescribeClusterRequest, DescribeTopicsReply,
    DescribeTopicsRequest, ElectLeaderRequest, ListReassignmentsReply, ListReassignmentsRequest,
    PartitionInfo, PartitionMove, PartitionRef, ReassignReply, ReassignRequest,
};
use clap::Parser;
use serde_json::{json, Value};
use tonic::transport::Channel;

fn main() -> ExitCode {
    let cli = Cli::parse(); // usage errors: clap prints them and exits with 2
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chronik-admin: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chronik-admin: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let channel = Channel::from_shared(format!("http://{}", cli.server))
        .with_context(|| format!("bad --server {}", cli.server))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(cli.timeout))
        .connect()
        .await
        .with_context(|| format!("cannot reach {}", cli.server))?;
    let mut c = AdminClient::new(channel);
    let status = |s: tonic::Status| anyhow::anyhow!("{}", s.message());
    let out = match cli.command {
        Command::Cluster {
            what: ClusterCmd::Describe,
        } => {
            let r = c
                .describe_cluster(DescribeClusterRequest { local_only: false })
                .await
                .map_err(status)?
                .into_inner();
            Printed::Cluster(r)
        }
        Command::Cluster {
            what: ClusterCmd::RollingRestartCheck { wait },
        } => {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
            loop {
                let check = restart_check(&mut c).await.map_err(status)?;
                if check.safe() || tokio::time::Instant::now() >= deadline {
                    break Printed::RestartCheck(check);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        Command::Topic {
            what: TopicCmd::Describe { topics },
        } => {
            let r = c
                .describe_topics(DescribeTopicsRequest { topics })
                .await
                .map_err(status)?
                .into_inner();
            Printed::Topics(r)
        }
        Command::Partition { what } => match what {
            PartitionCmd::Seal(a) => Printed::Change(
                c.seal_partition(part(&a))
                    .await
                    .map_err(status)?
                    .into_inner(),
            ),
            PartitionCmd::Resume(a) => Printed::Change(
                c.resume_partition(part(&a))
                    .await
                    .map_err(status)?
                    .into_inner(),
            ),
            PartitionCmd::Reassign { at, replicas } => {
                let req = ReassignRequest {
                    moves: vec![PartitionMove {
                        topic: at.topic,
                        partition: at.partition,
                        replicas,
                    }],
                };
                Printed::Moves(
                    c.reassign_partitions(req)
                        .await
                        .map_err(status)?
                        .into_inner(),
                )
            }
        },
        Command::Broker { what } => {
            let r = match what {
                BrokerCmd::Add(a) => c.add_broker(BrokerRef { node_id: a.node_id }).await,
                BrokerCmd::Decommission(a) => {
                    c.decommission_broker(BrokerRef { node_id: a.node_id })
                        .await
                }
                BrokerCmd::RemoveVoter(a) => c.remove_voter(BrokerRef { node_id: a.node_id }).await,
            };
            Printed::Cluster(r.map_err(status)?.into_inner())
        }
        Command::Reassignment {
            what: ReassignmentCmd::List,
        } => Printed::Reassignments(
            c.list_reassignments(ListReassignmentsRequest {})
                .await
                .map_err(status)?
                .into_inner(),
        ),
        Command::Reassignment {
            what: ReassignmentCmd::Cancel(a),
        } => Printed::Change(
            c.cancel_reassignment(part(&a))
                .await
                .map_err(status)?
                .into_inner(),
        ),
        Command::Leader {
            what: LeaderCmd::Elect { at, replica },
        } => {
            let req = ElectLeaderRequest {
                topic: at.topic,
                partition: at.partition,
                leader: replica.unwrap_or(0),
            };
            Printed::Change(c.elect_leader(req).await.map_err(status)?.into_inner())
        }
    };
    match cli.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&out.json())?),
        Output::Table => print!("{}", out.table()),
    }
    if let Printed::RestartCheck(r) = &out {
        if !r.safe() {
            anyhow::bail!("not safe to restart a node yet");
        }
    }
    Ok(())
}

fn part(a: &PartitionArgs) -> PartitionRef {
    PartitionRef {
        topic: a.topic.clone(),
        partition: a.partition,
    }
}

/// What stands in the way of restarting a node.
struct RestartCheck {
    /// topic-partition: replicas not in the ISR.
    under_replicated: Vec<(String, i32, Vec<i32>)>,
    fenced: Vec<i32>,
    controller: i32,
}

impl RestartCheck {
    fn safe(&self) -> bool {
        self.under_replicated.is_empty() && self.fenced.is_empty() && self.controller != 0
    }
}

async fn restart_check(c: &mut AdminClient<Channel>) -> Result<RestartCheck, tonic::Status> {
    let cluster = c
        .describe_cluster(DescribeClusterRequest { local_only: true })
        .await?
        .into_inner();
    let topics = c
        .describe_topics(DescribeTopicsRequest { topics: Vec::new() })
        .await?
        .into_inner();
    let mut under_replicated = Vec::new();
    for t in &topics.topics {
        for p in &t.partitions {
            let missing: Vec<i32> = p
                .replicas
                .iter()
                .copied()
                .filter(|r| !p.isr.contains(r) && !p.adding.contains(r))
                .collect();
            if !missing.is_empty() {
                under_replicated.push((t.name.clone(), p.partition, missing));
            }
        }
    }
    Ok(RestartCheck {
        under_replicated,
        fenced: cluster
            .brokers
            .iter()
            .filter(|b| b.state == "fenced")
            .map(|b| b.node_id)
            .collect(),
        controller: cluster.controller,
    })
}

enum Printed {
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
    fn json(&self) -> Value {
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

    fn table(&self) -> String {
        let mut s = String::new();
        match self {
            Printed::Cluster(r) => {
                s += &format!(
                    "cluster {}  controller {}  voters {}  learners {}\n",
                    r.cluster_id,
                    r.controller,
                    ids(&r.voters),
                    ids(&r.learners)
                );
                s += &format!(
                    "{:<6} {:<24} {:<22} {:<10} {:<16} {}\n",
                    "ID", "KAFKA", "RPC", "RACK", "STATE", "RAFT LOG (LAST/APPLIED)"
                );
                for b in &r.brokers {
                    let raft = r.nodes.iter().find(|n| n.node_id == b.node_id).map_or(
                        String::new(),
                        |n| {
                            if n.reachable {
                                format!("{}/{}", n.last_log_index, n.last_applied_index)
                            } else {
                                format!("unreachable: {}", n.error)
                            }
                        },
                    );
                    s += &format!(
                        "{:<6} {:<24} {:<22} {:<10} {:<16} {}\n",
                        b.node_id,
                        format!("{}:{}", b.host, b.port),
                        b.rpc_addr,
                        b.rack,
                        b.state,
                        raft
                    );
                }
            }
            Printed::Topics(r) => {
                s += &format!(
                    "{:<32} {:>4} {:<10} {:>6} {:>6} {:<10} {:<7}\n",
                    "TOPIC", "PART", "REPLICAS", "LEADER", "EPOCH", "ISR", "SEALED"
                );
                for t in &r.topics {
                    for p in &t.partitions {
                        s += &format!(
                            "{:<32} {:>4} {:<10} {:>6} {:>6} {:<10} {:<7}\n",
                            t.name,
                            p.partition,
                            ids(&p.replicas),
                            p.leader,
                            p.leader_epoch,
                            ids(&p.isr),
                            p.sealed
                        );
                        for r in &p.replica_stats {
                            s += &if r.reachable {
                                format!(
                                    "{:<32} {:>4}   replica {:<3} end {:<10} hw {:<10} lag {:<8} {} bytes in {} segment(s)\n",
                                    "", "", r.node_id, r.log_end, r.high_watermark, r.lag,
                                    r.size_bytes, r.segments
                                )
                            } else {
                                format!(
                                    "{:<32} {:>4}   replica {:<3} unreachable: {}\n",
                                    "", "", r.node_id, r.error
                                )
                            };
                        }
                    }
                }
            }
            Printed::RestartCheck(r) => {
                if r.safe() {
                    s += "safe: every partition has all its replicas in sync; the next node may restart\n";
                } else {
                    s += "not safe to restart a node yet:\n";
                    if r.controller == 0 {
                        s += "  no metadata controller is known\n";
                    }
                    for b in &r.fenced {
                        s += &format!("  broker {b} is fenced\n");
                    }
                    for (t, p, m) in &r.under_replicated {
                        s += &format!("  {t}-{p}: replicas {} not in the ISR\n", ids(m));
                    }
                }
            }
            Printed::Moves(r) => {
                for p in &r.partitions {
                    s += &format!(
                        "partition {}: reassigning, replicas {} adding {} removing {} isr {}\n",
                        p.partition,
                        ids(&p.replicas),
                        ids(&p.adding),
                        ids(&p.removing),
                        ids(&p.isr)
                    );
                }
            }
            Printed::Reassignments(r) => {
                s += &format!(
                    "{:<32} {:>4} {:<10} {:<10} {:<10} {:<10}\n",
                    "TOPIC", "PART", "TARGET", "ADDING", "CAUGHT-UP", "REMOVING"
                );
                for x in &r.reassignments {
                    let p = x.partition.clone().unwrap_or_default();
                    s += &format!(
                        "{:<32} {:>4} {:<10} {:<10} {:<10} {:<10}\n",
                        x.topic,
                        p.partition,
                        ids(&x.target),
                        ids(&p.adding),
                        ids(&x.caught_up),
                        ids(&p.removing)
                    );
                }
            }
            Printed::Change(r) => {
                if let Some(p) = &r.partition {
                    s += &format!(
                        "partition {}: leader {} epoch {} replicas {} isr {} sealed {}\n",
                        p.partition,
                        p.leader,
                        p.leader_epoch,
                        ids(&p.replicas),
                        ids(&p.isr),
                        p.sealed
                    );
                }
            }
        }
        s
    }
}
