//! Kafka's rules for topic names, enforced in one place.

/// Kafka's limit on topic name length.
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// Checks a topic name against Kafka's rules: 1..=249 characters from `[a-zA-Z0-9._-]`,
/// and not `.` or `..`. Returns the reason when invalid.
///
/// The same rule makes the name safe to use as a directory name in the WAL.
pub fn validate(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("topic name is empty");
    }
    if name == "." || name == ".." {
        return Err("topic name cannot be '.' or '..'");
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return Err("topic name is longer than 249 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return Err("topic name contains characters outside [a-zA-Z0-9._-]");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::validate;

    #[test]
    fn kafka_rules() {
        assert!(validate("orders").is_ok());
        assert!(validate("a.b_c-D9").is_ok());
        assert!(validate(&"x".repeat(249)).is_ok());
        assert!(validate("").is_err());
        assert!(validate(".").is_err());
        assert!(validate("..").is_err());
        assert!(validate(&"x".repeat(250)).is_err());
        assert!(validate("a/b").is_err());
        assert!(validate("a b").is_err());
        assert!(validate("ü").is_err());
    }
}
