//! Role behaviour with real processes: restart in place, failover after the restart policy,
//! possible and preferred owners, hard anti-affinity, stop/delete, and refused bad input.

mod common;

use std::time::Duration;

use common::*;

fn starts_on(dir: &std::path::Path) -> Vec<String> {
    lines(dir, "starts").iter().filter_map(|l| l.split_whitespace().next().map(str::to_string)).collect()
}

#[test]
fn a_dying_process_is_restarted_in_place_then_fails_over_within_its_possible_owners() {
    let mut c = Cluster::new(116, 3, 0);
    c.form();
    let dir = c.dir.path().join("work");
    let command = lock_workload(&dir);
    let out = c.halo(&[
        "role",
        "create",
        "svc116",
        "--type",
        "process",
        "--param",
        &format!("command={command}"),
        "--possible",
        "n1,n2",
        "--preferred",
        "n2",
        "--max-restarts",
        "2",
        "--restart-period",
        "120",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let first = c.wait_online("svc116", Duration::from_secs(15), |_| true).expect("online");
    assert_eq!(first, "n2", "the preferred owner runs it");

    // Two exits: restarted in place each time, on the same node, without a new generation.
    for restart in 1..=2 {
        let before = lines(&dir, "starts").len();
        let killed_at = wall_ms();
        kill_instance("svc116");
        assert!(wait_until(Duration::from_secs(5), || lines(&dir, "starts").len() > before), "no restart {restart}");
        let restarted_at: u64 = lines(&dir, "starts")
            .last()
            .and_then(|l| l.split_whitespace().nth(2).and_then(|t| t.parse().ok()))
            .unwrap_or(0);
        println!("restart in place {restart}: {} ms", restarted_at.saturating_sub(killed_at));
        assert_eq!(starts_on(&dir).last().map(String::as_str), Some("n2"));
    }
    assert_eq!(c.role("svc116").map(|r| r["generation"].clone()), Some(1.into()));

    // The third exit exceeds the policy: the role fails over, and only to the other possible owner.
    kill_instance("svc116");
    let next = c.wait_online("svc116", Duration::from_secs(15), |o| o != "n2");
    assert_eq!(next.as_deref(), Some("n1"), "{:?}", c.role("svc116"));

    // Failing there too leaves no possible owner: the role is failed, and why says so.
    for _ in 0..3 {
        let before = lines(&dir, "starts").len();
        kill_instance("svc116");
        wait_until(Duration::from_secs(5), || lines(&dir, "starts").len() > before);
    }
    assert!(wait_until(Duration::from_secs(15), || c.role("svc116").is_some_and(|r| r["state"] == "failed")));
    let why = c.halo(&["role", "why", "svc116"]);
    let why = String::from_utf8_lossy(&why.stdout).to_string();
    assert!(why.contains("no node can run it"), "{why}");
    assert!(why.contains("n3: is not a possible owner"), "{why}");
    assert!(starts_on(&dir).iter().all(|n| n != "n3"), "ran outside its possible owners");
    assert!(role_processes("svc116").is_empty());
    assert!(lines(&dir, "failures").is_empty());

    // Starting it again clears the failure history.
    let out = c.halo(&["role", "stop", "svc116"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = c.halo(&["role", "start", "svc116"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(c.wait_online("svc116", Duration::from_secs(15), |_| true).is_some(), "{:?}", c.role("svc116"));
}

#[test]
fn placement_rules_stop_delete_and_bad_input() {
    let mut c = Cluster::new(117, 3, 0);
    c.form();
    let create = |name: &str, extra: &[&str]| {
        let mut args = vec!["role", "create", name, "--type", "process", "--param", "command=exec sleep 100000"];
        args.extend_from_slice(extra);
        c.halo(&args)
    };
    for (name, preferred) in [("db1-117", "n2"), ("db2-117", "n2"), ("db3-117", "n2")] {
        let out = create(name, &["--anti-affinity", "db", "--preferred", preferred]);
        assert!(out.status.success(), "{}", text(&out));
    }
    let mut owners = Vec::new();
    for name in ["db1-117", "db2-117", "db3-117"] {
        owners.push(c.wait_online(name, Duration::from_secs(15), |_| true).expect("online"));
    }
    owners.sort();
    assert_eq!(owners, ["n1", "n2", "n3"], "hard anti-affinity spreads them while there is room");
    assert_eq!(c.role("db1-117").and_then(|r| r["owner"].as_str().map(str::to_string)).as_deref(), Some("n2"));

    // No room left: the fourth one cannot be placed, and says why.
    let out = create("db4-117", &["--anti-affinity", "db"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(wait_until(Duration::from_secs(10), || c.role("db4-117").is_some_and(|r| r["state"] == "failed")));
    let why = String::from_utf8_lossy(&c.halo(&["role", "why", "db4-117"]).stdout).to_string();
    assert!(why.contains("shares anti-affinity class 'db'"), "{why}");
    assert!(role_processes("db4-117").is_empty());

    // Stop and delete.
    let out = c.halo(&["role", "delete", "db1-117"]);
    assert!(!out.status.success(), "a running role is not deleted");
    assert!(String::from_utf8_lossy(&out.stderr).contains("stop it first"), "{}", text(&out));
    assert!(c.halo(&["role", "stop", "db1-117"]).status.success());
    assert!(wait_until(Duration::from_secs(10), || c.role("db1-117").is_some_and(|r| r["state"] == "offline")));
    assert!(wait_until(Duration::from_secs(5), || role_processes("db1-117").is_empty()));
    assert!(c.halo(&["role", "delete", "db1-117"]).status.success());
    assert!(c.role("db1-117").is_none());
    // The freed node is room for the role that could not be placed.
    assert_eq!(c.wait_online("db4-117", Duration::from_secs(15), |_| true).as_deref(), Some("n2"));

    // Bad input: a clear error, a non-zero exit, and nothing changes.
    let before = c.json(&["role", "list"]);
    for (args, expected) in [
        (vec!["--type", "nosuch"], "unknown resource type 'nosuch'"),
        (vec!["--type", "process", "--param", "command=true", "--preferred", "ghost"], "no node named 'ghost'"),
        (vec!["--type", "process"], "needs a 'command' parameter"),
        (vec!["--type", "process", "--param", "nokey"], "expected KEY=VALUE"),
        (vec!["--type", "ocf:heartbeat"], "ocf:PROVIDER:AGENT"),
    ] {
        let mut full = vec!["role", "create", "bad117", "--param", "command=true"];
        if args.contains(&"--param") || args == ["--type", "process"] {
            full.truncate(3);
        }
        full.extend(args.iter().copied());
        let out = c.halo(&full);
        assert!(!out.status.success(), "{full:?} was accepted");
        assert!(String::from_utf8_lossy(&out.stderr).contains(expected), "{full:?}: {}", text(&out));
    }
    let out = create("db2-117", &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"), "{}", text(&out));
    assert_eq!(c.json(&["role", "list"]), before, "refused input changed nothing");
}
