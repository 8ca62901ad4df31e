//! Command line. `--concurrency` keeps the design document's meaning: that many tasks, each
//! with one message in flight, sharing one connection per broker like threads sharing a producer.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use kafka_protocol::records::Compression;

use crate::payload::HEADER_BYTES;

#[derive(Debug, Parser)]
#[command(
    name = "chronik-bench",
    version,
    about = "Kafka load generator that verifies what it was acknowledged was stored",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Measure the raw disk: 4 KiB append + fdatasync latency, and sequential write bandwidth
    /// with one fdatasync per MiB.
    Disk(DiskArgs),
}

#[derive(Debug, Args)]
pub struct DiskArgs {
    /// Directory to write the probe files in (they are removed afterwards).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// Total seconds, split between the two probes.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub seconds: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Produce and time each message's acknowledgement.
    Produce,
    /// Read the topic from its start and time each fetch.
    Consume,
    /// Produce and time each message until a consumer's fetch returns it.
    Roundtrip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Acks {
    #[value(name = "0")]
    None,
    #[value(name = "1")]
    Leader,
    #[value(name = "all", alias = "-1")]
    All,
}

impl Acks {
    pub fn wire(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    pub fn compression(self) -> Compression {
        match self {
            Codec::None => Compression::None,
            Codec::Gzip => Compression::Gzip,
            Codec::Snappy => Compression::Snappy,
            Codec::Lz4 => Compression::Lz4,
            Codec::Zstd => Compression::Zstd,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Verify {
    /// Trust the acknowledgements.
    None,
    /// Sum of high-watermark advances must account for every acknowledged message.
    Count,
    /// Read everything back: every acknowledged message present once, every payload intact.
    Full,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Comma-separated host:port list.
    #[arg(long, short = 'b', default_value = "127.0.0.1:9092")]
    pub bootstrap_servers: String,
    #[arg(long, short = 't', default_value = "chronik-bench")]
    pub topic: String,
    /// Create the topic with this many partitions if it does not exist.
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..=10_000))]
    pub partitions: Option<i32>,
    /// Replication factor of a topic created by --partitions [default: the broker's]
    #[arg(long, default_value_t = -1, allow_hyphen_values = true,
          value_parser = clap::value_parser!(i16).range(-1..=32))]
    pub replication_factor: i16,
    /// Seconds to measure, after the warm-up.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub duration: u64,
    /// Send exactly this many messages instead of running for --duration.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub messages: Option<u64>,
    /// Concurrent tasks, each with one message in flight.
    #[arg(long, short = 'c', default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub concurrency: u32,
    /// Bytes per message value (at least the 24-byte stamp the verification reads).
    #[arg(long, short = 's', default_value_t = 256, value_parser = parse_message_size)]
    pub message_size: usize,
    /// Give every message one of this many keys (`key-N`), spread evenly, as a compacted
    /// topic needs; unset: no key. Use `--verify count` (compaction removes messages).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub keys: Option<u64>,
    #[arg(long, value_enum, default_value = "1")]
    pub acks: Acks,
    #[arg(long, value_enum, default_value = "none")]
    pub compression: Codec,
    /// Wait up to this long for a request to fill before sending it.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub linger_ms: u64,
    /// Most bytes of values in one partition's batch (Kafka's batch.size).
    #[arg(long, default_value_t = 16_384, value_parser = clap::value_parser!(u64).range(1..=64 * 1024 * 1024))]
    pub batch_size: u64,
    /// Messages per second in total; 0 means as fast as acknowledgements allow.
    #[arg(long, default_value_t = 0)]
    pub rate_limit: u64,
    /// Seconds of load before measuring starts (still produced and verified).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub warmup: u64,
    #[arg(long, value_enum, default_value = "produce")]
    pub mode: Mode,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Use an idempotent producer (InitProducerId, sequence numbers).
    #[arg(long)]
    pub idempotence: bool,
    /// Produce in transactions with this transactional.id (implies --idempotence): every
    /// message is acknowledged when its transaction commits.
    #[arg(long)]
    pub transactional_id: Option<String>,
    /// Messages per transaction, with --transactional-id.
    #[arg(long, default_value_t = 100, requires = "transactional_id",
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub messages_per_transaction: u64,
    /// The producer's transaction.timeout.ms, with --transactional-id.
    #[arg(long, default_value_t = 60_000, requires = "transactional_id",
          value_parser = clap::value_parser!(i32).range(1..))]
    pub transaction_timeout_ms: i32,
    #[arg(long, value_enum, default_value = "count")]
    pub verify: Verify,
    /// Requests in flight per broker connection (Kafka's max.in.flight.requests.per.connection).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub max_in_flight: u32,
    /// Runtime worker threads of the bench itself; keep it small so the broker under test
    /// keeps the machine's other cores.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: u16,
    /// Give up on a request after this many milliseconds (counted as failed).
    #[arg(long, default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub request_timeout_ms: u64,
    /// Log in with SASL: SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN (needs --sasl-username and
    /// --sasl-password).
    #[arg(long, requires_all = ["sasl_username", "sasl_password"])]
    pub sasl_mechanism: Option<String>,
    #[arg(long, requires = "sasl_mechanism")]
    pub sasl_username: Option<String>,
    #[arg(long, requires = "sasl_mechanism")]
    pub sasl_password: Option<String>,
    /// Connect with TLS, trusting brokers whose certificate this CA (PEM) signed.
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
}

impl RunArgs {
    /// How every connection of the run is made.
    pub fn connect_options(&self) -> Result<crate::client::ConnectOptions, String> {
        let sasl = match (
            &self.sasl_mechanism,
            &self.sasl_username,
            &self.sasl_password,
        ) {
            (Some(m), Some(u), Some(p)) => Some(crate::sasl::SaslLogin::new(m, u, p)?),
            _ => None,
        };
        let tls = self
            .tls_ca
            .as_deref()
            .map(crate::tls::Tls::new)
            .transpose()?;
        Ok(crate::client::ConnectOptions { sasl, tls })
    }
}

fn parse_message_size(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|e| format!("{e}"))?;
    if !(HEADER_BYTES..=16 * 1024 * 1024).contains(&n) {
        return Err(format!(
            "must be between {HEADER_BYTES} (the verification stamp) and 16777216 bytes"
        ));
    }
    Ok(n)
}
