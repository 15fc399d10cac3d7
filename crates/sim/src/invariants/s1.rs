//! S1: a role never runs on two nodes at once. Workloads are what the nodes actually run (the
//! guard's view), not what the database says: two live instances at any step is a violation.

use std::collections::BTreeMap;

use crate::world::World;

pub fn check(world: &mut World) {
    let mut where_running: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for node in world.nodes.iter().filter(|n| n.up) {
        for name in node.running.keys() {
            where_running.entry(name.as_str()).or_default().push(node.id);
        }
    }
    let broken: Vec<String> = where_running
        .into_iter()
        .filter(|(_, nodes)| nodes.len() > 1)
        .map(|(role, nodes)| format!("S1: role {role} runs on nodes {nodes:?} at once"))
        .collect();
    world.violations.extend(broken);
}
