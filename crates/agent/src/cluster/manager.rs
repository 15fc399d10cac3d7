//! The manager runs on the Raft leader. It turns what the failure detector observes into
//! committed node states, brings admitted nodes into the Raft membership, and commits the
//! failover policy's decisions about roles (`halo_core::policy`), feeding it each node's
//! liveness by the lease rule. What to decide is `halo_core::leader` (the simulator runs the
//! same); this file reads Raft's metrics and the clock, makes the Raft calls, commits, and runs
//! fence agents. Every decision is committed before anyone acts on it; a new leader resumes
//! from the log.

use std::sync::Arc;
use std::time::{Duration, Instant};

use halo_core::command::Command;
use halo_core::leader::{self, RaftMembers, Succession};
use halo_core::liveness::{self, Takeover};
use halo_core::policy::{self, Inputs};
use halo_store::PeerNode;

use crate::clock;
use crate::cluster::agent::{Agent, Member};

const TICK: Duration = Duration::from_millis(100);

pub async fn run(agent: Arc<Agent>) {
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut succession = Succession::default();
    // The takeover whose former leader was last logged.
    let mut told_former = None;
    let mut complaint = Complaint::default();
    loop {
        ticker.tick().await;
        let Some(member) = agent.member().cloned() else { continue };
        let raft = member.consensus.status();
        let leader = raft.granted_leader.filter(|l| l.node != member.id || raft.leading);
        let now = clock::monotonic_ms();
        if succession.observe(member.id, leader, now).is_none() {
            continue;
        }
        // The voters' reports, this node's own among them, may name whom it replaced.
        let own = member.voter_report().map(|report| (member.id, now, report));
        let reports: Vec<_> = agent.heartbeats().voter_reports().chain(own).collect();
        let Some(takeover) = succession.hear_voters(&raft.voters_now, reports) else { continue };
        if let Some(former) = takeover.former
            && told_former != Some(takeover.at_ms)
        {
            told_former = Some(takeover.at_ms);
            let state = member.reader.state();
            let name = state.nodes.get(&former.id).map_or_else(|| format!("node {}", former.id), |n| n.name.clone());
            let ends = former.acked_by_ms.min(takeover.at_ms) + state.settings.lease_timing().leader_lease_ms();
            tracing::info!(
                "took over from {name}: by the voters' reports its own lease ends {:+} ms from the takeover",
                ends as i64 - takeover.at_ms as i64
            );
        }
        let failed = tick(&agent, &member).await.err().or(decide_roles(&agent, &member, takeover).await.err());
        complaint.tell(failed.map(|e| e.to_string()), Instant::now());
    }
}

/// A leader that cannot commit its decisions says so at warn: once when it starts failing or
/// the reason changes, again every `REPEAT` while it goes on, and once when it recovers.
#[derive(Default)]
struct Complaint {
    last: Option<(String, Instant)>,
}

const REPEAT: Duration = Duration::from_secs(10);

impl Complaint {
    fn tell(&mut self, failure: Option<String>, now: Instant) {
        match (failure, &self.last) {
            (None, None) => {}
            (None, Some(_)) => {
                tracing::info!("manager: decisions are committed again");
                self.last = None;
            }
            (Some(why), Some((said, at))) if *said == why && now.duration_since(*at) < REPEAT => {}
            (Some(why), _) => {
                tracing::warn!("manager: cannot commit its decisions: {why}");
                self.last = Some((why, now));
            }
        }
    }
}

async fn decide_roles(agent: &Agent, member: &Member, takeover: Takeover) -> Result<(), crate::error::AgentError> {
    let state = member.reader.state();
    if state.roles.is_empty() {
        return Ok(());
    }
    let now = clock::monotonic_ms();
    let verdicts = {
        let heartbeats = agent.heartbeats();
        leader::verdicts(
            &state,
            member.id,
            takeover,
            now,
            |id| heartbeats.observed(id, now),
            |id| agent.fencing.confirmed(id),
        )
    };
    for id in &verdicts.heard {
        agent.fencing.heard(*id);
    }
    for id in &verdicts.fence {
        if let (Some(node), Some(device)) = (state.nodes.get(id), state.fence_devices.get(id)) {
            agent.fencing.attempt(*id, &node.name, device, now);
        }
    }
    let commands = policy::decide(&Inputs { state: &state, liveness: &verdicts.liveness, now_ms: clock::wall_ms() });
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
    for node in liveness::fenced_and_recovered(&state, &verdicts.liveness) {
        tracing::warn!(node, "fenced; its roles were recovered, it may hold leases again");
        agent.write_as_leader(member, Command::ClearFenceRequest { node }).await?;
    }
    Ok(())
}

async fn tick(agent: &Agent, member: &Member) -> Result<(), crate::error::AgentError> {
    let state = member.reader.state();
    if state.cluster.is_none() {
        return Ok(());
    }
    let now = clock::monotonic_ms();
    let status = member.consensus.status();
    let raft = RaftMembers {
        voters: status.voters.clone(),
        members: state.nodes.keys().copied().filter(|id| status.members.contains(id)).collect(),
        matched: status
            .replication
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(id, index)| Some((id, index?)))
            .collect(),
        last_index: status.last_log_index,
    };
    let judgement = {
        let heartbeats = agent.heartbeats();
        leader::judge_nodes(&state, member.id, &raft, |id| heartbeats.assess(id, now))
    };
    for id in judgement.add_learners {
        if let Some(record) = state.nodes.get(&id) {
            let _ = member.consensus.add_learner(id, PeerNode::of(record)).await;
        }
    }
    for id in judgement.promote {
        // Promotion commits a membership change; the state change follows next tick.
        if let Err(e) = member.consensus.promote(id).await {
            tracing::warn!("promoting node {id} to voter failed: {e}");
        }
    }
    if !judgement.updates.is_empty() {
        for u in &judgement.updates {
            if let Some(r) = state.nodes.get(&u.node) {
                tracing::info!(node = %r.name, from = r.state.as_str(), to = u.state.as_str(), "node state");
            }
        }
        let command = Command::SetNodeStates { now_ms: clock::wall_ms(), updates: judgement.updates };
        agent.write_as_leader(member, command).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_leader_complains_once_again_after_a_while_and_when_it_recovers() {
        let t0 = Instant::now();
        let mut c = Complaint::default();
        c.tell(None, t0);
        assert!(c.last.is_none());
        c.tell(Some("no quorum".into()), t0);
        let first = c.last.clone().expect("said");
        c.tell(Some("no quorum".into()), t0 + Duration::from_secs(1));
        assert_eq!(c.last, Some(first.clone()), "not repeated within {REPEAT:?}");
        c.tell(Some("no quorum".into()), t0 + REPEAT);
        assert_eq!(c.last.as_ref().map(|l| l.1), Some(t0 + REPEAT), "repeated after {REPEAT:?}");
        c.tell(Some("timeout".into()), t0 + REPEAT + Duration::from_secs(1));
        assert_eq!(c.last.as_ref().map(|l| l.0.as_str()), Some("timeout"), "a new reason is said at once");
        c.tell(None, t0 + REPEAT * 2);
        assert!(c.last.is_none(), "recovered");
    }
}
