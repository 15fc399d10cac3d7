//! Placement: which node should run a role. A pure function of the cluster state.
//!
//! Filter (runs roles, up, possible owner, not excluded, hard anti-affinity, CPU and memory
//! left), then score
//! (preferred-owner order, soft anti-affinity, load) with the node id as the final tie-break,
//! so every leader computes the same answer. Every node gets a sentence saying why it was
//! chosen or not; those sentences are what `halo role why` prints.

mod index;

pub use index::Index;

use crate::NodeId;
use crate::capacity;
use crate::command::Rejection;
use crate::migration::MoveMode;
use crate::role::{Priority, RoleRecord, RoleState};
use crate::state::{ClusterState, NodeRecord, NodeState};

#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    pub node: Option<NodeId>,
    pub reasons: Vec<String>,
}

/// Why `node` cannot run `role`, if it cannot. `exclude` carries nodes ruled out by the caller
/// (a lost owner, a node being drained) with the reason to show.
pub fn unfit(
    state: &ClusterState,
    role: &RoleRecord,
    node: &NodeRecord,
    exclude: &[(NodeId, String)],
) -> Option<String> {
    unfit_in(&Index::of(state), role, node, exclude)
}

/// [`unfit`], with what counts against each node already summed in `index`.
pub fn unfit_in(index: &Index, role: &RoleRecord, node: &NodeRecord, exclude: &[(NodeId, String)]) -> Option<String> {
    let spec = &role.spec;
    if node.witness {
        return Some("is a witness".into());
    }
    if let Some((_, why)) = exclude.iter().find(|(id, _)| *id == node.id) {
        return Some(why.clone());
    }
    match node.state {
        NodeState::Up => {}
        other => return Some(format!("is {}", other.as_str())),
    }
    if node.fence_request.is_some() {
        return Some("is being fenced".into());
    }
    if !spec.possible.is_empty() && !spec.possible.contains(&node.name) {
        return Some("is not a possible owner".into());
    }
    if role.failed_on.contains(&node.id) {
        return Some("the role failed there beyond its restart policy".into());
    }
    if !spec.anti_affinity_soft
        && let Some((other, class)) = index.neighbour(node.id, role)
    {
        return Some(format!("runs {other}, which shares anti-affinity class '{class}'"));
    }
    if let Some(total) = node.capacity
        && let Some(short) = capacity::shortfall(total, index.used(node.id, role), spec.needs())
    {
        return Some(short);
    }
    None
}

/// Choose a node for `role`.
pub fn place(state: &ClusterState, role: &RoleRecord, exclude: &[(NodeId, String)]) -> Placement {
    place_in(state, &Index::of(state), role, exclude)
}

/// On clusters bigger than this, a placement's reasons name the best few eligible nodes and
/// group the rest (`halo role why` stays readable, and a tick placing thousands of roles does
/// not write a line per node for each).
const REASONS_PER_NODE_UP_TO: usize = 16;
const ELIGIBLE_SHOWN: usize = 5;

/// [`place`], with what counts against each node already summed in `index`.
pub fn place_in(state: &ClusterState, index: &Index, role: &RoleRecord, exclude: &[(NodeId, String)]) -> Placement {
    let spec = &role.spec;
    let mut unfit = Vec::new();
    // (preferred rank, soft anti-affinity conflicts, load, id): lower is better.
    let mut scored = Vec::new();
    for node in state.nodes.values() {
        if let Some(why) = unfit_in(index, role, node, exclude) {
            unfit.push((node, why));
            continue;
        }
        let rank = spec.preference_rank(&node.name);
        let soft = if spec.anti_affinity_soft { index.neighbour(node.id, role).map_or(0, |_| 1) } else { 0 };
        scored.push(((rank, soft, index.load(node.id, role), node.id), node));
    }
    scored.sort_by_key(|(key, _)| *key);
    let chosen = scored.first().map(|((.., id), _)| *id);
    let summarise = state.nodes.len() > REASONS_PER_NODE_UP_TO;
    let mut reasons = Vec::new();
    if summarise {
        let mut by_reason: std::collections::BTreeMap<&str, Vec<&str>> = std::collections::BTreeMap::new();
        for (node, why) in &unfit {
            by_reason.entry(why.as_str()).or_default().push(node.name.as_str());
        }
        for (why, names) in by_reason {
            let more = names.len().saturating_sub(ELIGIBLE_SHOWN);
            let shown = names[..names.len().min(ELIGIBLE_SHOWN)].join(", ");
            let more = if more > 0 { format!(" and {more} more") } else { String::new() };
            reasons.push(format!("{shown}{more}: {why}"));
        }
    } else {
        reasons.extend(unfit.iter().map(|(node, why)| format!("{}: {why}", node.name)));
    }
    let shown = if summarise { ELIGIBLE_SHOWN } else { scored.len() };
    for ((rank, soft, load, id), node) in scored.iter().take(shown) {
        let mut words = Vec::new();
        if *rank != usize::MAX {
            words.push(format!("preferred owner #{}", rank + 1));
        }
        if *soft > 0 {
            words.push("shares a soft anti-affinity class".to_string());
        }
        words.push(format!("runs {load} other role(s)"));
        let verdict = if Some(*id) == chosen { "chosen" } else { "eligible" };
        reasons.push(format!("{}: {verdict}; {}", node.name, words.join(", ")));
    }
    if scored.len() > shown {
        reasons.push(format!("{} more eligible node(s), less preferred or busier", scored.len() - shown));
    }
    Placement { node: chosen, reasons }
}

/// Room made on a node for a high-priority role by displacing lower-priority ones.
#[derive(Debug, Clone, PartialEq)]
pub struct Displacement {
    pub node: NodeId,
    /// The roles to stop there, least important first.
    pub displaced: Vec<String>,
    pub reasons: Vec<String>,
}

/// Whether a role of `priority` may push `victim` off a node: high-priority roles may displace
/// low and manual ones, nothing else displaces anything.
pub fn may_displace(priority: Priority, victim: &RoleRecord) -> bool {
    priority == Priority::High && victim.spec.priority >= Priority::Low && !victim.handing_over()
}

/// Where `role` could run if lower-priority roles made room, and which: the node with the best
/// preferred rank, then the fewest roles displaced, then the lowest id. Only roles that stand
/// in its way go, the least important first.
pub fn displace(state: &ClusterState, role: &RoleRecord, exclude: &[(NodeId, String)]) -> Option<Displacement> {
    let spec = &role.spec;
    let mut best: Option<((usize, usize, NodeId), Vec<String>)> = None;
    for node in state.nodes.values() {
        let mut victims: Vec<&RoleRecord> = state
            .roles
            .values()
            .filter(|r| r.spec.name != spec.name && r.owner == Some(node.id) && may_displace(spec.priority, r))
            .collect();
        if victims.is_empty() {
            continue;
        }
        let mut trial = state.clone();
        for victim in &victims {
            if let Some(r) = trial.roles.get_mut(&victim.spec.name) {
                r.owner = None;
            }
        }
        if unfit(&trial, role, node, exclude).is_some() {
            continue;
        }
        // Keep every role that can stay, the most important first.
        victims.sort_by_key(|r| (r.spec.priority, r.spec.name.clone()));
        let mut displaced = Vec::new();
        for victim in victims {
            if let Some(r) = trial.roles.get_mut(&victim.spec.name) {
                r.owner = Some(node.id);
            }
            if unfit(&trial, role, node, exclude).is_some() {
                if let Some(r) = trial.roles.get_mut(&victim.spec.name) {
                    r.owner = None;
                }
                displaced.push(victim.spec.name.clone());
            }
        }
        let rank = spec.preference_rank(&node.name);
        let key = (rank, displaced.len(), node.id);
        if best.as_ref().is_none_or(|(k, _)| key < *k) {
            best = Some((key, displaced));
        }
    }
    let ((_, _, node), mut displaced) = best?;
    displaced.reverse();
    let name = &state.nodes[&node].name;
    let mut reasons = place(state, role, exclude).reasons;
    reasons.push(format!("{name}: chosen; room made by displacing {} (lower priority)", displaced.join(", ")));
    Some(Displacement { node, displaced, reasons })
}

/// Whether the admin's move of `record` (to `to`, or wherever placement picks; live, quick
/// or cold) can be asked for now: the target fits, no migration is under way, and a live or
/// quick move has a running guest (and, quick, shared storage) to move.
pub fn check_move(
    state: &ClusterState,
    record: &RoleRecord,
    to: Option<NodeId>,
    mode: Option<MoveMode>,
) -> Result<(), Rejection> {
    let role = &record.spec.name;
    let owner = record.owner.ok_or_else(|| Rejection::RoleNotRunning(role.clone()))?;
    let cannot =
        |node: &str, reason: String| Rejection::CannotMove { role: role.clone(), node: node.to_string(), reason };
    if let Some(target) = to {
        let node = state.nodes.get(&target).ok_or(Rejection::UnknownNodeId(target))?;
        let why =
            if target == owner { Some("it already runs there".to_string()) } else { unfit(state, record, node, &[]) };
        if let Some(reason) = why {
            return Err(cannot(&node.name, reason));
        }
    }
    let target_name = to.and_then(|t| state.nodes.get(&t)).map_or("another node", |n| n.name.as_str());
    if let Some(m) = &record.migration {
        let other = state.nodes.get(&m.to).map_or_else(|| m.to.to_string(), |n| n.name.clone());
        return Err(cannot(target_name, format!("it is being migrated to {other}; wait for that to end")));
    }
    if matches!(mode, Some(MoveMode::Live | MoveMode::Quick)) {
        crate::migration::migratable(&record.spec).map_err(|e| cannot(target_name, e))?;
        if record.state != RoleState::Online || record.releasing.is_some() {
            return Err(cannot(
                target_name,
                format!("its guest is not running ({}: {}); use --mode cold", record.state.as_str(), record.detail),
            ));
        }
        if mode == Some(MoveMode::Quick) && state.settings.shared_storage.is_empty() {
            return Err(cannot(
                target_name,
                "quick migration saves the guest's state on shared storage, and none is configured \
                 (`halo cluster set shared_storage=PATH`)"
                    .into(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;
    use crate::role::{ResourceSpec, RoleSpec};
    use crate::state::{NetworkRecord, NetworkState};

    pub fn node(id: NodeId, name: &str, state: NodeState) -> NodeRecord {
        NodeRecord {
            id,
            name: name.into(),
            api: format!("127.0.0.{id}:7400"),
            networks: vec![NetworkRecord { address: format!("127.0.0.{id}:7401"), state: NetworkState::Up }],
            state,
            witness: false,
            voter: true,
            joined_at_ms: 0,
            state_since_ms: 0,
            drain: false,
            capacity: None,
            fence_request: None,
            data_disk_low: None,
        }
    }

    pub fn role(name: &str) -> RoleRecord {
        let spec = RoleSpec {
            name: name.into(),
            resources: vec![ResourceSpec {
                secret_params: Default::default(),
                name: "main".into(),
                kind: crate::resource_kind::ResourceKind::Process,
                params: [("command".to_string(), "sleep 1000".to_string())].into(),
                restart: Default::default(),
                timeouts: Default::default(),
                agent_timeouts: Default::default(),
            }],
            preferred: vec![],
            possible: vec![],
            anti_affinity: vec![],
            anti_affinity_soft: false,
            priority: Default::default(),
            failover: Default::default(),
            failback: Default::default(),
            desired: Default::default(),
            cpu_milli: 0,
            memory_mb: 0,
        };
        RoleRecord::new(spec, 0)
    }

    pub fn cluster() -> ClusterState {
        let mut s = ClusterState::default();
        for (id, name) in [(1, "a"), (2, "b"), (3, "c")] {
            s.nodes.insert(id, node(id, name, NodeState::Up));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::*;
    use super::*;

    fn own(s: &mut ClusterState, mut r: RoleRecord, owner: NodeId) {
        r.owner = Some(owner);
        s.roles.insert(r.spec.name.clone(), r);
    }

    #[test]
    fn preferred_order_then_load_then_id() {
        let mut s = cluster();
        let mut r = role("web");
        r.spec.preferred = vec!["c".into(), "b".into()];
        assert_eq!(place(&s, &r, &[]).node, Some(3));
        s.nodes.get_mut(&3).unwrap().state = NodeState::Down;
        let p = place(&s, &r, &[]);
        assert_eq!(p.node, Some(2));
        assert!(p.reasons.contains(&"c: is down".to_string()), "{:?}", p.reasons);

        // No preference: least loaded, then lowest id.
        let plain = role("db");
        own(&mut s, role("x"), 1);
        assert_eq!(place(&s, &plain, &[]).node, Some(2));
    }

    #[test]
    fn possible_owners_paused_witness_and_exclusions_filter() {
        let mut s = cluster();
        let mut r = role("web");
        r.spec.possible = vec!["a".into(), "b".into()];
        s.nodes.get_mut(&1).unwrap().state = NodeState::Paused;
        let p = place(&s, &r, &[(2, "lost its lease".into())]);
        assert_eq!(p.node, None);
        assert!(p.reasons.contains(&"a: is paused".to_string()));
        assert!(p.reasons.contains(&"b: lost its lease".to_string()));
        assert!(p.reasons.contains(&"c: is not a possible owner".to_string()));
        s.nodes.get_mut(&3).unwrap().witness = true;
        assert_eq!(unfit(&s, &role("x"), &s.nodes[&3], &[]), Some("is a witness".into()));
    }

    #[test]
    fn hard_anti_affinity_is_a_rule_soft_a_preference() {
        let mut s = cluster();
        let mut first = role("db1");
        first.spec.anti_affinity = vec!["db".into()];
        own(&mut s, first, 1);
        let mut second = role("db2");
        second.spec.anti_affinity = vec!["db".into()];
        second.spec.preferred = vec!["a".into()];
        let p = place(&s, &second, &[]);
        assert_eq!(p.node, Some(2));
        assert!(p.reasons.iter().any(|r| r.starts_with("a: runs db1")), "{:?}", p.reasons);

        second.spec.anti_affinity_soft = true;
        second.spec.preferred = vec![];
        // Soft: a free node wins over a shared one even with less load there.
        own(&mut s, role("other1"), 2);
        own(&mut s, role("other2"), 3);
        assert_ne!(place(&s, &second, &[]).node, Some(1));

        // With no room left, hard anti-affinity leaves the role unplaced.
        let mut third = role("db3");
        third.spec.anti_affinity = vec!["db".into()];
        let mut s2 = cluster();
        s2.nodes.remove(&3);
        let mut a = role("db1");
        a.spec.anti_affinity = vec!["db".into()];
        own(&mut s2, a, 1);
        let mut b = role("db2");
        b.spec.anti_affinity = vec!["db".into()];
        own(&mut s2, b, 2);
        assert_eq!(place(&s2, &third, &[]).node, None);
    }

    #[test]
    fn capacity_filters_and_says_what_is_short() {
        let mut s = cluster();
        let node = s.nodes.get_mut(&1).unwrap();
        node.capacity = Some(crate::capacity::Capacity { cpu_milli: 2000, memory_mb: 1024 });
        let mut big = role("big");
        big.spec.cpu_milli = 1500;
        own(&mut s, big, 1);
        let mut r = role("web");
        r.spec.preferred = vec!["a".into()];
        r.spec.cpu_milli = 1000;
        let p = place(&s, &r, &[]);
        assert_eq!(p.node, Some(2), "nodes without a declared capacity are not limited");
        assert!(p.reasons.contains(&"a: needs 1 CPU, only 0.5 of 2 free".to_string()), "{:?}", p.reasons);
        r.spec.cpu_milli = 500;
        assert_eq!(place(&s, &r, &[]).node, Some(1));
    }
}
