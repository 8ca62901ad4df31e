//! The Kafka listener: accepts connections up to a bound (in total and per client address)
//! and hands each to [`crate::connection`], with the request budget all connections share.
//! On shutdown it stops accepting and waits for connections to finish their in-flight
//! requests.

use std::sync::Arc;
use std::time::Duration;

use chronik_protocol::budget::RequestBudget;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::broker::Broker;
use crate::connection;
use crate::net_limits::PerIpConnections;

/// How long a graceful shutdown waits for in-flight requests before giving up on them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn serve(listener: TcpListener, broker: Arc<Broker>) {
    let limit = Arc::new(Semaphore::new(broker.config.max_connections));
    let net = &broker.config.net;
    let per_ip = net.max_connections_per_ip.map(PerIpConnections::new);
    let budget = RequestBudget::new(net.queued_max_request_bytes);
    let mut connections = JoinSet::new();
    let shutdown = broker.shutdown.clone();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait() => break,
            accepted = listener.accept() => accepted,
        };
        let (socket, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                crate::warn_limited!("accept", error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            crate::metrics::connection_refused("max_connections");
            crate::warn_limited!("max_connections", %peer, max = broker.config.max_connections,
                "connection limit reached; refusing");
            drop(socket);
            continue;
        };
        let ip_slot = match &per_ip {
            Some(per_ip) => match per_ip.try_open(peer.ip()) {
                Some(slot) => Some(slot),
                None => {
                    crate::metrics::connection_refused("max_connections_per_ip");
                    crate::warn_limited!("max_connections_per_ip", %peer,
                        max = net.max_connections_per_ip, "connection limit per address reached; refusing");
                    drop(socket);
                    continue;
                }
            },
            None => None,
        };
        let _ = socket.set_nodelay(true);
        let broker = broker.clone();
        let budget = budget.clone();
        let span = tracing::info_span!("conn", node = broker.node_id, %peer);
        connections.spawn(
            async move {
                let _open = crate::metrics::OpenConnection::open();
                connection::run(socket, broker, budget).await;
                drop((permit, ip_slot));
            }
            .instrument(span),
        );
        // Reap finished connection tasks so the set stays small.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            remaining = connections.len(),
            "shutdown: abandoning connections that did not finish in time"
        );
        connections.abort_all();
    }
}
