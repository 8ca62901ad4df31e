//! Topic configuration: every key Kafka defines, under the rule [`specs`] gives it
//! (enforced, ignored as Kafka does, or refused until Chronik has the behaviour), the
//! effective values over the broker defaults, and what they become: WAL settings and the
//! batch policy of produce (`chronik_protocol::batch`).

mod specs;

use std::collections::BTreeMap;

use chronik_cleaner::CompactionConfig;
use chronik_protocol::batch::{Levels, Policy};
use chronik_protocol::kafka_protocol::records::Compression;
use chronik_wal::{FsyncPolicy, LogConfig};

pub use specs::{is_default, list, spec, Rule, Spec, SPECS, TYPE_LIST};

/// Kafka's `config_source` values used in DescribeConfigs / CreateTopics answers.
pub const SOURCE_DYNAMIC_TOPIC: i8 = 1;
pub const SOURCE_STATIC_BROKER: i8 = 4;
pub const SOURCE_DEFAULT: i8 = 5;

/// Broker-wide defaults for topic configs (the `log.*` settings of a Kafka broker).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDefaults {
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub segment_bytes: i64,
    pub segment_ms: i64,
    pub max_message_bytes: i64,
    /// Kafka's broker `min.insync.replicas`: the topics' default.
    pub min_insync_replicas: i64,
}

impl Default for TopicDefaults {
    fn default() -> Self {
        TopicDefaults {
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            max_message_bytes: 1_048_588,
            min_insync_replicas: 1,
        }
    }
}

impl TopicDefaults {
    /// Checks each default with the same rule as the topic key.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        for (key, v) in [
            ("retention-ms", self.retention_ms),
            ("retention-bytes", self.retention_bytes),
            ("segment-bytes", self.segment_bytes),
            ("segment-ms", self.segment_ms),
            ("max-message-bytes", self.max_message_bytes),
            ("min-insync-replicas", self.min_insync_replicas),
        ] {
            let topic_key = key.replace('-', ".");
            specs::validate(&topic_key, &v.to_string()).map_err(|r| (key, r))?;
        }
        Ok(())
    }

    fn get(&self, key: &str) -> Option<String> {
        Some(match key {
            "retention.ms" => self.retention_ms.to_string(),
            "retention.bytes" => self.retention_bytes.to_string(),
            "segment.bytes" => self.segment_bytes.to_string(),
            "segment.ms" => self.segment_ms.to_string(),
            "max.message.bytes" => self.max_message_bytes.to_string(),
            "min.insync.replicas" => self.min_insync_replicas.to_string(),
            _ => return None,
        })
    }
}

/// Why a topic config was refused: the key and a reason a person can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidConfig {
    pub key: String,
    pub reason: String,
}

impl std::fmt::Display for InvalidConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The reason names the key already (Kafka's wording), except for an unknown key.
        if self.reason.contains(&self.key) {
            f.write_str(&self.reason)
        } else {
            write!(f, "{}: {}", self.reason, self.key)
        }
    }
}

/// Validates explicit topic overrides. `None` values (Kafka's "delete this override")
/// are rejected here; callers drop them before.
pub fn validate_overrides(overrides: &BTreeMap<String, String>) -> Result<(), InvalidConfig> {
    for (key, value) in overrides {
        specs::validate(key, value).map_err(|reason| InvalidConfig {
            key: key.clone(),
            reason,
        })?;
    }
    // Kafka's cross-check of the pair (LogConfig.validateValues).
    CompactionConfig::from_overrides(overrides.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .map_err(|e| InvalidConfig {
            key: chronik_cleaner::config::MIN_COMPACTION_LAG_MS.to_string(),
            reason: e.to_string(),
        })?;
    Ok(())
}

/// One config as shown to clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    pub name: &'static str,
    pub value: String,
    pub source: i8,
    pub config_type: i8,
}

/// What a partition applies on every produce (and the cleaner reads), typed: parsed once
/// when the topic's config is (re)applied (`Partition::set_config`), never per request.
#[derive(Debug, Clone, PartialEq)]
pub struct ProduceConfig {
    /// What produce does to each batch before appending it.
    pub policy: Policy,
    /// Kafka's max.message.bytes: the largest batch appended.
    pub max_message_bytes: usize,
    /// In-sync replicas an acks=all produce needs.
    pub min_insync_replicas: usize,
    /// The compaction settings when `cleanup.policy` includes `compact`; `None`: the log
    /// cleaner leaves the topic alone.
    pub compaction: Option<CompactionConfig>,
}

/// Kafka's `cleanup.policy` list, as flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanupPolicy {
    pub compact: bool,
    pub delete: bool,
}

/// A topic's effective configuration: its overrides over the broker defaults.
#[derive(Debug, Clone)]
pub struct TopicConfig {
    entries: Vec<ConfigEntry>,
}

impl TopicConfig {
    pub fn resolve(defaults: &TopicDefaults, overrides: &BTreeMap<String, String>) -> TopicConfig {
        let entries = SPECS
            .iter()
            // A deprecated key Kafka ignores, and an internal one, exist only when the topic
            // sets them.
            .filter(|s| {
                !matches!(s.rule, Rule::Ignored | Rule::Internal) || overrides.contains_key(s.name)
            })
            .map(|s| {
                let (value, source) = match (overrides.get(s.name), defaults.get(s.name)) {
                    (Some(v), _) => (v.trim().to_string(), SOURCE_DYNAMIC_TOPIC),
                    (None, Some(d)) if d != s.default => (d, SOURCE_STATIC_BROKER),
                    (None, _) => (s.default.to_string(), SOURCE_DEFAULT),
                };
                ConfigEntry {
                    name: s.name,
                    value,
                    source,
                    config_type: s.config_type,
                }
            })
            .collect();
        TopicConfig { entries }
    }

    /// The configs clients are shown: all but Kafka's internal ones.
    pub fn entries(&self) -> impl Iterator<Item = &ConfigEntry> {
        self.entries
            .iter()
            .filter(|e| specs::spec(e.name).is_none_or(|s| s.rule != Rule::Internal))
    }

    fn value(&self, name: &str) -> &str {
        self.entries
            .iter()
            .find(|e| e.name == name)
            .map_or("", |e| e.value.as_str())
    }

    /// A numeric config's value. Values are validated before they are stored, so a parse
    /// fails only for one stored by an older, laxer version: it falls back to the default
    /// (with a warning) rather than panic on the request path.
    fn num(&self, name: &str) -> i64 {
        let v = self.value(name);
        v.parse().unwrap_or_else(|_| {
            let d = specs::spec(name)
                .and_then(|s| s.default.parse().ok())
                .unwrap_or(0);
            tracing::warn!(
                config = name,
                value = v,
                default = d,
                "unparsable topic config value; using the default"
            );
            d
        })
    }

    /// What produce does to this topic's batches before appending them.
    pub fn batch_policy(&self) -> Policy {
        let codec = match self.value("compression.type") {
            "uncompressed" => Some(Compression::None),
            "gzip" => Some(Compression::Gzip),
            "snappy" => Some(Compression::Snappy),
            "lz4" => Some(Compression::Lz4),
            "zstd" => Some(Compression::Zstd),
            _ => None,
        };
        Policy {
            codec,
            levels: Levels {
                gzip: self.num("compression.gzip.level") as i32,
                lz4: self.num("compression.lz4.level") as i32,
                zstd: self.num("compression.zstd.level") as i32,
            },
            log_append_time: self.value("message.timestamp.type") == "LogAppendTime",
            before_max_ms: self.num("message.timestamp.before.max.ms"),
            after_max_ms: self.num("message.timestamp.after.max.ms"),
            max_decompressed_bytes: self.num("max.decompressed.message.bytes").max(0) as usize,
            require_keys: self.cleanup_policy().compact,
        }
    }

    /// Which of `compact` and `delete` the topic's `cleanup.policy` lists.
    pub fn cleanup_policy(&self) -> CleanupPolicy {
        let items = specs::list(self.value("cleanup.policy"));
        CleanupPolicy {
            compact: items.iter().any(|i| i == "compact"),
            delete: items.iter().any(|i| i == "delete"),
        }
    }

    /// The compaction settings, typed. Values are validated before they are stored; one an
    /// older version stored that no longer parses gives Kafka's defaults (with a warning).
    pub fn compaction_config(&self) -> CompactionConfig {
        let values = CompactionConfig::NAMES.map(|n| (n, self.value(n)));
        CompactionConfig::from_overrides(values).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "invalid compaction config; using the defaults");
            CompactionConfig::default()
        })
    }

    pub fn max_message_bytes(&self) -> usize {
        self.num("max.message.bytes").max(0) as usize
    }

    /// In-sync replicas an acks=all produce needs: the topic's override, else the broker's
    /// `--min-insync-replicas` (as Kafka: 1 unless set).
    pub fn min_insync_replicas(&self) -> usize {
        self.num("min.insync.replicas").max(1) as usize
    }

    /// The typed settings of produce.
    pub fn produce_config(&self) -> ProduceConfig {
        ProduceConfig {
            policy: self.batch_policy(),
            max_message_bytes: self.max_message_bytes(),
            min_insync_replicas: self.min_insync_replicas(),
            compaction: self
                .cleanup_policy()
                .compact
                .then(|| self.compaction_config()),
        }
    }

    /// The WAL settings this topic config implies. Time and size retention delete segments
    /// only when `cleanup.policy` includes `delete` (Kafka); a compacted topic's active segment
    /// also rolls by `max.compaction.lag.ms` (KIP-354), so its records become cleanable.
    pub fn log_config(&self, fsync: FsyncPolicy) -> LogConfig {
        let policy = self.cleanup_policy();
        let opt = |v: i64| (v >= 0 && policy.delete).then_some(v as u64);
        let segment_ms =
            chronik_cleaner::max_segment_ms(&self.compaction_config(), policy.compact).max(1);
        LogConfig {
            // Kafka's internal.segment.bytes, when a topic sets it, wins (LogConfig.segmentSize).
            segment_bytes: match self.value("internal.segment.bytes") {
                "" => self.num("segment.bytes"),
                _ => self.num("internal.segment.bytes"),
            } as u64,
            segment_ms: segment_ms as u64,
            retention_ms: opt(self.num("retention.ms")),
            retention_bytes: opt(self.num("retention.bytes")),
            index_interval_bytes: self.num("index.interval.bytes").max(0) as u32,
            fsync,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn validation() {
        assert!(validate_overrides(&map(&[
            ("retention.ms", "1000"),
            ("segment.bytes", "1048576")
        ]))
        .is_ok());
        // Kafka 4.x: segment.bytes from 1 MiB; smaller only through internal.segment.bytes.
        let e = validate_overrides(&map(&[("segment.bytes", "1048575")])).unwrap_err();
        assert!(e.reason.contains("at least 1048576"), "{e}");
        assert!(validate_overrides(&map(&[("internal.segment.bytes", "1024")])).is_ok());
        assert!(validate_overrides(&map(&[("retention.ms", "-1")])).is_ok());
        for ok in ["compact", "delete", "compact,delete", "delete, compact"] {
            assert!(
                validate_overrides(&map(&[("cleanup.policy", ok)])).is_ok(),
                "{ok}"
            );
        }
        let e = validate_overrides(&map(&[("cleanup.policy", "compact,shred")])).unwrap_err();
        assert!(e.reason.contains("cleanup.policy"), "{e}");
        assert!(validate_overrides(&map(&[("retention.ms", "abc")])).is_err());
        assert!(validate_overrides(&map(&[("segment.bytes", "99999999999")])).is_err());
        assert!(validate_overrides(&map(&[("no.such.key", "1")])).is_err());
    }

    #[test]
    fn internal_segment_bytes_sizes_segments_but_is_never_shown() {
        let d = TopicDefaults::default();
        let set = TopicConfig::resolve(&d, &map(&[("internal.segment.bytes", "4096")]));
        assert_eq!(set.log_config(FsyncPolicy::Always).segment_bytes, 4096);
        assert!(set.entries().all(|e| e.name != "internal.segment.bytes"));
        let unset = TopicConfig::resolve(&d, &BTreeMap::new());
        assert_eq!(unset.log_config(FsyncPolicy::Always).segment_bytes, 1 << 30);
    }

    #[test]
    fn every_rule() {
        // Enforced, with Kafka's ranges and wording.
        for ok in [
            ("compression.type", "zstd"),
            ("compression.type", "uncompressed"),
            ("compression.zstd.level", "-5"),
            ("compression.gzip.level", "-1"),
            ("message.timestamp.type", "LogAppendTime"),
            ("index.interval.bytes", "0"),
        ] {
            assert!(validate_overrides(&map(&[ok])).is_ok(), "{ok:?}");
        }
        let e = validate_overrides(&map(&[("compression.zstd.level", "99")])).unwrap_err();
        assert_eq!(e.to_string(), "Invalid value 99 for configuration compression.zstd.level: Value must be no more than 22");
        assert!(validate_overrides(&map(&[("compression.type", "brotli")])).is_err());
        assert!(validate_overrides(&map(&[("compression.gzip.level", "0")])).is_err());
        // Ignored: accepted, shown only when set.
        let set = map(&[("message.format.version", "2.8-IV1")]);
        assert!(validate_overrides(&set).is_ok());
        let shown = |c: &TopicConfig, n: &str| c.entries().any(|e| e.name == n);
        assert!(shown(
            &TopicConfig::resolve(&TopicDefaults::default(), &set),
            "message.format.version"
        ));
        assert!(!shown(
            &TopicConfig::resolve(&TopicDefaults::default(), &BTreeMap::new()),
            "message.format.version"
        ));
        // Unsupported: the default passes, anything else says so.
        assert!(validate_overrides(&map(&[("remote.storage.enable", "false")])).is_ok());
        assert!(validate_overrides(&map(&[("leader.replication.throttled.replicas", "")])).is_ok());
        assert!(validate_overrides(&map(&[("min.cleanable.dirty.ratio", "0.50")])).is_ok());
        let e = validate_overrides(&map(&[("remote.storage.enable", "true")])).unwrap_err();
        assert!(e.to_string().contains("not supported yet"), "{e}");
        let e = validate_overrides(&map(&[("follower.replication.throttled.replicas", "0:1")]))
            .unwrap_err();
        assert!(e.to_string().contains("not supported yet"), "{e}");
        // Unknown: Kafka's wording.
        let e = validate_overrides(&map(&[("no.such", "1")])).unwrap_err();
        assert_eq!(e.to_string(), "Unknown topic config name: no.such");
        // Every spec's default passes its own check (an internal config has none: unset).
        for s in SPECS.iter().filter(|s| s.rule != Rule::Internal) {
            assert!(specs::validate(s.name, s.default).is_ok(), "{}", s.name);
        }
    }

    #[test]
    fn batch_policy() {
        let cfg = TopicConfig::resolve(
            &TopicDefaults::default(),
            &map(&[
                ("compression.type", "zstd"),
                ("compression.zstd.level", "7"),
                ("message.timestamp.type", "LogAppendTime"),
            ]),
        );
        let p = cfg.batch_policy();
        assert_eq!(p.codec, Some(Compression::Zstd));
        assert_eq!(p.levels.zstd, 7);
        assert!(p.log_append_time);
        let plain =
            TopicConfig::resolve(&TopicDefaults::default(), &BTreeMap::new()).batch_policy();
        assert_eq!(plain, Policy::default());
    }

    #[test]
    fn sources_and_log_config() {
        let defaults = TopicDefaults {
            retention_bytes: 5000,
            min_insync_replicas: 2,
            ..TopicDefaults::default()
        };
        let cfg = TopicConfig::resolve(&defaults, &map(&[("retention.ms", "1000")]));
        let get = |n: &str| cfg.entries().find(|e| e.name == n).unwrap().clone();
        assert_eq!(get("retention.ms").source, SOURCE_DYNAMIC_TOPIC);
        assert_eq!(get("retention.bytes").source, SOURCE_STATIC_BROKER);
        assert_eq!(get("segment.ms").source, SOURCE_DEFAULT);
        // The broker's min.insync.replicas is the topic's, reported as a static broker config.
        assert_eq!(get("min.insync.replicas").source, SOURCE_STATIC_BROKER);
        assert_eq!(cfg.min_insync_replicas(), 2);
        let plain = TopicConfig::resolve(&TopicDefaults::default(), &BTreeMap::new());
        assert_eq!(plain.min_insync_replicas(), 1);
        let set = TopicConfig::resolve(&defaults, &map(&[("min.insync.replicas", "3")]));
        assert_eq!(set.min_insync_replicas(), 3);
        let log = cfg.log_config(FsyncPolicy::Always);
        assert_eq!(log.retention_ms, Some(1000));
        assert_eq!(log.retention_bytes, Some(5000));
        assert_eq!(cfg.max_message_bytes(), 1_048_588);
    }
}
