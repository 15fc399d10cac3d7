//! Network: every node reaches every other on every declared network, how fast and how
//! reliably, whether the networks are really independent, whether addresses clash, and whether
//! the nodes' clocks agree.

use std::collections::BTreeMap;

use super::survey::Survey;
use super::{Category, Check, Outcome, check, findings, listing};
use crate::state::{ClusterState, NetworkState};

/// A median connection time above this is slow for a heartbeat network (a LAN answers in well
/// under a millisecond).
const SLOW_RTT_US: u64 = 20_000;
/// Clocks further apart than this make the cluster log and events hard to read side by side.
/// (Leases and failure detection use each node's monotonic clock, never wall clocks.)
const CLOCK_SKEW_MS: u64 = 1_000;

pub fn checks(survey: &Survey, state: Option<&ClusterState>) -> Vec<Check> {
    use Category::Network;
    let mut out = Vec::new();

    let mut unreachable = Vec::new();
    for node in &survey.nodes {
        for r in node.reach.iter().filter(|r| r.answered == 0) {
            unreachable.push(format!(
                "{} cannot reach {} on network {} ({} → {}: {})",
                node.name,
                r.to,
                r.network,
                r.from_address,
                r.to_address,
                r.error.as_deref().unwrap_or("no answer")
            ));
        }
    }
    let probed = survey.nodes.iter().map(|n| n.reach.len()).sum::<usize>();
    out.push(if probed == 0 && unreachable.is_empty() {
        check(
            "network.reachability",
            Network,
            "Every node reaches every other on every network",
            Outcome::Skipped,
            "Fewer than two nodes answered: no pair to test.".into(),
            "",
        )
    } else {
        findings(
            Network,
            "network.reachability",
            "Every node reaches every other on every network",
            &unreachable,
            Outcome::Fail,
            format!("All {probed} node-to-node paths answered."),
            |found| format!("{}.", found.join("; ")),
            "Check the cabling, switch ports, VLANs and firewalls of that network (TCP and UDP to the heartbeat port).",
        )
    });

    // Round trip and loss per network.
    let mut per_network: BTreeMap<usize, (u32, u32, Vec<u64>)> = BTreeMap::new();
    for r in survey.nodes.iter().flat_map(|n| &n.reach) {
        let entry = per_network.entry(r.network).or_default();
        entry.0 += r.attempts;
        entry.1 += r.answered;
        entry.2.extend(r.rtt_us);
    }
    let mut lossy = Vec::new();
    let mut described = Vec::new();
    for (network, (attempts, answered, mut rtts)) in per_network {
        rtts.sort_unstable();
        let median = rtts.get(rtts.len() / 2).copied();
        let loss = 100.0 * f64::from(attempts - answered) / f64::from(attempts.max(1));
        described.push(format!(
            "network {network}: {} round trip, {loss:.0}% loss",
            median.map_or("no".into(), |us| format!("{:.2} ms", us as f64 / 1000.0))
        ));
        if (answered > 0 && answered < attempts) || median.is_some_and(|m| m > SLOW_RTT_US) {
            lossy.push(format!("network {network}"));
        }
    }
    out.push(if described.is_empty() {
        check("network.latency", Network, "Round trip and loss", Outcome::Skipped, "Nothing was measured.".into(), "")
    } else {
        check(
            "network.latency",
            Network,
            "Round trip and loss",
            if lossy.is_empty() { Outcome::Pass } else { Outcome::Warning },
            format!("{}.", described.join("; ")),
            if lossy.is_empty() {
                ""
            } else {
                "Find what loses or delays packets there: late heartbeats cause false failovers."
            },
        )
    });

    // Two networks that share an interface (or a node with one network) fail together.
    let mut single = Vec::new();
    for node in &survey.nodes {
        if node.networks.len() < 2 {
            single.push(format!("{} has one network", node.name));
            continue;
        }
        let Some(facts) = &node.facts else { continue };
        let mut by_interface: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (k, interface) in facts.interfaces.iter().enumerate() {
            if let Some(i) = interface {
                by_interface.entry(i.as_str()).or_default().push((k + 1).to_string());
            }
        }
        for (interface, networks) in by_interface.into_iter().filter(|(_, n)| n.len() > 1) {
            single.push(format!("{}'s networks {} share interface {interface}", node.name, listing(&networks)));
        }
    }
    out.push(findings(
        Network,
        "network.redundancy",
        "At least two independent networks",
        &single,
        Outcome::Warning,
        "Every node has at least two networks, each on its own interface.".into(),
        |found| format!("{}: one link failure can cut a node off and trigger a failover.", found.join("; ")),
        "Give every node a second heartbeat network on its own interface and switch (`--net` twice).",
    ));

    // The same IP on two nodes: heartbeats and peer traffic would go to the wrong one.
    let mut owners: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for node in &survey.nodes {
        for address in &node.networks {
            let ip = address.rsplit_once(':').map_or(address.as_str(), |(ip, _)| ip);
            let names = owners.entry(ip).or_default();
            if !names.contains(&node.name) {
                names.push(node.name.clone());
            }
        }
    }
    let clashes: Vec<String> = owners
        .iter()
        .filter(|(_, names)| names.len() > 1)
        .map(|(ip, names)| format!("{ip} is declared by {}", listing(names)))
        .collect();
    out.push(findings(
        Network,
        "network.addresses",
        "No duplicate addresses",
        &clashes,
        Outcome::Fail,
        "Every network address belongs to one node.".into(),
        |found| format!("{}.", found.join("; ")),
        "Give each node its own address on each network.",
    ));

    if let Some(state) = state {
        let silent: Vec<String> = state
            .nodes
            .values()
            .flat_map(|n| {
                n.networks
                    .iter()
                    .enumerate()
                    .filter(|(_, net)| net.state == NetworkState::Degraded)
                    .map(move |(k, net)| format!("{} on network {} ({})", n.name, k + 1, net.address))
            })
            .collect();
        out.push(findings(
            Network,
            "network.heartbeats",
            "Heartbeats arrive on every network",
            &silent,
            Outcome::Fail,
            "The failure detector hears every up node on every network.".into(),
            |found| format!("No heartbeats from {}.", found.join("; ")),
            "Repair that network: the node is now one link failure away from being failed over.",
        ));
    }

    let skewed: Vec<String> = survey
        .nodes
        .iter()
        .filter_map(|n| n.clock.map(|c| (n, c)))
        .filter(|(_, c)| c.certain_skew_ms() > CLOCK_SKEW_MS)
        .map(|(n, c)| {
            format!(
                "{} is {} ms {}",
                n.name,
                c.offset_ms.unsigned_abs(),
                if c.offset_ms > 0 { "ahead" } else { "behind" }
            )
        })
        .collect();
    let worst_offset = survey.nodes.iter().filter_map(|n| n.clock).map(|c| c.offset_ms.unsigned_abs()).max();
    out.push(match worst_offset {
        None => check("network.clock", Network, "Clocks agree", Outcome::Skipped, "No clock was read.".into(), ""),
        Some(worst) => findings(
            Network,
            "network.clock",
            "Clocks agree",
            &skewed,
            Outcome::Warning,
            format!("Wall clocks agree to within {worst} ms."),
            |found| {
                format!("{} (failover does not depend on it, but logs and events will not line up).", found.join("; "))
            },
            "Run NTP (chrony or systemd-timesyncd) against the same servers on every node.",
        ),
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::inventory::tests::survey;
    use crate::validation::survey::ClockReading;
    use crate::validation::test_support::{outcome, text};

    #[test]
    fn two_networks_on_their_own_interfaces_pass() {
        let checks = checks(&survey(), None);
        assert!(checks.iter().all(|c| c.outcome == Outcome::Pass), "{checks:#?}");
        assert!(text(&checks, "network.reachability").contains("All 12 node-to-node paths"));
        assert!(text(&checks, "network.latency").contains("network 2: 0.15 ms round trip, 0% loss"));
    }

    #[test]
    fn a_blocked_network_of_one_node_fails_and_is_named() {
        let mut s = survey();
        for n in &mut s.nodes {
            for r in n.reach.iter_mut().filter(|r| r.network == 2 && (r.to == "c" || n.name == "c")) {
                r.answered = 0;
                r.rtt_us = None;
                r.error = Some("timed out".into());
            }
        }
        let checks = checks(&s, None);
        assert_eq!(outcome(&checks, "network.reachability"), Outcome::Fail);
        let said = text(&checks, "network.reachability");
        assert!(said.contains("a cannot reach c on network 2 (10.0.2.1:7401 → 10.0.2.3:7401: timed out)"), "{said}");
        assert!(said.contains("c cannot reach b on network 2"), "{said}");
        assert!(!said.contains("network 1"), "{said}");
    }

    #[test]
    fn shared_interfaces_single_networks_clashes_and_skew_are_found() {
        let mut s = survey();
        s.nodes[0].facts.as_mut().expect("facts").interfaces = vec![Some("lo".into()), Some("lo".into())];
        s.nodes[1].networks.truncate(1);
        s.nodes[2].networks[1] = "10.0.2.1:7402".into();
        s.nodes[2].clock = Some(ClockReading { offset_ms: -5_000, uncertainty_ms: 2 });
        let checks = checks(&s, None);
        assert_eq!(outcome(&checks, "network.redundancy"), Outcome::Warning);
        let said = text(&checks, "network.redundancy");
        assert!(
            said.contains("a's networks 1 and 2 share interface lo") && said.contains("b has one network"),
            "{said}"
        );
        assert_eq!(outcome(&checks, "network.addresses"), Outcome::Fail);
        assert!(text(&checks, "network.addresses").contains("10.0.2.1 is declared by a and c"));
        assert_eq!(outcome(&checks, "network.clock"), Outcome::Warning);
        assert!(text(&checks, "network.clock").contains("c is 5000 ms behind"));
    }

    #[test]
    fn clock_readings_allow_for_the_round_trip() {
        let c = ClockReading::measure(1_000, 1_600, 1_200);
        assert_eq!((c.offset_ms, c.uncertainty_ms), (500, 100));
        assert_eq!(c.certain_skew_ms(), 400);
    }
}
