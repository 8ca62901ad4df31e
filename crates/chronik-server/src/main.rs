//! `chronik-server`: parses settings, starts the broker, prints one ready line on stdout,
//! and shuts down gracefully on SIGTERM/SIGINT (stop accepting, finish in-flight
//! requests, fsync, exit 0). A bad flag or setting exits with code 2.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use chronik_cluster::ClusterError;
use chronik_metadata::Endpoint;
use chronik_server::broker::{Broker, StartError};
use chronik_server::config::{
    BrokerConfig, Cli, ConfigError, LogFormat, DEFAULT_LOG_FILTER, LOG_FILTER_ENV,
};
use chronik_server::shutdown::Shutdown;
use chronik_server::startup::StartupPhase;
use chronik_server::tls::Tls;
use chronik_server::{fd_budget, http, server};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let config = match Cli::load(std::env::args_os())
        .and_then(Cli::into_args)
        .and_then(BrokerConfig::resolve)
        .and_then(|c| c.rpc_security.apply(c.node_id).map(|()| c))
    {
        Ok(c) => c,
        // clap prints a usage error with the usage and exits with code 2 (0 for --help).
        Err(ConfigError::Usage(e)) => e.exit(),
        Err(e) => {
            eprintln!("chronik-server: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(config.log_format);
    // Every event of this process carries the node: each runtime thread (workers and the
    // blocking pool) enters the `node` span when it starts and never leaves it, so tasks'
    // own spans (partition, wal_commit) nest inside it without each spawn instrumenting.
    let node_span = tracing::info_span!("node", node_id = config.node_id);
    let _main_thread = node_span.clone().entered();
    let fd_limit = apply_fd_limit(config.max_open_segment_files);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(move || std::mem::forget(node_span.clone().entered()))
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chronik-server: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config, fd_limit)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("chronik-server: {e:#}");
            // A data directory that belongs to another node or cluster is a configuration
            // error, like a bad flag.
            let misconfigured = matches!(
                e.downcast_ref::<StartError>(),
                Some(StartError::Cluster(
                    ClusterError::PeerListConflict { .. } | ClusterError::NotInPeerList(..)
                ))
            );
            if misconfigured {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Raises the soft descriptor limit to the hard one and sizes the WAL's segment file cache
/// from the setting or the limit (`fd_budget`). Returns the limit.
fn apply_fd_limit(max_open_segment_files: Option<usize>) -> u64 {
    let (limit, err) = fd_budget::raise_nofile_limit();
    if let Some(e) = err {
        tracing::warn!(limit = limit.limit, error = %e,
            "cannot raise the file descriptor limit to its hard limit");
    }
    let cache = fd_budget::segment_file_cache_size(max_open_segment_files, limit.limit);
    chronik_wal::set_max_open_segment_files(cache);
    tracing::info!(
        limit = limit.limit,
        started_with = limit.started_with,
        max_open_segment_files = cache,
        "file descriptor limit"
    );
    limit.limit
}

/// `CHRONIK_LOG` overrides the default filter (it can turn openraft back on, e.g.
/// `info,openraft=info`).
fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env(LOG_FILTER_ENV)
        .unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run(config: BrokerConfig, fd_limit: u64) -> anyhow::Result<()> {
    // Certificates first: a bad file stops the start before any port is bound.
    let tls = match &config.listeners.tls {
        Some(files) => Some(Tls::load(files.clone()).context("cannot load the TLS certificates")?),
        None => None,
    };
    let mut listeners = Vec::with_capacity(config.listeners.listeners.len());
    for l in &config.listeners.listeners {
        let socket = TcpListener::bind(l.addr)
            .await
            .with_context(|| format!("cannot listen on {}://{}", l.name(), l.addr))?;
        let addr = socket.local_addr()?;
        listeners.push(server::Bound {
            listener: l.clone(),
            socket,
            addr,
        });
    }
    let bound = listeners[0].addr;
    let endpoints = listeners
        .iter()
        .map(|b| {
            let (host, port) = b.listener.advertised_endpoint(b.addr);
            Endpoint {
                name: b.listener.name().to_string(),
                host,
                port,
            }
        })
        .collect();
    let rpc_listener = bind_optional(config.rpc_listen_addr(), "--rpc-addr").await?;
    let rpc_bound = rpc_listener.as_ref().map(|(_, a)| *a);
    if let (Some(addr), None) = (rpc_bound, &config.rpc_security.tls) {
        tracing::warn!(
            rpc = %addr,
            "the RPC port (Raft, replication, admin API) is unauthenticated: anyone who reaches \
             it can change the cluster's metadata and read every partition; give --rpc-tls-cert, \
             --rpc-tls-key and --rpc-tls-ca to require certificates (docs/security.md)"
        );
    }
    let http_listener = bind_optional(config.http_addr, "--http-addr").await?;
    let http_bound = http_listener.as_ref().map(|(_, a)| *a);
    let shutdown = Shutdown::new();
    // Installed first: a node waiting for its cluster must still stop on SIGTERM.
    spawn_signal_handler(shutdown.clone())?;
    if let Some(tls) = &tls {
        tls.spawn_sighup_reload()
            .context("cannot install SIGHUP handler")?;
    }
    chronik_server::metrics::install();
    // Up before the broker: readiness says "not yet" while the WAL recovers.
    let started: http::StartedBroker = Default::default();
    let phase = StartupPhase::default();
    if let Some((l, _)) = http_listener {
        http::spawn(l, started.clone(), phase.clone(), shutdown.clone());
    }
    let broker = chronik_server::wiring::start(
        config,
        endpoints,
        rpc_listener.map(|(l, _)| l),
        shutdown.clone(),
        phase,
    )
    .await
    .context("cannot start the broker")?;
    let _ = started.set(std::sync::Arc::downgrade(&broker));

    spawn_retention(broker.clone());
    fd_budget::watch(&broker, fd_limit);

    tracing::info!(
        node_id = broker.node_id,
        cluster_id = %broker.cluster_id(),
        kafka = %bound,
        fsync = %broker.config.fsync,
        data_dir = %broker.config.data_dir.display(),
        "chronik-server ready"
    );
    {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "chronik-server ready kafka={bound} node_id={} cluster_id={}{}{}{}",
            broker.node_id,
            broker.cluster_id(),
            rpc_bound.map(|a| format!(" rpc={a}")).unwrap_or_default(),
            http_bound.map(|a| format!(" http={a}")).unwrap_or_default(),
            listeners_field(&listeners),
        )?;
        out.flush()?;
    }

    server::serve(listeners, broker.clone(), tls).await;
    tracing::info!("shutting down: flushing partitions");
    broker.close().await;
    tracing::info!("shutdown complete");
    Ok(())
}

/// ` listeners=NAME://ADDR,...` for the ready line when there are several listeners (`kafka=`
/// names the first); nothing with one, so the line stays as it always was.
fn listeners_field(listeners: &[server::Bound]) -> String {
    if listeners.len() < 2 {
        return String::new();
    }
    let all: Vec<String> = listeners
        .iter()
        .map(|b| format!("{}://{}", b.listener.name(), b.addr))
        .collect();
    format!(" listeners={}", all.join(","))
}

/// Binds an optional listener (the RPC or HTTP one) and names the flag if that fails.
async fn bind_optional(
    addr: Option<std::net::SocketAddr>,
    flag: &str,
) -> anyhow::Result<Option<(TcpListener, std::net::SocketAddr)>> {
    let Some(addr) = addr else { return Ok(None) };
    let l = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} ({flag})"))?;
    let bound = l.local_addr()?;
    Ok(Some((l, bound)))
}

fn spawn_signal_handler(shutdown: Shutdown) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate()).context("cannot install SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot install SIGINT handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
        shutdown.trigger();
    });
    Ok(())
}

fn spawn_retention(broker: std::sync::Arc<Broker>) {
    let every = Duration::from_millis(broker.config.retention_check_interval_ms);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await; // the first tick fires at once; start after one interval
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = broker.shutdown.wait() => return,
            }
            let b = broker.clone();
            if let Err(e) =
                tokio::task::spawn_blocking(move || b.partitions.enforce_retention()).await
            {
                tracing::error!(error = %e, "retention task panicked");
            }
            broker.groups.expire_offsets().await;
        }
    });
}
