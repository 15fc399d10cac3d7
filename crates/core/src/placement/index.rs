//! What counts against each node, summed once: the CPU and memory its roles take, how many
//! roles it runs, and which anti-affinity classes they hold. Placing thousands of roles then
//! costs one look per node instead of a scan of every role per node; the manager keeps one
//! index up to date while it decides a whole tick.

use std::collections::{BTreeMap, BTreeSet};

use crate::NodeId;
use crate::capacity::Capacity;
use crate::role::RoleRecord;
use crate::state::ClusterState;

#[derive(Debug, Clone, Default)]
pub struct Index {
    nodes: BTreeMap<NodeId, NodeUse>,
}

#[derive(Debug, Clone, Default)]
struct NodeUse {
    /// Roles owned, being released, or migrating here.
    used: Capacity,
    /// Roles owned or being released here.
    load: usize,
    /// Anti-affinity class -> the roles holding it here (owned or being released).
    classes: BTreeMap<String, BTreeSet<String>>,
}

impl Index {
    pub fn of(state: &ClusterState) -> Self {
        let mut index = Self::default();
        for role in state.roles.values() {
            index.add(role);
        }
        index
    }

    pub fn add(&mut self, role: &RoleRecord) {
        self.count(role, true);
    }

    pub fn remove(&mut self, role: &RoleRecord) {
        self.count(role, false);
    }

    fn count(&mut self, role: &RoleRecord, add: bool) {
        let needs = role.spec.needs();
        for node in present(role) {
            let entry = self.nodes.entry(node).or_default();
            if add {
                entry.load += 1;
            } else {
                entry.load = entry.load.saturating_sub(1);
            }
            for class in &role.spec.anti_affinity {
                let holders = entry.classes.entry(class.clone()).or_default();
                if add {
                    holders.insert(role.spec.name.clone());
                } else {
                    holders.remove(&role.spec.name);
                }
            }
        }
        for node in counted(role) {
            let entry = self.nodes.entry(node).or_default();
            entry.used = if add { entry.used.plus(needs) } else { entry.used.minus(needs) };
        }
    }

    /// What every role counted against `node` takes of it.
    pub fn used_on(&self, node: NodeId) -> Capacity {
        self.nodes.get(&node).map(|n| n.used).unwrap_or_default()
    }

    /// What the roles other than `role` take of `node`.
    pub fn used(&self, node: NodeId, role: &RoleRecord) -> Capacity {
        let used = self.nodes.get(&node).map(|n| n.used).unwrap_or_default();
        if counted(role).any(|n| n == node) { used.minus(role.spec.needs()) } else { used }
    }

    /// How many roles other than `role` run (or are being released) on `node`.
    pub fn load(&self, node: NodeId, role: &RoleRecord) -> usize {
        let load = self.nodes.get(&node).map_or(0, |n| n.load);
        if present(role).any(|n| n == node) { load.saturating_sub(1) } else { load }
    }

    /// Another role on `node` sharing an anti-affinity class with `role`: its name and the class.
    pub fn neighbour(&self, node: NodeId, role: &RoleRecord) -> Option<(String, String)> {
        let classes = &self.nodes.get(&node)?.classes;
        role.spec.anti_affinity.iter().find_map(|class| {
            let other = classes.get(class)?.iter().find(|name| **name != role.spec.name)?;
            Some((other.clone(), class.clone()))
        })
    }
}

/// Nodes where the role counts for load and anti-affinity: its owner and the node releasing
/// it, each once. (No allocation: placement asks this for every node of every role.)
fn present(role: &RoleRecord) -> impl Iterator<Item = NodeId> + Clone {
    let owner = role.owner;
    owner.into_iter().chain(role.releasing.filter(|&r| Some(r) != owner))
}

/// Nodes where the role takes capacity: also a migration's target, which holds room for it.
fn counted(role: &RoleRecord) -> impl Iterator<Item = NodeId> + Clone {
    let target = role.migration.as_ref().map(|m| m.to).filter(|&to| !present(role).any(|n| n == to));
    present(role).chain(target)
}
