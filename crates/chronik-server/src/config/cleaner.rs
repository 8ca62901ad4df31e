//! The log cleaner's settings (Kafka's `log.cleaner.*`).

use std::time::Duration;

use clap::Args;

use super::ConfigError;
use crate::cleaner::CleanerSettings;

#[derive(Debug, Clone, Args)]
pub struct CleanerArgs {
    /// Threads cleaning compacted topics (Kafka's log.cleaner.threads)
    #[arg(long, env = "CHRONIK_LOG_CLEANER_THREADS", default_value_t = 1)]
    pub log_cleaner_threads: usize,
    /// Budget of bytes the log cleaner reads plus writes per second, shared by its threads
    /// (Kafka's log.cleaner.io.max.bytes.per.second). Unset: unlimited, as Kafka's default
    #[arg(long, env = "CHRONIK_LOG_CLEANER_IO_MAX_BYTES_PER_SECOND")]
    pub log_cleaner_io_max_bytes_per_second: Option<u64>,
    /// Memory for the cleaner's key maps, divided among its threads (Kafka's
    /// log.cleaner.dedupe.buffer.size); 24 bytes a key. Allocated at a thread's first clean. A
    /// log with more dirty keys than a map holds is cleaned in several passes
    #[arg(long, env = "CHRONIK_LOG_CLEANER_DEDUPE_BUFFER_SIZE")]
    #[arg(default_value_t = 128 * 1024 * 1024)]
    pub log_cleaner_dedupe_buffer_size: usize,
    /// How long a cleaner thread sleeps when no log is dirty enough (Kafka's
    /// log.cleaner.backoff.ms)
    #[arg(long, env = "CHRONIK_LOG_CLEANER_BACKOFF_MS", default_value_t = 15_000)]
    pub log_cleaner_backoff_ms: u64,
}

impl CleanerArgs {
    /// Checks the ranges (Kafka's: at least 0 threads, here at least 1 as the cleaner is
    /// always on; a map of at least one key per thread).
    pub fn resolve(&self, partition_labels: bool) -> Result<CleanerSettings, ConfigError> {
        let invalid = |key, reason: &str| {
            Err(ConfigError::Invalid {
                key,
                reason: reason.into(),
            })
        };
        if !(1..=64).contains(&self.log_cleaner_threads) {
            return invalid("log-cleaner-threads", "must be between 1 and 64");
        }
        if self.log_cleaner_io_max_bytes_per_second == Some(0) {
            return invalid("log-cleaner-io-max-bytes-per-second", "must be > 0");
        }
        // Kafka's minimum of log.cleaner.dedupe.buffer.size is 1 MiB per thread.
        if self.log_cleaner_dedupe_buffer_size / self.log_cleaner_threads < 1 << 20 {
            return invalid(
                "log-cleaner-dedupe-buffer-size",
                "must be at least 1 MiB per cleaner thread",
            );
        }
        if !(1..=3_600_000).contains(&self.log_cleaner_backoff_ms) {
            return invalid("log-cleaner-backoff-ms", "must be between 1 and 3600000");
        }
        Ok(CleanerSettings {
            threads: self.log_cleaner_threads,
            io_max_bytes_per_second: self.log_cleaner_io_max_bytes_per_second,
            dedupe_buffer_size: self.log_cleaner_dedupe_buffer_size,
            backoff: Duration::from_millis(self.log_cleaner_backoff_ms),
            partition_labels,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> CleanerArgs {
        CleanerArgs {
            log_cleaner_threads: 1,
            log_cleaner_io_max_bytes_per_second: None,
            log_cleaner_dedupe_buffer_size: 128 << 20,
            log_cleaner_backoff_ms: 15_000,
        }
    }

    #[test]
    fn ranges() {
        let s = args().resolve(true).unwrap();
        assert_eq!((s.threads, s.io_max_bytes_per_second), (1, None));
        let bad = |a: CleanerArgs| match a.resolve(true) {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            bad(CleanerArgs {
                log_cleaner_threads: 0,
                ..args()
            }),
            "log-cleaner-threads"
        );
        assert_eq!(
            bad(CleanerArgs {
                log_cleaner_threads: 200,
                ..args()
            }),
            "log-cleaner-threads"
        );
        assert_eq!(
            bad(CleanerArgs {
                log_cleaner_io_max_bytes_per_second: Some(0),
                ..args()
            }),
            "log-cleaner-io-max-bytes-per-second"
        );
        assert_eq!(
            bad(CleanerArgs {
                log_cleaner_threads: 4,
                log_cleaner_dedupe_buffer_size: 3 << 20,
                ..args()
            }),
            "log-cleaner-dedupe-buffer-size"
        );
    }
}
