//! Every topic config Apache Kafka defines (4.x's `LogConfig`, plus the 3.x names 4.0
//! removed), each under exactly one [`Rule`]. docs/operations.md's topic-config table is
//! generated from [`SPECS`] (crates/chronik-docs).

/// Kafka's `config_type` values.
pub const TYPE_BOOLEAN: i8 = 1;
pub const TYPE_STRING: i8 = 2;
pub const TYPE_INT: i8 = 3;
pub const TYPE_LONG: i8 = 5;
pub const TYPE_DOUBLE: i8 = 6;
pub const TYPE_LIST: i8 = 7;

/// What Chronik does with a topic config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Implemented: validated with Kafka's range and used.
    Enforced,
    /// Deprecated by Kafka 3.x and ignored there (removed in 4.0): accepted, stored and
    /// shown by DescribeConfigs when set, without effect.
    Ignored,
    /// The behaviour is missing in Chronik: a value equal to Kafka's default (which changes
    /// nothing) is accepted, any other is refused with INVALID_CONFIG.
    Unsupported,
    /// One of Kafka's internal configs (what its own tests set): enforced when a topic sets
    /// it, never shown by DescribeConfigs, as Kafka does.
    Internal,
}

impl Rule {
    pub fn label(self) -> &'static str {
        match self {
            Rule::Enforced => "enforced",
            Rule::Ignored => "accepted, ignored (deprecated by Kafka)",
            Rule::Unsupported => "refused unless the default (not supported yet)",
            Rule::Internal => "enforced when set, not shown (Kafka's internal config)",
        }
    }
}

pub struct Spec {
    pub name: &'static str,
    pub config_type: i8,
    /// Kafka's default (Chronik's where the note says so): the value when neither the topic
    /// nor the broker sets it.
    pub default: &'static str,
    pub rule: Rule,
    /// Kafka's validity check of the value, whatever the rule.
    pub check: fn(&str) -> Result<(), String>,
    /// Why the rule, for the docs table.
    pub note: &'static str,
}

fn num<T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy>(
    v: &str,
    min: T,
    max: T,
    what: &str,
) -> Result<T, String> {
    let n: T = v
        .trim()
        .parse()
        .map_err(|_| format!("'{v}' is not {what}"))?;
    if n < min {
        return Err(format!("Value must be at least {min}"));
    }
    if n > max {
        return Err(format!("Value must be no more than {max}"));
    }
    Ok(n)
}

fn long(v: &str, min: i64) -> Result<(), String> {
    num(v, min, i64::MAX, "a 64-bit integer").map(|_| ())
}

fn int(v: &str, min: i32, max: i32) -> Result<(), String> {
    num(v, min, max, "a 32-bit integer").map(|_| ())
}

/// The compaction configs' checks are chronik-cleaner's (Kafka's ranges and wording).
fn compaction(name: &str, v: &str) -> Result<(), String> {
    chronik_cleaner::config::check(name, v).map_err(|e| match e {
        chronik_cleaner::ConfigError::Invalid { reason, .. } => reason,
        other => other.to_string(),
    })
}

fn boolean(v: &str) -> Result<(), String> {
    match v.trim() {
        "true" | "false" => Ok(()),
        other => Err(format!("'{other}' is not true or false")),
    }
}

fn one_of(v: &str, allowed: &[&str]) -> Result<(), String> {
    if allowed.contains(&v.trim()) {
        Ok(())
    } else {
        Err(format!("String must be one of: {}", allowed.join(", ")))
    }
}

/// `*` or a list of `partition:broker` pairs (Kafka's ThrottledReplicaListValidator).
fn throttled(v: &str) -> Result<(), String> {
    let v = v.trim();
    if v.is_empty() || v == "*" {
        return Ok(());
    }
    for item in v.split(',') {
        let ok = item.trim().split_once(':').is_some_and(|(p, b)| {
            p.trim().parse::<u32>().is_ok() && b.trim().parse::<u32>().is_ok()
        });
        if !ok {
            return Err(
                "must be the literal '*' or a list of replicas in the format \
                 [partitionId]:[brokerId],[partitionId]:[brokerId],..."
                    .into(),
            );
        }
    }
    Ok(())
}

pub const COMPRESSION_TYPES: &[&str] =
    &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"];

macro_rules! spec {
    ($name:literal, $ty:expr, $default:literal, $rule:ident, $check:expr, $note:literal) => {
        Spec {
            name: $name,
            config_type: $ty,
            default: $default,
            rule: Rule::$rule,
            check: $check,
            note: $note,
        }
    };
}

/// Sorted by name.
pub const SPECS: &[Spec] = &[
    spec!("cleanup.policy", TYPE_LIST, "delete", Enforced,
        |v| v.split(',').try_for_each(|p| one_of(p, &["compact", "delete"])),
        "`delete`: retention.ms/bytes delete old segments; `compact`: the log cleaner keeps each key's latest record (and no retention unless `delete` is listed too)"),
    spec!("compression.gzip.level", TYPE_INT, "-1", Enforced,
        |v| if v.trim() == "-1" { Ok(()) } else {
            int(v, 1, 9).map_err(|_| "Value must be between 1 and 9 or equal to -1".into())
        },
        "level of batches the broker recompresses into gzip"),
    spec!("compression.lz4.level", TYPE_INT, "9", Enforced, |v| int(v, 1, 17),
        "level of batches the broker recompresses into lz4"),
    spec!("compression.type", TYPE_STRING, "producer", Enforced, |v| one_of(v, COMPRESSION_TYPES),
        "a batch in another codec is recompressed before it is appended"),
    spec!("compression.zstd.level", TYPE_INT, "3", Enforced, |v| int(v, -131_072, 22),
        "level of batches the broker recompresses into zstd"),
    spec!("delete.retention.ms", TYPE_LONG, "86400000", Enforced,
        |v| compaction("delete.retention.ms", v),
        "how long a compacted topic's tombstones stay after the clean that first kept them"),
    spec!("errors.deadletterqueue.group.enable", TYPE_BOOLEAN, "false", Unsupported, boolean,
        "share groups' dead-letter queues"),
    spec!("file.delete.delay.ms", TYPE_LONG, "60000", Unsupported, |v| long(v, 0),
        "Chronik deletes a segment file when retention drops it"),
    spec!("flush.messages", TYPE_LONG, "9223372036854775807", Unsupported, |v| long(v, 1),
        "durability is the broker's `--fsync` policy"),
    spec!("flush.ms", TYPE_LONG, "9223372036854775807", Unsupported, |v| long(v, 0),
        "durability is the broker's `--fsync` policy"),
    spec!("follower.replication.throttled.replicas", TYPE_LIST, "", Unsupported, throttled,
        "replication throttling"),
    spec!("index.interval.bytes", TYPE_INT, "4096", Enforced, |v| int(v, 0, i32::MAX),
        "bytes between two sparse offset-index entries"),
    spec!("internal.segment.bytes", TYPE_INT, "", Internal, |v| int(v, 14, i32::MAX),
        "overrides segment.bytes without its 1 MiB minimum (Kafka's tests' setting)"),
    spec!("leader.replication.throttled.replicas", TYPE_LIST, "", Unsupported, throttled,
        "replication throttling"),
    spec!("local.retention.bytes", TYPE_LONG, "-2", Unsupported, |v| long(v, -2),
        "tiered storage"),
    spec!("local.retention.ms", TYPE_LONG, "-2", Unsupported, |v| long(v, -2),
        "tiered storage"),
    spec!("max.compaction.lag.ms", TYPE_LONG, "9223372036854775807", Enforced,
        |v| compaction("max.compaction.lag.ms", v),
        "a record older than this is cleaned whatever the dirty ratio; the active segment rolls by it"),
    spec!("max.decompressed.message.bytes", TYPE_INT, "67108864", Enforced,
        |v| int(v, 0, i32::MAX),
        "bound on a batch's records when the broker decompresses them (to recompress); Chronik's default is 64 MiB, Kafka's 2 GiB: a few KiB of zstd must not make the broker allocate gigabytes"),
    spec!("max.message.bytes", TYPE_INT, "1048588", Enforced, |v| int(v, 0, i32::MAX),
        "largest batch, as produced and as stored after recompression"),
    spec!("message.downconversion.enable", TYPE_BOOLEAN, "true", Ignored, boolean,
        "removed in Kafka 4.0 (4.x refuses the name); Chronik serves no message format below v2"),
    spec!("message.format.version", TYPE_STRING, "3.0-IV1", Ignored, |_| Ok(()),
        "ignored by Kafka 3.x for inter-broker protocol 3.0+, removed in 4.0 (4.x refuses the name)"),
    spec!("message.timestamp.after.max.ms", TYPE_LONG, "3600000", Enforced, |v| long(v, 0),
        "CreateTime records further ahead of broker time are refused (INVALID_TIMESTAMP)"),
    spec!("message.timestamp.before.max.ms", TYPE_LONG, "9223372036854775807", Enforced,
        |v| long(v, 0),
        "CreateTime records further behind broker time are refused (INVALID_TIMESTAMP)"),
    spec!("message.timestamp.difference.max.ms", TYPE_LONG, "9223372036854775807", Ignored,
        |v| long(v, 0),
        "deprecated in Kafka 3.6 for the before/after pair, removed in 4.0 (4.x refuses the name)"),
    spec!("message.timestamp.type", TYPE_STRING, "CreateTime", Enforced,
        |v| one_of(v, &["CreateTime", "LogAppendTime"]),
        "LogAppendTime: the broker stamps each batch with its time"),
    spec!("min.cleanable.dirty.ratio", TYPE_DOUBLE, "0.5", Enforced,
        |v| compaction("min.cleanable.dirty.ratio", v),
        "a compacted log is cleaned once its dirty bytes are this share of its bytes"),
    spec!("min.compaction.lag.ms", TYPE_LONG, "0", Enforced,
        |v| compaction("min.compaction.lag.ms", v),
        "a record stays uncompacted at least this long"),
    spec!("min.insync.replicas", TYPE_INT, "1", Enforced, |v| int(v, 1, i32::MAX),
        "acks=all produce needs this many in-sync replicas"),
    spec!("preallocate", TYPE_BOOLEAN, "false", Unsupported, boolean,
        "segment files grow as they are written"),
    spec!("remote.copy.lag.bytes", TYPE_LONG, "-1", Unsupported, |v| long(v, -1),
        "tiered storage"),
    spec!("remote.copy.lag.ms", TYPE_LONG, "0", Unsupported, |v| long(v, 0),
        "tiered storage"),
    spec!("remote.log.copy.disable", TYPE_BOOLEAN, "false", Unsupported, boolean,
        "tiered storage"),
    spec!("remote.log.delete.on.disable", TYPE_BOOLEAN, "false", Unsupported, boolean,
        "tiered storage"),
    spec!("remote.storage.enable", TYPE_BOOLEAN, "false", Unsupported, boolean,
        "tiered storage"),
    spec!("retention.bytes", TYPE_LONG, "-1", Enforced, |v| long(v, -1),
        "per-partition size bound, whole segments deleted"),
    spec!("retention.ms", TYPE_LONG, "604800000", Enforced, |v| long(v, -1),
        "age bound, whole segments deleted"),
    spec!("segment.bytes", TYPE_INT, "1073741824", Enforced, |v| int(v, 1 << 20, i32::MAX),
        "at least 1 MiB, as Kafka 4.x; smaller segments through internal.segment.bytes"),
    spec!("segment.index.bytes", TYPE_INT, "10485760", Unsupported, |v| int(v, 4, i32::MAX),
        "Chronik's offset index grows with its segment"),
    spec!("segment.jitter.ms", TYPE_LONG, "0", Unsupported, |v| long(v, 0),
        "segments roll at segment.ms exactly"),
    spec!("segment.ms", TYPE_LONG, "604800000", Enforced, |v| long(v, 1),
        "age at which the active segment rolls"),
    spec!("unclean.leader.election.enable", TYPE_BOOLEAN, "false", Enforced, boolean,
        "on failover with no in-sync replica alive, the first alive replica leads"),
];

pub fn spec(name: &str) -> Option<&'static Spec> {
    SPECS.iter().find(|s| s.name == name)
}

/// Whether `value` equals `spec`'s default: numerically for numbers, as a set for lists.
pub fn is_default(spec: &Spec, value: &str) -> bool {
    let v = value.trim();
    match spec.config_type {
        TYPE_INT | TYPE_LONG => v.parse::<i64>().ok() == spec.default.parse::<i64>().ok(),
        TYPE_DOUBLE => v.parse::<f64>().ok() == spec.default.parse::<f64>().ok(),
        TYPE_LIST => list(v) == list(spec.default),
        _ => v == spec.default,
    }
}

/// A list config's items, trimmed, empty ones dropped, sorted and deduplicated.
pub fn list(v: &str) -> Vec<String> {
    let mut items: Vec<String> = v
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    items.sort();
    items.dedup();
    items
}

/// Validates one key and value under its rule.
pub fn validate(key: &str, value: &str) -> Result<(), String> {
    let Some(spec) = spec(key) else {
        return Err("Unknown topic config name".into());
    };
    (spec.check)(value)
        .map_err(|e| format!("Invalid value {value} for configuration {key}: {e}"))?;
    if spec.rule == Rule::Unsupported && !is_default(spec, value) {
        return Err(format!(
            "{key}={value} is not supported yet ({}); only the default '{}' is accepted",
            spec.note, spec.default
        ));
    }
    Ok(())
}
