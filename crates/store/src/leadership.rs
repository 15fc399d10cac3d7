//! Raft's leadership in the decision core's words (`halo_core::former_leader`), so the agent
//! needs no openraft type to report its receipts or to weigh its voters' reports.

use halo_core::NodeId;
use halo_core::former_leader::{LeaderId, Voters};
use openraft::alias::VoteOf;
use openraft::vote::RaftLeaderId;

use crate::TypeConfig;

type Metrics = openraft::RaftMetrics<TypeConfig>;

/// The leader a vote is for (granted by a quorum or not).
pub fn leader_of(vote: &VoteOf<TypeConfig>) -> LeaderId {
    let id = vote.leader_id();
    LeaderId { term: id.term(), node: id.node_id }
}

/// This node's current vote.
pub fn vote(metrics: &Metrics) -> LeaderId {
    leader_of(&metrics.vote)
}

/// The leader this node follows or is, once a quorum granted it.
pub fn leader(metrics: &Metrics) -> Option<LeaderId> {
    let vote = &metrics.vote;
    let leader = leader_of(vote);
    (vote.is_committed() && metrics.current_leader == Some(leader.node)).then_some(leader)
}

/// The voters of the effective membership, as `former_leader::bound` needs them.
pub fn voters(metrics: &Metrics) -> Voters {
    let stored = &metrics.membership_config;
    let joint = stored.membership().get_joint_config();
    Voters {
        ids: stored.membership().voter_ids().collect::<std::collections::BTreeSet<NodeId>>(),
        uniform: joint.len() == 1,
        logged_in_term: stored.log_id().as_ref().map_or(0, |log_id| log_id.committed_leader_id().term()),
    }
}
