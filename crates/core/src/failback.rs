//! Failback: a role going back to a node it prefers over the one it runs on. Decided here for
//! both ways it happens: by the policy, when the role's failback setting allows it now
//! ([`automatic`]), and on `halo node resume --failback`, asked by the admin ([`on_resume`]).

use crate::NodeId;
use crate::placement::{self, Index};
use crate::role::{MoveRequest, RoleRecord, RoleSpec, RoleState};
use crate::state::ClusterState;

/// The preferred nodes a role running on `owner` would rather run on, best first (none when
/// it runs on its first choice).
pub fn better_than<'a>(spec: &'a RoleSpec, owner: &str) -> impl Iterator<Item = &'a str> {
    spec.preferred.iter().take(spec.preference_rank(owner)).map(String::as_str)
}

/// Where the policy moves an online role that runs on `owner` now, if its failback setting
/// allows it at `now_ms`: the best preferred node above `owner` that can take it.
pub fn automatic(state: &ClusterState, index: &Index, role: &RoleRecord, owner: &str, now_ms: u64) -> Option<NodeId> {
    if role.state != RoleState::Online || !role.spec.failback.allows(now_ms) {
        return None;
    }
    better_than(&role.spec, owner).find_map(|name| {
        let candidate = state.node_by_name(name)?;
        placement::unfit_in(index, role, candidate, &[]).is_none().then_some(candidate.id)
    })
}

/// On `halo node resume NODE --failback`: the roles that run elsewhere and prefer `node` to
/// where they run, each with the move that takes it back (placement checks it like any move).
pub fn on_resume(state: &ClusterState, node: NodeId) -> Vec<(String, MoveRequest)> {
    let Some(name) = state.nodes.get(&node).map(|n| n.name.as_str()) else { return Vec::new() };
    state
        .roles
        .values()
        .filter_map(|role| {
            let owner = role.owner.filter(|&o| o != node)?;
            // A node gone from the database ranks after every preferred one.
            let owner_name = state.nodes.get(&owner).map_or("", |n| n.name.as_str());
            better_than(&role.spec, owner_name).any(|n| n == name).then(|| {
                let reason = format!("failback to preferred owner {name} after resume");
                (role.spec.name.clone(), MoveRequest { to: Some(node), reason, mode: None })
            })
        })
        .collect()
}
