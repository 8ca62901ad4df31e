//! DescribeUserScramCredentials and AlterUserScramCredentials (KIP-554): SCRAM users, kept
//! in the Raft metadata as salted credentials. The client salts and iterates the password
//! itself and sends SaltedPassword; the broker derives StoredKey and ServerKey from it and
//! stores those, so no password reaches the broker or the disk.
//!
//! As Kafka: one result per user, in request order; a user named twice in a Describe, or the
//! same user and mechanism twice in an Alter, gets DUPLICATE_RESOURCE; every change of a user
//! is checked before any is applied.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use chronik_auth::{Mechanism, ScramCredential, MAX_ITERATIONS, MIN_ITERATIONS};
use chronik_metadata::MetadataCommand;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse, ResponseKind,
};
use kafka_protocol::ResponseError;

use super::{str_bytes, Reply};
use crate::broker::{Broker, TopicError};

pub fn describe(broker: &Arc<Broker>, req: DescribeUserScramCredentialsRequest) -> Reply {
    let state = broker.metadata();
    let users: Vec<String> = match &req.users {
        Some(u) if !u.is_empty() => u.iter().map(|u| u.name.to_string()).collect(),
        _ => state.scram_users.keys().cloned().collect(),
    };
    let mut seen = HashSet::new();
    let duplicates: HashSet<&String> = users.iter().filter(|u| !seen.insert(*u)).collect();
    let mut listed = HashSet::new();
    let mut results = Vec::new();
    for user in &users {
        if !listed.insert(user) {
            continue;
        }
        let result = DescribeUserScramCredentialsResult::default().with_user(str_bytes(user));
        let failed = |code: ResponseError, msg: &str| {
            result
                .clone()
                .with_error_code(code.code())
                .with_error_message(Some(str_bytes(msg)))
        };
        results.push(if duplicates.contains(user) {
            failed(
                ResponseError::DuplicateResource,
                "Cannot describe SCRAM credentials for the same user twice in a single request",
            )
        } else if let Some(creds) = state.scram_users.get(user) {
            result.with_credential_infos(
                creds
                    .iter()
                    .map(|(m, c)| {
                        CredentialInfo::default()
                            .with_mechanism(m.kafka_type())
                            .with_iterations(c.iterations as i32)
                    })
                    .collect(),
            )
        } else {
            failed(
                ResponseError::ResourceNotFound,
                "Attempt to describe a user credential that does not exist",
            )
        });
    }
    Reply::now(ResponseKind::DescribeUserScramCredentials(
        DescribeUserScramCredentialsResponse::default().with_results(results),
    ))
}

pub async fn alter(broker: &Arc<Broker>, req: AlterUserScramCredentialsRequest) -> Reply {
    // Each user's changes, in the order users first appear.
    let mut order: Vec<String> = Vec::new();
    let mut changes: BTreeMap<String, Result<Vec<MetadataCommand>, TopicError>> = BTreeMap::new();
    let mut seen = HashSet::new();
    let state = broker.metadata();
    let deletions = req
        .deletions
        .iter()
        .map(|d| (d.name.to_string(), d.mechanism, None));
    let upsertions = req
        .upsertions
        .iter()
        .map(|u| (u.name.to_string(), u.mechanism, Some(u)));
    for (user, mechanism, upsert) in deletions.chain(upsertions) {
        if !changes.contains_key(&user) {
            order.push(user.clone());
        }
        let entry = changes
            .entry(user.clone())
            .or_insert_with(|| Ok(Vec::new()));
        let checked = if !seen.insert((user.clone(), mechanism)) {
            Err(TopicError::new(
                ResponseError::DuplicateResource,
                "A user credential cannot be altered twice in the same request",
            ))
        } else {
            command(&user, mechanism, upsert).and_then(|cmd| exists_if_deleted(&state, cmd))
        };
        match (entry.as_mut(), checked) {
            (Ok(cmds), Ok(cmd)) => cmds.push(cmd),
            (Ok(_), Err(e)) => *entry = Err(e),
            (Err(_), _) => {}
        }
    }
    let mut results = Vec::with_capacity(order.len());
    for user in order {
        let outcome = match changes.remove(&user) {
            Some(Ok(cmds)) => apply_all(broker, cmds).await,
            Some(Err(e)) => Err(e),
            None => Ok(()),
        };
        let mut r = AlterUserScramCredentialsResult::default().with_user(str_bytes(&user));
        if let Err(e) = outcome {
            r = r
                .with_error_code(e.code.code())
                .with_error_message(Some(str_bytes(e.message)));
        }
        results.push(r);
    }
    Reply::now(ResponseKind::AlterUserScramCredentials(
        AlterUserScramCredentialsResponse::default().with_results(results),
    ))
}

/// The metadata command for one deletion (`upsert` None) or upsertion, checked as Kafka does.
fn command(
    user: &str,
    mechanism: i8,
    upsert: Option<
        &kafka_protocol::messages::alter_user_scram_credentials_request::ScramCredentialUpsertion,
    >,
) -> Result<MetadataCommand, TopicError> {
    let unacceptable = |msg: &str| TopicError::new(ResponseError::UnacceptableCredential, msg);
    if user.is_empty() {
        return Err(unacceptable("Username must not be empty"));
    }
    let mechanism = Mechanism::from_kafka_type(mechanism).ok_or_else(|| {
        TopicError::new(
            ResponseError::UnsupportedSaslMechanism,
            "Unknown SCRAM mechanism",
        )
    })?;
    let Some(u) = upsert else {
        return Ok(MetadataCommand::DeleteScramCredential {
            user: user.to_string(),
            mechanism,
        });
    };
    if u.iterations < MIN_ITERATIONS as i32 {
        return Err(unacceptable("Too few iterations"));
    }
    if u.iterations > MAX_ITERATIONS as i32 {
        return Err(unacceptable("Too many iterations"));
    }
    if u.salt.is_empty() {
        return Err(unacceptable("Salt must not be empty"));
    }
    if u.salted_password.len() != mechanism.hash_len() {
        return Err(unacceptable(
            "Salted password has the wrong length for the mechanism",
        ));
    }
    Ok(MetadataCommand::UpsertScramCredential {
        user: user.to_string(),
        mechanism,
        credential: ScramCredential::from_salted_password(
            mechanism,
            u.salt.to_vec(),
            &u.salted_password,
            u.iterations as u32,
        ),
    })
}

/// A deletion of a credential that does not exist is refused before anything is applied.
fn exists_if_deleted(
    state: &chronik_metadata::MetadataState,
    cmd: MetadataCommand,
) -> Result<MetadataCommand, TopicError> {
    match &cmd {
        MetadataCommand::DeleteScramCredential { user, mechanism }
            if state.scram_credential(user, *mechanism).is_none() =>
        {
            Err(TopicError::new(
                ResponseError::ResourceNotFound,
                "Attempt to delete a user credential that does not exist",
            ))
        }
        _ => Ok(cmd),
    }
}

/// Commits one user's changes in order, each applied on this node before the next (so a
/// login here right after the answer sees it); the first refusal stops the rest.
async fn apply_all(broker: &Arc<Broker>, cmds: Vec<MetadataCommand>) -> Result<(), TopicError> {
    for cmd in cmds {
        let (user, mechanism, want) = match &cmd {
            MetadataCommand::UpsertScramCredential {
                user,
                mechanism,
                credential,
            } => (user.clone(), *mechanism, Some(credential.clone())),
            MetadataCommand::DeleteScramCredential { user, mechanism } => {
                (user.clone(), *mechanism, None)
            }
            _ => continue,
        };
        broker
            .propose(cmd, |s| {
                s.scram_credential(&user, mechanism) == want.as_ref()
            })
            .await?;
    }
    Ok(())
}
