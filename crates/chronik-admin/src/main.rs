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
use chronik_admin::output::{Printed, RestartCheck};
use chronik_admin::pb::admin_client::AdminClient;
use chronik_admin::pb::{
    BrokerRef, DescribeClusterRequest, DescribeTopicsRequest, ElectLeaderRequest,
    ListReassignmentsRequest, PartitionMove, PartitionRef, ReassignRequest,
};
use chronik_rpc::tls::{error_chain, RpcTls, TlsFiles};
use clap::Parser;
use tonic::transport::{Channel, Endpoint};

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

/// The endpoint of `--server`: over mutual TLS when `--tls-cert` is given (the server's
/// certificate is checked against `--tls-ca` for the name the nodes' certificates carry).
fn endpoint(cli: &Cli) -> Result<Endpoint> {
    let bad = || format!("bad --server {}", cli.server);
    let (Some(cert), Some(key), Some(ca)) = (&cli.tls_cert, &cli.tls_key, &cli.tls_ca) else {
        return Channel::from_shared(format!("http://{}", cli.server)).with_context(bad);
    };
    let files = TlsFiles {
        cert: cert.clone(),
        key: key.clone(),
        ca: ca.clone(),
    };
    let tls = RpcTls::load(&files)?;
    Channel::from_shared(format!("https://{}", cli.server))
        .with_context(bad)?
        .tls_config(tls.client)
        .context("--tls-cert, --tls-key, --tls-ca")
}

async fn run(cli: Cli) -> Result<()> {
    let channel = endpoint(&cli)?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(cli.timeout))
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach {}: {}", cli.server, error_chain(&e)))?;
    let mut c = AdminClient::new(channel);
    let out = execute(&mut c, cli.command).await?;
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

/// Sends one command's requests; the server's refusal is the error.
async fn execute(c: &mut AdminClient<Channel>, command: Command) -> Result<Printed> {
    // The server's reason; for a refused TLS handshake or a plaintext call to a TLS port the
    // message alone is just "transport error", the cause is in its sources.
    let status = |s: tonic::Status| match std::error::Error::source(&s) {
        Some(cause) => anyhow::anyhow!("{}: {}", s.message(), error_chain(cause)),
        None if s.code() == tonic::Code::PermissionDenied => {
            anyhow::anyhow!("permission denied: {}", s.message())
        }
        None => anyhow::anyhow!("{}", s.message()),
    };
    Ok(match command {
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
                let check = restart_check(c).await.map_err(status)?;
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
        Command::Partition { what } => partition_command(c, what).await.map_err(status)?,
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
    })
}

/// `partition seal|resume|reassign`.
async fn partition_command(
    c: &mut AdminClient<Channel>,
    what: PartitionCmd,
) -> Result<Printed, tonic::Status> {
    Ok(match what {
        PartitionCmd::Seal(a) => Printed::Change(c.seal_partition(part(&a)).await?.into_inner()),
        PartitionCmd::Resume(a) => {
            Printed::Change(c.resume_partition(part(&a)).await?.into_inner())
        }
        PartitionCmd::Reassign { at, replicas } => {
            let req = ReassignRequest {
                moves: vec![PartitionMove {
                    topic: at.topic,
                    partition: at.partition,
                    replicas,
                }],
            };
            Printed::Moves(c.reassign_partitions(req).await?.into_inner())
        }
    })
}

fn part(a: &PartitionArgs) -> PartitionRef {
    PartitionRef {
        topic: a.topic.clone(),
        partition: a.partition,
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
