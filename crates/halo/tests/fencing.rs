//! Failover with real processes: a host crash, a hung agent (SIGSTOP) and a network partition.
//! The workload takes an exclusive flock on a shared file and records any failure to get it,
//! so "never ran twice" is checked, not assumed.

mod common;

use std::time::Duration;

use common::*;

fn owner_index(c: &Cluster, role: &str) -> usize {
    let owner = c.role(role).and_then(|r| r["owner"].as_str().map(str::to_string)).expect("owner");
    c.index_of(&owner)
}

/// The start line of the newest instance: (node, generation, start time in ms).
fn last_start(dir: &std::path::Path) -> (String, u64, u64) {
    let line = lines(dir, "starts").last().cloned().expect("a start");
    let mut parts = line.split_whitespace();
    let node = parts.next().unwrap_or_default().to_string();
    let generation = parts.next().and_then(|g| g.parse().ok()).unwrap_or(0);
    let at = parts.next().and_then(|t| t.parse().ok()).unwrap_or(0);
    (node, generation, at)
}

fn create_lock_role(c: &Cluster, name: &str, dir: &std::path::Path) {
    let command = lock_workload(dir);
    let out = c.halo(&["role", "create", name, "--type", "process", "--param", &format!("command={command}")]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(c.wait_online(name, Duration::from_secs(15), |_| true).is_some(), "{name} never came online");
    // Online means started; give the script a moment to record itself.
    assert!(wait_until(Duration::from_secs(5), || !lines(dir, "starts").is_empty()));
}

#[test]
fn host_crash_moves_the_role_to_another_node() {
    let mut c = Cluster::new(113, 3, 0);
    c.form();
    let dir = c.dir.path().join("work");
    create_lock_role(&c, "crash113", &dir);
    let victim = owner_index(&c, "crash113");
    let victim_name = c.nodes[victim].name.clone();

    let crashed_at = wall_ms();
    c.crash(victim);
    let owner = c.wait_online("crash113", Duration::from_secs(20), |o| o != victim_name);
    assert!(owner.is_some(), "role did not come back: {:?}", c.role("crash113"));
    assert!(wait_until(Duration::from_secs(5), || last_start(&dir).1 >= 2));
    let (node, generation, started_at) = last_start(&dir);
    assert_ne!(node, victim_name);
    assert!(generation >= 2);
    println!("host crash -> role started elsewhere: {} ms", started_at.saturating_sub(crashed_at));
    assert!(lines(&dir, "failures").is_empty(), "ran twice: {:?}", lines(&dir, "failures"));
    assert_eq!(c.role_processes("crash113").len(), 1, "exactly one instance runs");

    // The crashed host comes back: nothing runs twice, and it rejoins.
    c.start(victim);
    assert!(c.wait_status(Duration::from_secs(20), |s| up_count(s) == 3));
    assert!(
        holds_for(Duration::from_secs(1), || c.role_processes("crash113").len() == 1),
        "it ran twice or not at all"
    );
    assert!(lines(&dir, "failures").is_empty());
}

#[test]
fn a_hung_agent_is_fenced_before_the_role_starts_elsewhere() {
    let mut c = Cluster::new(114, 3, 0);
    c.form();
    let dir = c.dir.path().join("work");
    create_lock_role(&c, "hung114", &dir);
    for round in 0..3 {
        let victim = owner_index(&c, "hung114");
        let victim_name = c.nodes[victim].name.clone();
        let (_, before, _) = last_start(&dir);
        c.freeze(victim, true);
        let owner = c.wait_online("hung114", Duration::from_secs(20), |o| o != victim_name);
        assert!(owner.is_some(), "round {round}: role did not move: {:?}", c.role("hung114"));
        assert!(wait_until(Duration::from_secs(5), || last_start(&dir).1 > before), "round {round}: no new start");
        c.freeze(victim, false);
        assert!(c.wait_status(Duration::from_secs(20), |s| up_count(s) == 3), "round {round}: node did not rejoin");
        assert!(lines(&dir, "failures").is_empty(), "round {round}: ran twice: {:?}", lines(&dir, "failures"));
    }
    assert!(holds_for(Duration::from_secs(1), || c.role_processes("hung114").len() == 1), "exactly one instance runs");
    assert!(lines(&dir, "failures").is_empty());
}

#[test]
fn an_isolated_node_stops_its_roles_and_the_majority_restarts_them() {
    let mut c = Cluster::new(115, 3, 0);
    c.form();
    let dir = c.dir.path().join("work");
    create_lock_role(&c, "part115", &dir);
    let victim = owner_index(&c, "part115");
    let victim_name = c.nodes[victim].name.clone();
    let victim_led = c.leader().as_deref() == Some(victim_name.as_str());
    let (_, before, _) = last_start(&dir);
    for net in c.nodes[victim].nets.clone() {
        c.block(&net);
    }
    let owner = c.wait_online("part115", Duration::from_secs(20), |o| o != victim_name);
    assert!(owner.is_some(), "majority did not restart it: {:?}", c.role("part115"));
    assert!(wait_until(Duration::from_secs(5), || last_start(&dir).1 > before));
    // The isolated node's instance is gone: exactly one runs, on the majority side.
    assert!(wait_until(Duration::from_secs(5), || c.role_processes("part115").len() == 1));
    assert!(lines(&dir, "failures").is_empty(), "ran twice: {:?}", lines(&dir, "failures"));

    c.unblock_all();
    assert!(c.wait_status(Duration::from_secs(20), |s| up_count(s) == 3), "{:?}", c.status());
    assert!(
        holds_for(Duration::from_secs(1), || c.role_processes("part115").len() == 1),
        "nothing runs twice after healing"
    );
    assert_eq!(c.role("part115").map(|r| r["state"].clone()), Some("online".into()));
    assert!(lines(&dir, "failures").is_empty());
    // The isolated node noticed its lease run out; the others never lost theirs (unless the
    // isolated node led: then theirs waited for an election).
    assert!(c.metric(victim, "halo_lease_lapses_total").is_some_and(|n| n >= 1.0));
    for i in (0..3).filter(|&i| i != victim && !victim_led) {
        assert_eq!(c.metric(i, "halo_lease_lapses_total"), Some(0.0), "{}", c.nodes[i].name);
    }
}

#[test]
fn a_restarted_agent_first_sweeps_up_what_its_previous_run_left() {
    let mut c = Cluster::new(126, 3, 0);
    c.form();
    let dir = c.dir.path().join("work");
    create_lock_role(&c, "sweep126", &dir);
    let owner = owner_index(&c, "sweep126");
    let old = c.role_processes("sweep126");
    // The agent dies alone; its fence guard and the workload live on (their lease still runs).
    c.kill9(owner);
    assert_eq!(c.role_processes("sweep126"), old, "the workload outlives its agent for now");
    let starts = lines(&dir, "starts").len();
    c.start(owner);
    // The new agent's guard kills the leftover before anything starts, so the new instance
    // gets the lock: without the sweep it would find it held and record a failure.
    assert!(
        wait_until(Duration::from_secs(15), || lines(&dir, "starts").len() > starts),
        "the role did not start again: {:?}",
        c.role("sweep126")
    );
    assert!(wait_until(Duration::from_secs(5), || c.role_processes("sweep126").len() == 1));
    assert!(c.role_processes("sweep126").iter().all(|g| !old.contains(g)), "the old instance survived");
    assert!(lines(&dir, "failures").is_empty(), "ran twice: {:?}", lines(&dir, "failures"));
}
