//! Per-partition log settings and the durability policy.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::error::WalError;
use crate::segment::{MAX_FRAME_PAYLOAD_BYTES, MAX_SEGMENT_BYTES};

/// When an append counts as committed (acknowledged). This is the one durability knob; it is named
/// and passed explicitly rather than being a boolean buried in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// Committed once the data is fdatasynced. Concurrent appends share one fdatasync (group
    /// commit).
    #[default]
    Always,
    /// Committed once written to the page cache; the commit task fdatasyncs at most once per
    /// interval while there is unsynced data. A crash can lose up to one interval of
    /// acknowledged data.
    Interval(Duration),
    /// Committed once written to the page cache; data is fdatasynced only on segment rotation and
    /// on close. A crash can lose any acknowledged data the OS had not flushed.
    Never,
}

/// Smallest accepted `FsyncPolicy::Interval`.
pub const MIN_FSYNC_INTERVAL: Duration = Duration::from_millis(1);
/// Largest accepted `FsyncPolicy::Interval` (one day).
pub const MAX_FSYNC_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// Why a string is not an [`FsyncPolicy`].
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[error("invalid fsync policy {input:?}: expected \"always\", \"never\" or \"interval:<ms>\" with 1 <= ms <= 86400000")]
pub struct ParseFsyncPolicyError {
    pub input: String,
}

impl FromStr for FsyncPolicy {
    type Err = ParseFsyncPolicyError;

    /// Accepts `always`, `never` and `interval:<ms>` (case-insensitive keywords).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseFsyncPolicyError {
            input: s.to_string(),
        };
        let t = s.trim();
        if t.eq_ignore_ascii_case("always") {
            return Ok(FsyncPolicy::Always);
        }
        if t.eq_ignore_ascii_case("never") {
            return Ok(FsyncPolicy::Never);
        }
        let (key, ms) = t.split_once(':').ok_or_else(err)?;
        if !key.eq_ignore_ascii_case("interval") {
            return Err(err());
        }
        let ms: u64 = ms.trim().parse().map_err(|_| err())?;
        let d = Duration::from_millis(ms);
        if !(MIN_FSYNC_INTERVAL..=MAX_FSYNC_INTERVAL).contains(&d) {
            return Err(err());
        }
        Ok(FsyncPolicy::Interval(d))
    }
}

impl fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsyncPolicy::Always => f.write_str("always"),
            FsyncPolicy::Interval(d) => write!(f, "interval:{}", d.as_millis()),
            FsyncPolicy::Never => f.write_str("never"),
        }
    }
}

/// Settings of one partition log; they mirror Kafka's topic configs of the same names and can be
/// changed at runtime with `PartitionLog::set_config`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: roll before an append that would make the active segment file exceed
    /// this (a single batch bigger than it still goes into an empty segment). At most
    /// [`MAX_SEGMENT_BYTES`] so file positions fit the u32 index entries. Default 1 GiB.
    pub segment_bytes: u64,
    /// `segment.ms`: roll before an append when the non-empty active segment is older than this
    /// (age counted from its first append, or from its creation when recovered). Default 7 days.
    pub segment_ms: u64,
    /// `retention.ms`: delete whole non-active segments whose newest batch timestamp is older.
    /// `None` keeps data forever. Default 7 days, like Kafka.
    pub retention_ms: Option<u64>,
    /// `retention.bytes`: per-partition size bound, enforced by deleting whole non-active
    /// segments. `None` is unlimited. Default `None`.
    pub retention_bytes: Option<u64>,
    /// `index.interval.bytes`: bytes of frames between two sparse index entries. 0 indexes every
    /// batch. Default 4096.
    pub index_interval_bytes: u32,
    /// When appends become committed; see [`FsyncPolicy`].
    pub fsync: FsyncPolicy,
}

/// Kafka's default `segment.ms` and `retention.ms`: 7 days.
pub const SEVEN_DAYS_MS: u64 = 7 * 24 * 3600 * 1000;

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: SEVEN_DAYS_MS,
            retention_ms: Some(SEVEN_DAYS_MS),
            retention_bytes: None,
            index_interval_bytes: 4096,
            fsync: FsyncPolicy::Always,
        }
    }
}

impl LogConfig {
    /// Checks every field against its documented bounds. `PartitionLog::open` refuses an invalid
    /// config; callers applying user-supplied topic configs should call this first.
    pub fn validate(&self) -> Result<(), WalError> {
        let bad = |m: String| Err(WalError::InvalidConfig(m));
        if self.segment_bytes == 0 || self.segment_bytes > MAX_SEGMENT_BYTES {
            return bad(format!(
                "segment_bytes {} must be in 1..={MAX_SEGMENT_BYTES}",
                self.segment_bytes
            ));
        }
        if self.segment_ms == 0 || self.segment_ms > i64::MAX as u64 {
            return bad(format!(
                "segment_ms {} must be in 1..=i64::MAX",
                self.segment_ms
            ));
        }
        if let Some(r) = self.retention_ms {
            if r > i64::MAX as u64 {
                return bad(format!("retention_ms {r} must be at most i64::MAX"));
            }
        }
        if self.index_interval_bytes as usize > MAX_FRAME_PAYLOAD_BYTES {
            return bad(format!(
                "index_interval_bytes {} must be at most {MAX_FRAME_PAYLOAD_BYTES}",
                self.index_interval_bytes
            ));
        }
        if let FsyncPolicy::Interval(d) = self.fsync {
            if !(MIN_FSYNC_INTERVAL..=MAX_FSYNC_INTERVAL).contains(&d) {
                return bad(format!(
                    "fsync interval {d:?} must be between {MIN_FSYNC_INTERVAL:?} and {MAX_FSYNC_INTERVAL:?}"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsync_policy_parse_and_display() {
        assert_eq!(
            "always".parse::<FsyncPolicy>().unwrap(),
            FsyncPolicy::Always
        );
        assert_eq!("never".parse::<FsyncPolicy>().unwrap(), FsyncPolicy::Never);
        assert_eq!(
            "interval:250".parse::<FsyncPolicy>().unwrap(),
            FsyncPolicy::Interval(Duration::from_millis(250))
        );
        assert_eq!(
            "ALWAYS".parse::<FsyncPolicy>().unwrap(),
            FsyncPolicy::Always
        );
        for bad in [
            "",
            "sometimes",
            "interval:",
            "interval:0",
            "interval:-5",
            "interval:x",
            "every:5",
        ] {
            assert!(bad.parse::<FsyncPolicy>().is_err(), "{bad}");
        }
        for p in [
            FsyncPolicy::Always,
            FsyncPolicy::Never,
            FsyncPolicy::Interval(Duration::from_millis(1000)),
        ] {
            assert_eq!(p.to_string().parse::<FsyncPolicy>().unwrap(), p);
        }
        assert_eq!(FsyncPolicy::default(), FsyncPolicy::Always);
    }

    #[test]
    fn config_validation() {
        LogConfig::default().validate().unwrap();
        let c = LogConfig {
            segment_bytes: 0,
            ..LogConfig::default()
        };
        assert!(c.validate().is_err());
        let c = LogConfig {
            segment_bytes: MAX_SEGMENT_BYTES + 1,
            ..LogConfig::default()
        };
        assert!(c.validate().is_err());
        let c = LogConfig {
            fsync: FsyncPolicy::Interval(Duration::ZERO),
            ..LogConfig::default()
        };
        assert!(c.validate().is_err());
        let c = LogConfig {
            segment_ms: 0,
            ..LogConfig::default()
        };
        assert!(c.validate().is_err());
    }
}
