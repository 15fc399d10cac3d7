//! Roles: can every role run somewhere, and still after the loss of any one node; are VM disks
//! where other nodes can reach them; are the resource agents they name installed wherever they
//! may run; are the settings consistent.

use super::survey::NodeFacts;
use super::{Category, Check, Outcome, Survey, check, findings, listing};
use crate::placement;
use crate::plan::{self, PlanTiming};
use crate::role::RoleRecord;
use crate::settings::validate_settings;
use crate::state::ClusterState;

pub fn checks(state: &ClusterState, timing: PlanTiming, survey: &Survey) -> Vec<Check> {
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
    out.push(findings(
        Roles,
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
    out.push(findings(
        Roles,
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

    // VM disks on shared storage, and seen by every node that may run the VM: another node can
    // only take a VM whose disks it can reach.
    let mut outside = Vec::new();
    for r in state.roles.values() {
        for spec in r.spec.vms().flatten() {
            if let Err(e) = spec.check_shared(&state.settings.shared_storage) {
                outside.push(format!("{}: {e}", r.spec.name));
            }
            for (what, path) in spec.files() {
                let path = path.display().to_string();
                let blind = may_run(r, survey)
                    .filter(|(_, f)| f.files_missing.contains(&path))
                    .map(|(name, _)| name.to_string())
                    .collect::<Vec<_>>();
                if !blind.is_empty() {
                    outside.push(format!("{}: {what} {path} is not visible on {}", r.spec.name, listing(&blind)));
                }
            }
        }
    }
    let vms = state
        .roles
        .values()
        .filter(|r| r.spec.resources.iter().any(|res| res.kind == crate::resource_kind::ResourceKind::Vm))
        .count();
    let title = "VM disks are on shared storage";
    out.push(if vms == 0 {
        check("roles.vm_shared_storage", Roles, title, Outcome::Skipped, "No VM roles.".into(), "")
    } else {
        findings(
            Roles,
            "roles.vm_shared_storage",
            title,
            &outside,
            Outcome::Fail,
            format!(
                "The disks of all {vms} VMs are under the shared storage ({}) and visible on every node that may run them.",
                state.settings.shared_storage.join(", ")
            ),
            |found| found.join("; "),
            "Move the disks under a `shared_storage` path mounted on every node (or add the path they are on).",
        )
    });

    // N+1: the loss of any one node leaves every role a home.
    let mut stranded = Vec::new();
    for node in state.nodes.values().filter(|n| !n.witness) {
        for p in plan::fail(state, node.id, None, timing).into_iter().filter(|p| p.to.is_none()) {
            stranded.push(format!("{} (if {} is lost: {})", p.role, node.name, summary(&p.reasons)));
        }
    }
    out.push(findings(
        Roles,
        "roles.n_plus_one",
        "Every role survives the loss of any one node",
        &stranded,
        Outcome::Warning,
        "Whichever node is lost, every role it runs has somewhere to go.".into(),
        |found| format!("Would stay offline: {}.", found.join("; ")),
        "Add capacity or possible owners so each node's roles fit on the others.",
    ));
    out.push(ocf_agents(state, survey));
    out
}

/// Every `ocf:` resource agent a role names is installed on every node that may run the role
/// (and that answered the survey: a silent node is reported by the inventory).
fn ocf_agents(state: &ClusterState, survey: &Survey) -> Check {
    let title = "Resource agents installed where roles may run";
    let mut kinds = 0;
    let mut missing = Vec::new();
    for role in state.roles.values() {
        for kind in role.spec.resources.iter().filter(|r| r.kind.is_ocf()).map(|r| r.kind.to_string()) {
            kinds += 1;
            let lacking: Vec<String> = may_run(role, survey)
                .filter(|(_, f)| f.ocf_missing.contains(&kind))
                .map(|(name, _)| name.to_string())
                .collect();
            if !lacking.is_empty() {
                missing.push(format!("{} needs {kind}, missing on {}", role.spec.name, listing(&lacking)));
            }
        }
    }
    if kinds == 0 {
        return check("roles.ocf_agents", Category::Roles, title, Outcome::Skipped, "No OCF resources.".into(), "");
    }
    findings(
        Category::Roles,
        "roles.ocf_agents",
        title,
        &missing,
        Outcome::Fail,
        format!("The {kinds} OCF resources' agents are installed on every node that may run them."),
        |found| format!("{}: the role fails there if it is placed there.", found.join("; ")),
        "Install the agent on those nodes (on Debian: apt-get install resource-agents), or narrow the role's possible owners.",
    )
}

/// The surveyed nodes that may run `role` (witnesses never do), with what they said.
fn may_run<'a>(role: &'a RoleRecord, survey: &'a Survey) -> impl Iterator<Item = (&'a str, &'a NodeFacts)> + 'a {
    survey
        .nodes
        .iter()
        .filter(|n| !n.witness && (role.spec.possible.is_empty() || role.spec.possible.contains(&n.name)))
        .filter_map(|n| n.facts.as_ref().map(|f| (n.name.as_str(), f)))
}

/// The reasons placement gave, on one line.
fn summary(reasons: &[String]) -> String {
    if reasons.is_empty() { "no node is eligible".into() } else { reasons.join(", ") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::tests_support::{cluster, role};
    use crate::validation::judge;
    use crate::validation::test_support::{T, outcome, text};

    #[test]
    fn a_role_no_node_can_host_fails_and_is_named() {
        let mut s = cluster();
        let mut r = role("lonely");
        r.spec.possible = vec!["nowhere".into()];
        s.roles.insert("lonely".into(), r);
        let found = checks(&s, T, &Survey::default());
        assert_eq!(outcome(&found, "roles.placeable"), Outcome::Fail);
        assert!(text(&found, "roles.placeable").contains("lonely"), "{found:#?}");
    }

    #[test]
    fn hard_anti_affinity_needs_a_spare_node() {
        let mut s = cluster();
        for name in ["db1", "db2", "db3"] {
            let mut r = role(name);
            r.spec.anti_affinity = vec!["db".into()];
            s.roles.insert(name.into(), r);
        }
        let found = checks(&s, T, &Survey::default());
        assert_eq!(outcome(&found, "roles.anti_affinity"), Outcome::Warning);
        assert!(text(&found, "roles.anti_affinity").contains("class 'db' has 3 roles"));
        s.roles.remove("db3");
        assert_eq!(outcome(&checks(&s, T, &Survey::default()), "roles.anti_affinity"), Outcome::Pass);
    }

    #[test]
    fn a_role_only_one_node_may_run_does_not_survive_its_loss() {
        let mut s = cluster();
        let mut r = role("pinned");
        r.spec.possible = vec!["a".into()];
        r.owner = Some(1);
        r.generation = 1;
        s.roles.insert("pinned".into(), r);
        let found = checks(&s, T, &Survey::default());
        assert_eq!(outcome(&found, "roles.placeable"), Outcome::Pass);
        assert_eq!(outcome(&found, "roles.n_plus_one"), Outcome::Warning);
        assert!(text(&found, "roles.n_plus_one").contains("pinned (if a is lost"), "{found:#?}");
    }

    #[test]
    fn a_vm_disk_outside_shared_storage_fails() {
        let mut s = cluster();
        s.settings.shared_storage = vec!["/shared".into()];
        let mut r = role("vm1");
        r.spec.resources[0].kind = crate::resource_kind::ResourceKind::Vm;
        r.spec.resources[0].params =
            [("memory".to_string(), "128M".to_string()), ("disks".to_string(), "/local/vm1.qcow2".to_string())]
                .into_iter()
                .collect();
        s.roles.insert("vm1".into(), r);
        let found = checks(&s, T, &Survey::default());
        assert_eq!(outcome(&found, "roles.vm_shared_storage"), Outcome::Fail, "{found:#?}");
        assert!(text(&found, "roles.vm_shared_storage").contains("vm1"));

        // Under the shared path, but not what node c sees there.
        let vm = s.roles.get_mut("vm1").expect("vm1");
        vm.spec.resources[0].params.insert("disks".into(), "/shared/vm1.qcow2".into());
        let mut survey = crate::validation::inventory::tests::survey();
        assert_eq!(outcome(&checks(&s, T, &survey), "roles.vm_shared_storage"), Outcome::Pass);
        survey.nodes[2].facts.as_mut().expect("facts").files_missing = vec!["/shared/vm1.qcow2".into()];
        let found = checks(&s, T, &survey);
        assert_eq!(outcome(&found, "roles.vm_shared_storage"), Outcome::Fail);
        assert!(text(&found, "roles.vm_shared_storage").contains("vm1: disk /shared/vm1.qcow2 is not visible on c"));
    }

    #[test]
    fn an_ocf_agent_missing_on_a_possible_owner_fails() {
        let mut s = cluster();
        let mut r = role("web");
        r.spec.resources[0].kind = crate::resource_kind::ResourceKind::parse("ocf:heartbeat:IPaddr2").expect("kind");
        s.roles.insert("web".into(), r);
        let mut survey = crate::validation::inventory::tests::survey();
        let found = checks(&s, T, &survey);
        assert_eq!(outcome(&found, "roles.ocf_agents"), Outcome::Pass, "{found:#?}");
        survey.nodes[2].facts.as_mut().expect("facts").ocf_missing = vec!["ocf:heartbeat:IPaddr2".into()];
        let found = checks(&s, T, &survey);
        assert_eq!(outcome(&found, "roles.ocf_agents"), Outcome::Fail);
        assert!(text(&found, "roles.ocf_agents").contains("web needs ocf:heartbeat:IPaddr2, missing on c"));
        // Not a possible owner of the role: nothing to install there.
        s.roles.get_mut("web").expect("web").spec.possible = vec!["a".into(), "b".into()];
        assert_eq!(outcome(&checks(&s, T, &survey), "roles.ocf_agents"), Outcome::Pass);
    }

    #[test]
    fn judging_changes_nothing() {
        let mut s = cluster();
        s.roles.insert("web".into(), role("web"));
        let before = s.clone();
        let _ = judge(&s, T, &Survey::default());
        assert_eq!(s, before);
    }
}
