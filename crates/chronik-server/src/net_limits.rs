//! Limits on what client connections may hold: bytes of requests being received (one budget
//! for all connections), time (idle connections, requests that stall or drip in), and
//! connections per client address. Kafka's `queued.max.request.bytes`,
//! `connections.max.idle.ms` and `max.connections.per.ip`, plus a read deadline per request.
//!
//! The memory bound that follows (docs/ARCHITECTURE.md, "Client connections"): request
//! bodies being received or handled never take more than `queued_max_request_bytes`; each
//! open connection adds its fixed read buffer (64 KiB) and task, so RSS stays under about
//! baseline + `queued_max_request_bytes` + `max_connections` x 64 KiB.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chronik_protocol::frame::DEFAULT_MAX_FRAME_BYTES;

use crate::settings::ConfigError;

/// The flags of these limits (part of `ServerArgs`).
#[derive(Debug, Clone, clap::Args)]
pub struct NetLimitArgs {
    /// Budget of request bytes being received or handled, across all connections (Kafka's
    /// queued.max.request.bytes, here on by default; at least 104857600, the largest request).
    /// When spent, connections stop reading until requests finish. Bounds the broker's RSS to
    /// about this + 64 KiB per open connection + its working set
    #[arg(long, env = "CHRONIK_QUEUED_MAX_REQUEST_BYTES")]
    #[arg(default_value_t = 256 * 1024 * 1024)]
    pub queued_max_request_bytes: usize,
    /// Close a connection that completed no request for this long and has none in flight
    /// (Kafka's connections.max.idle.ms)
    #[arg(long, env = "CHRONIK_CONNECTIONS_MAX_IDLE_MS")]
    #[arg(default_value_t = 600_000)]
    pub connections_max_idle_ms: u64,
    /// A request's size, and then its body, must each arrive within this, or the connection
    /// is closed (stalled or slow-drip requests); also the bound on a TLS handshake
    #[arg(long, env = "CHRONIK_REQUEST_READ_TIMEOUT_MS")]
    #[arg(default_value_t = 30_000)]
    pub request_read_timeout_ms: u64,
    /// Most connections from one client address; more are refused (Kafka's
    /// max.connections.per.ip). Unset: no limit besides --max-connections
    #[arg(long, env = "CHRONIK_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<usize>,
}

/// The defaults of the definition above.
impl Default for NetLimitArgs {
    fn default() -> Self {
        crate::settings::defaults()
    }
}

/// The resolved connection limits (part of `BrokerConfig`).
#[derive(Debug, Clone)]
pub struct NetLimits {
    /// Budget of request bytes being received or handled, across all connections.
    pub queued_max_request_bytes: usize,
    /// A connection that completed no request for this long, with nothing in flight, is closed.
    pub connections_max_idle: Duration,
    /// A request's size, and then its body, must each arrive within this.
    pub request_read_timeout: Duration,
    /// Most connections from one client address; `None`: only `--max-connections` applies.
    pub max_connections_per_ip: Option<usize>,
}

impl NetLimits {
    /// Checks the ranges.
    pub fn resolve(a: &NetLimitArgs) -> Result<NetLimits, ConfigError> {
        let invalid = |key, reason: String| Err(ConfigError::Invalid { key, reason });
        // Kafka's rule too: a frame of the largest allowed size must fit in the budget.
        if a.queued_max_request_bytes < DEFAULT_MAX_FRAME_BYTES {
            return invalid(
                "queued-max-request-bytes",
                format!("must be at least the largest request, {DEFAULT_MAX_FRAME_BYTES} bytes"),
            );
        }
        if a.connections_max_idle_ms == 0 {
            return invalid("connections-max-idle-ms", "must be > 0".into());
        }
        if !(100..=3_600_000).contains(&a.request_read_timeout_ms) {
            return invalid(
                "request-read-timeout-ms",
                "must be between 100 and 3600000".into(),
            );
        }
        if a.max_connections_per_ip == Some(0) {
            return invalid("max-connections-per-ip", "must be > 0".into());
        }
        Ok(NetLimits {
            queued_max_request_bytes: a.queued_max_request_bytes,
            connections_max_idle: Duration::from_millis(a.connections_max_idle_ms),
            request_read_timeout: Duration::from_millis(a.request_read_timeout_ms),
            max_connections_per_ip: a.max_connections_per_ip,
        })
    }
}

/// Open connections per client address, bounded by `max.connections.per.ip`.
#[derive(Debug)]
pub struct PerIpConnections {
    limit: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One counted connection; uncounted on drop (also if its task panics).
#[derive(Debug)]
pub struct IpSlot {
    owner: Arc<PerIpConnections>,
    ip: IpAddr,
}

impl PerIpConnections {
    pub fn new(limit: usize) -> Arc<PerIpConnections> {
        Arc::new(PerIpConnections {
            limit,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Counts a connection from `ip`, or `None` if `ip` already has `limit` open.
    pub fn try_open(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            owner: self.clone(),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.owner.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            // Drop empty entries: the map holds only addresses with open connections.
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_limit_counts_and_releases() {
        let per_ip = PerIpConnections::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let s1 = per_ip.try_open(a).unwrap();
        let _s2 = per_ip.try_open(a).unwrap();
        assert!(per_ip.try_open(a).is_none());
        let _s3 = per_ip
            .try_open(b)
            .expect("other addresses are counted apart");
        drop(s1);
        assert!(per_ip.try_open(a).is_some());
        drop(_s3);
        assert!(!per_ip.open.lock().unwrap().contains_key(&b));
    }

    #[test]
    fn defaults_and_ranges() {
        let d = NetLimits::resolve(&NetLimitArgs::default()).unwrap();
        assert_eq!(d.queued_max_request_bytes, 256 << 20);
        assert_eq!(d.connections_max_idle, Duration::from_secs(600));
        assert_eq!(d.max_connections_per_ip, None);
        let with = |f: fn(&mut NetLimitArgs)| {
            let mut a = NetLimitArgs::default();
            f(&mut a);
            NetLimits::resolve(&a)
        };
        assert!(with(|a| a.queued_max_request_bytes = 1 << 20).is_err());
        assert!(with(|a| a.connections_max_idle_ms = 0).is_err());
        assert!(with(|a| a.request_read_timeout_ms = 5).is_err());
        assert!(with(|a| a.max_connections_per_ip = Some(0)).is_err());
    }
}
