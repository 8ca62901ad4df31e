//! chronik-bench: drives any Kafka-compatible broker and reports numbers that can be trusted,
//! because after a produce run it checks that the broker stored what it acknowledged.
//!
//! Exit codes: 0 done (and verified), 1 error, 2 bad command line, 3 verification failed.

mod args;
mod client;
mod cluster;
mod disk;
mod driver;
mod fetch;
mod heap;
mod payload;
mod report;
mod sasl;
mod tls;
mod txn;
mod verify;
mod workload;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Parser;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::time::Instant;

use args::{Acks, Cli, Command, Mode, RunArgs, Verify};
use report::{Latency, Report};
use workload::{Live, RoundtripConsumer, Timing};

const EXIT_ERROR: i32 = 1;
const EXIT_VERIFY_FAILED: i32 = 3;

fn main() {
    let cli = Cli::parse();
    heap::tune();
    let code = match cli.command {
        Some(Command::Disk(d)) => match disk::probe(&d.dir, d.seconds) {
            Ok(r) => {
                if d.json {
                    println!("{}", serde_json::to_string(&r).unwrap_or_default());
                } else {
                    disk::print_text(&r);
                }
                0
            }
            Err(e) => {
                eprintln!("chronik-bench disk: {e:#}");
                EXIT_ERROR
            }
        },
        None => {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(usize::from(cli.run.threads))
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("chronik-bench: cannot start the runtime: {e}");
                    std::process::exit(EXIT_ERROR);
                }
            };
            match rt.block_on(run(cli.run)) {
                Ok(report) => {
                    if report.mode_json {
                        println!(
                            "{}",
                            serde_json::to_string(&report.report).unwrap_or_default()
                        );
                    } else {
                        report.report.print_text();
                    }
                    if !report.report.verify.ok {
                        eprintln!(
                            "chronik-bench: VERIFICATION FAILED: {}",
                            report.report.verify.detail
                        );
                        EXIT_VERIFY_FAILED
                    } else {
                        0
                    }
                }
                Err(e) => {
                    eprintln!("chronik-bench: {e:#}");
                    EXIT_ERROR
                }
            }
        }
    };
    std::process::exit(code);
}

struct Outcome {
    report: Report,
    mode_json: bool,
}

async fn run(args: RunArgs) -> Result<Outcome> {
    if args.mode == Mode::Roundtrip && args.acks == Acks::None {
        bail!("--mode roundtrip needs acknowledgements: use --acks 1 or all");
    }
    if args.transactional_id.is_some() && (args.mode != Mode::Produce || args.acks != Acks::All) {
        bail!("--transactional-id needs --mode produce and --acks all (as Kafka's transactional producer)");
    }
    let options = args.connect_options().map_err(anyhow::Error::msg)?;
    let boot = cluster::bootstrap(&args.bootstrap_servers, &options).await?;
    let create = args.mode != Mode::Consume;
    let layout = cluster::prepare_topic(
        &boot,
        &args.topic,
        args.partitions,
        args.replication_factor,
        create,
    )
    .await?;
    let before = cluster::end_offsets(&layout).await?;
    let report = new_report(&args, layout.partitions.len());
    let report = if args.mode == Mode::Consume {
        run_consume(&args, &layout, before, report).await?
    } else {
        run_produce(&args, layout, before, report, boot).await?
    };
    Ok(Outcome {
        report,
        mode_json: args.json,
    })
}

/// The report's description of the run, before any figure.
fn new_report(args: &RunArgs, partitions: usize) -> Report {
    Report {
        mode: format!("{:?}", args.mode).to_lowercase(),
        topic: args.topic.clone(),
        partitions,
        concurrency: args.concurrency,
        message_size: args.message_size,
        acks: match args.acks {
            Acks::None => "0",
            Acks::Leader => "1",
            Acks::All => "all",
        }
        .into(),
        warmup_s: args.warmup as f64,
        ..Default::default()
    }
}

/// `--mode consume`: reads from the start offsets up to the ends seen at start.
async fn run_consume(
    args: &RunArgs,
    layout: &cluster::TopicLayout,
    before: BTreeMap<i32, i64>,
    mut report: Report,
) -> Result<Report> {
    let live = Arc::new(Live::default());
    let from = cluster::start_offsets(layout).await?;
    let timing = Arc::new(Timing::new(args));
    let bar = progress(args, live.clone(), "read");
    let o = workload::consume(args, layout, from, before, live.clone(), timing.clone()).await;
    bar.finish_and_clear();
    let o = o?;
    let secs = o
        .last_done
        .saturating_duration_since(timing.measure_start)
        .as_secs_f64();
    report.measured = o.messages;
    report.sent = o.messages;
    fill_rates(&mut report, o.messages, o.bytes, secs);
    report.latency_us = Latency::of(&o.hist);
    report.verify = report::VerifyReport {
        mode: "none".into(),
        ok: true,
        detail: "consume mode reads only".into(),
        ..Default::default()
    };
    Ok(report)
}

/// `--mode produce` and `--mode roundtrip`: produce, measure, then verify what was stored.
async fn run_produce(
    args: &RunArgs,
    layout: cluster::TopicLayout,
    before: BTreeMap<i32, i64>,
    mut report: Report,
    boot: client::Connection,
) -> Result<Report> {
    let live = Arc::new(Live::default());
    let timeout = Duration::from_millis(args.request_timeout_ms);
    // Before the clock starts: the first InitProducerId may wait for the transaction log to
    // be created, which is no part of producing.
    let txns = match &args.transactional_id {
        Some(id) => Some(
            txn::Transactions::init(
                &layout,
                id,
                args.messages_per_transaction,
                args.transaction_timeout_ms,
                timeout,
            )
            .await?,
        ),
        None => None,
    };
    let timing = Arc::new(Timing::new(args));
    let consumer = (args.mode == Mode::Roundtrip)
        .then(|| RoundtripConsumer::start(&layout, &before, timing.clone(), timeout));
    let bar = progress(args, live.clone(), "acked");
    let outcome = driver::produce(
        &layout,
        driver_config(args, timeout),
        txns,
        live.clone(),
        timing.clone(),
    )
    .await;
    bar.finish_and_clear();
    let outcome = outcome?;
    let options = boot.options().clone();
    drop(boot);
    summarize_produce(&mut report, &outcome, &timing);
    report.transactions = outcome.txn.clone();
    if report.measured == 0 && report.sent > 0 && !args.json {
        eprintln!("chronik-bench: nothing was acknowledged inside the measured window");
    }
    if let Some(c) = consumer {
        let (e2e, _seen) = c.finish(report.acked, Duration::from_secs(30)).await?;
        report.ack_latency_us = Some(report.latency_us.clone());
        report.latency_us = Latency::of(&e2e);
    }
    // Leaders may have moved during the run (a cluster failing over): verify against the
    // current ones.
    let refreshed = match cluster::bootstrap(&args.bootstrap_servers, &options).await {
        Ok(boot) => cluster::prepare_topic(&boot, &args.topic, None, -1, false).await,
        Err(e) => Err(e),
    };
    let layout_now = refreshed.unwrap_or(layout);
    let markers = outcome
        .txn
        .as_ref()
        .map_or((0, 0), txn::Transactions::markers);
    report.verify = verify::verify(
        args.verify,
        &layout_now,
        &before,
        &outcome.slots,
        verify::Expect {
            acks_none: args.acks == Acks::None,
            markers,
        },
        timeout,
    )
    .await?;
    if args.verify == Verify::None {
        report.verify.ok = true;
    }
    Ok(report)
}

fn driver_config(args: &RunArgs, timeout: Duration) -> driver::DriverConfig {
    driver::DriverConfig {
        acks: args.acks.wire(),
        compression: args.compression.compression(),
        linger: Duration::from_millis(args.linger_ms),
        batch_size: args.batch_size as usize,
        max_in_flight: args.max_in_flight as usize,
        idempotence: args.idempotence || args.transactional_id.is_some(),
        request_timeout: timeout,
        concurrency: args.concurrency,
        message_size: args.message_size,
        keys: args.keys,
        rate: args.rate_limit,
        budget: args.messages,
    }
}

/// Counts, rates and latencies of a produce run into `report`.
fn summarize_produce(report: &mut Report, outcome: &driver::ProduceOutcome, timing: &Timing) {
    for s in &outcome.slots {
        report.sent += s.sent;
        report.acked += s.acked;
        report.failed += s.failed;
    }
    report.measured = outcome.measured;
    report.errors = outcome.errors.clone();
    let last_done = outcome.last_done.max(timing.measure_start);
    let secs = last_done
        .saturating_duration_since(timing.measure_start)
        .as_secs_f64();
    let measured = report.measured;
    fill_rates(report, measured, outcome.measured_bytes, secs);
    report.latency_us = Latency::of(&outcome.hist);
}

fn fill_rates(report: &mut Report, messages: u64, bytes: u64, secs: f64) {
    report.duration_s = secs;
    if secs > 0.0 {
        report.msgs_per_s = messages as f64 / secs;
        report.mb_per_s = bytes as f64 / 1e6 / secs;
    }
}

/// A live line on stderr with msg/s, MB/s and errors; hidden with --json or off a terminal.
fn progress(args: &RunArgs, live: Arc<Live>, verb: &'static str) -> ProgressBar {
    let bar = if args.json {
        ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden())
    } else {
        ProgressBar::new_spinner()
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let b = bar.clone();
    tokio::spawn(async move {
        let (mut last_n, mut last_bytes, mut last_t) = (0u64, 0u64, Instant::now());
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            if b.is_finished() {
                return;
            }
            let (n, bytes) = (
                live.acked.load(Ordering::Relaxed),
                live.bytes.load(Ordering::Relaxed),
            );
            let now = Instant::now();
            let dt = (now - last_t).as_secs_f64().max(1e-3);
            b.set_message(format!(
                "{verb} {n}  {:.0} msg/s  {:.1} MB/s  errors {}",
                (n - last_n) as f64 / dt,
                (bytes - last_bytes) as f64 / 1e6 / dt,
                live.failed.load(Ordering::Relaxed)
            ));
            b.tick();
            (last_n, last_bytes, last_t) = (n, bytes, now);
        }
    });
    bar
}
