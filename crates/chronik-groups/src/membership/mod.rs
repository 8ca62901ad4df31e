//! Group membership with Kafka's classic protocol: join, sync, heartbeat, leave, rebalances,
//! session expiry and static members (group.instance.id).
//!
//! A group moves Empty → PreparingRebalance → CompletingRebalance → Stable, back to
//! PreparingRebalance whenever its membership or a member's protocols change. A rebalance
//! completes when every member has rejoined, or when the longest rebalance timeout passes
//! (members that did not rejoin are removed). The first join of an empty group waits
//! `initial_rebalance_delay` so that members starting together land in one generation.
//!
//! This is plain state: callers pass `now`, requests that must wait (JoinGroup, SyncGroup)
//! get a oneshot receiver, and [`GroupManager::tick`] drives the timers. Kafka error codes
//! are returned as numbers because they are the protocol's answer, not failures of this code.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

mod protocol;

/// Kafka error codes this module answers with: named here, numbered once, by kafka-protocol's
/// `ResponseError` (constants, so they can be match patterns).
pub mod code {
    use kafka_protocol::ResponseError as E;

    pub const NONE: i16 = 0;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = E::CoordinatorNotAvailable.code();
    pub const NOT_COORDINATOR: i16 = E::NotCoordinator.code();
    pub const ILLEGAL_GENERATION: i16 = E::IllegalGeneration.code();
    pub const INCONSISTENT_GROUP_PROTOCOL: i16 = E::InconsistentGroupProtocol.code();
    pub const INVALID_GROUP_ID: i16 = E::InvalidGroupId.code();
    pub const UNKNOWN_MEMBER_ID: i16 = E::UnknownMemberId.code();
    pub const INVALID_SESSION_TIMEOUT: i16 = E::InvalidSessionTimeout.code();
    pub const REBALANCE_IN_PROGRESS: i16 = E::RebalanceInProgress.code();
    pub const NON_EMPTY_GROUP: i16 = E::NonEmptyGroup.code();
    pub const GROUP_ID_NOT_FOUND: i16 = E::GroupIdNotFound.code();
    pub const MEMBER_ID_REQUIRED: i16 = E::MemberIdRequired.code();
    pub const GROUP_MAX_SIZE_REACHED: i16 = E::GroupMaxSizeReached.code();
    pub const FENCED_INSTANCE_ID: i16 = E::FencedInstanceId.code();
}

/// Broker-wide group settings (Kafka's group.* broker configs).
#[derive(Debug, Clone)]
pub struct GroupConfig {
    pub initial_rebalance_delay: Duration,
    pub min_session_timeout: Duration,
    pub max_session_timeout: Duration,
    /// Upper bound on members of one group (Kafka's group.max.size).
    pub max_members: usize,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            initial_rebalance_delay: Duration::from_millis(3000),
            min_session_timeout: Duration::from_millis(6000),
            max_session_timeout: Duration::from_millis(1_800_000),
            max_members: 1000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::PreparingRebalance => "PreparingRebalance",
            State::CompletingRebalance => "CompletingRebalance",
            State::Stable => "Stable",
        }
    }
}

/// A JoinGroup as the coordinator sees it.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub group: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    /// (name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    /// v4+: a new dynamic member first gets MEMBER_ID_REQUIRED and a member id.
    pub require_known_member_id: bool,
    /// v9+: the response can carry skip_assignment.
    pub supports_skip_assignment: bool,
}

#[derive(Debug, Clone, Default)]
pub struct JoinMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Debug, Clone, Default)]
pub struct JoinResponse {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Only for the leader: every member with its metadata for the chosen protocol.
    pub members: Vec<JoinMember>,
    /// v9: the leader must not compute a new assignment (a static member came back).
    pub skip_assignment: bool,
}

impl JoinResponse {
    fn error(error: i16, member_id: &str) -> JoinResponse {
        JoinResponse {
            error,
            generation: -1,
            member_id: member_id.to_string(),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct SyncResponse {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResponse {
    fn error(error: i16) -> SyncResponse {
        SyncResponse {
            error,
            ..Default::default()
        }
    }
}

/// An answer now, or one to wait for.
pub enum Reply<T> {
    Now(T),
    Wait(oneshot::Receiver<T>),
}

/// What DescribeGroups shows of a member.
#[derive(Debug, Clone)]
pub struct MemberDescription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

#[derive(Debug, Clone)]
pub struct GroupDescription {
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberDescription>,
}

/// Whether an OffsetCommit may go ahead for this group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitCheck {
    /// The group has no members: only simple commits (generation < 0) are allowed.
    NoMembers,
    /// A member of the current generation may commit.
    Allowed,
    /// Refused with this error code.
    Refused(i16),
}

struct Member {
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    join_waiter: Option<oneshot::Sender<JoinResponse>>,
    sync_waiter: Option<oneshot::Sender<SyncResponse>>,
    last_heartbeat: Instant,
}

impl Member {
    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

struct Group {
    state: State,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// group.instance.id → its current member id.
    static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with when they stop being valid.
    pending: HashMap<String, Instant>,
    rebalance_deadline: Option<Instant>,
    /// Its membership changed in a way worth recording in the log (a generation became
    /// Stable, or the group became Empty).
    dirty: bool,
    /// The current rebalance started from Empty and waits out the initial delay.
    initial_delay: bool,
}

impl Group {
    fn new() -> Group {
        Group {
            state: State::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending: HashMap::new(),
            rebalance_deadline: None,
            dirty: false,
            initial_delay: false,
        }
    }

    /// A protocol every member supports, by the members' summed preference.
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(p, _)| p == *n))
            })
            .collect();
        candidates
            .into_iter()
            .min_by_key(|n| {
                self.members
                    .values()
                    .map(|m| m.protocols.iter().position(|(p, _)| p == *n).unwrap_or(0))
                    .sum::<usize>()
            })
            .cloned()
    }

    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|(n, _)| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(p, _)| p == n))
            })
    }

    fn join_response(&self, member_id: &str) -> JoinResponse {
        let leader = self.leader.clone().unwrap_or_default();
        let protocol = self.protocol.clone().unwrap_or_default();
        let members = if leader == member_id {
            self.members
                .iter()
                .map(|(id, m)| JoinMember {
                    member_id: id.clone(),
                    instance_id: m.instance_id.clone(),
                    metadata: m.metadata_for(&protocol),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinResponse {
            error: code::NONE,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader,
            member_id: member_id.to_string(),
            members,
            skip_assignment: false,
        }
    }

    fn prepare_rebalance(&mut self, now: Instant, initial_delay: Duration) {
        if self.state == State::CompletingRebalance {
            for m in self.members.values_mut() {
                if let Some(w) = m.sync_waiter.take() {
                    let _ = w.send(SyncResponse::error(code::REBALANCE_IN_PROGRESS));
                }
            }
        }
        let longest = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or(Duration::ZERO);
        // The first join of an empty group waits the initial delay (bounded by the
        // rebalance timeout) for other members, even if everyone known has joined.
        self.initial_delay = self.state == State::Empty && !initial_delay.is_zero();
        let wait = if self.initial_delay {
            initial_delay.min(longest)
        } else {
            longest
        };
        self.state = State::PreparingRebalance;
        self.rebalance_deadline = Some(now + wait);
    }

    /// Completes the join phase if every member rejoined (after any initial delay) or the
    /// deadline passed; members that did not rejoin by then are removed.
    fn try_complete_join(&mut self, now: Instant) {
        if self.state != State::PreparingRebalance {
            return;
        }
        let deadline_passed = self.rebalance_deadline.is_none_or(|d| now >= d);
        let all_joined = self.members.values().all(|m| m.join_waiter.is_some());
        let in_initial_delay = self.initial_delay && !deadline_passed;
        if !(deadline_passed || (all_joined && !in_initial_delay)) {
            return;
        }
        let gone: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| m.join_waiter.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            self.remove_member(&id);
        }
        self.generation += 1;
        self.rebalance_deadline = None;
        if self.members.is_empty() {
            // The protocol type stays (as in Kafka's ClassicGroup): an empty consumer group is
            // still listed and described as "consumer", not as a simple group. The next first
            // member sets it again.
            self.state = State::Empty;
            self.protocol = None;
            self.leader = None;
            self.dirty = true;
            return;
        }
        self.protocol = self.select_protocol();
        if self
            .leader
            .as_ref()
            .is_none_or(|l| !self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.state = State::CompletingRebalance;
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let resp = self.join_response(&id);
            if let Some(m) = self.members.get_mut(&id) {
                m.last_heartbeat = now;
                m.assignment = Bytes::new();
                if let Some(w) = m.join_waiter.take() {
                    let _ = w.send(resp);
                }
            }
        }
    }

    fn remove_member(&mut self, id: &str) {
        if let Some(m) = self.members.remove(id) {
            if let Some(i) = &m.instance_id {
                if self.static_members.get(i).map(String::as_str) == Some(id) {
                    self.static_members.remove(i);
                }
            }
            if let Some(w) = m.join_waiter {
                let _ = w.send(JoinResponse::error(code::UNKNOWN_MEMBER_ID, id));
            }
            if let Some(w) = m.sync_waiter {
                let _ = w.send(SyncResponse::error(code::UNKNOWN_MEMBER_ID));
            }
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
    }

    /// Checks the member and its static identity; `Err` is the error code to answer.
    fn check_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), i16> {
        if let Some(i) = instance_id {
            match self.static_members.get(i) {
                Some(current) if current != member_id => return Err(code::FENCED_INSTANCE_ID),
                None if !member_id.is_empty() && self.members.contains_key(member_id) => {
                    return Err(code::FENCED_INSTANCE_ID)
                }
                _ => {}
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(code::UNKNOWN_MEMBER_ID);
        }
        Ok(())
    }
}

/// All groups this node coordinates.
pub struct GroupManager {
    config: GroupConfig,
    groups: HashMap<String, Group>,
}

impl GroupManager {
    pub fn new(config: GroupConfig) -> GroupManager {
        GroupManager {
            config,
            groups: HashMap::new(),
        }
    }

    /// Kafka's shape: the client id, a dash, a random UUID.
    fn new_member_id(client_id: &str) -> String {
        format!("{client_id}-{}", uuid::Uuid::new_v4())
    }

    /// Answers every parked JoinGroup and SyncGroup of the groups `which` selects with
    /// NOT_COORDINATOR (Kafka does this when a coordinator unloads a group): the clients look
    /// the coordinator up again instead of waiting for a rebalance this node will not finish.
    /// Used when the broker shuts down, whose timers stop first. Returns how many it answered.
    pub fn release_waiters(&mut self, which: impl Fn(&str) -> bool) -> usize {
        let mut n = 0;
        for (id, group) in self.groups.iter_mut() {
            if !which(id) {
                continue;
            }
            for (member_id, m) in group.members.iter_mut() {
                if let Some(w) = m.join_waiter.take() {
                    let _ = w.send(JoinResponse::error(code::NOT_COORDINATOR, member_id));
                    n += 1;
                }
                if let Some(w) = m.sync_waiter.take() {
                    let _ = w.send(SyncResponse::error(code::NOT_COORDINATOR));
                    n += 1;
                }
            }
        }
        n
    }

    /// Expires members whose session ran out and completes rebalances whose time has come.
    pub fn tick(&mut self, now: Instant) {
        let delay = self.config.initial_rebalance_delay;
        for group in self.groups.values_mut() {
            let expired: Vec<String> = group
                .members
                .iter()
                .filter(|(_, m)| {
                    // A member waiting in a join is judged by the rebalance deadline instead.
                    m.join_waiter.is_none() && now >= m.last_heartbeat + m.session_timeout
                })
                .map(|(id, _)| id.clone())
                .collect();
            if !expired.is_empty() {
                for id in &expired {
                    group.remove_member(id);
                }
                match group.state {
                    State::Stable | State::CompletingRebalance => {
                        group.prepare_rebalance(now, delay)
                    }
                    State::PreparingRebalance if group.members.is_empty() => {
                        group.rebalance_deadline = Some(now)
                    }
                    _ => {}
                }
            }
            group.pending.retain(|_, until| *until > now);
            group.try_complete_join(now);
        }
    }

    /// May an OffsetCommit from this member go ahead?
    pub fn check_commit(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> CommitCheck {
        let Some(group) = self.groups.get(group_id) else {
            return CommitCheck::NoMembers;
        };
        if group.state == State::Empty {
            return CommitCheck::NoMembers;
        }
        if group.state == State::CompletingRebalance {
            return CommitCheck::Refused(code::REBALANCE_IN_PROGRESS);
        }
        if let Err(e) = group.check_member(member_id, instance_id) {
            return CommitCheck::Refused(e);
        }
        if generation != group.generation {
            return CommitCheck::Refused(code::ILLEGAL_GENERATION);
        }
        CommitCheck::Allowed
    }

    /// (group id, protocol type, state) of every group with members or history.
    pub fn list(&self) -> Vec<(String, String, &'static str)> {
        let mut out: Vec<_> = self
            .groups
            .iter()
            .map(|(id, g)| {
                (
                    id.clone(),
                    g.protocol_type.clone().unwrap_or_default(),
                    g.state.name(),
                )
            })
            .collect();
        out.sort();
        out
    }

    pub fn describe(&self, group_id: &str) -> Option<GroupDescription> {
        let g = self.groups.get(group_id)?;
        let protocol = g.protocol.clone().unwrap_or_default();
        Some(GroupDescription {
            state: g.state.name(),
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol: protocol.clone(),
            members: g
                .members
                .iter()
                .map(|(id, m)| MemberDescription {
                    member_id: id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: m.metadata_for(&protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        })
    }

    /// Forgets an empty group's membership state. `Err` is NON_EMPTY_GROUP.
    pub fn delete(&mut self, group_id: &str) -> Result<bool, i16> {
        match self.groups.get(group_id) {
            Some(g) if !g.members.is_empty() => Err(code::NON_EMPTY_GROUP),
            Some(_) => {
                self.groups.remove(group_id);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Topics the members of a "consumer" group subscribe to (from their protocol metadata);
    /// None when the group has no members. Metadata that does not decode counts as
    /// subscribing to nothing.
    pub fn subscribed_topics(&self, group_id: &str) -> Option<std::collections::HashSet<String>> {
        use kafka_protocol::messages::ConsumerProtocolSubscription;
        use kafka_protocol::protocol::Decodable;
        let g = self.groups.get(group_id)?;
        if g.members.is_empty() {
            return None;
        }
        let mut out = std::collections::HashSet::new();
        if g.protocol_type.as_deref() != Some("consumer") {
            return Some(out);
        }
        let protocol = g.protocol.clone().unwrap_or_default();
        for m in g.members.values() {
            let mut meta = m.metadata_for(&protocol);
            if meta.len() < 2 {
                continue;
            }
            let version = i16::from_be_bytes([meta[0], meta[1]]);
            let _ = bytes::Buf::get_i16(&mut meta);
            if let Ok(sub) = ConsumerProtocolSubscription::decode(&mut meta, version.clamp(0, 3)) {
                out.extend(sub.topics.iter().map(|t| t.to_string()));
            }
        }
        Some(out)
    }

    /// Groups whose membership should be recorded now, with the record to write; clears the
    /// marks.
    pub fn take_dirty(&mut self) -> Vec<(String, crate::record::GroupRecord)> {
        let mut out = Vec::new();
        for (id, g) in self.groups.iter_mut() {
            if std::mem::take(&mut g.dirty) {
                out.push((id.clone(), snapshot(g)));
            }
        }
        out
    }

    /// Puts back a group from its latest record (on start): members get a fresh session to
    /// heartbeat in, so consumers carry on in their generation without a rebalance.
    pub fn restore(&mut self, group_id: &str, r: &crate::record::GroupRecord, now: Instant) {
        let mut g = Group::new();
        g.generation = r.generation;
        if !r.members.is_empty() {
            g.state = State::Stable;
            g.protocol_type = Some(r.protocol_type.clone());
            g.protocol = r.protocol.clone();
            g.leader = r.leader.clone();
            let protocol = r.protocol.clone().unwrap_or_default();
            for m in &r.members {
                if let Some(i) = &m.instance_id {
                    g.static_members.insert(i.clone(), m.member_id.clone());
                }
                let ms = |v: i32| Duration::from_millis(v.max(0) as u64);
                g.members.insert(
                    m.member_id.clone(),
                    Member {
                        instance_id: m.instance_id.clone(),
                        client_id: m.client_id.clone(),
                        client_host: m.client_host.clone(),
                        session_timeout: ms(m.session_timeout_ms),
                        rebalance_timeout: ms(m.rebalance_timeout_ms.max(m.session_timeout_ms)),
                        protocols: vec![(protocol.clone(), m.subscription.clone())],
                        assignment: m.assignment.clone(),
                        join_waiter: None,
                        sync_waiter: None,
                        last_heartbeat: now,
                    },
                );
            }
        }
        self.groups.insert(group_id.to_string(), g);
    }

    pub fn has_members(&self, group_id: &str) -> bool {
        self.groups
            .get(group_id)
            .is_some_and(|g| !g.members.is_empty())
    }
}

impl Group {
    /// A membership change: start a rebalance unless one is already under way.
    fn prepare_or_keep(&mut self, now: Instant, delay: Duration) {
        if self.state != State::PreparingRebalance {
            self.prepare_rebalance(now, delay);
        }
    }
}

fn snapshot(g: &Group) -> crate::record::GroupRecord {
    let protocol = g.protocol.clone().unwrap_or_default();
    crate::record::GroupRecord {
        protocol_type: g.protocol_type.clone().unwrap_or_default(),
        generation: g.generation,
        protocol: g.protocol.clone(),
        leader: g.leader.clone(),
        state_timestamp_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0),
        members: g
            .members
            .iter()
            .map(|(id, m)| crate::record::GroupMemberRecord {
                member_id: id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                rebalance_timeout_ms: m.rebalance_timeout.as_millis().min(i32::MAX as u128) as i32,
                session_timeout_ms: m.session_timeout.as_millis().min(i32::MAX as u128) as i32,
                subscription: m.metadata_for(&protocol),
                assignment: m.assignment.clone(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> GroupConfig {
        GroupConfig {
            initial_rebalance_delay: Duration::ZERO,
            ..GroupConfig::default()
        }
    }

    fn join_req(group: &str, member: &str, instance: Option<&str>) -> JoinRequest {
        JoinRequest {
            group: group.into(),
            member_id: member.into(),
            instance_id: instance.map(String::from),
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(30),
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"m"))],
            require_known_member_id: true,
            supports_skip_assignment: false,
        }
    }

    fn now_join(m: &mut GroupManager, r: JoinRequest, now: Instant) -> JoinResponse {
        match m.join(r, now) {
            Reply::Now(r) => r,
            Reply::Wait(mut rx) => rx.try_recv().expect("join should have completed"),
        }
    }

    #[test]
    fn release_waiters_answers_parked_joins_with_not_coordinator() {
        let mut m = GroupManager::new(cfg());
        let t0 = Instant::now();
        let a = now_join(&mut m, join_req("g", "", None), t0).member_id;
        assert_eq!(now_join(&mut m, join_req("g", &a, None), t0).error, 0);
        // A second member's join parks until the rebalance completes.
        let b = now_join(&mut m, join_req("g", "", None), t0).member_id;
        let Reply::Wait(mut rx) = m.join(join_req("g", &b, None), t0) else {
            panic!("the second join should wait for the rebalance");
        };
        assert!(rx.try_recv().is_err());
        assert_eq!(m.release_waiters(|g| g == "other"), 0);
        assert_eq!(m.release_waiters(|_| true), 1);
        assert_eq!(
            rx.try_recv().expect("answered").error,
            code::NOT_COORDINATOR
        );
    }

    #[test]
    fn two_members_join_sync_heartbeat_and_leave() {
        let mut m = GroupManager::new(cfg());
        let t0 = Instant::now();
        let r = now_join(&mut m, join_req("g", "", None), t0);
        assert_eq!(r.error, code::MEMBER_ID_REQUIRED);
        let a = r.member_id;
        let r = now_join(&mut m, join_req("g", &a, None), t0);
        assert_eq!(
            (r.error, r.generation, r.leader.as_str()),
            (0, 1, a.as_str())
        );
        assert_eq!(r.members.len(), 1);
        let Reply::Wait(mut rx) = m.sync(
            "g",
            &a,
            None,
            1,
            None,
            None,
            vec![(a.clone(), Bytes::from_static(b"A"))],
            t0,
        ) else {
            panic!()
        };
        assert_eq!(&rx.try_recv().unwrap().assignment[..], b"A");
        assert_eq!(m.heartbeat("g", &a, None, 1, t0), 0);
        assert_eq!(m.heartbeat("g", &a, None, 2, t0), code::ILLEGAL_GENERATION);
        assert_eq!(
            m.heartbeat("g", "nobody", None, 1, t0),
            code::UNKNOWN_MEMBER_ID
        );

        // A second member: the first learns of the rebalance from its heartbeat.
        let b = now_join(&mut m, join_req("g", "", None), t0).member_id;
        let Reply::Wait(mut b_join) = m.join(join_req("g", &b, None), t0) else {
            panic!()
        };
        assert_eq!(
            m.heartbeat("g", &a, None, 1, t0),
            code::REBALANCE_IN_PROGRESS
        );
        let r = now_join(&mut m, join_req("g", &a, None), t0);
        assert_eq!((r.generation, r.members.len()), (2, 2));
        assert_eq!(b_join.try_recv().unwrap().generation, 2);
        assert_eq!(
            m.check_commit("g", &a, None, 1),
            CommitCheck::Refused(code::REBALANCE_IN_PROGRESS)
        );

        assert_eq!(m.leave("g", &[(b.clone(), None)], t0), vec![0]);
        assert_eq!(
            m.leave("g", &[(b.clone(), None)], t0),
            vec![code::UNKNOWN_MEMBER_ID]
        );
        assert_eq!(m.delete("g"), Err(code::NON_EMPTY_GROUP));
    }

    #[test]
    fn sessions_expire_and_silent_members_are_dropped_at_the_deadline() {
        let mut m = GroupManager::new(cfg());
        let t0 = Instant::now();
        let a = now_join(&mut m, join_req("g", "", None), t0).member_id;
        now_join(&mut m, join_req("g", &a, None), t0);
        m.tick(t0 + Duration::from_secs(11));
        assert_eq!(m.describe("g").unwrap().state, "Empty");
        // Still a consumer group once empty.
        assert_eq!(m.describe("g").unwrap().protocol_type, "consumer");
        assert_eq!(
            m.list(),
            vec![("g".to_string(), "consumer".to_string(), "Empty")]
        );
        assert_eq!(m.check_commit("g", "", None, -1), CommitCheck::NoMembers);
        assert_eq!(m.delete("g"), Ok(true));
    }

    #[test]
    fn a_static_member_comes_back_without_a_rebalance() {
        let mut m = GroupManager::new(cfg());
        let t0 = Instant::now();
        let a = now_join(&mut m, join_req("g", "", Some("i-a")), t0);
        assert_eq!(a.generation, 1);
        let Reply::Wait(_rx) = m.sync(
            "g",
            &a.member_id,
            Some("i-a"),
            1,
            None,
            None,
            vec![(a.member_id.clone(), Bytes::from_static(b"P"))],
            t0,
        ) else {
            panic!()
        };
        // Restart: a new join with no member id but the same instance id; its subscription
        // metadata differs (clients put their generation and owned partitions there), which
        // must not matter while the selected protocol stays the same.
        let mut rejoin = join_req("g", "", Some("i-a"));
        rejoin.protocols = vec![("range".into(), Bytes::from_static(b"m, generation 1"))];
        let again = now_join(&mut m, rejoin, t0);
        assert_eq!((again.error, again.generation), (0, 1), "no new generation");
        assert_ne!(again.member_id, a.member_id);
        // Below v9 the returning leader is told the old id leads, so it does not reassign.
        assert_eq!(again.leader, a.member_id);
        assert!(again.members.is_empty() && !again.skip_assignment);
        // The old incarnation is fenced; the new one gets the old assignment.
        assert_eq!(
            m.heartbeat("g", &a.member_id, Some("i-a"), 1, t0),
            code::FENCED_INSTANCE_ID
        );
        let Reply::Now(s) = m.sync(
            "g",
            &again.member_id,
            Some("i-a"),
            1,
            None,
            None,
            vec![],
            t0,
        ) else {
            panic!()
        };
        assert_eq!(&s.assignment[..], b"P");
    }

    #[test]
    fn a_restored_group_carries_on_in_its_generation() {
        let mut m = GroupManager::new(cfg());
        let t0 = Instant::now();
        let a = now_join(&mut m, join_req("g", "", Some("i-a")), t0);
        let assignment = vec![(a.member_id.clone(), Bytes::from_static(b"P"))];
        let Reply::Wait(_rx) = m.sync(
            "g",
            &a.member_id,
            Some("i-a"),
            1,
            None,
            None,
            assignment,
            t0,
        ) else {
            panic!("the leader's sync completes the generation")
        };
        let dirty = m.take_dirty();
        assert_eq!(dirty.len(), 1, "becoming Stable is recorded");
        assert!(m.take_dirty().is_empty());
        // A new coordinator (a restarted broker) restores the record.
        let mut m2 = GroupManager::new(cfg());
        m2.restore("g", &dirty[0].1, t0);
        assert_eq!(m2.heartbeat("g", &a.member_id, Some("i-a"), 1, t0), 0);
        let Reply::Now(s) = m2.sync("g", &a.member_id, Some("i-a"), 1, None, None, vec![], t0)
        else {
            panic!("a Stable group answers SyncGroup at once")
        };
        assert_eq!(&s.assignment[..], b"P");
        assert_eq!(m2.describe("g").unwrap().state, "Stable");
    }

    #[test]
    fn an_empty_group_waits_the_initial_delay_every_time_it_forms() {
        let mut m = GroupManager::new(GroupConfig {
            initial_rebalance_delay: Duration::from_secs(3),
            ..GroupConfig::default()
        });
        let t0 = Instant::now();
        for round in 0..2u64 {
            let t = t0 + Duration::from_secs(100 * round);
            let mut r = join_req("g", "", None);
            r.require_known_member_id = false;
            let Reply::Wait(mut rx) = m.join(r, t) else {
                panic!("the first join waits")
            };
            m.tick(t + Duration::from_secs(1));
            assert!(
                rx.try_recv().is_err(),
                "round {round}: still in the initial delay"
            );
            m.tick(t + Duration::from_secs(3));
            let resp = rx.try_recv().expect("completed after the delay");
            assert_eq!(resp.generation, 1 + 2 * round as i32);
            assert_eq!(
                m.leave("g", &[(resp.member_id, None)], t + Duration::from_secs(4)),
                vec![0]
            );
            assert_eq!(m.describe("g").unwrap().state, "Empty");
        }
    }

    #[test]
    fn a_full_group_refuses_new_members_and_unfinished_joins_count() {
        let mut m = GroupManager::new(GroupConfig {
            max_members: 2,
            ..cfg()
        });
        let t0 = Instant::now();
        let a = now_join(&mut m, join_req("g", "", None), t0).member_id;
        let _b = now_join(&mut m, join_req("g", "", None), t0).member_id;
        // Two ids handed out and never used: the third join is refused.
        assert_eq!(
            now_join(&mut m, join_req("g", "", None), t0).error,
            code::GROUP_MAX_SIZE_REACHED
        );
        // Handed-out ids expire with the session timeout; then there is room again.
        now_join(&mut m, join_req("g", &a, None), t0);
        m.tick(t0 + Duration::from_secs(11));
        assert_eq!(
            now_join(
                &mut m,
                join_req("g", "", None),
                t0 + Duration::from_secs(11)
            )
            .error,
            code::MEMBER_ID_REQUIRED
        );
    }

    #[test]
    fn bad_joins_are_refused() {
        let mut m = GroupManager::new(cfg());
        let t0 = Instant::now();
        assert_eq!(
            now_join(&mut m, join_req("", "", None), t0).error,
            code::INVALID_GROUP_ID
        );
        let mut r = join_req("g", "", None);
        r.session_timeout = Duration::from_millis(10);
        assert_eq!(now_join(&mut m, r, t0).error, code::INVALID_SESSION_TIMEOUT);
        assert_eq!(
            now_join(&mut m, join_req("g2", "ghost", None), t0).error,
            code::UNKNOWN_MEMBER_ID
        );
        let a = now_join(&mut m, join_req("g", "", None), t0).member_id;
        now_join(&mut m, join_req("g", &a, None), t0);
        let mut other = join_req("g", "", None);
        other.protocols = vec![("roundrobin-only".into(), Bytes::new())];
        other.require_known_member_id = false;
        assert_eq!(
            now_join(&mut m, other, t0).error,
            code::INCONSISTENT_GROUP_PROTOCOL
        );
    }
}
