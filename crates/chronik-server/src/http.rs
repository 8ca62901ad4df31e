//! The HTTP endpoint (`--http-addr`): `/metrics` in Prometheus text format, `/health/live`
//! (the process answers) and `/health/ready` (a Raft leader that a quorum answered is
//! reachable, this broker is unfenced, its WAL has recovered and no partition is poisoned by a
//! storage error). It starts before the broker, so readiness can say "not yet" while
//! the WAL recovers and the metadata cluster forms.

use std::sync::{Arc, OnceLock, Weak};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use chronik_metadata::BrokerState;
use tokio::net::TcpListener;

use crate::broker::Broker;
use crate::shutdown::Shutdown;
use crate::startup::StartupPhase;

/// Filled once the broker has started (its partitions are open, so its WAL has recovered).
pub type StartedBroker = Arc<OnceLock<Weak<Broker>>>;

#[derive(Clone)]
struct HttpState {
    broker: StartedBroker,
    /// The start-up step, named while `broker` is not set yet.
    phase: StartupPhase,
}

impl HttpState {
    fn broker(&self) -> Option<Arc<Broker>> {
        self.broker.get().and_then(|w| w.upgrade())
    }
}

/// Serves until `shutdown`.
pub fn spawn(
    listener: TcpListener,
    broker: StartedBroker,
    phase: StartupPhase,
    shutdown: Shutdown,
) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .with_state(HttpState { broker, phase });
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.wait().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "HTTP endpoint stopped");
        }
    });
}

async fn metrics(State(s): State<HttpState>) -> (StatusCode, String) {
    let Some(handle) = crate::metrics::install() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder not installed\n".into(),
        );
    };
    if let Some(b) = s.broker() {
        crate::gauges::refresh(&b);
    }
    (StatusCode::OK, handle.render())
}

async fn live() -> &'static str {
    "live\n"
}

/// 200 "ready" or 503 with the reason.
async fn ready(State(s): State<HttpState>) -> (StatusCode, String) {
    match readiness(s.broker().as_deref(), &s.phase) {
        Ok(()) => (StatusCode::OK, "ready\n".into()),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}

fn readiness(broker: Option<&Broker>, phase: &StartupPhase) -> Result<(), String> {
    let b = broker.ok_or_else(|| format!("starting: {}", phase.get()))?;
    b.check_leader_contact()?;
    match b.metadata().brokers.get(&b.node_id).map(|x| x.state) {
        Some(BrokerState::Alive) | Some(BrokerState::Decommissioning) => {}
        Some(BrokerState::Fenced) => return Err("this broker is fenced by the controller".into()),
        None => return Err("this broker is not registered yet".into()),
    }
    let poisoned: Vec<String> = b
        .partitions
        .all_partitions()
        .iter()
        .filter_map(|p| {
            p.storage_failure()
                .map(|why| format!("{}-{} ({why})", p.topic, p.index))
        })
        .collect();
    if !poisoned.is_empty() {
        return Err(format!(
            "partitions poisoned by a storage error: {}",
            poisoned.join(", ")
        ));
    }
    Ok(())
}
