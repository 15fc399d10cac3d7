//! Inventory: what each node runs and has (halo and OS versions, architecture, QEMU and KVM,
//! resource and fence agents, memory and disk), judged side by side.

use std::collections::BTreeMap;

use super::survey::{NodeFacts, Survey};
use super::{Category, Check, Outcome, check, findings, listing};
use crate::state::ClusterState;

const LOW_DISK_MB: u64 = 1024;
const FULL_DISK_MB: u64 = 100;
const LOW_MEMORY_MB: u64 = 256;

pub fn checks(survey: &Survey, state: Option<&ClusterState>) -> Vec<Check> {
    use Category::Inventory;
    let has_vms = state.is_some_and(|s| {
        s.roles.values().any(|r| r.spec.resources.iter().any(|res| res.kind == crate::resource_kind::ResourceKind::Vm))
    });
    let answered: Vec<(&str, &NodeFacts)> =
        survey.nodes.iter().filter_map(|n| n.facts.as_ref().map(|f| (n.name.as_str(), f))).collect();
    // Witnesses run no roles: what roles need is asked of the other nodes only.
    let hosts: Vec<(&str, &NodeFacts)> = survey
        .nodes
        .iter()
        .filter(|n| !n.witness)
        .filter_map(|n| n.facts.as_ref().map(|f| (n.name.as_str(), f)))
        .collect();

    let silent: Vec<String> = survey
        .nodes
        .iter()
        .filter(|n| !n.down)
        .filter_map(|n| n.error.as_ref().map(|e| format!("{}: {e}", n.name)))
        .collect();
    let down: Vec<String> = survey.nodes.iter().filter(|n| n.down).map(|n| n.name.clone()).collect();
    let mut out = vec![if silent.is_empty() && !down.is_empty() {
        check(
            "inventory.answered",
            Inventory,
            "Every node answered",
            Outcome::Warning,
            format!("{} down, so not surveyed; the other nodes answered.", listing(&down)),
            "Bring the node back and validate again.",
        )
    } else {
        findings(
            Inventory,
            "inventory.answered",
            "Every node answered",
            &silent,
            Outcome::Fail,
            format!("All {} nodes answered the survey.", survey.nodes.len()),
            |found| format!("No answer from {}.", found.join("; ")),
            "Start the agent on those nodes (or check their API address and firewall), then validate again.",
        )
    }];

    let versions = group(&answered, |f| f.version.clone());
    out.push(if versions.len() <= 1 {
        let v = versions.keys().next().cloned().unwrap_or_default();
        check(
            "inventory.version",
            Inventory,
            "Same halo version everywhere",
            Outcome::Pass,
            format!("halo {v} on every node."),
            "",
        )
    } else {
        check(
            "inventory.version",
            Inventory,
            "Same halo version everywhere",
            Outcome::Warning,
            format!("Mixed halo versions: {}.", by_group(&versions)),
            "Finish the rolling upgrade: drain, upgrade and resume each node still on the older version.",
        )
    });

    let platforms = group(&answered, |f| format!("{}, Linux {}, {}", f.os, f.kernel, f.arch));
    let arches = group(&hosts, |f| f.arch.clone());
    out.push(if arches.len() > 1 {
        check(
            "inventory.platform",
            Inventory,
            "Operating system and CPU architecture",
            if has_vms { Outcome::Fail } else { Outcome::Warning },
            format!("Nodes differ in CPU architecture: {}. A VM cannot move between them.", by_group(&arches)),
            "Keep nodes of one architecture in a cluster.",
        )
    } else {
        check(
            "inventory.platform",
            Inventory,
            "Operating system and CPU architecture",
            Outcome::Pass,
            format!("{}.", by_group(&platforms)),
            "",
        )
    });

    let without_qemu: Vec<String> =
        hosts.iter().filter(|(_, f)| f.qemu.is_none()).map(|(n, _)| n.to_string()).collect();
    let qemus = group(&hosts, |f| f.qemu.clone().unwrap_or_else(|| "no QEMU".into()));
    out.push(if !without_qemu.is_empty() {
        check(
            "inventory.qemu",
            Inventory,
            "QEMU on every node",
            if has_vms { Outcome::Fail } else { Outcome::Warning },
            format!("QEMU is not installed on {}: VM roles cannot run there.", listing(&without_qemu)),
            "Install QEMU there (on Debian: apt-get install qemu-system-x86).",
        )
    } else if qemus.len() > 1 {
        check(
            "inventory.qemu",
            Inventory,
            "QEMU on every node",
            Outcome::Warning,
            format!("QEMU versions differ: {}. Live migration needs compatible versions.", by_group(&qemus)),
            "Install the same QEMU version on every node.",
        )
    } else {
        let v = qemus.keys().next().cloned().unwrap_or_else(|| "no host nodes".into());
        check("inventory.qemu", Inventory, "QEMU on every node", Outcome::Pass, format!("{v} on every node."), "")
    });

    let without_kvm: Vec<String> = hosts.iter().filter(|(_, f)| !f.kvm).map(|(n, _)| n.to_string()).collect();
    out.push(findings(
        Inventory,
        "inventory.kvm",
        "KVM usable",
        &without_kvm,
        Outcome::Warning,
        "KVM runs guests on every node.".into(),
        |found| {
            format!(
                "KVM does not run guests on {}: VMs there use software emulation (TCG), far slower.",
                listing(found)
            )
        },
        "Enable virtualization in the firmware (or nested virtualization) and load the kvm module.",
    ));

    let without_ocf: Vec<String> =
        hosts.iter().filter(|(_, f)| !f.ocf_installed).map(|(n, f)| format!("{n} (no {})", f.ocf_root)).collect();
    out.push(findings(
        Inventory,
        "inventory.resource_agents",
        "OCF resource agents installed",
        &without_ocf,
        Outcome::Warning,
        "The OCF resource agents are installed on every node.".into(),
        |found| format!("No OCF resource agents on {}: ocf: resources cannot run there.", listing(found)),
        "Install them (on Debian: apt-get install resource-agents).",
    ));

    let fence_agents = state.map(|s| s.fence_devices.values().map(|d| d.agent.clone()).collect::<Vec<_>>());
    let missing_fence: Vec<String> = answered
        .iter()
        .filter(|(_, f)| !f.fence_missing.is_empty())
        .map(|(n, f)| format!("{} on {n}", listing(&f.fence_missing)))
        .collect();
    out.push(match fence_agents {
        Some(agents) if !agents.is_empty() => findings(
            Inventory,
            "inventory.fence_agents",
            "Fence agents installed",
            &missing_fence,
            Outcome::Warning,
            "Every node can run the configured fence agents.".into(),
            |found| {
                format!(
                    "Missing {}: a leader there cannot power off a silent node and waits for its lease instead.",
                    found.join("; ")
                )
            },
            "Install the fence agents on every node (on Debian: apt-get install fence-agents).",
        ),
        _ => check(
            "inventory.fence_agents",
            Inventory,
            "Fence agents installed",
            Outcome::Skipped,
            "No fence device is configured.".into(),
            "",
        ),
    });

    let low_memory: Vec<String> = hosts
        .iter()
        .filter(|(_, f)| f.memory_available_mb < LOW_MEMORY_MB.max(f.memory_total_mb / 10))
        .map(|(n, f)| format!("{n} ({} of {} MB available)", f.memory_available_mb, f.memory_total_mb))
        .collect();
    out.push(findings(
        Inventory,
        "inventory.memory",
        "Free memory",
        &low_memory,
        Outcome::Warning,
        format!("Available memory: {}.", each(&hosts, |f| format!("{} MB", f.memory_available_mb))),
        |found| format!("Little memory left on {}: a failover onto it may not fit.", listing(found)),
        "Free memory or lower what the node offers to roles (--memory).",
    ));

    let full: Vec<String> = answered
        .iter()
        .filter(|(_, f)| f.disk_free_mb < LOW_DISK_MB)
        .map(|(n, f)| format!("{n} ({} MB free in {})", f.disk_free_mb, f.data_dir))
        .collect();
    let nearly_full = answered.iter().any(|(_, f)| f.disk_free_mb < FULL_DISK_MB);
    out.push(findings(
        Inventory,
        "inventory.disk",
        "Free disk for the cluster database",
        &full,
        if nearly_full { Outcome::Fail } else { Outcome::Warning },
        format!("Free space for the agent's data: {}.", each(&answered, |f| format!("{} MB", f.disk_free_mb))),
        |found| format!("Little disk space left on {}: the cluster database cannot grow there.", listing(found)),
        "Free space in the agent's data directory's file system.",
    ));

    // The production safety net under the fence guard: a node that cannot clean up after
    // losing its lease is reset by its watchdog.
    let unguarded: Vec<String> = hosts
        .iter()
        .filter(|(_, f)| f.watchdog.is_none())
        .map(|(n, f)| {
            if f.watchdog_present {
                format!("{n} (has /dev/watchdog, not used)")
            } else {
                format!("{n} (no watchdog device)")
            }
        })
        .collect();
    out.push(findings(
        Inventory,
        "inventory.watchdog",
        "A watchdog under every fence guard",
        &unguarded,
        Outcome::Warning,
        format!("Fed by the fence guard: {}.", each(&hosts, |f| f.watchdog.clone().unwrap_or_default())),
        |found| {
            format!(
                "No watchdog is fed on {}: a node whose guard cannot clean up after losing its lease is not reset.",
                listing(found)
            )
        },
        "Enable the hardware watchdog or load softdog (modprobe softdog), and start the agent with \
         --watchdog /dev/watchdog.",
    ));
    out
}

/// Nodes grouped by a property of theirs.
fn group(nodes: &[(&str, &NodeFacts)], key: impl Fn(&NodeFacts) -> String) -> BTreeMap<String, Vec<String>> {
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, facts) in nodes {
        groups.entry(key(facts)).or_default().push(name.to_string());
    }
    groups
}

/// "X on a and b; Y on c", or just "X on every node" when there is one group.
fn by_group(groups: &BTreeMap<String, Vec<String>>) -> String {
    if groups.len() == 1 {
        return groups.keys().map(|k| format!("{k} on every node")).collect();
    }
    groups.iter().map(|(k, names)| format!("{k} on {}", listing(names))).collect::<Vec<_>>().join("; ")
}

/// "a: X, b: Y".
fn each(nodes: &[(&str, &NodeFacts)], show: impl Fn(&NodeFacts) -> String) -> String {
    nodes.iter().map(|(n, f)| format!("{n}: {}", show(f))).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::validation::survey::NodeSurvey;
    use crate::validation::test_support::{outcome, text};

    pub fn facts() -> NodeFacts {
        NodeFacts {
            version: "0.1.0".into(),
            os: "Debian GNU/Linux 12 (bookworm)".into(),
            kernel: "6.1.0".into(),
            arch: "x86_64".into(),
            qemu: Some("QEMU emulator version 10.0.2".into()),
            kvm: true,
            ocf_root: "/usr/lib/ocf".into(),
            ocf_installed: true,
            memory_total_mb: 16_000,
            memory_available_mb: 12_000,
            data_dir: "/var/lib/halo".into(),
            disk_free_mb: 50_000,
            interfaces: vec![Some("eth0".into()), Some("eth1".into())],
            wall_ms: 1_000_000,
            watchdog: Some("/dev/watchdog".into()),
            watchdog_present: true,
            ..NodeFacts::default()
        }
    }

    /// Three healthy nodes with two networks each, every pair reachable.
    pub fn survey() -> Survey {
        let names = ["a", "b", "c"];
        let nodes = names
            .iter()
            .enumerate()
            .map(|(i, name)| NodeSurvey {
                name: name.to_string(),
                witness: false,
                networks: vec![format!("10.0.1.{}:7401", i + 1), format!("10.0.2.{}:7401", i + 1)],
                facts: Some(facts()),
                clock: Some(crate::validation::survey::ClockReading { offset_ms: 3, uncertainty_ms: 1 }),
                ..NodeSurvey::default()
            })
            .collect::<Vec<_>>();
        let mut survey = Survey { nodes, storage: Vec::new() };
        let all = survey.nodes.clone();
        for (i, from) in all.iter().enumerate() {
            for to in all.iter().filter(|n| n.name != from.name) {
                for k in 0..2 {
                    survey.nodes[i].reach.push(crate::validation::survey::Reach {
                        network: k + 1,
                        to: to.name.clone(),
                        from_address: from.networks[k].clone(),
                        to_address: to.networks[k].clone(),
                        attempts: 3,
                        answered: 3,
                        rtt_us: Some(150),
                        error: None,
                    });
                }
            }
        }
        survey
    }

    #[test]
    fn a_healthy_inventory_passes() {
        let checks = checks(&survey(), None);
        assert!(checks.iter().all(|c| c.outcome <= Outcome::Pass), "{checks:#?}");
        assert!(text(&checks, "inventory.version").contains("halo 0.1.0 on every node"));
    }

    #[test]
    fn what_a_node_lacks_is_named() {
        let mut s = survey();
        let c = s.nodes[2].facts.as_mut().expect("facts");
        c.qemu = None;
        c.kvm = false;
        c.version = "0.2.0".into();
        c.disk_free_mb = 50;
        s.nodes[1].facts = None;
        s.nodes[1].error = Some("connection refused".into());
        let mut down = s.clone();
        down.nodes[1].down = true;
        assert_eq!(outcome(&checks(&down, None), "inventory.answered"), Outcome::Warning);
        let checks = checks(&s, None);
        assert_eq!(outcome(&checks, "inventory.answered"), Outcome::Fail);
        assert!(text(&checks, "inventory.answered").contains("b: connection refused"));
        assert_eq!(outcome(&checks, "inventory.qemu"), Outcome::Warning);
        assert!(text(&checks, "inventory.qemu").contains("not installed on c"));
        assert_eq!(outcome(&checks, "inventory.kvm"), Outcome::Warning);
        assert!(text(&checks, "inventory.version").contains("0.2.0 on c"), "{checks:#?}");
        assert_eq!(outcome(&checks, "inventory.disk"), Outcome::Fail);
    }

    #[test]
    fn a_node_without_a_watchdog_is_named() {
        let mut s = survey();
        s.nodes[0].facts.as_mut().expect("facts").watchdog = None;
        let c = s.nodes[1].facts.as_mut().expect("facts");
        c.watchdog = None;
        c.watchdog_present = false;
        let checks = checks(&s, None);
        assert_eq!(outcome(&checks, "inventory.watchdog"), Outcome::Warning);
        let said = text(&checks, "inventory.watchdog");
        assert!(said.contains("a (has /dev/watchdog, not used)") && said.contains("b (no watchdog device)"), "{said}");
    }

    #[test]
    fn witnesses_need_no_qemu() {
        let mut s = survey();
        s.nodes[2].witness = true;
        s.nodes[2].facts.as_mut().expect("facts").qemu = None;
        assert_eq!(outcome(&checks(&s, None), "inventory.qemu"), Outcome::Pass);
    }
}
