//! Rate limit for warnings a client can trigger at will: the limiter itself lives in
//! `chronik_rpc::log_limit` (the RPC listener's denials use it too); this module adds the
//! per-call-site macro that counts suppressed lines in this crate's metrics.

pub use chronik_rpc::log_limit::{LogLimiter, LINES_PER_WINDOW, WINDOW};

/// `tracing::warn!` through a per-call-site [`LogLimiter`]; `$site` names the site in the
/// suppression metric.
#[macro_export]
macro_rules! warn_limited {
    ($site:literal, $($arg:tt)+) => {{
        static LIMIT: $crate::log_limit::LogLimiter = $crate::log_limit::LogLimiter::new();
        match LIMIT.allow(std::time::Instant::now()) {
            Some(0) => tracing::warn!($($arg)+),
            Some(suppressed) => tracing::warn!(suppressed, $($arg)+),
            None => $crate::metrics::log_suppressed($site),
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_macro_logs_and_suppresses() {
        for i in 0..(LINES_PER_WINDOW + 5) {
            warn_limited!("test_site", i, "a warning from a test");
        }
    }
}
