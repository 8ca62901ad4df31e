//! The file-descriptor budget: what a node keeps open, the limit it runs under, and a warning
//! when the one cannot hold the other (docs/operations.md, "File descriptors").
//!
//! A node holds:
//! * one descriptor per hosted partition: its active segment (a segment just rolled keeps its
//!   own until its seal finishes, a few milliseconds later);
//! * the sealed-segment file cache of the WAL: at most `--max-open-segment-files`;
//! * one per client connection (at most `--max-connections`) and per listener;
//! * the rest, [`RESERVE_FDS`]: Raft and replication connections (a few per peer), the
//!   metadata log, the data directory lock, index files while they are written, and the
//!   runtime's own (epoll, eventfds, stdio).
//!
//! Kafka's operators raise `ulimit -n` by hand; here the broker raises its soft limit to the
//! hard one at start ([`raise_nofile_limit`]), so only the hard limit (`LimitNOFILE=` in
//! systemd, `--ulimit nofile=` in Docker) needs to be set.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use crate::broker::Broker;

/// Descriptors set aside for everything but partitions, the segment file cache and client
/// connections (see the module docs).
pub const RESERVE_FDS: u64 = 256;
/// Smallest segment file cache derived from a low limit: below it, every consumer reading old
/// data would reopen files on each fetch.
const MIN_DERIVED_CACHE: usize = 64;

/// The process's descriptor limit before and after [`raise_nofile_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NofileLimit {
    /// The soft limit the process started with.
    pub started_with: u64,
    /// The soft limit now: the hard limit, unless raising failed.
    pub limit: u64,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit. If that fails the limit stays as it was
/// (and the error is returned with it, for the caller to log).
pub fn raise_nofile_limit() -> (NofileLimit, Option<io::Error>) {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given, which outlives the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        let none = NofileLimit {
            started_with: 0,
            limit: 0,
        };
        return (none, Some(io::Error::last_os_error()));
    }
    let started_with = rl.rlim_cur;
    if rl.rlim_cur >= rl.rlim_max {
        let same = NofileLimit {
            started_with,
            limit: started_with,
        };
        return (same, None);
    }
    let raised = libc::rlimit {
        rlim_cur: rl.rlim_max,
        rlim_max: rl.rlim_max,
    };
    // SAFETY: setrlimit only reads the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        let same = NofileLimit {
            started_with,
            limit: started_with,
        };
        return (same, Some(io::Error::last_os_error()));
    }
    let limit = NofileLimit {
        started_with,
        limit: rl.rlim_max,
    };
    (limit, None)
}

/// The segment file cache's bound: the setting, or unset the WAL's default
/// ([`chronik_wal::DEFAULT_MAX_OPEN_SEGMENT_FILES`]) or a quarter of the limit if less (at
/// least 64).
pub fn segment_file_cache_size(setting: Option<usize>, limit: u64) -> usize {
    setting.unwrap_or_else(|| {
        let quarter = usize::try_from(limit / 4).unwrap_or(usize::MAX);
        chronik_wal::DEFAULT_MAX_OPEN_SEGMENT_FILES.min(quarter.max(MIN_DERIVED_CACHE))
    })
}

/// What the node may hold open at once, against its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub limit: u64,
    /// Partitions hosted: one active segment each.
    pub partitions: u64,
    pub segment_file_cache: u64,
    pub max_connections: u64,
    pub listeners: u64,
}

impl Budget {
    /// Descriptors the node may need: every term of the module docs at its bound.
    pub fn needed(&self) -> u64 {
        self.partitions
            + self.segment_file_cache
            + self.max_connections
            + self.listeners
            + RESERVE_FDS
    }

    /// Whether the limit holds everything at once.
    pub fn fits(&self) -> bool {
        self.needed() <= self.limit
    }

    /// Logs the budget: at info when it fits, else a warning naming what to change.
    pub fn log(&self) {
        let needed = self.needed();
        if self.fits() {
            info!(
                limit = self.limit,
                partitions = self.partitions,
                segment_file_cache = self.segment_file_cache,
                max_connections = self.max_connections,
                needed,
                "file descriptor budget"
            );
        } else {
            warn!(
                limit = self.limit,
                partitions = self.partitions,
                segment_file_cache = self.segment_file_cache,
                max_connections = self.max_connections,
                needed,
                "the file descriptor limit cannot hold one active segment per partition plus \
                 the segment file cache plus --max-connections connections (and {RESERVE_FDS} \
                 for the rest): once they are all open, accepts, segment rolls and reads fail \
                 with 'too many open files'. Raise the hard limit (ulimit -Hn, systemd \
                 LimitNOFILE=) to at least {needed}, or lower --max-open-segment-files or \
                 --max-connections (docs/operations.md, \"File descriptors\")"
            );
        }
    }
}

/// Descriptors the process has open now (entries of `/proc/self/fd`; `None` where there is
/// no such directory).
pub fn open_fds() -> Option<u64> {
    std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as u64)
}

/// The budget of `broker` now, its partition count as hosted at this moment.
pub fn budget_of(broker: &Broker, limit: u64) -> Budget {
    let config = &broker.config;
    Budget {
        limit,
        partitions: broker.partitions.all_partitions().len() as u64,
        segment_file_cache: chronik_wal::max_open_segment_files() as u64,
        max_connections: config.max_connections as u64,
        // The Kafka listeners, and the RPC and HTTP ones if any.
        listeners: config.listeners.listeners.len() as u64
            + u64::from(config.rpc_listen_addr().is_some())
            + u64::from(config.http_addr.is_some()),
    }
}

/// Logs the budget once the broker opened its partitions, then checks it again every
/// [`RECHECK`] as partitions come and go: a warning each time it stops fitting.
pub fn watch(broker: &Arc<Broker>, limit: u64) {
    let first = budget_of(broker, limit);
    first.log();
    let fitted = Arc::new(AtomicBool::new(first.fits()));
    crate::periodic::every(broker, &broker.shutdown, RECHECK, move |b| {
        let fitted = fitted.clone();
        async move {
            let now = budget_of(&b, limit);
            if fitted.swap(now.fits(), Ordering::Relaxed) && !now.fits() {
                now.log();
            }
        }
    });
}

/// How often [`watch`] looks at the partition count.
const RECHECK: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_derived_cache_is_a_quarter_of_a_low_limit_within_bounds() {
        assert_eq!(segment_file_cache_size(None, 1 << 20), 4096);
        assert_eq!(segment_file_cache_size(None, 4000), 1000);
        assert_eq!(segment_file_cache_size(None, 100), 64);
        assert_eq!(segment_file_cache_size(Some(0), 1 << 20), 0);
        assert_eq!(segment_file_cache_size(Some(9), 100), 9);
    }

    #[test]
    fn the_budget_counts_every_term() {
        let b = Budget {
            limit: 20_000,
            partitions: 10_000,
            segment_file_cache: 4096,
            max_connections: 5_000,
            listeners: 1,
        };
        assert_eq!(b.needed(), 10_000 + 4096 + 5_000 + 1 + RESERVE_FDS);
        assert!(b.fits());
        assert!(!Budget { limit: 19_000, ..b }.fits());
    }

    #[test]
    fn raising_leaves_the_soft_limit_at_the_hard_one() {
        let (l, err) = raise_nofile_limit();
        assert!(err.is_none(), "{err:?}");
        assert!(l.limit >= l.started_with && l.limit > 0);
    }
}
