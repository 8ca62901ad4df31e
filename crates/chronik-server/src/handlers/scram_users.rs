//! DescribeUserScramCredentials and AlterUserScramCredentials (KIP-554): SCRAM users, kept
//! in the Raft metadata as salted credentials. The client salts and iterates the password
//! itself and sends SaltedPassword; the broker derives StoredKey and ServerKey from it and
//! stores those, so no password reaches the broker or the disk.
//!
//! As Kafka: one result per user, in request order; a user named twice in one request gets
//! DUPLICATE_RESOURCE; a change is checked before it is applied.

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
                &format!("Attempt to describe a user credential that does not exist: {user}"),
            )
        });
    }
    Reply::now(ResponseKind::DescribeUserScramCredentials(
        DescribeUserScramCredentialsResponse::default().with_results(results),
    ))
}

pub async fn alter(broker: &Arc<Broker>, req: AlterUserScramCredentialsRequest) -> Reply {
    let state = broker.metadata();
    let deletions = req
        .deletions
        .iter()
        .map(|d| (d.name.to_string(), d.mechanism, None));
    let upsertions = req
        .upsertions
        .iter()
        .map(|u| (u.name.to_string(), u.mechanism, Some(u)));
    // Each user's change, in the order users first appear. As Kafka 4.4 (measured): a deletion
    // of a credential that does not exist is reported first; otherwise a user named more than
    // once gets DUPLICATE_RESOURCE; nothing of a refused user is applied.
    let mut order: Vec<String> = Vec::new();
    let mut changes: BTreeMap<String, Result<MetadataCommand, TopicError>> = BTreeMap::new();
    for (user, mechanism, upsert) in deletions.chain(upsertions) {
        let checked =
            command(&user, mechanism, upsert).and_then(|cmd| exists_if_deleted(&state, cmd));
        match changes.get_mut(&user) {
            None => {
                order.push(user.clone());
                changes.insert(user, checked);
            }
            Some(entry) => {
                let deletion_missing = |r: &Result<_, TopicError>| matches!(r, Err(e) if e.code == ResponseError::ResourceNotFound);
                if !deletion_missing(entry) {
                    *entry = if deletion_missing(&checked) {
                        checked
                    } else {
                        Err(TopicError::new(
                            ResponseError::DuplicateResource,
                            "A user credential cannot be altered twice in the same request",
                        ))
                    };
                }
            }
        }
    }
    let mut results = Vec::with_capacity(order.len());
    for user in order {
        let outcome = match changes.remove(&user) {
            Some(Ok(cmd)) => commit(broker, cmd).await,
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

/// Commits one change, applied on this node before the answer (so a login here right after
/// it sees it).
async fn commit(broker: &Arc<Broker>, cmd: MetadataCommand) -> Result<(), TopicError> {
    let (user, mechanism, want) = match &cmd {
        MetadataCommand::UpsertScramCredential {
            user,
            mechanism,
            credential,
        } => (user.clone(), *mechanism, Some(credential.clone())),
        MetadataCommand::DeleteScramCredential { user, mechanism } => {
            (user.clone(), *mechanism, None)
        }
        _ => return Ok(()),
    };
    broker
        .propose(cmd, |s| {
            s.scram_credential(&user, mechanism) == want.as_ref()
        })
        .await?;
    Ok(())
}
