//! L1: after the faults stop and the cluster has had time to heal, every started role is
//! online, on exactly one node, the one the database names; a manual-priority role held after
//! a loss runs nowhere and waits, offline, for the admin.

use halo_core::role::RoleState;

use crate::world::World;

pub fn check(world: &mut World) {
    let Some(leader) = world.leader else {
        world.violations.push("L1: no leader after the faults stopped".into());
        return;
    };
    let state = world.nodes[leader as usize - 1].state.clone();
    let mut broken = Vec::new();
    for role in state.roles.values() {
        let running: Vec<u64> =
            world.nodes.iter().filter(|n| n.running.contains_key(&role.spec.name)).map(|n| n.id).collect();
        // A manual-priority role lost after the admin's last start waits for the next one.
        if role.held {
            if !running.is_empty() || role.state != RoleState::Offline {
                broken.push(format!(
                    "L1: held role {} is {} and runs on {running:?}",
                    role.spec.name,
                    role.state.as_str()
                ));
            }
            continue;
        }
        if role.state != RoleState::Online
            || role.owner.is_none()
            || running != role.owner.into_iter().collect::<Vec<_>>()
        {
            broken.push(format!(
                "L1: role {} is {} ({}), owner {:?}, releasing {:?}, generation {}, running on {running:?}",
                role.spec.name,
                role.state.as_str(),
                role.detail,
                role.owner,
                role.releasing,
                role.generation
            ));
        }
    }
    world.violations.extend(broken);
}
