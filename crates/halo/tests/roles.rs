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
        kill_instance(&c, "svc116");
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
    kill_instance(&c, "svc116");
    let next = c.wait_online("svc116", Duration::from_secs(15), |o| o != "n2");
    assert_eq!(next.as_deref(), Some("n1"), "{:?}", c.role("svc116"));

    // Failing there too leaves no possible owner: the role is failed, and why says so.
    for _ in 0..3 {
        let before = lines(&dir, "starts").len();
        kill_instance(&c, "svc116");
        wait_until(Duration::from_secs(5), || lines(&dir, "starts").len() > before);
    }
    assert!(wait_until(Duration::from_secs(15), || c.role("svc116").is_some_and(|r| r["state"] == "failed")));
    let why = c.halo(&["role", "why", "svc116"]);
    let why = String::from_utf8_lossy(&why.stdout).to_string();
    assert!(why.contains("no node can run it"), "{why}");
    assert!(why.contains("n3: is not a possible owner"), "{why}");
    assert!(starts_on(&dir).iter().all(|n| n != "n3"), "ran outside its possible owners");
    assert!(c.role_processes("svc116").is_empty());
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
    assert!(c.role_processes("db4-117").is_empty());

    // Stop and delete.
    let out = c.halo(&["role", "delete", "db1-117"]);
    assert!(!out.status.success(), "a running role is not deleted");
    assert!(String::from_utf8_lossy(&out.stderr).contains("stop it first"), "{}", text(&out));
    assert!(c.halo(&["role", "stop", "db1-117"]).status.success());
    assert!(wait_until(Duration::from_secs(10), || c.role("db1-117").is_some_and(|r| r["state"] == "offline")));
    assert!(wait_until(Duration::from_secs(5), || c.role_processes("db1-117").is_empty()));
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

/// Nodes offer 1 GiB each. Roles only go where they fit; a high-priority role displaces a
/// low one, which stops before it starts and moves where there is room; a manual-priority role
/// whose node dies waits for the admin instead of starting elsewhere.
#[test]
fn capacity_priorities_and_manual_roles() {
    let mut c = Cluster::new(128, 3, 0);
    for node in &mut c.nodes {
        node.extra_args = vec!["--memory".into(), "1G".into(), "--cpu".into(), "2".into()];
    }
    c.form();
    let trace = c.dir.path().join("trace");
    let command = format!(
        "echo \"start $HALO_ROLE $HALO_NODE\" >> {t}; trap 'echo \"stop $HALO_ROLE $HALO_NODE\" >> {t}; exit 0' TERM; \
         while :; do sleep 0.1; done",
        t = trace.display()
    );
    let create = |name: &str, extra: &[&str]| {
        let param = format!("command={command}");
        let mut args = vec!["role", "create", name, "--type", "process", "--param", &param];
        args.extend_from_slice(extra);
        let out = c.halo(&args);
        assert!(out.status.success(), "{}", text(&out));
    };
    create("low128", &["--priority", "low", "--memory", "768M", "--preferred", "n1"]);
    create("spare128", &["--priority", "manual", "--memory", "256M", "--preferred", "n2"]);
    create("mid128", &["--memory", "768M", "--preferred", "n3"]);
    for (role, node) in [("low128", "n1"), ("spare128", "n2"), ("mid128", "n3")] {
        assert_eq!(c.wait_online(role, Duration::from_secs(15), |_| true).as_deref(), Some(node));
    }
    let n2 = c.json(&["node", "show", "n2"]);
    assert_eq!(n2["capacity"]["memory_mb"], 1024, "{n2}");
    assert_eq!(n2["used"]["memory_mb"], 256, "{n2}");

    // 1 GiB fits nowhere, and why says what is short where.
    create("big128", &["--memory", "1G"]);
    assert!(wait_until(Duration::from_secs(10), || c.role("big128").is_some_and(|r| r["state"] == "failed")));
    let why = String::from_utf8_lossy(&c.halo(&["role", "why", "big128"]).stdout).to_string();
    assert!(why.contains("n2: needs 1 GiB memory, only 768 MiB of 1 GiB free"), "{why}");
    assert!(c.halo(&["role", "stop", "big128"]).status.success());

    // High priority, only on n1 or n3, where nothing is free: the low role on n1 makes room
    // and goes to n2, which has room; the medium role on n3 stays.
    create("vip128", &["--priority", "high", "--memory", "512M", "--possible", "n1,n3", "--preferred", "n1"]);
    assert_eq!(c.wait_online("vip128", Duration::from_secs(15), |_| true).as_deref(), Some("n1"));
    assert_eq!(c.wait_online("low128", Duration::from_secs(15), |o| o == "n2").as_deref(), Some("n2"));
    assert_eq!(c.role("mid128").map(|r| r["owner"].clone()), Some("n3".into()));
    let events = lines(c.dir.path(), "trace");
    let stopped = events.iter().position(|l| l == "stop low128 n1").expect("low128 stopped on n1");
    let started = events.iter().position(|l| l == "start vip128 n1").expect("vip128 started on n1");
    assert!(stopped < started, "the displaced role stops before the high one starts: {events:?}");
    let why = String::from_utf8_lossy(&c.halo(&["role", "why", "low128"]).stdout).to_string();
    assert!(why.contains("displaced from n1 to make room for high-priority role vip128"), "{why}");

    // n2 dies: the low role has no room left anywhere, and the manual one, which would fit,
    // waits for the admin.
    c.crash(1);
    assert!(wait_until(Duration::from_secs(20), || c.role("spare128").is_some_and(|r| r["state"] == "offline")));
    let spare = c.role("spare128").expect("spare128");
    assert!(spare["detail"].as_str().is_some_and(|d| d.contains("halo role start spare128")), "{spare}");
    assert!(wait_until(Duration::from_secs(10), || c.role("low128").is_some_and(|r| r["state"] == "failed")));
    assert!(
        holds_for(Duration::from_secs(2), || c.role_processes("spare128").is_empty()),
        "a manual role is not restarted on its own"
    );
    let out = c.halo(&["role", "start", "spare128"]);
    assert!(out.status.success(), "{}", text(&out));
    let owner = c.wait_online("spare128", Duration::from_secs(15), |_| true).expect("started by the admin");
    assert!(owner == "n1" || owner == "n3", "{owner}");

    // Bad sizes are refused with the reason, and nothing is created.
    let out = c.halo(&["role", "create", "bad128", "--type", "process", "--param", "command=true", "--memory", "lots"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("--memory: invalid memory amount 'lots'"), "{}", text(&out));
    assert!(c.role("bad128").is_none());
}
