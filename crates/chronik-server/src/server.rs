//! The Kafka listeners: accepts connections on each (PLAINTEXT, SSL, ...) up to one bound
//! for all of them (in total and per client address) and hands each to
//! [`crate::connection`], with the request budget all connections share. A TLS listener's
//! connection holds its slot from accept, through its handshake (bounded, see
//! [`crate::tls`]), to close. On shutdown it stops accepting and waits for connections to
//! finish their in-flight requests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use chronik_protocol::budget::RequestBudget;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::broker::Broker;
use crate::connection;
use crate::listeners::Listener;
use crate::net_limits::PerIpConnections;
use crate::sasl::SaslSession;
use crate::session::Session;
use crate::tls::Tls;

/// A listener's socket, bound, with what it was configured as.
pub struct Bound {
    pub listener: Listener,
    pub socket: TcpListener,
    pub addr: SocketAddr,
}

/// Accepts on any of `listeners`, starting the scan at a rotating index so that one busy
/// listener cannot starve the others.
async fn accept_any(
    listeners: &[Bound],
    next: &mut usize,
) -> (usize, std::io::Result<(tokio::net::TcpStream, SocketAddr)>) {
    std::future::poll_fn(|cx| {
        let n = listeners.len();
        for k in 0..n {
            let i = (*next + k) % n;
            if let Poll::Ready(r) = listeners[i].socket.poll_accept(cx) {
                *next = (i + 1) % n;
                return Poll::Ready((i, r));
            }
        }
        Poll::Pending
    })
    .await
}

/// How long a graceful shutdown waits for in-flight requests before giving up on them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves every listener until shutdown. `tls` is set when a listener needs it.
pub async fn serve(listeners: Vec<Bound>, broker: Arc<Broker>, tls: Option<Arc<Tls>>) {
    // Never serve an SSL listener in plaintext (config resolution requires the TLS files).
    assert!(
        tls.is_some() || listeners.iter().all(|b| !b.listener.tls),
        "a TLS listener without TLS settings"
    );
    let limit = Arc::new(Semaphore::new(broker.config.max_connections));
    let net = &broker.config.net;
    let per_ip = net.max_connections_per_ip.map(PerIpConnections::new);
    let budget = RequestBudget::new(net.queued_max_request_bytes);
    let mut connections = JoinSet::new();
    let shutdown = broker.shutdown.clone();
    let mut next = 0;
    loop {
        let (index, accepted) = tokio::select! {
            _ = shutdown.wait() => break,
            accepted = accept_any(&listeners, &mut next) => accepted,
        };
        let listener = &listeners[index].listener;
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
        let session = Session::new(listener.name(), peer);
        let sasl = listener
            .sasl
            .then(|| SaslSession::new(broker.config.security.sasl.clone()));
        let tls = listener.tls.then(|| tls.clone()).flatten();
        let span =
            tracing::info_span!("conn", node = broker.node_id, listener = listener.name(), %peer);
        connections.spawn(
            async move {
                let _open = crate::metrics::OpenConnection::open();
                run_connection(socket, session, sasl, tls, broker, budget).await;
                drop((permit, ip_slot));
            }
            .instrument(span),
        );
        // Reap finished connection tasks so the set stays small.
        while connections.try_join_next().is_some() {}
    }
    drop(listeners);
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

/// One connection: the TLS handshake on a TLS listener, then the one connection code path.
async fn run_connection(
    socket: tokio::net::TcpStream,
    mut session: Session,
    sasl: Option<SaslSession>,
    tls: Option<Arc<Tls>>,
    broker: Arc<Broker>,
    budget: RequestBudget,
) {
    let Some(tls) = tls else {
        return connection::run(socket, session, sasl, broker, budget).await;
    };
    let timeout = broker.config.net.request_read_timeout;
    let shutdown = broker.shutdown.clone();
    let handshake = tokio::select! {
        _ = shutdown.wait() => return,
        h = tls.handshake(socket, timeout) => h,
    };
    if let Some((stream, principal)) = handshake {
        session.principal = principal;
        connection::run(stream, session, sasl, broker, budget).await;
    }
}
