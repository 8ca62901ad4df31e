//! The requests of Kafka's classic group protocol: JoinGroup, SyncGroup, Heartbeat and
//! LeaveGroup, as [`GroupManager`] methods over the group state in the parent module.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::{
    code, Group, GroupManager, JoinRequest, JoinResponse, Member, Reply, State, SyncResponse,
};

impl GroupManager {
    pub fn join(&mut self, req: JoinRequest, now: Instant) -> Reply<JoinResponse> {
        if req.group.is_empty() {
            return Reply::Now(JoinResponse::error(code::INVALID_GROUP_ID, &req.member_id));
        }
        if req.session_timeout < self.config.min_session_timeout
            || req.session_timeout > self.config.max_session_timeout
        {
            return Reply::Now(JoinResponse::error(
                code::INVALID_SESSION_TIMEOUT,
                &req.member_id,
            ));
        }
        let group_exists = self.groups.contains_key(&req.group);
        if !group_exists && !req.member_id.is_empty() {
            return Reply::Now(JoinResponse::error(code::UNKNOWN_MEMBER_ID, &req.member_id));
        }
        let new_id = if req.member_id.is_empty() {
            Some(Self::new_member_id(&req.client_id))
        } else {
            None
        };
        let limits = JoinLimits {
            delay: self.config.initial_rebalance_delay,
            max_members: self.config.max_members,
        };
        let group = self
            .groups
            .entry(req.group.clone())
            .or_insert_with(Group::new);
        if !group.supports(&req.protocol_type, &req.protocols) {
            return Reply::Now(JoinResponse::error(
                code::INCONSISTENT_GROUP_PROTOCOL,
                &req.member_id,
            ));
        }
        group.pending.retain(|_, until| *until > now);

        let joined = match (new_id, req.instance_id.clone()) {
            (Some(id), Some(instance)) if group.static_members.contains_key(&instance) => {
                group.rejoin_static(id, instance, &req, now, limits)
            }
            (Some(id), instance) => group.join_new(id, instance.is_some(), &req, now, limits),
            (None, _) => group.join_known(&req, now, limits),
        };
        let member_id = match joined {
            Joined::Wait(id) => id,
            Joined::Answer(answer) => return Reply::Now(answer),
        };
        let (tx, rx) = oneshot::channel();
        if let Some(m) = group.members.get_mut(&member_id) {
            if let Some(old) = m.join_waiter.replace(tx) {
                let _ = old.send(JoinResponse::error(code::REBALANCE_IN_PROGRESS, &member_id));
            }
        }
        group.try_complete_join(now);
        Reply::Wait(rx)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn sync(
        &mut self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        now: Instant,
    ) -> Reply<SyncResponse> {
        let Some(group) = self.groups.get_mut(group_id) else {
            return Reply::Now(SyncResponse::error(code::UNKNOWN_MEMBER_ID));
        };
        if let Err(e) = group.check_member(member_id, instance_id) {
            return Reply::Now(SyncResponse::error(e));
        }
        if generation != group.generation {
            return Reply::Now(SyncResponse::error(code::ILLEGAL_GENERATION));
        }
        if protocol_type.is_some_and(|t| Some(t) != group.protocol_type.as_deref())
            || protocol_name.is_some_and(|n| Some(n) != group.protocol.as_deref())
        {
            return Reply::Now(SyncResponse::error(code::INCONSISTENT_GROUP_PROTOCOL));
        }
        let ok = |g: &Group, a: Bytes| SyncResponse {
            error: code::NONE,
            protocol_type: g.protocol_type.clone(),
            protocol_name: g.protocol.clone(),
            assignment: a,
        };
        if let Some(m) = group.members.get_mut(member_id) {
            m.last_heartbeat = now;
        }
        match group.state {
            State::PreparingRebalance => {
                Reply::Now(SyncResponse::error(code::REBALANCE_IN_PROGRESS))
            }
            State::Empty => Reply::Now(SyncResponse::error(code::UNKNOWN_MEMBER_ID)),
            State::Stable => {
                let a = group.members[member_id].assignment.clone();
                Reply::Now(ok(group, a))
            }
            State::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                if let Some(m) = group.members.get_mut(member_id) {
                    if let Some(old) = m.sync_waiter.replace(tx) {
                        let _ = old.send(SyncResponse::error(code::REBALANCE_IN_PROGRESS));
                    }
                }
                if group.leader.as_deref() == Some(member_id) {
                    let mut by_member: HashMap<String, Bytes> = assignments.into_iter().collect();
                    for (id, m) in group.members.iter_mut() {
                        m.assignment = by_member.remove(id).unwrap_or_default();
                    }
                    group.state = State::Stable;
                    group.dirty = true;
                    let ids: Vec<String> = group.members.keys().cloned().collect();
                    for id in ids {
                        let resp = {
                            let m = &group.members[&id];
                            ok(group, m.assignment.clone())
                        };
                        if let Some(w) = group
                            .members
                            .get_mut(&id)
                            .and_then(|m| m.sync_waiter.take())
                        {
                            let _ = w.send(resp);
                        }
                    }
                }
                Reply::Wait(rx)
            }
        }
    }

    pub fn heartbeat(
        &mut self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> i16 {
        let Some(group) = self.groups.get_mut(group_id) else {
            return code::UNKNOWN_MEMBER_ID;
        };
        if let Err(e) = group.check_member(member_id, instance_id) {
            return e;
        }
        if let Some(m) = group.members.get_mut(member_id) {
            m.last_heartbeat = now;
        }
        match group.state {
            State::Empty => code::UNKNOWN_MEMBER_ID,
            State::PreparingRebalance => code::REBALANCE_IN_PROGRESS,
            State::CompletingRebalance | State::Stable if generation != group.generation => {
                code::ILLEGAL_GENERATION
            }
            _ => code::NONE,
        }
    }

    /// Removes members (by member id, or by instance id for static members). Returns the
    /// error for each, in order.
    pub fn leave(
        &mut self,
        group_id: &str,
        members: &[(String, Option<String>)],
        now: Instant,
    ) -> Vec<i16> {
        let delay = self.config.initial_rebalance_delay;
        let Some(group) = self.groups.get_mut(group_id) else {
            return vec![code::UNKNOWN_MEMBER_ID; members.len()];
        };
        let mut out = Vec::with_capacity(members.len());
        let mut removed = false;
        for (id, instance) in members {
            let id = match instance {
                Some(i) => match group.static_members.get(i) {
                    Some(current) if id.is_empty() || current == id => current.clone(),
                    Some(_) => {
                        out.push(code::FENCED_INSTANCE_ID);
                        continue;
                    }
                    None => {
                        out.push(code::UNKNOWN_MEMBER_ID);
                        continue;
                    }
                },
                None => id.clone(),
            };
            if !group.members.contains_key(&id) {
                out.push(code::UNKNOWN_MEMBER_ID);
                continue;
            }
            group.remove_member(&id);
            removed = true;
            out.push(code::NONE);
        }
        if removed {
            match group.state {
                State::Stable | State::CompletingRebalance => group.prepare_rebalance(now, delay),
                _ => {}
            }
            if group.members.is_empty() && group.state == State::PreparingRebalance {
                group.rebalance_deadline = Some(now);
            }
            group.try_complete_join(now);
        }
        out
    }
}

/// The broker settings a join checks against.
#[derive(Clone, Copy)]
struct JoinLimits {
    delay: Duration,
    max_members: usize,
}

/// A join's outcome.
enum Joined {
    /// The JoinGroup of this member id waits for the rebalance.
    Wait(String),
    /// The answer to send at once.
    Answer(JoinResponse),
}

impl Group {
    /// A static member coming back under a new member id (`id`): it takes over the old
    /// member's place; the old id is fenced.
    fn rejoin_static(
        &mut self,
        id: String,
        instance: String,
        req: &JoinRequest,
        now: Instant,
        limits: JoinLimits,
    ) -> Joined {
        let old = self.static_members[&instance].clone();
        let Some(mut m) = self.members.remove(&old) else {
            self.static_members.remove(&instance);
            return Joined::Answer(JoinResponse::error(code::UNKNOWN_MEMBER_ID, ""));
        };
        if let Some(w) = m.join_waiter.take() {
            let _ = w.send(JoinResponse::error(code::FENCED_INSTANCE_ID, &old));
        }
        if let Some(w) = m.sync_waiter.take() {
            let _ = w.send(SyncResponse::error(code::FENCED_INSTANCE_ID));
        }
        m.protocols = req.protocols.clone();
        m.session_timeout = req.session_timeout;
        m.rebalance_timeout = req.rebalance_timeout;
        m.client_id = req.client_id.clone();
        m.client_host = req.client_host.clone();
        m.last_heartbeat = now;
        self.members.insert(id.clone(), m);
        self.static_members.insert(instance, id.clone());
        if self.leader.as_deref() == Some(&old) {
            self.leader = Some(id.clone());
        }
        // As Kafka (updateStaticMemberAndRebalance): a Stable group rebalances only if
        // the rejoin changes the protocol it would select. The metadata bytes differ on
        // every rejoin (clients put their generation and owned partitions there), so
        // comparing them would rebalance, or park the join, every time.
        let keeps_protocol = self.select_protocol() == self.protocol;
        if self.state == State::Stable && keeps_protocol {
            // No rebalance: the member gets its old assignment from SyncGroup. A
            // returning leader must not assign again (KIP-814): v9+ says so with
            // skip_assignment; older versions name the old member id as leader, so
            // the client acts as a follower.
            let mut resp = self.join_response(&id);
            if self.leader.as_deref() == Some(&id) {
                if req.supports_skip_assignment {
                    resp.skip_assignment = true;
                } else {
                    resp.leader = old;
                    resp.members.clear();
                }
            }
            return Joined::Answer(resp);
        }
        match self.state {
            // Waits with the others: the rebalance under way completes it.
            State::PreparingRebalance => {}
            // Stable with a new selection, or after the join stage: the leader may
            // have been sent the old member id, whose assignment the new id would
            // never get, so everyone rejoins.
            _ => self.prepare_rebalance(now, limits.delay),
        }
        Joined::Wait(id)
    }

    /// A member without an id (`id` is the one it gets). A dynamic member of a client that
    /// requires a known member id (v4+) gets MEMBER_ID_REQUIRED first and joins with it.
    fn join_new(
        &mut self,
        id: String,
        is_static: bool,
        req: &JoinRequest,
        now: Instant,
        limits: JoinLimits,
    ) -> Joined {
        if !is_static && req.require_known_member_id {
            // Handed-out ids count against the bound too: joins that never come back
            // must not grow the group's memory without limit.
            if self.members.len() + self.pending.len() >= limits.max_members {
                return Joined::Answer(JoinResponse::error(code::GROUP_MAX_SIZE_REACHED, ""));
            }
            self.pending.insert(id.clone(), now + req.session_timeout);
            return Joined::Answer(JoinResponse::error(code::MEMBER_ID_REQUIRED, &id));
        }
        if self.members.len() >= limits.max_members {
            return Joined::Answer(JoinResponse::error(code::GROUP_MAX_SIZE_REACHED, ""));
        }
        add_member(self, &id, req, now);
        self.prepare_or_keep(now, limits.delay);
        Joined::Wait(id)
    }

    /// A join with a member id: one handed out with MEMBER_ID_REQUIRED, or a member's rejoin.
    fn join_known(&mut self, req: &JoinRequest, now: Instant, limits: JoinLimits) -> Joined {
        let id = req.member_id.clone();
        if !self.members.contains_key(&id) {
            if self.pending.remove(&id).is_none() {
                return Joined::Answer(JoinResponse::error(code::UNKNOWN_MEMBER_ID, &id));
            }
            if self.members.len() >= limits.max_members {
                return Joined::Answer(JoinResponse::error(code::GROUP_MAX_SIZE_REACHED, &id));
            }
            add_member(self, &id, req, now);
            self.prepare_or_keep(now, limits.delay);
            return Joined::Wait(id);
        }
        if let Err(e) = self.check_member(&id, req.instance_id.as_deref()) {
            return Joined::Answer(JoinResponse::error(e, &id));
        }
        let m = self.members.get_mut(&id).expect("checked");
        let changed = m.protocols != req.protocols;
        m.protocols = req.protocols.clone();
        m.session_timeout = req.session_timeout;
        m.rebalance_timeout = req.rebalance_timeout;
        m.last_heartbeat = now;
        // As Kafka: a known member rejoining with the same protocols just learns
        // the current generation, except the leader of a Stable group, whose
        // rejoin asks for a new assignment.
        let is_leader = self.leader.as_deref() == Some(id.as_str());
        match self.state {
            State::CompletingRebalance if !changed => {
                return Joined::Answer(self.join_response(&id))
            }
            State::Stable if !changed && !is_leader => {
                return Joined::Answer(self.join_response(&id))
            }
            State::PreparingRebalance => {}
            _ => self.prepare_rebalance(now, limits.delay),
        }
        Joined::Wait(id)
    }
}

fn add_member(group: &mut Group, id: &str, req: &JoinRequest, now: Instant) {
    if group.members.is_empty() {
        group.protocol_type = Some(req.protocol_type.clone());
    }
    if let Some(i) = &req.instance_id {
        group.static_members.insert(i.clone(), id.to_string());
    }
    group.members.insert(
        id.to_string(),
        Member {
            instance_id: req.instance_id.clone(),
            client_id: req.client_id.clone(),
            client_host: req.client_host.clone(),
            session_timeout: req.session_timeout,
            rebalance_timeout: req.rebalance_timeout,
            protocols: req.protocols.clone(),
            assignment: Bytes::new(),
            join_waiter: None,
            sync_waiter: None,
            last_heartbeat: now,
        },
    );
}
