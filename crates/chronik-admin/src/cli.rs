//! The `chronik-admin` command line (clap). In the library so the operations guide's reference
//! (`chronik-docs`) is generated from the same definitions the binary parses.

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "chronik-admin",
    version,
    about = "Administer a Chronik cluster"
)]
pub struct Cli {
    // The options are global so they may follow the subcommand too
    // (`chronik-admin cluster describe --output json` is how people type it).
    /// RPC address of any node (its --rpc-addr / --cluster entry).
    #[arg(long, global = true, default_value = "127.0.0.1:9093")]
    pub server: String,
    /// Tables for people, JSON for scripts.
    #[arg(long, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Seconds to wait for an answer.
    #[arg(long, global = true, default_value_t = 30)]
    pub timeout: u64,
    /// Client certificate (PEM) for a cluster with RPC TLS: signed by the cluster CA, its CN
    /// in the nodes' --rpc-admin-allowed-names if they set one. Needs --tls-key and --tls-ca.
    #[arg(long, global = true, env = "CHRONIK_ADMIN_TLS_CERT", requires_all = ["tls_key", "tls_ca"])]
    pub tls_cert: Option<std::path::PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(
        long,
        global = true,
        env = "CHRONIK_ADMIN_TLS_KEY",
        requires = "tls_cert"
    )]
    pub tls_key: Option<std::path::PathBuf>,
    /// The cluster CA (PEM) the node's certificate must be signed by.
    #[arg(
        long,
        global = true,
        env = "CHRONIK_ADMIN_TLS_CA",
        requires = "tls_cert"
    )]
    pub tls_ca: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub enum Output {
    Table,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// The cluster: id, controller, brokers, Raft voters.
    Cluster {
        #[command(subcommand)]
        what: ClusterCmd,
    },
    /// Topics and their partitions.
    Topic {
        #[command(subcommand)]
        what: TopicCmd,
    },
    /// Seal, resume or reassign a partition.
    Partition {
        #[command(subcommand)]
        what: PartitionCmd,
    },
    /// Brokers and Raft membership.
    Broker {
        #[command(subcommand)]
        what: BrokerCmd,
    },
    /// Running reassignments.
    Reassignment {
        #[command(subcommand)]
        what: ReassignmentCmd,
    },
    /// Partition leadership.
    Leader {
        #[command(subcommand)]
        what: LeaderCmd,
    },
}

#[derive(Subcommand)]
pub enum ClusterCmd {
    /// Cluster id, controller, brokers (state, rack), Raft voters and learners, and every
    /// node's Raft log position.
    Describe,
    /// Whether the next node may be restarted now: every partition has all its replicas in
    /// the ISR and no broker is fenced. Exit 0 when it may, 1 when not (the reasons printed).
    RollingRestartCheck {
        /// Keep checking, up to this many seconds, until it is safe.
        #[arg(long, default_value_t = 0)]
        wait: u64,
    },
}

#[derive(Subcommand)]
pub enum TopicCmd {
    /// Every topic, or the named ones.
    Describe {
        /// Topic names; none for every topic.
        topics: Vec<String>,
    },
}

#[derive(clap::Args)]
pub struct PartitionArgs {
    /// Topic name.
    #[arg(long)]
    pub topic: String,
    /// Partition index.
    #[arg(long)]
    pub partition: i32,
}

#[derive(Subcommand)]
pub enum PartitionCmd {
    /// Refuse produce (retriable), keep serving fetch; survives restarts.
    Seal(PartitionArgs),
    /// Take produce again.
    Resume(PartitionArgs),
    /// Move the partition to new replicas (the first is preferred leader): new ones catch up
    /// and join the ISR, then the controller completes the move and old ones delete their data.
    Reassign {
        #[command(flatten)]
        at: PartitionArgs,
        /// Target broker ids, comma-separated: --replicas 2,3,4
        #[arg(long, value_delimiter = ',', required = true)]
        replicas: Vec<i32>,
    },
}

#[derive(clap::Args)]
pub struct BrokerArgs {
    /// The broker's node id.
    #[arg(long)]
    pub node_id: i32,
}

#[derive(Subcommand)]
pub enum BrokerCmd {
    /// Make a learner (a node started with --join) a Raft voter.
    Add(BrokerArgs),
    /// Move every replica off the broker, then remove it from the Raft membership.
    Decommission(BrokerArgs),
    /// Remove a permanently lost node from the Raft membership (never the last voter).
    RemoveVoter(BrokerArgs),
}

#[derive(Subcommand)]
pub enum ReassignmentCmd {
    /// Reassignments in progress, with the added replicas that caught up.
    List,
    /// Abandon a reassignment: back to the old replicas.
    Cancel(PartitionArgs),
}

#[derive(Subcommand)]
pub enum LeaderCmd {
    /// Elect the preferred replica, or --replica N (alive and in the ISR).
    Elect {
        #[command(flatten)]
        at: PartitionArgs,
        /// The replica to make leader instead of the preferred one.
        #[arg(long)]
        replica: Option<i32>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_may_follow_the_subcommand() {
        let before =
            Cli::try_parse_from(["chronik-admin", "--output", "json", "cluster", "describe"])
                .unwrap();
        let after = Cli::try_parse_from([
            "chronik-admin",
            "cluster",
            "describe",
            "--output",
            "json",
            "--server",
            "10.0.0.1:9093",
            "--timeout",
            "5",
        ])
        .unwrap();
        assert!(before.output == Output::Json && after.output == Output::Json);
        assert_eq!(after.server, "10.0.0.1:9093");
        assert_eq!(after.timeout, 5);
    }
}
