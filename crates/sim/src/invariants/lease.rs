//! A node without a lease runs nothing: its fence guard has killed every workload by the end
//! of the step in which the lease ran out, paused agent or not.

use crate::world::World;

pub fn check(world: &mut World) {
    let t = world.time;
    let broken: Vec<String> = world
        .nodes
        .iter()
        .filter(|n| n.up && !n.running.is_empty() && !n.lease_valid(t))
        .map(|n| format!("lease: node {} runs {:?} without a lease", n.id, n.running.keys().collect::<Vec<_>>()))
        .collect();
    world.violations.extend(broken);
}
