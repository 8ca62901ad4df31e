use super::*;

fn binding(
    rt: ResourceType,
    name: &str,
    pt: PatternType,
    principal: &str,
    op: Operation,
    perm: Permission,
) -> AclBinding {
    AclBinding {
        resource_type: rt,
        resource_name: name.into(),
        pattern_type: pt,
        principal: principal.into(),
        host: "*".into(),
        operation: op,
        permission: perm,
    }
}

fn allow(name: &str, pt: PatternType, principal: &str, op: Operation) -> AclBinding {
    binding(
        ResourceType::Topic,
        name,
        pt,
        principal,
        op,
        Permission::Allow,
    )
}

fn can(acls: &Acls, principal: &str, op: Operation, topic: &str) -> bool {
    acls.authorize(&Action {
        principal,
        host: "10.0.0.1",
        operation: op,
        resource_type: ResourceType::Topic,
        resource_name: topic,
    })
}

#[test]
fn codes_round_trip() {
    for code in 1..=14 {
        assert_eq!(Operation::from_code(code).map(Operation::code), Some(code));
    }
    assert_eq!(Operation::from_code(0), None);
    assert_eq!(ResourceType::from_code(2), Some(ResourceType::Topic));
    assert_eq!(PatternType::Prefixed.name(), "PREFIXED");
}

#[test]
fn nothing_is_allowed_without_an_acl() {
    assert!(!can(&Acls::default(), "User:alice", Operation::Read, "t"));
}

#[test]
fn literal_prefixed_and_wildcard_patterns() {
    let mut acls = Acls::default();
    acls.insert(allow(
        "orders",
        PatternType::Literal,
        "User:alice",
        Operation::Read,
    ));
    acls.insert(allow(
        "logs-",
        PatternType::Prefixed,
        "User:alice",
        Operation::Write,
    ));
    acls.insert(allow(
        "*",
        PatternType::Literal,
        "User:bob",
        Operation::Read,
    ));
    assert!(can(&acls, "User:alice", Operation::Read, "orders"));
    assert!(!can(&acls, "User:alice", Operation::Read, "orders2"));
    assert!(can(&acls, "User:alice", Operation::Write, "logs-app"));
    assert!(!can(&acls, "User:alice", Operation::Write, "log"));
    assert!(can(&acls, "User:bob", Operation::Read, "anything"));
    assert!(!can(&acls, "User:carol", Operation::Read, "orders"));
    // A prefixed "*" is a prefix, not a wildcard.
    let mut p = Acls::default();
    p.insert(allow("*", PatternType::Prefixed, "User:x", Operation::Read));
    assert!(!can(&p, "User:x", Operation::Read, "t"));
}

#[test]
fn implications_and_deny_precedence() {
    let mut acls = Acls::default();
    acls.insert(allow("t", PatternType::Literal, "User:a", Operation::Write));
    acls.insert(allow(
        "t",
        PatternType::Literal,
        "User:a",
        Operation::AlterConfigs,
    ));
    assert!(can(&acls, "User:a", Operation::Describe, "t"));
    assert!(can(&acls, "User:a", Operation::DescribeConfigs, "t"));
    assert!(!can(&acls, "User:a", Operation::Read, "t"));
    acls.insert(allow("*", PatternType::Literal, "User:*", Operation::All));
    assert!(can(&acls, "User:anyone", Operation::Delete, "t"));
    // A DENY of the operation (or of ALL) wins over every ALLOW.
    acls.insert(binding(
        ResourceType::Topic,
        "t",
        PatternType::Literal,
        "User:a",
        Operation::Read,
        Permission::Deny,
    ));
    assert!(!can(&acls, "User:a", Operation::Read, "t"));
    assert!(can(&acls, "User:a", Operation::Write, "t"));
    acls.insert(binding(
        ResourceType::Topic,
        "t",
        PatternType::Prefixed,
        "User:*",
        Operation::All,
        Permission::Deny,
    ));
    assert!(!can(&acls, "User:b", Operation::Describe, "t"));
    assert!(can(&acls, "User:b", Operation::Describe, "u"));
}

#[test]
fn hosts_must_match() {
    let mut b = allow("t", PatternType::Literal, "User:a", Operation::Read);
    b.host = "10.0.0.2".into();
    let mut acls = Acls::default();
    acls.insert(b);
    assert!(!can(&acls, "User:a", Operation::Read, "t"));
    let from_2 = Action {
        principal: "User:a",
        host: "10.0.0.2",
        operation: Operation::Read,
        resource_type: ResourceType::Topic,
        resource_name: "t",
    };
    assert!(acls.authorize(&from_2));
}

#[test]
fn validation_refuses_what_kafka_refuses() {
    let ok = allow("t", PatternType::Literal, "User:a", Operation::Read);
    assert_eq!(ok.validate(), Ok(()));
    let cases = [
        AclBinding {
            resource_type: ResourceType::Any,
            ..ok.clone()
        },
        AclBinding {
            pattern_type: PatternType::Match,
            ..ok.clone()
        },
        AclBinding {
            operation: Operation::Any,
            ..ok.clone()
        },
        AclBinding {
            permission: Permission::Any,
            ..ok.clone()
        },
        AclBinding {
            principal: "alice".into(),
            ..ok.clone()
        },
        AclBinding {
            principal: "User:".into(),
            ..ok.clone()
        },
        AclBinding {
            resource_name: String::new(),
            ..ok.clone()
        },
    ];
    for c in cases {
        assert!(c.validate().is_err(), "{c:?}");
    }
}

#[test]
fn filters_match_as_describe_and_delete_acls_do() {
    let lit = allow("orders", PatternType::Literal, "User:a", Operation::Read);
    let pre = allow("ord", PatternType::Prefixed, "User:b", Operation::Write);
    let wild = allow("*", PatternType::Literal, "User:c", Operation::Read);
    let grp = binding(
        ResourceType::Group,
        "g",
        PatternType::Literal,
        "User:a",
        Operation::Read,
        Permission::Allow,
    );
    let mut acls = Acls::default();
    for b in [&lit, &pre, &wild, &grp] {
        acls.insert(b.clone());
    }
    let any = AclFilter {
        resource_type: ResourceType::Any,
        resource_name: None,
        pattern_type: PatternType::Any,
        principal: None,
        host: None,
        operation: Operation::Any,
        permission: Permission::Any,
    };
    assert_eq!(acls.iter().filter(|b| any.matches(b)).count(), 4);
    let matching = AclFilter {
        resource_type: ResourceType::Topic,
        resource_name: Some("orders".into()),
        pattern_type: PatternType::Match,
        ..any.clone()
    };
    let got: Vec<_> = acls
        .iter()
        .filter(|b| matching.matches(b))
        .cloned()
        .collect();
    assert_eq!(got.len(), 3, "{got:?}");
    let exact_prefixed = AclFilter {
        resource_type: ResourceType::Topic,
        resource_name: Some("ord".into()),
        pattern_type: PatternType::Prefixed,
        ..any.clone()
    };
    assert_eq!(acls.remove_matching(&exact_prefixed), vec![pre]);
    let by_principal = AclFilter {
        principal: Some("User:a".into()),
        ..any
    };
    assert_eq!(acls.remove_matching(&by_principal).len(), 2);
    assert_eq!(acls.iter().cloned().collect::<Vec<_>>(), vec![wild]);
}
