//! The topic configs compaction reads, typed, parsed from Kafka's string values with Kafka's
//! ranges (`LogConfig`'s `ConfigDef`) and Kafka's messages, so the broker's topic config code
//! can hand INVALID_CONFIG the text `kafka-configs` prints for Kafka.

/// `min.cleanable.dirty.ratio`: DOUBLE in [0, 1], default 0.5.
pub const MIN_CLEANABLE_DIRTY_RATIO: &str = "min.cleanable.dirty.ratio";
/// `min.compaction.lag.ms`: LONG at least 0, default 0.
pub const MIN_COMPACTION_LAG_MS: &str = "min.compaction.lag.ms";
/// `max.compaction.lag.ms`: LONG at least 1, default `Long.MAX_VALUE`.
pub const MAX_COMPACTION_LAG_MS: &str = "max.compaction.lag.ms";
/// `delete.retention.ms`: LONG at least 0, default one day.
pub const DELETE_RETENTION_MS: &str = "delete.retention.ms";
/// `segment.ms`: LONG at least 1, default seven days.
pub const SEGMENT_MS: &str = "segment.ms";

/// A refused value, worded as Kafka's `ConfigException` / `InvalidConfigurationException`.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("Invalid value {value} for configuration {name}: {reason}")]
    Invalid {
        name: String,
        value: String,
        reason: String,
    },
    /// `LogConfig.validateValues`.
    #[error("conflict topic config setting {MIN_COMPACTION_LAG_MS} ({min_ms}) > {MAX_COMPACTION_LAG_MS} ({max_ms})")]
    LagConflict { min_ms: i64, max_ms: i64 },
}

/// A topic's compaction settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompactionConfig {
    pub min_cleanable_dirty_ratio: f64,
    pub min_compaction_lag_ms: i64,
    pub max_compaction_lag_ms: i64,
    pub delete_retention_ms: i64,
    pub segment_ms: i64,
}

impl Default for CompactionConfig {
    /// Kafka 4.x's defaults.
    fn default() -> Self {
        CompactionConfig {
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            delete_retention_ms: 86_400_000,
            segment_ms: 604_800_000,
        }
    }
}

impl CompactionConfig {
    /// The config names this type holds.
    pub const NAMES: [&'static str; 5] = [
        MIN_CLEANABLE_DIRTY_RATIO,
        MIN_COMPACTION_LAG_MS,
        MAX_COMPACTION_LAG_MS,
        DELETE_RETENTION_MS,
        SEGMENT_MS,
    ];

    /// Sets `name` from Kafka's string form. `Ok(false)`: not one of [`Self::NAMES`]
    /// (nothing changed). Does not check the min/max lag pair: see [`Self::validate`].
    pub fn set(&mut self, name: &str, value: &str) -> Result<bool, ConfigError> {
        match name {
            MIN_CLEANABLE_DIRTY_RATIO => self.min_cleanable_dirty_ratio = ratio(name, value)?,
            MIN_COMPACTION_LAG_MS => self.min_compaction_lag_ms = long(name, value, 0)?,
            MAX_COMPACTION_LAG_MS => self.max_compaction_lag_ms = long(name, value, 1)?,
            DELETE_RETENTION_MS => self.delete_retention_ms = long(name, value, 0)?,
            SEGMENT_MS => self.segment_ms = long(name, value, 1)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Kafka's defaults overridden by `overrides` (name, value); other names are ignored.
    /// Checks each value and then the lag pair.
    pub fn from_overrides<'a>(
        overrides: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<CompactionConfig, ConfigError> {
        let mut c = CompactionConfig::default();
        for (name, value) in overrides {
            c.set(name, value)?;
        }
        c.validate()?;
        Ok(c)
    }

    /// Kafka's cross-check (`LogConfig.validateValues`): `min.compaction.lag.ms` may not
    /// exceed `max.compaction.lag.ms`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.min_compaction_lag_ms > self.max_compaction_lag_ms {
            return Err(ConfigError::LagConflict {
                min_ms: self.min_compaction_lag_ms,
                max_ms: self.max_compaction_lag_ms,
            });
        }
        Ok(())
    }
}

/// Checks one value of one of [`CompactionConfig::NAMES`] alone (the broker's per-name
/// validator); other names pass.
pub fn check(name: &str, value: &str) -> Result<(), ConfigError> {
    CompactionConfig::default().set(name, value).map(|_| ())
}

fn invalid(name: &str, value: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name: name.to_string(),
        value: value.into(),
        reason: reason.into(),
    }
}

/// Kafka's LONG with `atLeast(min)`: the string is trimmed, then parsed as Java's
/// `Long.parseLong` would.
fn long(name: &str, value: &str, min: i64) -> Result<i64, ConfigError> {
    let n: i64 = value
        .trim()
        .parse()
        .map_err(|_| invalid(name, value, "Not a number of type LONG"))?;
    if n < min {
        return Err(invalid(
            name,
            n.to_string(),
            format!("Value must be at least {min}"),
        ));
    }
    Ok(n)
}

/// Kafka's DOUBLE with `between(0, 1)`. NaN is refused (Java's range check lets NaN through,
/// and a NaN ratio would make every comparison false).
fn ratio(name: &str, value: &str) -> Result<f64, ConfigError> {
    let n: f64 = value
        .trim()
        .parse()
        .ok()
        .filter(|n: &f64| !n.is_nan())
        .ok_or_else(|| invalid(name, value, "Not a number of type DOUBLE"))?;
    if n < 0.0 {
        return Err(invalid(name, java_double(n), "Value must be at least 0"));
    }
    if n > 1.0 {
        return Err(invalid(
            name,
            java_double(n),
            "Value must be no more than 1",
        ));
    }
    Ok(n)
}

/// A double as Java's `Double.toString` prints it (Kafka's message shows the parsed value):
/// `2.0`, `1.5`, `-0.25`, `1.0E10`, `Infinity`.
fn java_double(v: f64) -> String {
    if v.is_infinite() {
        return if v > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let a = v.abs();
    if a == 0.0 || (1e-3..1e7).contains(&a) {
        let s = format!("{v}");
        return if s.contains('.') { s } else { format!("{s}.0") };
    }
    let s = format!("{v:E}");
    match s.split_once('E') {
        Some((m, e)) if !m.contains('.') => format!("{m}.0E{e}"),
        _ => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_kafkas() {
        let c = CompactionConfig::from_overrides([]).unwrap();
        assert_eq!(c, CompactionConfig::default());
        assert_eq!(c.max_compaction_lag_ms, i64::MAX);
        assert_eq!(c.delete_retention_ms, 86_400_000);
    }

    #[test]
    fn values_parse_with_kafkas_ranges() {
        let c = CompactionConfig::from_overrides([
            (MIN_CLEANABLE_DIRTY_RATIO, " 0.01 "),
            (MIN_COMPACTION_LAG_MS, "0"),
            (MAX_COMPACTION_LAG_MS, "1"),
            (DELETE_RETENTION_MS, "0"),
            (SEGMENT_MS, "100"),
            ("retention.ms", "whatever"),
        ])
        .unwrap();
        assert_eq!(c.min_cleanable_dirty_ratio, 0.01);
        assert_eq!(c.max_compaction_lag_ms, 1);
        assert_eq!(c.segment_ms, 100);
        for edge in ["0", "1", "1.0", "0.0"] {
            assert!(check(MIN_CLEANABLE_DIRTY_RATIO, edge).is_ok(), "{edge}");
        }
    }

    #[test]
    fn bad_values_get_kafkas_messages() {
        let msg = |n: &str, v: &str| check(n, v).unwrap_err().to_string();
        assert_eq!(
            msg(MIN_CLEANABLE_DIRTY_RATIO, "1.5"),
            "Invalid value 1.5 for configuration min.cleanable.dirty.ratio: Value must be no more than 1"
        );
        assert_eq!(
            msg(MIN_CLEANABLE_DIRTY_RATIO, "2"),
            "Invalid value 2.0 for configuration min.cleanable.dirty.ratio: Value must be no more than 1"
        );
        assert_eq!(
            msg(MIN_CLEANABLE_DIRTY_RATIO, "-0.1"),
            "Invalid value -0.1 for configuration min.cleanable.dirty.ratio: Value must be at least 0"
        );
        assert_eq!(
            msg(MIN_CLEANABLE_DIRTY_RATIO, "lots"),
            "Invalid value lots for configuration min.cleanable.dirty.ratio: Not a number of type DOUBLE"
        );
        assert!(check(MIN_CLEANABLE_DIRTY_RATIO, "NaN").is_err());
        assert_eq!(
            msg(MIN_COMPACTION_LAG_MS, "-1"),
            "Invalid value -1 for configuration min.compaction.lag.ms: Value must be at least 0"
        );
        assert_eq!(
            msg(MAX_COMPACTION_LAG_MS, "0"),
            "Invalid value 0 for configuration max.compaction.lag.ms: Value must be at least 1"
        );
        assert_eq!(
            msg(DELETE_RETENTION_MS, "-5"),
            "Invalid value -5 for configuration delete.retention.ms: Value must be at least 0"
        );
        assert_eq!(
            msg(SEGMENT_MS, "1.5"),
            "Invalid value 1.5 for configuration segment.ms: Not a number of type LONG"
        );
        assert!(check("cleanup.policy", "anything").is_ok());
    }

    #[test]
    fn min_lag_above_max_lag_conflicts() {
        let e = CompactionConfig::from_overrides([
            (MIN_COMPACTION_LAG_MS, "60000"),
            (MAX_COMPACTION_LAG_MS, "1"),
        ])
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "conflict topic config setting min.compaction.lag.ms (60000) > max.compaction.lag.ms (1)"
        );
    }

    #[test]
    fn doubles_print_as_java_does() {
        assert_eq!(java_double(2.0), "2.0");
        assert_eq!(java_double(1.5), "1.5");
        assert_eq!(java_double(1e10), "1.0E10");
        assert_eq!(java_double(f64::INFINITY), "Infinity");
    }
}
