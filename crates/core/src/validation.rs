//! Cluster validation (`halo validate`): checks with stable ids, each with a result, a
//! plain-words explanation and a suggested fix. What can be judged from the cluster database
//! alone is judged here, purely: quorum (what failures the cluster survives) and roles (can
//! every role run, and still run after the loss of any one node). Facts only the nodes can
//! gather (software, networks, shared storage) are probed by the agents and judged next to
//! these. Validation never changes anything.

use serde::{Deserialize, Serialize};

use crate::placement;
use crate::plan::{self, PlanTiming};
use crate::quorum;
use crate::state::{ClusterState, NodeState, validate_settings};
use crate::vm::{self, VmSpec};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    // Ordered by weight: a report's result is its worst check, and a skipped check weighs least.
    Skipped,
    Pass,
    Warning,
    Fail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Inventory,
    Network,
    Storage,
    Quorum,
    Roles,
}

impl Category {
    pub fn title(self) -> &'static str {
        match self {
            Category::Inventory => "Inventory",
            Category::Network => "Network",
            Category::Storage => "Storage",
            Category::Quorum => "Quorum",
            Category::Roles => "Roles",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Check {
    /// Stable across releases: scripts and reports refer to it.
    pub id: String,
    pub category: Category,
    pub title: String,
    pub outcome: Outcome,
    /// What was found, in plain words.
    pub explanation: String,
    /// What to do about it; empty when nothing needs doing.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub fix: String,
}

fn check(id: &str, category: Category, title: &str, outcome: Outcome, explanation: String, fix: &str) -> Check {
    Check { id: id.into(), category, title: title.into(), outcome, explanation, fix: fix.into() }
}

/// The worst outcome of `checks` (Pass when there are none; skipped checks do not count
/// against a pass).
pub fn worst(checks: &[Check]) -> Outcome {
    checks.iter().map(|c| c.outcome).max().unwrap_or(Outcome::Pass)
}

/// Every check the cluster database allows.
pub fn judge(state: &ClusterState, timing: PlanTiming) -> Vec<Check> {
    let mut out = quorum_checks(state);
    out.extend(role_checks(state, timing));
    out
}

pub fn quorum_checks(state: &ClusterState) -> Vec<Check> {
    use Category::Quorum;
    let voters: Vec<_> = state.nodes.values().filter(|n| n.voter).collect();
    let witnesses = voters.iter().filter(|n| n.witness).count();
    let n = voters.len();
    let majority = quorum::majority(n);
    let survives = n.saturating_sub(majority);
    let mut out = vec![check(
        "quorum.votes",
        Quorum,
        "Votes and majority",
        if n == 0 { Outcome::Fail } else { Outcome::Pass },
        format!(
            "{n} vote{} ({} node{}{}); a majority is {majority}.",
            if n == 1 { "" } else { "s" },
            n - witnesses,
            if n - witnesses == 1 { "" } else { "s" },
            if witnesses > 0 { format!(" and {witnesses} witness") } else { String::new() },
        ),
        "",
    )];
    let even_without_witness = n > 0 && n % 2 == 0 && witnesses == 0;
    let (outcome, fix) = if even_without_witness {
        let outcome = if survives == 0 { Outcome::Fail } else { Outcome::Warning };
        (outcome, "Add a witness (`halo agent --witness` on a small third machine, then join it): it breaks the tie.")
    } else {
        (Outcome::Pass, "")
    };
    out.push(check(
        "quorum.witness",
        Quorum,
        "A witness for an even number of voters",
        outcome,
        if even_without_witness {
            format!("{n} voters and no witness: a split down the middle leaves no side with a majority.")
        } else if witnesses > 0 {
            format!("{n} votes including the witness: an odd count, a split always leaves one side a majority.")
        } else {
            format!("{n} voter{}: an odd count, no witness needed.", if n == 1 { "" } else { "s" })
        },
        fix,
    ));
    let (outcome, fix) = match (n, survives) {
        (0, _) => (Outcome::Fail, "Create the cluster first."),
        (1, _) => (Outcome::Warning, "Join at least two more nodes (or one and a witness)."),
        (_, 0) => (Outcome::Fail, "Add a voter or a witness so that one failure leaves a majority."),
        _ => (Outcome::Pass, ""),
    };
    out.push(check(
        "quorum.tolerance",
        Quorum,
        "Failures the cluster survives",
        outcome,
        match n {
            0 => "The cluster has no voters.".into(),
            1 => "A single voter: the cluster keeps running only while that node does; there is no failover.".into(),
            _ => format!(
                "The cluster keeps quorum through the loss of any {survives} of its {n} votes{}; one more and it stops \
                 placing roles until a majority is back.",
                if witnesses > 0 { " (the witness counts)" } else { "" }
            ),
        },
        fix,
    ));
    let up = voters.iter().filter(|v| v.state == NodeState::Up).count();
    let (outcome, fix) = if up < majority {
        (Outcome::Fail, "Bring voters back: without a majority nothing is placed or recovered.")
    } else if n > 1 && up == majority {
        (Outcome::Warning, "Bring the down voters back: one more failure would stop the cluster.")
    } else {
        (Outcome::Pass, "")
    };
    out.push(check(
        "quorum.up",
        Quorum,
        "Voters up now",
        outcome,
        format!("{up} of {n} votes are up; a majority is {majority}."),
        fix,
    ));
    out
}

pub fn role_checks(state: &ClusterState, timing: PlanTiming) -> Vec<Check> {
    use Category::Roles;
    let mut out = Vec::new();
    let settings_ok = validate_settings(&state.settings);
    out.push(check(
        "roles.timing",
        Roles,
        "Timing settings are consistent",
        if settings_ok.is_ok() { Outcome::Pass } else { Outcome::Fail },
        match &settings_ok {
            Ok(()) => format!(
                "heartbeat every {} ms, a node is down after {} ms of silence, leases of {} ms plus a {} ms margin.",
                state.settings.heartbeat_interval_ms,
                state.settings.node_timeout_ms,
                state.settings.lease_ms,
                state.settings.lease_margin_ms
            ),
            Err(e) => e.to_string(),
        },
        if settings_ok.is_ok() { "" } else { "Set consistent values with `halo cluster set` (or `profile=default`)." },
    ));
    if state.roles.is_empty() {
        out.push(check(
            "roles.placeable",
            Roles,
            "Every role can run somewhere",
            Outcome::Skipped,
            "No roles.".into(),
            "",
        ));
        return out;
    }

    // Every role has a node that could host it now (a role with an owner runs there).
    let unplaceable: Vec<String> = state
        .roles
        .values()
        .filter(|r| r.owner.is_none())
        .filter_map(|r| {
            let p = placement::place(state, r, &[]);
            p.node.is_none().then(|| format!("{}: {}", r.spec.name, summary(&p.reasons)))
        })
        .collect();
    out.push(role_findings(
        "roles.placeable",
        "Every role can run somewhere",
        &unplaceable,
        Outcome::Fail,
        format!("All {} roles run or have a node that can take them.", state.roles.len()),
        |found| format!("No node can host: {}.", found.join("; ")),
        "Widen the possible owners, add capacity, or relax anti-affinity (`halo role why NAME` explains each node).",
    ));

    // Hard anti-affinity needs as many hosts as a class has members, with one node gone.
    let hosts = state.nodes.values().filter(|n| !n.witness).count();
    let mut classes: std::collections::BTreeMap<&str, usize> = Default::default();
    for r in state.roles.values().filter(|r| !r.spec.anti_affinity_soft) {
        for c in &r.spec.anti_affinity {
            *classes.entry(c.as_str()).or_default() += 1;
        }
    }
    let crowded: Vec<String> = classes
        .iter()
        .filter(|(_, members)| **members > hosts.saturating_sub(1))
        .map(|(class, members)| format!("class '{class}' has {members} roles"))
        .collect();
    out.push(role_findings(
        "roles.anti_affinity",
        "Hard anti-affinity holds with one node down",
        &crowded,
        Outcome::Warning,
        format!("Every hard anti-affinity class fits on {} of the {hosts} nodes.", hosts.saturating_sub(1)),
        |found| {
            let which = if found.len() == 1 { "this class" } else { "these classes" };
            format!("With one of the {hosts} nodes down, {which} cannot all run: {}.", found.join(", "))
        },
        "Add a node, or make the class soft (`--anti-affinity-soft`).",
    ));

    // VM disks on shared storage: another node can only take a VM whose disks it can reach.
    let outside: Vec<String> = state
        .roles
        .values()
        .flat_map(|r| r.spec.resources.iter().map(move |res| (r, res)))
        .filter(|(_, res)| res.kind == vm::KIND)
        .filter_map(|(r, res)| {
            let spec = VmSpec::parse(&res.params).ok()?;
            spec.check_shared(&state.settings.shared_storage).err().map(|e| format!("{}: {e}", r.spec.name))
        })
        .collect();
    let vms = state.roles.values().filter(|r| r.spec.resources.iter().any(|res| res.kind == vm::KIND)).count();
    let title = "VM disks are on shared storage";
    out.push(if vms == 0 {
        check("roles.vm_shared_storage", Roles, title, Outcome::Skipped, "No VM roles.".into(), "")
    } else {
        role_findings(
            "roles.vm_shared_storage",
            title,
            &outside,
            Outcome::Fail,
            format!(
                "The disks of all {vms} VMs are under the shared storage ({}).",
                state.settings.shared_storage.join(", ")
            ),
            |found| found.join("; "),
            "Move the disks under a `shared_storage` path, or add the path they are on.",
        )
    });

    // N+1: the loss of any one node leaves every role a home.
    let mut stranded = Vec::new();
    for node in state.nodes.values().filter(|n| !n.witness) {
        for p in plan::fail(state, node.id, None, timing).into_iter().filter(|p| p.to.is_none()) {
            stranded.push(format!("{} (if {} is lost: {})", p.role, node.name, summary(&p.reasons)));
        }
    }
    out.push(role_findings(
        "roles.n_plus_one",
        "Every role survives the loss of any one node",
        &stranded,
        Outcome::Warning,
        "Whichever node is lost, every role it runs has somewhere to go.".into(),
        |found| format!("Would stay offline: {}.", found.join("; ")),
        "Add capacity or possible owners so each node's roles fit on the others.",
    ));
    out
}

/// A roles check that passes when nothing was found, and otherwise has outcome `bad`, describes
/// what was found and suggests `fix`.
fn role_findings(
    id: &str,
    title: &str,
    found: &[String],
    bad: Outcome,
    fine: String,
    describe: impl FnOnce(&[String]) -> String,
    fix: &str,
) -> Check {
    if found.is_empty() {
        check(id, Category::Roles, title, Outcome::Pass, fine, "")
    } else {
        check(id, Category::Roles, title, bad, describe(found), fix)
    }
}

/// The reasons placement gave, on one line.
fn summary(reasons: &[String]) -> String {
    if reasons.is_empty() { "no node is eligible".into() } else { reasons.join(", ") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::tests_support::{cluster, role};

    const T: PlanTiming = PlanTiming { election_ms: 1800, grant_window_ms: 450 };

    fn outcome(checks: &[Check], id: &str) -> Outcome {
        checks.iter().find(|c| c.id == id).unwrap_or_else(|| panic!("no check {id}")).outcome
    }

    fn text(checks: &[Check], id: &str) -> String {
        checks.iter().find(|c| c.id == id).map(|c| c.explanation.clone()).unwrap_or_default()
    }

    #[test]
    fn three_voters_pass_and_say_what_they_survive() {
        let s = cluster();
        let checks = quorum_checks(&s);
        assert_eq!(worst(&checks), Outcome::Pass, "{checks:#?}");
        let skipped = check("x", Category::Roles, "x", Outcome::Skipped, String::new(), "");
        assert_eq!(worst(&[checks[0].clone(), skipped]), Outcome::Pass);
        assert!(text(&checks, "quorum.tolerance").contains("any 1 of its 3 votes"), "{checks:#?}");
    }

    #[test]
    fn two_voters_without_a_witness_fail_and_with_one_pass() {
        let mut s = cluster();
        s.nodes.remove(&3);
        let checks = quorum_checks(&s);
        assert_eq!(outcome(&checks, "quorum.witness"), Outcome::Fail);
        assert_eq!(outcome(&checks, "quorum.tolerance"), Outcome::Fail);
        assert!(checks.iter().find(|c| c.id == "quorum.witness").is_some_and(|c| c.fix.contains("witness")));
        let mut w = crate::placement::tests_support::node(3, "w", NodeState::Up);
        w.witness = true;
        s.nodes.insert(3, w);
        assert_eq!(worst(&quorum_checks(&s)), Outcome::Pass);
    }

    #[test]
    fn a_voter_down_leaves_no_margin() {
        let mut s = cluster();
        s.nodes.get_mut(&2).expect("b").state = NodeState::Down;
        assert_eq!(outcome(&quorum_checks(&s), "quorum.up"), Outcome::Warning);
        s.nodes.get_mut(&3).expect("c").state = NodeState::Down;
        assert_eq!(outcome(&quorum_checks(&s), "quorum.up"), Outcome::Fail);
    }

    #[test]
    fn a_role_no_node_can_host_fails_and_is_named() {
        let mut s = cluster();
        let mut r = role("lonely");
        r.spec.possible = vec!["nowhere".into()];
        s.roles.insert("lonely".into(), r);
        let checks = role_checks(&s, T);
        assert_eq!(outcome(&checks, "roles.placeable"), Outcome::Fail);
        assert!(text(&checks, "roles.placeable").contains("lonely"), "{checks:#?}");
    }

    #[test]
    fn hard_anti_affinity_needs_a_spare_node() {
        let mut s = cluster();
        for name in ["db1", "db2", "db3"] {
            let mut r = role(name);
            r.spec.anti_affinity = vec!["db".into()];
            s.roles.insert(name.into(), r);
        }
        let checks = role_checks(&s, T);
        assert_eq!(outcome(&checks, "roles.anti_affinity"), Outcome::Warning);
        assert!(text(&checks, "roles.anti_affinity").contains("class 'db' has 3 roles"));
        s.roles.remove("db3");
        assert_eq!(outcome(&role_checks(&s, T), "roles.anti_affinity"), Outcome::Pass);
    }

    #[test]
    fn a_role_only_one_node_may_run_does_not_survive_its_loss() {
        let mut s = cluster();
        let mut r = role("pinned");
        r.spec.possible = vec!["a".into()];
        r.owner = Some(1);
        r.generation = 1;
        s.roles.insert("pinned".into(), r);
        let checks = role_checks(&s, T);
        assert_eq!(outcome(&checks, "roles.placeable"), Outcome::Pass);
        assert_eq!(outcome(&checks, "roles.n_plus_one"), Outcome::Warning);
        assert!(text(&checks, "roles.n_plus_one").contains("pinned (if a is lost"), "{checks:#?}");
    }

    #[test]
    fn a_vm_disk_outside_shared_storage_fails() {
        let mut s = cluster();
        s.settings.shared_storage = vec!["/shared".into()];
        let mut r = role("vm1");
        r.spec.resources[0].kind = vm::KIND.into();
        r.spec.resources[0].params =
            [("memory".to_string(), "128M".to_string()), ("disks".to_string(), "/local/vm1.qcow2".to_string())]
                .into_iter()
                .collect();
        s.roles.insert("vm1".into(), r);
        let checks = role_checks(&s, T);
        assert_eq!(outcome(&checks, "roles.vm_shared_storage"), Outcome::Fail, "{checks:#?}");
        assert!(text(&checks, "roles.vm_shared_storage").contains("vm1"));
    }

    #[test]
    fn judging_changes_nothing() {
        let mut s = cluster();
        s.roles.insert("web".into(), role("web"));
        let before = s.clone();
        let _ = judge(&s, T);
        assert_eq!(s, before);
    }
}
