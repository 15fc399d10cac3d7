//! Fence agents: with a device configured, a silent node is powered off through the standard
//! `fence_*` stdin protocol and its roles restart at once instead of after its lease. The test
//! agent is a real power switch for a node on loopback: it kills the node's agent, fence guard
//! and workloads.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn a_hung_node_is_powered_off_and_its_role_restarts_at_once() {
    let mut c = Cluster::new(124, 3, 0);
    let path = install_fence_agent(c.dir.path());
    c.env.push(("PATH".into(), path));
    c.form();
    assert!(c.halo(&["cluster", "set", "profile=fast"]).status.success());
    // A lease far longer than the test waits: the role can only come back in time through
    // the fence agent, never by the lease running out first on a slow machine.
    const LEASE_MS: u64 = 20_000;
    let out =
        c.halo(&["cluster", "set", &format!("lease_ms={LEASE_MS}"), &format!("lease_margin_ms={}", LEASE_MS / 100)]);
    assert!(out.status.success(), "{}", text(&out));
    for node in &c.nodes {
        let datadir = format!("datadir={}", node.data_dir.display());
        let out = c.halo(&["node", "fence", &node.name, "--agent", "fence_halotest", "--param", &datadir]);
        assert!(out.status.success(), "{}", text(&out));
        // A device cannot turn a power-off into something else: fence agents take the last
        // value of a key, so `action=status` after halo's `action=off` would make a status
        // query that exits 0 count as a confirmed power-off. Refused, and the device stays as
        // it was (the power-off below goes through it).
        for param in ["action=status", "option=status", "nodename=n9", "Action=reboot"] {
            let out = c.halo(&[
                "node",
                "fence",
                &node.name,
                "--agent",
                "fence_halotest",
                "--param",
                &datadir,
                "--param",
                param,
            ]);
            assert!(!out.status.success(), "{param} was accepted");
            let err = String::from_utf8_lossy(&out.stderr).to_string();
            let key = param.split('=').next().unwrap_or_default();
            assert!(err.contains(&format!("parameter '{key}' is reserved")), "{err}");
        }
    }
    let dir = c.dir.path().join("work");
    let command = lock_workload(&dir);
    assert!(
        c.halo(&["role", "create", "fenced124", "--type", "process", "--param", &format!("command={command}")])
            .status
            .success()
    );
    let owner = c.wait_online("fenced124", Duration::from_secs(15), |_| true).expect("online");
    assert!(wait_until(Duration::from_secs(5), || !lines(&dir, "starts").is_empty()));
    // Hang a node that is not the leader (the leader is the one that fences).
    let leader = c.leader().expect("leader");
    let victim_name = if owner != leader {
        owner
    } else {
        let other = c.nodes.iter().map(|n| n.name.clone()).find(|n| *n != leader).expect("other");
        assert!(c.halo(&["role", "move", "fenced124", "--to", &other]).status.success());
        assert!(wait_until(Duration::from_secs(5), || lines(&dir, "starts")
            .last()
            .is_some_and(|l| l.starts_with(&other))));
        other
    };
    let victim = c.index_of(&victim_name);
    let frozen_at = wall_ms();
    c.freeze(victim, true);
    let next = c.wait_online("fenced124", Duration::from_secs(10), |o| o != victim_name);
    assert!(next.is_some(), "{:?}", c.role("fenced124"));
    assert!(wait_until(Duration::from_secs(5), || lines(&dir, "starts")
        .last()
        .is_some_and(|l| !l.starts_with(&victim_name))));
    let started: u64 =
        lines(&dir, "starts").last().and_then(|l| l.split_whitespace().nth(2)?.parse().ok()).unwrap_or(0);
    println!("hung node fenced -> role started elsewhere: {} ms", started.saturating_sub(frozen_at));
    assert!(started.saturating_sub(frozen_at) < LEASE_MS, "came back by the lease, not the fence");
    let fenced = std::fs::read_to_string(format!("{}.fenced", c.nodes[victim].data_dir.display())).unwrap_or_default();
    assert!(fenced.contains("off"), "the fence agent did not run");
    let why = String::from_utf8_lossy(&c.halo(&["role", "why", "fenced124"]).stdout).to_string();
    assert!(why.contains("was powered off by fence_halotest"), "{why}");
    assert!(lines(&dir, "failures").is_empty(), "ran twice: {:?}", lines(&dir, "failures"));
    assert_eq!(c.role_processes("fenced124").len(), 1);

    // The powered-off node comes back, rejoins, and nothing runs twice.
    c.nodes[victim].child = None;
    c.start(victim);
    assert!(c.wait_status(Duration::from_secs(20), |s| up_count(s) == 3), "{:?}", c.status());
    assert_eq!(c.role_processes("fenced124").len(), 1);

    // Bad input changes nothing.
    let out = c.halo(&["node", "fence", "n1", "--agent", "rm"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a fence agent name"), "{}", text(&out));
    let out = c.halo(&["node", "fence", "n1", "--clear", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"fence_device\": null"), "{}", text(&out));
}
