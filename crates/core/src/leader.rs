//! The leader's tick, without I/O: whom this node succeeded when it took over, the node states
//! to commit and the Raft membership changes to make, and each node's liveness by the lease
//! rule with the fence-agent attempts it calls for. The agent's manager drives it with Raft's
//! metrics and the clock, the simulator with its model: both run this code. (The failover
//! policy itself is [`crate::policy::decide`], called by both on the state this produced.)

use std::collections::{BTreeMap, BTreeSet};

use crate::NodeId;
use crate::command::NodeStateUpdate;
use crate::former_leader::{self, LeaderId, VoterReport, Voters};
use crate::lease::Former;
use crate::liveness::{self, Observed, Takeover};
use crate::membership::{Assessment, judge};
use crate::policy::Liveness;
use crate::state::{ClusterState, NodeState};

/// A learner within this many entries of the leader counts as caught up.
pub const CAUGHT_UP_LAG: u64 = 10;

/// Who led, as this node saw it, carried from tick to tick.
#[derive(Debug, Clone, Default)]
pub struct Succession {
    /// While following: the leader, and since when this node has seen it lead.
    followed: Option<Followed>,
    /// While leading: who this node is as leader, when it took over (and from whom, once the
    /// voters said), and the leader it followed last before.
    leading: Option<(LeaderId, Takeover, Option<Followed>)>,
}

/// A leader this node followed, and since when (its clock).
type Followed = (LeaderId, u64);

impl Succession {
    /// Raft says `leader` leads, as node `me` sees it at `now_ms`. While `me` leads, returns
    /// its takeover: when it began to lead, and the leader it replaced once the voters named
    /// it ([`Self::hear_voters`]).
    pub fn observe(&mut self, me: NodeId, leader: Option<LeaderId>, now_ms: u64) -> Option<Takeover> {
        if let Some(l) = leader
            && l.node == me
        {
            if let Some((led, takeover, _)) = self.leading
                && led == l
            {
                return Some(takeover);
            }
            let takeover = Takeover { at_ms: now_ms, former: None };
            self.leading = Some((l, takeover, self.followed.take()));
            return Some(takeover);
        }
        self.leading = None;
        if let Some(l) = leader
            && self.followed.is_none_or(|(f, _)| f != l)
        {
            self.followed = Some((l, now_ms));
        }
        None
    }

    /// While leading: what the voters reported ([`former_leader::bound`]). If they name the
    /// leader this node followed last, the lease rule lets it recover that one's roles early
    /// ([`crate::lease::LeaseTiming::lost_at_former_leader`]). Once found, this holds for the
    /// rest of the leadership (the receipts it rests on are final).
    pub fn hear_voters(
        &mut self,
        voters: &Voters,
        reports: impl IntoIterator<Item = (NodeId, u64, VoterReport)>,
    ) -> Option<Takeover> {
        let (me, takeover, followed) = self.leading.as_mut()?;
        if takeover.former.is_none()
            && let Some((last, seen)) = *followed
            && let Some(bound) = former_leader::bound(voters, *me, reports)
            && bound.former == last
        {
            takeover.former = Some(Former { id: last.node, seen_leading_ms: seen, acked_by_ms: bound.acked_by_ms });
        }
        Some(*takeover)
    }
}

/// What Raft says of the membership, on the leader.
#[derive(Debug, Clone, Default)]
pub struct RaftMembers {
    pub voters: BTreeSet<NodeId>,
    /// Voters and learners.
    pub members: BTreeSet<NodeId>,
    /// How far each follower's log matches the leader's.
    pub matched: BTreeMap<NodeId, u64>,
    pub last_index: u64,
}

/// What the leader should do about its nodes this tick.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeJudgement {
    /// Node states to commit (`Command::SetNodeStates`).
    pub updates: Vec<NodeStateUpdate>,
    /// Admitted nodes Raft does not know yet (the previous leader crashed mid-admission, say).
    pub add_learners: Vec<NodeId>,
    /// Caught-up joining nodes to make voters; their state follows on a later tick.
    pub promote: Vec<NodeId>,
}

/// Judge every node from what the leader `me` hears of it (`assess`) and what Raft says.
pub fn judge_nodes(
    state: &ClusterState,
    me: NodeId,
    raft: &RaftMembers,
    assess: impl Fn(NodeId) -> Assessment,
) -> NodeJudgement {
    let mut out = NodeJudgement::default();
    for record in state.nodes.values() {
        let assessment = assess(record.id);
        let is_self = record.id == me;
        if !is_self && !raft.members.contains(&record.id) {
            out.add_learners.push(record.id);
            continue;
        }
        let (mut new_state, networks) = judge(record, &assessment, is_self);
        if record.state == NodeState::Joining && assessment.alive && assessment.ever_heard {
            let matched = raft.matched.get(&record.id).copied().unwrap_or(0);
            if matched + CAUGHT_UP_LAG >= raft.last_index {
                if record.voter && !raft.voters.contains(&record.id) {
                    out.promote.push(record.id);
                    continue;
                }
                new_state = NodeState::Up;
            }
        }
        let current: Vec<_> = record.networks.iter().map(|n| n.state).collect();
        if new_state != record.state || networks != current {
            out.updates.push(NodeStateUpdate { node: record.id, state: new_state, networks });
        }
    }
    out
}

/// Each node's liveness as the lease rule lets the leader see it, and what that asks of the
/// fence devices.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Verdicts {
    pub liveness: BTreeMap<NodeId, Liveness>,
    /// Nodes whose fence device should power them off now (an attempt, unless one is under
    /// way or just failed: the driver knows its attempts).
    pub fence: Vec<NodeId>,
    /// Nodes heard again: any fencing attempt about them is over.
    pub heard: Vec<NodeId>,
}

/// The verdict on every node by leader `me`. `observed` is what its heartbeat endpoint saw,
/// `confirmed_off` whether a fence agent confirmed a node's power-off.
pub fn verdicts(
    state: &ClusterState,
    me: NodeId,
    takeover: Takeover,
    now_ms: u64,
    observed: impl Fn(NodeId) -> Observed,
    confirmed_off: impl Fn(NodeId) -> Option<String>,
) -> Verdicts {
    let timing = state.settings.lease_timing();
    let mut out = Verdicts::default();
    for node in state.nodes.values() {
        let seen = observed(node.id);
        let has_device = state.fence_devices.contains_key(&node.id);
        let mut wants_fence = false;
        let fence = || {
            wants_fence = has_device;
            if has_device { confirmed_off(node.id) } else { None }
        };
        let verdict = liveness::verdict(node, me, &seen, &timing, takeover, now_ms, fence);
        if wants_fence {
            out.fence.push(node.id);
        }
        if verdict == Liveness::Alive && node.id != me {
            out.heard.push(node.id);
        }
        out.liveness.insert(node.id, verdict);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::tests_support::node;
    use crate::settings::ClusterSettings;
    use crate::state::FenceDevice;

    #[test]
    fn a_takeover_names_the_leader_followed_last_once_the_voters_confirm_it() {
        let (f, me) = (LeaderId { term: 4, node: 1 }, LeaderId { term: 5, node: 2 });
        let mut s = Succession::default();
        assert_eq!(s.observe(2, Some(f), 1_000), None);
        let t = s.observe(2, Some(me), 2_450).expect("leads");
        assert_eq!(t, Takeover { at_ms: 2_450, former: None }, "not before the voters said");
        assert_eq!(s.observe(2, Some(me), 2_550), Some(t), "the same leadership keeps its takeover");
        let voters = Voters { ids: BTreeSet::from([1, 2, 3]), uniform: true, logged_in_term: 1 };
        let report = |last, age_ms| VoterReport { vote: me, last: former_leader::LastAppend { leader: last, age_ms } };
        // Node 2 is a voter too: its own report counts (it took appends from the former leader).
        let bounded = s.hear_voters(&voters, [(2, 2_500, report(f, 200)), (3, 2_500, report(f, 300))]).expect("leads");
        assert_eq!(bounded.former, Some(Former { id: 1, seen_leading_ms: 1_000, acked_by_ms: 2_300 }));
        assert_eq!(s.hear_voters(&voters, []), Some(bounded), "kept for the leadership");
        assert_eq!(s.observe(2, Some(me), 2_600), Some(bounded));
        // Someone led in between as the voters saw it: nothing early.
        let mut s = Succession::default();
        s.observe(2, Some(f), 1_000);
        s.observe(2, Some(me), 2_450);
        let between = LeaderId { term: 5, node: 1 };
        let t = s.hear_voters(&voters, [(2, 2_500, report(between, 200)), (3, 2_500, report(f, 300))]);
        assert_eq!(t.and_then(|t| t.former), None);
        // Leading again later is a new takeover, even with no tick between.
        let again = s.observe(2, Some(LeaderId { term: 8, node: 2 }), 20_000).expect("leads");
        assert_eq!(again, Takeover { at_ms: 20_000, former: None });
    }

    fn cluster() -> ClusterState {
        let mut state = ClusterState { settings: ClusterSettings::default(), ..ClusterState::default() };
        for id in 1..=3 {
            state.nodes.insert(id, node(id, &format!("n{id}"), NodeState::Up));
        }
        state
    }

    fn heard(alive: bool) -> Assessment {
        Assessment { alive, ever_heard: true, networks: vec![alive], last_heard_ms: Some(1) }
    }

    #[test]
    fn nodes_are_judged_added_and_promoted() {
        let mut state = cluster();
        state.nodes.get_mut(&3).expect("n3").state = NodeState::Joining;
        let mut raft = RaftMembers {
            voters: BTreeSet::from([1, 2]),
            members: BTreeSet::from([1, 2]),
            matched: BTreeMap::from([(3, 95)]),
            last_index: 100,
        };
        // Node 3 is admitted but Raft does not know it; node 2 went silent.
        let j = judge_nodes(&state, 1, &raft, |id| heard(id != 2));
        assert_eq!(j.add_learners, vec![3]);
        assert_eq!(j.updates.len(), 1);
        assert_eq!((j.updates[0].node, j.updates[0].state), (2, NodeState::Down));
        // Once a caught-up learner, it is promoted; once a voter, it is up.
        raft.members.insert(3);
        let j = judge_nodes(&state, 1, &raft, |_| heard(true));
        assert_eq!((j.promote.clone(), j.updates.len()), (vec![3], 0));
        raft.voters.insert(3);
        let j = judge_nodes(&state, 1, &raft, |_| heard(true));
        assert_eq!(j.updates.iter().map(|u| (u.node, u.state)).collect::<Vec<_>>(), vec![(3, NodeState::Up)]);
        // Lagging behind: it stays joining.
        raft.matched.insert(3, 80);
        assert!(judge_nodes(&state, 1, &raft, |_| heard(true)).updates.is_empty());
    }

    #[test]
    fn verdicts_ask_for_fencing_only_with_a_device_and_take_its_confirmation() {
        let mut state = cluster();
        state.fence_devices.insert(2, FenceDevice { agent: "fence_x".into(), params: BTreeMap::new() });
        let takeover = Takeover { at_ms: 0, former: None };
        let silent = Observed { alive: false, ever_heard: true, last_heard_ms: Some(10_000), last_granted_ms: None };
        let seen = |id: NodeId| if id == 1 { Observed { alive: true, ..silent } } else { silent };
        let v = verdicts(&state, 1, takeover, 10_500, seen, |_| None);
        assert_eq!(v.fence, vec![2], "node 3 has no device");
        assert_eq!(v.liveness[&2], Liveness::Suspect);
        assert_eq!(v.liveness[&3], Liveness::Suspect);
        let v = verdicts(&state, 1, takeover, 10_500, seen, |id| (id == 2).then(|| "was powered off".to_string()));
        assert_eq!(v.liveness[&2], Liveness::Lost("was powered off".into()));
        let v = verdicts(&state, 1, takeover, 12_200, seen, |_| None);
        assert!(matches!(v.liveness[&3], Liveness::Lost(_)), "lost once its lease and margin passed");
        let v = verdicts(&state, 1, takeover, 10_500, |_| Observed { alive: true, ..silent }, |_| None);
        assert_eq!(v.heard, vec![2, 3]);
    }
}
