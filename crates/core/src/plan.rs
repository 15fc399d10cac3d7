//! `halo plan --fail N`: what would happen if node N died now. Runs the real failover policy on
//! a copy of the state in which N is lost, and adds the worst-case time before each moved role
//! runs again, from the cluster's timing. Changes nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::NodeId;
use crate::policy::{self, Inputs, Liveness};
use crate::state::{ClusterState, NodeState};

/// Timing the worst case depends on besides the lease (Raft's).
#[derive(Debug, Clone, Copy)]
pub struct PlanTiming {
    /// Longest time to elect a new leader after the leader dies.
    pub election_ms: u64,
    /// The lease grant window (see `lease::LeaseTiming`).
    pub grant_window_ms: u64,
}

impl PlanTiming {
    pub fn of(settings: &crate::settings::ClusterSettings) -> Self {
        // Pre-vote and Raft's leader lease make an election take up to two election timeouts.
        Self {
            election_ms: 2 * settings.raft.election_timeout_max_ms,
            grant_window_ms: settings.lease_timing().grant_window_ms,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct PlannedRecovery {
    pub role: String,
    pub from: String,
    /// Where it would run; none if no node could take it.
    pub to: Option<String>,
    /// Why there, or why nowhere.
    pub reasons: Vec<String>,
    /// The longest it could take until the role is started elsewhere.
    pub worst_case_ms: Option<u64>,
}

/// Roles `node` runs and where each would go if `node` were lost; `leader` is the current one.
pub fn fail(state: &ClusterState, node: NodeId, leader: Option<NodeId>, timing: PlanTiming) -> Vec<PlannedRecovery> {
    let mut after = state.clone();
    if let Some(n) = after.nodes.get_mut(&node) {
        n.state = NodeState::Down;
    }
    let liveness: BTreeMap<NodeId, Liveness> = [(node, Liveness::Lost("would be lost".into()))].into_iter().collect();
    for command in policy::decide(&Inputs { state: &after, liveness: &liveness, now_ms: 0 }) {
        after.apply(&command);
    }
    let s = &state.settings;
    // Silence, then the lease (+margin); a new leader first waits a grant window and a lease
    // from its election, which itself waits for the old leader's silence to be noticed.
    let recovery_ms = if leader == Some(node) {
        timing.election_ms + timing.grant_window_ms + s.lease_ms + s.lease_margin_ms
    } else {
        s.lease_ms + s.lease_margin_ms
    };
    let name = |id: NodeId| state.nodes.get(&id).map_or_else(|| id.to_string(), |n| n.name.clone());
    state
        .roles
        .values()
        .filter(|r| r.owner == Some(node))
        .map(|r| {
            let moved = &after.roles[&r.spec.name];
            // Processes start at once; an OCF resource may take up to its start timeout.
            let start_ms: u64 = r
                .spec
                .resources
                .iter()
                .filter(|res| res.kind.is_ocf())
                .map(|res| res.effective_timeouts().start())
                .sum();
            let to = moved.owner.filter(|&o| o != node);
            PlannedRecovery {
                role: r.spec.name.clone(),
                from: name(node),
                to: to.map(name),
                reasons: moved.decisions.last().map(|d| d.reasons.clone()).unwrap_or_default(),
                worst_case_ms: to.map(|_| recovery_ms + start_ms),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::tests_support::{cluster, role};

    #[test]
    fn the_plan_names_targets_and_changes_nothing() {
        let mut s = cluster();
        for (name, owner) in [("web", 1), ("db", 1), ("other", 2)] {
            let mut r = role(name);
            r.owner = Some(owner);
            r.generation = 1;
            if name == "db" {
                r.spec.possible = vec!["a".into()];
            }
            s.roles.insert(name.into(), r);
        }
        let before = s.clone();
        let timing = PlanTiming { election_ms: 1800, grant_window_ms: 450 };
        let plan = fail(&s, 1, Some(2), timing);
        assert_eq!(s, before, "planning changes nothing");
        assert_eq!(plan.len(), 2);
        let web = plan.iter().find(|p| p.role == "web").unwrap();
        assert_eq!((web.to.as_deref(), web.worst_case_ms), (Some("c"), Some(2200)), "b runs another role");
        let db = plan.iter().find(|p| p.role == "db").unwrap();
        assert_eq!((db.to.as_deref(), db.worst_case_ms), (None, None));
        assert!(db.reasons.iter().any(|r| r.contains("not a possible owner")), "{:?}", db.reasons);
        let as_leader = fail(&s, 1, Some(1), timing);
        assert_eq!(as_leader.iter().find(|p| p.role == "web").unwrap().worst_case_ms, Some(1800 + 450 + 2200));
    }
}
