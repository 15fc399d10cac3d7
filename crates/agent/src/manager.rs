//! The manager runs on the Raft leader. It turns what the failure detector observes into
//! committed node states, brings admitted nodes into the Raft membership, and commits the
//! failover policy's decisions about roles (`halo_core::policy`), feeding it each node's
//! liveness by the lease rule. Every decision is committed before anyone acts on it; a new
//! leader resumes from the log.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use halo_core::command::{Command, NodeStateUpdate};
use halo_core::liveness::{self, Takeover};
use halo_core::membership::judge;
use halo_core::policy::{self, Inputs, Liveness};
use halo_core::state::NodeState;
use halo_store::PeerNode;
use halo_store::openraft::ChangeMembers;

use crate::clock;
use crate::runtime::{Agent, Member};

const TICK: Duration = Duration::from_millis(100);
/// A learner within this many entries of the leader counts as caught up.
const CAUGHT_UP_LAG: u64 = 10;

pub async fn run(agent: Arc<Agent>) {
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // When this node last became leader: the lease rule makes a new leader wait before it
    // recovers anything (grants of the previous leader may still be running).
    let mut leader_since: Option<Takeover> = None;
    // While following: the leader, its term, and since when this node has seen it lead.
    let mut followed: Option<(u64, u64, u64)> = None;
    loop {
        ticker.tick().await;
        let Some(member) = agent.member().cloned() else { continue };
        let metrics = member.metrics();
        if !member.is_leader() {
            leader_since = None;
            if let Some(leader) = metrics.current_leader.filter(|&l| l != member.id)
                && followed.is_none_or(|(l, term, _)| (l, term) != (leader, metrics.current_term))
            {
                followed = Some((leader, metrics.current_term, clock::monotonic_ms()));
            }
            continue;
        }
        let takeover = *leader_since.get_or_insert_with(|| {
            let at_ms = clock::monotonic_ms();
            let tenure = member.reader.state().settings.lease_timing().former_leader_min_tenure_ms();
            // Only the leader of the term right before ours (no leader between that could
            // have granted it a lease), seen leading long enough (no older grant left).
            let former = followed
                .take()
                .filter(|&(_, term, seen)| term + 1 == metrics.current_term && seen + tenure <= at_ms)
                .map(|(id, _, _)| id);
            Takeover { at_ms, former }
        });
        if let Err(e) = tick(&agent, &member).await {
            tracing::debug!("manager: {e}");
        }
        if let Err(e) = decide_roles(&agent, &member, takeover).await {
            tracing::debug!("manager: {e}");
        }
    }
}

/// Each role owner's liveness as the lease rule allows the leader to see it.
fn liveness(
    agent: &Agent,
    member: &Member,
    state: &halo_core::state::ClusterState,
    takeover: Takeover,
) -> BTreeMap<u64, Liveness> {
    let now = clock::monotonic_ms();
    let timing = state.settings.lease_timing();
    let mut out = BTreeMap::new();
    for node in state.nodes.values() {
        let seen = agent.heartbeats().observed(node.id, now);
        let device = state.fence_devices.get(&node.id);
        let fence = || device.and_then(|d| agent.fencing.confirmed_off(node.id, &node.name, d, now));
        let verdict = liveness::verdict(node, member.id, &seen, &timing, takeover, now, fence);
        if verdict == Liveness::Alive && node.id != member.id {
            // Heard again: any fencing attempt about it is over.
            agent.fencing.heard(node.id);
        }
        out.insert(node.id, verdict);
    }
    out
}

async fn decide_roles(agent: &Agent, member: &Member, takeover: Takeover) -> Result<(), crate::error::ApiError> {
    let state = member.reader.state();
    if state.roles.is_empty() {
        return Ok(());
    }
    let liveness = liveness(agent, member, &state, takeover);
    let commands = policy::decide(&Inputs { state: &state, liveness: &liveness, now_ms: clock::wall_ms() });
    for command in commands {
        if let Command::DecideRole(d) = &command
            && let Some(decision) = &d.decision
        {
            tracing::info!(role = %d.role, generation = d.generation, "{}", decision.summary);
        }
        agent.write_as_leader(member, command).await?;
    }
    // A fenced node whose roles have all been recovered may have leases again.
    let state = member.reader.state();
    for node in liveness::fenced_and_recovered(&state, &liveness) {
        tracing::warn!(node, "fenced; its roles were recovered, it may hold leases again");
        agent.write_as_leader(member, Command::ClearFenceRequest { node }).await?;
    }
    Ok(())
}

async fn tick(agent: &Agent, member: &Member) -> Result<(), crate::error::ApiError> {
    let state = member.reader.state();
    if state.cluster.is_none() {
        return Ok(());
    }
    let now = clock::monotonic_ms();
    let metrics = member.metrics();
    let membership = metrics.membership_config.membership().clone();
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let last_index = metrics.last_log_index.unwrap_or(0);
    let replication = metrics.replication.clone().unwrap_or_default();

    let mut updates = Vec::new();
    for record in state.nodes.values() {
        let assessment = agent.heartbeats().assess(record.id, now);
        let is_self = record.id == member.id;

        // Admitted but not in Raft yet (e.g. the previous leader crashed mid-admission).
        if !is_self && membership.get_node(&record.id).is_none() {
            let _ = member.raft.add_learner(record.id, PeerNode::of(record), false).await;
            continue;
        }

        let (mut new_state, networks) = judge(record, &assessment, is_self);
        if record.state == NodeState::Joining && assessment.alive && assessment.ever_heard {
            let matched = replication.get(&record.id).cloned().flatten().map_or(0, |l| l.index);
            if matched + CAUGHT_UP_LAG >= last_index {
                if record.voter && !voters.contains(&record.id) {
                    // Promotion commits a membership change; the state change follows next tick.
                    let change = ChangeMembers::AddVoterIds(BTreeSet::from([record.id]));
                    if let Err(e) = member.raft.change_membership(change, true).await {
                        tracing::warn!("promoting {} to voter failed: {e}", record.name);
                    }
                    continue;
                }
                new_state = NodeState::Up;
            }
        }
        let current_networks: Vec<_> = record.networks.iter().map(|n| n.state).collect();
        if new_state != record.state || networks != current_networks {
            updates.push(NodeStateUpdate { node: record.id, state: new_state, networks });
        }
    }
    if !updates.is_empty() {
        for u in &updates {
            if let Some(r) = state.nodes.get(&u.node) {
                tracing::info!(node = %r.name, from = r.state.as_str(), to = u.state.as_str(), "node state");
            }
        }
        agent.write_as_leader(member, Command::SetNodeStates { now_ms: clock::wall_ms(), updates }).await?;
    }
    Ok(())
}
