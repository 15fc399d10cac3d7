//! Generations never go backwards, and a node runs a role only under a generation it has
//! seen committed. (Each node's applied copy is also checked entry by entry as it applies.)

use crate::world::World;

pub fn check(world: &mut World) {
    let mut broken = Vec::new();
    for node in world.nodes.iter().filter(|n| n.up) {
        for (name, &generation) in &node.running {
            let committed = node.state.roles.get(name).map_or(0, |r| r.generation);
            if generation > committed {
                broken.push(format!(
                    "generations: node {} runs {name} under generation {generation} > {committed}",
                    node.id
                ));
            }
        }
    }
    world.violations.extend(broken);
}
