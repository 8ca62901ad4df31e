//! Topic configuration: the keys Chronik accepts, their validation, defaults, and how
//! they become WAL settings. A key that is accepted is enforced; anything else is refused
//! with INVALID_CONFIG rather than silently stored.

use std::collections::BTreeMap;

use chronik_wal::{FsyncPolicy, LogConfig};

/// Kafka's `config_source` values used in DescribeConfigs / CreateTopics answers.
pub const SOURCE_DYNAMIC_TOPIC: i8 = 1;
pub const SOURCE_STATIC_BROKER: i8 = 4;
pub const SOURCE_DEFAULT: i8 = 5;

/// Kafka's `config_type` values.
const TYPE_BOOLEAN: i8 = 1;
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;
const TYPE_LONG: i8 = 5;
const TYPE_LIST: i8 = 7;

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
            let spec = spec(&topic_key).expect("every default has a spec");
            (spec.check)(&v.to_string()).map_err(|r| (key, r))?;
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

struct Spec {
    name: &'static str,
    config_type: i8,
    /// Default when the broker has no setting for it.
    default: &'static str,
    check: fn(&str) -> Result<(), String>,
}

fn long_at_least(min: i64) -> impl Fn(&str) -> Result<(), String> {
    move |v| match v.trim().parse::<i64>() {
        Ok(n) if n >= min => Ok(()),
        Ok(n) => Err(format!("{n} is below the minimum {min}")),
        Err(_) => Err(format!("'{v}' is not a number")),
    }
}

fn int_at_least(min: i64) -> impl Fn(&str) -> Result<(), String> {
    move |v| match v.trim().parse::<i32>() {
        Ok(n) if n as i64 >= min => Ok(()),
        Ok(n) => Err(format!("{n} is below the minimum {min}")),
        Err(_) => Err(format!("'{v}' is not a 32-bit integer")),
    }
}

const SPECS: &[Spec] = &[
    Spec {
        name: "cleanup.policy",
        config_type: TYPE_LIST,
        default: "delete",
        check: |v| match v.trim() {
            "delete" => Ok(()),
            p if p.contains("compact") => {
                Err("cleanup.policy=compact is not supported yet; only 'delete' is".into())
            }
            p => Err(format!(
                "unknown cleanup.policy '{p}'; only 'delete' is supported"
            )),
        },
    },
    Spec {
        name: "compression.type",
        config_type: TYPE_STRING,
        default: "producer",
        check: |v| match v.trim() {
            "producer" => Ok(()),
            _ => Err(
                "only 'producer' is supported: batches are stored as the producer compressed them"
                    .into(),
            ),
        },
    },
    Spec {
        name: "max.message.bytes",
        config_type: TYPE_INT,
        default: "1048588",
        check: |v| int_at_least(0)(v),
    },
    Spec {
        name: "min.insync.replicas",
        config_type: TYPE_INT,
        default: "1",
        check: |v| int_at_least(1)(v),
    },
    Spec {
        name: "retention.bytes",
        config_type: TYPE_LONG,
        default: "-1",
        check: |v| long_at_least(-1)(v),
    },
    Spec {
        name: "retention.ms",
        config_type: TYPE_LONG,
        default: "604800000",
        check: |v| long_at_least(-1)(v),
    },
    Spec {
        name: "segment.bytes",
        config_type: TYPE_INT,
        default: "1073741824",
        check: |v| int_at_least(14)(v),
    },
    Spec {
        name: "segment.ms",
        config_type: TYPE_LONG,
        default: "604800000",
        check: |v| long_at_least(1)(v),
    },
    Spec {
        name: "unclean.leader.election.enable",
        config_type: TYPE_BOOLEAN,
        default: "false",
        check: |v| match v.trim() {
            "true" | "false" => Ok(()),
            other => Err(format!("'{other}' is not true or false")),
        },
    },
];

fn spec(name: &str) -> Option<&'static Spec> {
    SPECS.iter().find(|s| s.name == name)
}

/// Why a topic config was refused: the key and a reason a person can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidConfig {
    pub key: String,
    pub reason: String,
}

impl std::fmt::Display for InvalidConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "invalid value for topic config {}: {}",
            self.key, self.reason
        )
    }
}

/// Validates explicit topic overrides. `None` values (Kafka's "delete this override")
/// are rejected here; callers drop them before.
pub fn validate_overrides(overrides: &BTreeMap<String, String>) -> Result<(), InvalidConfig> {
    for (key, value) in overrides {
        let spec = spec(key).ok_or_else(|| InvalidConfig {
            key: key.clone(),
            reason: format!(
                "unknown or unsupported topic config; supported: {}",
                SPECS.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
            ),
        })?;
        (spec.check)(value).map_err(|reason| InvalidConfig {
            key: key.clone(),
            reason,
        })?;
    }
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

/// A topic's effective configuration: its overrides over the broker defaults.
#[derive(Debug, Clone)]
pub struct TopicConfig {
    entries: Vec<ConfigEntry>,
}

impl TopicConfig {
    pub fn resolve(defaults: &TopicDefaults, overrides: &BTreeMap<String, String>) -> TopicConfig {
        let entries = SPECS
            .iter()
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

    pub fn entries(&self) -> &[ConfigEntry] {
        &self.entries
    }

    fn num(&self, name: &str) -> i64 {
        self.entries
            .iter()
            .find(|e| e.name == name)
            .and_then(|e| e.value.parse().ok())
            .expect("numeric topic configs are validated before they are stored")
    }

    pub fn max_message_bytes(&self) -> usize {
        self.num("max.message.bytes").max(0) as usize
    }

    /// In-sync replicas an acks=all produce needs: the topic's override, else the broker's
    /// `--min-insync-replicas` (as Kafka: 1 unless set).
    pub fn min_insync_replicas(&self) -> usize {
        self.num("min.insync.replicas").max(1) as usize
    }

    /// The WAL settings this topic config implies.
    pub fn log_config(&self, fsync: FsyncPolicy) -> LogConfig {
        let opt = |v: i64| if v < 0 { None } else { Some(v as u64) };
        LogConfig {
            segment_bytes: self.num("segment.bytes") as u64,
            segment_ms: self.num("segment.ms") as u64,
            retention_ms: opt(self.num("retention.ms")),
            retention_bytes: opt(self.num("retention.bytes")),
            fsync,
            ..LogConfig::default()
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
        assert!(
            validate_overrides(&map(&[("retention.ms", "1000"), ("segment.bytes", "1024")]))
                .is_ok()
        );
        assert!(validate_overrides(&map(&[("retention.ms", "-1")])).is_ok());
        let e = validate_overrides(&map(&[("cleanup.policy", "compact")])).unwrap_err();
        assert!(e.reason.contains("compact"));
        assert!(validate_overrides(&map(&[("retention.ms", "abc")])).is_err());
        assert!(validate_overrides(&map(&[("segment.bytes", "99999999999")])).is_err());
        assert!(validate_overrides(&map(&[("no.such.key", "1")])).is_err());
    }

    #[test]
    fn sources_and_log_config() {
        let defaults = TopicDefaults {
            retention_bytes: 5000,
            min_insync_replicas: 2,
            ..TopicDefaults::default()
        };
        let cfg = TopicConfig::resolve(&defaults, &map(&[("retention.ms", "1000")]));
        let get = |n: &str| cfg.entries().iter().find(|e| e.name == n).unwrap().clone();
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
