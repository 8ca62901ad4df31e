//! Rate limit for warnings a client can trigger at will (malformed requests, refused
//! connections, refused RPC calls): without it every bad request writes a line, and a flood of them fills the
//! disk with logs (135 MB in 7.5 minutes, measured).
//!
//! Per call site, at most [`LINES_PER_WINDOW`] lines per [`WINDOW`]; the rest are counted
//! (metric `chronik_log_suppressed_total{site}`) and the next line logged from that site says
//! how many were suppressed before it (field `suppressed`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const WINDOW: Duration = Duration::from_secs(10);
pub const LINES_PER_WINDOW: u32 = 10;

/// The state of one call site (a `static` per site: chronik-server's `warn_limited!`, the RPC
/// denials in [`crate::auth`]).
#[derive(Debug, Default)]
pub struct LogLimiter {
    state: Mutex<Window>,
}

#[derive(Debug, Default)]
struct Window {
    start: Option<Instant>,
    logged: u32,
    /// Suppressed since the last line logged.
    suppressed: u64,
}

impl LogLimiter {
    pub const fn new() -> LogLimiter {
        LogLimiter {
            state: Mutex::new(Window {
                start: None,
                logged: 0,
                suppressed: 0,
            }),
        }
    }

    /// `Some(n)`: log this line, noting the `n` suppressed since the previous one;
    /// `None`: suppress it.
    pub fn allow(&self, now: Instant) -> Option<u64> {
        // A poisoned lock only means a panic elsewhere mid-update of two counters: keep going.
        let mut w = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if w.start
            .is_none_or(|s| now.saturating_duration_since(s) >= WINDOW)
        {
            w.start = Some(now);
            w.logged = 0;
        }
        if w.logged < LINES_PER_WINDOW {
            w.logged += 1;
            Some(std::mem::take(&mut w.suppressed))
        } else {
            w.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_lines_per_window_and_reports_what_it_suppressed() {
        let limiter = LogLimiter::new();
        let t0 = Instant::now();
        for _ in 0..LINES_PER_WINDOW {
            assert_eq!(limiter.allow(t0), Some(0));
        }
        for _ in 0..25 {
            assert_eq!(limiter.allow(t0 + Duration::from_secs(1)), None);
        }
        // Next window: the first line carries the count, later ones start from zero again.
        assert_eq!(limiter.allow(t0 + WINDOW), Some(25));
        assert_eq!(limiter.allow(t0 + WINDOW), Some(0));
    }
}
