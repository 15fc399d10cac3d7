//! What a node should run, from the committed state alone: the executor's rules, pure, so the
//! daemon and the simulator apply the same ones. Whether the node holds a lease (and has
//! caught up with its grant) is the caller's half of the rule.

use crate::NodeId;
use crate::migration::MoveMode;
use crate::role::{Desired, RoleRecord, RoleState};
use crate::state::ClusterState;

/// `node` should run `role` under its current generation: it owns it, it is wanted started,
/// no previous owner still has to confirm it stopped, and it has not failed for good.
pub fn assigned(role: &RoleRecord, node: NodeId) -> bool {
    role.owner == Some(node)
        && role.spec.desired == Desired::Started
        && role.releasing.is_none()
        && role.state != RoleState::Failed
}

/// `node` runs `role`: it is assigned it, or resumes a guest migrated to it. A migration's
/// source need not confirm it stopped first: it reported the migration completed, so its copy
/// of the guest is paused for good (see ARCHITECTURE.md, S1).
pub fn runs(role: &RoleRecord, node: NodeId) -> bool {
    assigned(role, node)
        || (role.owner == Some(node)
            && role.spec.desired == Desired::Started
            && role.state != RoleState::Failed
            && role.resume.as_ref().is_some_and(|r| role.releasing == Some(r.from)))
}

/// `node` is the target of `role`'s live migration `id`, still under way: it may keep a QEMU
/// waiting (paused) for the guest.
pub fn receives(role: &RoleRecord, node: NodeId, id: u64) -> bool {
    role.spec.desired == Desired::Started
        && role.migration.as_ref().is_some_and(|m| m.id == id && m.to == node && m.mode == MoveMode::Live)
}

/// Migration `id` handed `role` to `node`: the QEMU that waited for the guest resumes it.
pub fn resumes_from(role: &RoleRecord, node: NodeId, id: u64) -> bool {
    runs(role, node) && role.resume.as_ref().is_some_and(|r| r.id == id)
}

/// The roles `role` displaces have left `node` (owned and released elsewhere, or gone), so
/// starting it there overcommits nothing.
pub fn room_made(state: &ClusterState, role: &RoleRecord, node: NodeId) -> bool {
    role.waits_for.iter().all(|w| state.roles.get(w).is_none_or(|r| r.owner != Some(node) && r.releasing != Some(node)))
}

/// `node` may start `role` now, as far as the committed state goes. Never while a migration
/// of it is recorded: the guest it would boot may already be on its way elsewhere (its
/// source lost its copy after reporting it sent, say), and the hand-over may still commit.
pub fn may_start(state: &ClusterState, role: &RoleRecord, node: NodeId) -> bool {
    runs(role, node) && room_made(state, role, node) && role.migration.is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::tests_support::{cluster, role};

    #[test]
    fn only_the_owner_runs_it_and_only_once_the_old_owner_and_the_displaced_left() {
        let mut s = cluster();
        let mut web = role("web");
        web.owner = Some(1);
        assert!(assigned(&web, 1));
        assert!(!assigned(&web, 2), "not the owner");
        web.releasing = Some(2);
        assert!(!assigned(&web, 1), "the old owner has not confirmed it stopped");
        web.releasing = None;
        web.spec.desired = Desired::Stopped;
        assert!(!assigned(&web, 1));
        web.spec.desired = Desired::Started;

        let mut low = role("low");
        low.releasing = Some(1);
        s.roles.insert("low".into(), low);
        web.waits_for = vec!["low".into()];
        assert!(assigned(&web, 1) && !may_start(&s, &web, 1), "waits for the displaced role");
        s.roles.get_mut("low").unwrap().releasing = None;
        assert!(may_start(&s, &web, 1));
    }
}
