//! Benchmarks of roles and failover. Ignored by the normal suite; run with `scripts/bench`.
//! They print and record numbers (for `scripts/compare`) and assert only that nothing ran twice
//! and nothing started that no crash or move caused.
//! `HALO_BENCH_RUNS` sets the number of crash runs per profile (default 20).

mod common;

use std::time::Duration;

use common::*;
use halo_bench::record;

fn runs() -> usize {
    std::env::var("HALO_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(20)
}

/// A workload that records its start, and its stop on SIGTERM, with millisecond times.
fn timed_workload(dir: &std::path::Path) -> String {
    std::fs::create_dir_all(dir).expect("dir");
    let script = dir.join("timed.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nexec 9>>'{d}/lock'\n\
             if ! flock -n 9; then echo \"$HALO_NODE $(date +%s%3N)\" >> '{d}/failures'; exit 1; fi\n\
             echo \"start $HALO_NODE $(date +%s%3N)\" >> '{d}/times'\n\
             trap 'echo \"stop $HALO_NODE $(date +%s%3N)\" >> {d}/times; exit 0' TERM\n\
             sleep 100000 & wait\n",
            d = dir.display()
        ),
    )
    .expect("script");
    format!("exec sh {}", script.display())
}

fn times(dir: &std::path::Path, kind: &str) -> Vec<(String, u64)> {
    lines(dir, "times")
        .iter()
        .filter_map(|l| {
            let mut p = l.split_whitespace();
            (p.next()? == kind).then_some(())?;
            Some((p.next()?.to_string(), p.next()?.parse().ok()?))
        })
        .collect()
}

fn owner(c: &Cluster, role: &str) -> String {
    c.role(role).and_then(|r| r["owner"].as_str().map(str::to_string)).expect("owner")
}

/// Crash the role's owner `runs()` times: three runs in four a follower, the fourth the leader
/// (moved there first), as `scripts/pacemaker` does with Pacemaker's DC. Records the times under
/// `key` (all runs, `.follower`, `.coordinator`), the double-active events (a second instance
/// found the first's lock held) and the false failovers (starts that no move or crash caused).
fn crash_runs(c: &mut Cluster, profile: &str, key: &str, dir: &std::path::Path, role: &str) {
    let mut follower_crash = Vec::new();
    let mut leader_crash = Vec::new();
    let mut all = Vec::new();
    let mut caused_starts = times(dir, "start").len();
    for run in 0..runs() {
        // Alternate: most runs crash a follower owner, every fourth the leader itself.
        let leader = c.leader().expect("leader");
        let want_leader = run % 4 == 3;
        let current = owner(c, role);
        let target = if want_leader {
            leader.clone()
        } else {
            c.nodes.iter().map(|n| n.name.clone()).find(|n| *n != leader && *n != current).unwrap_or(current.clone())
        };
        if target != current {
            let out = c.halo(&["role", "move", role, "--to", &target]);
            assert!(out.status.success(), "{}", text(&out));
            caused_starts += 1;
        }
        // Online means started; wait for the workload to record itself before the crash.
        let recorded = || times(dir, "start").last().is_some_and(|(node, _)| *node == target);
        assert!(wait_until(Duration::from_secs(5), recorded), "no start on {target}");
        let starts_before = times(dir, "start").len();
        let victim = c.index_of(&target);
        let crashed_at = wall_ms();
        c.crash(victim);
        assert!(wait_until(Duration::from_secs(30), || times(dir, "start").len() > starts_before), "no restart");
        let started = times(dir, "start").last().map(|(_, t)| *t).unwrap_or(0);
        let seconds = started.saturating_sub(crashed_at) as f64 / 1000.0;
        caused_starts += 1;
        all.push(seconds);
        if target == leader {
            leader_crash.push(seconds)
        } else {
            follower_crash.push(seconds)
        }
        // A power switch still at work would power the node off again once it is back (the
        // role may have come back by the lease before the fence agent finished).
        assert!(
            wait_until(Duration::from_secs(30), || fence_agents_running(c.dir.path()).is_empty()),
            "the fence agent did not finish"
        );
        c.start(victim);
        assert!(c.wait_status(Duration::from_secs(30), |s| s["quorum"] == true && up_count(s) == 3));
        assert!(c.wait_online(role, Duration::from_secs(30), |_| true).is_some());
    }
    let label = format!("{profile} profile{}", if key.ends_with("fenced") { ", fence agent" } else { "" });
    let what = "node crash -> role started elsewhere";
    record(profile, key, &format!("{label}: {what}, all runs"), "s", all);
    record(profile, &format!("{key}.follower"), &format!("{label}: {what}, owner a follower"), "s", follower_crash);
    record(profile, &format!("{key}.coordinator"), &format!("{label}: {what}, owner the leader"), "s", leader_crash);
    // Give a stray start (a false failover) time to show before counting.
    std::thread::sleep(Duration::from_secs(2));
    let failures = lines(dir, "failures");
    let false_failovers = times(dir, "start").len().saturating_sub(caused_starts);
    let events = |n: usize| vec![n as f64];
    record(
        profile,
        &format!("double_active.{key}"),
        &format!("{label}: double-active events"),
        "events",
        events(failures.len()),
    );
    record(
        profile,
        &format!("false_failovers.{key}"),
        &format!("{label}: false failovers"),
        "events",
        events(false_failovers),
    );
    assert!(failures.is_empty(), "ran twice: {failures:?}");
    assert_eq!(false_failovers, 0, "starts nobody caused: {:?}", lines(dir, "times"));
}

/// A 3-node cluster on `profile` with one timed process role, crashed `runs()` times. With
/// `fence_agent`, every node has a fence device: the leader powers a silent node off (the test
/// agent kills what is left of it) and recovers at once, without waiting for the lease.
fn crash_bench(test_id: u8, profile: &str, fence_agent: bool) {
    let mut c = Cluster::new(test_id, 3, 0);
    if fence_agent {
        let path = install_fence_agent(c.dir.path());
        c.env.push(("PATH".into(), path));
    }
    // Created with the profile, as an admin who wants it would: its Raft timing too.
    c.profile = Some(profile.into());
    c.form();
    for node in c.nodes.iter().filter(|_| fence_agent) {
        let datadir = format!("datadir={}", node.data_dir.display());
        let out = c.halo(&["node", "fence", &node.name, "--agent", "fence_halotest", "--param", &datadir]);
        assert!(out.status.success(), "{}", text(&out));
    }
    let dir = c.dir.path().join("work");
    let role = format!("crash{test_id}");
    let command = timed_workload(&dir);
    assert!(
        c.halo(&["role", "create", &role, "--type", "process", "--param", &format!("command={command}")])
            .status
            .success()
    );
    assert!(c.wait_online(&role, Duration::from_secs(15), |_| true).is_some());
    let key = if fence_agent { "node_crash_fenced" } else { "node_crash" };
    crash_runs(&mut c, profile, key, &dir, &role);
}

#[test]
#[ignore = "benchmark: run with scripts/bench"]
fn bench_node_crash_to_role_online_default_profile() {
    crash_bench(130, "default", false);
}

#[test]
#[ignore = "benchmark: run with scripts/bench"]
fn bench_node_crash_to_role_online_fast_profile() {
    crash_bench(131, "fast", false);
}

#[test]
#[ignore = "benchmark: run with scripts/bench"]
fn bench_restart_in_place_and_planned_move() {
    let mut c = Cluster::new(132, 3, 0);
    c.form();
    let dir = c.dir.path().join("work");
    let command = timed_workload(&dir);
    let out = c.halo(&[
        "role",
        "create",
        "svc132",
        "--type",
        "process",
        "--param",
        &format!("command={command}"),
        "--max-restarts",
        "1000",
        "--restart-period",
        "1",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(c.wait_online("svc132", Duration::from_secs(15), |_| true).is_some());

    let mut restart = Vec::new();
    for _ in 0..runs() {
        std::thread::sleep(Duration::from_millis(300));
        let before = times(&dir, "start").len();
        let killed_at = wall_ms();
        kill_instance(&c, "svc132");
        assert!(wait_until(Duration::from_secs(10), || times(&dir, "start").len() > before));
        let started = times(&dir, "start").last().map(|(_, t)| *t).unwrap_or(0);
        restart.push(started.saturating_sub(killed_at) as f64 / 1000.0);
    }
    record("default", "restart", "service process killed -> restarted in place", "s", restart);

    let mut outage = Vec::new();
    for _ in 0..runs() {
        let current = owner(&c, "svc132");
        let target = c.nodes.iter().map(|n| n.name.clone()).find(|n| *n != current).expect("target");
        let stops_before = times(&dir, "stop").len();
        let starts_before = times(&dir, "start").len();
        let out = c.halo(&["role", "move", "svc132", "--to", &target]);
        assert!(out.status.success(), "{}", text(&out));
        assert!(wait_until(Duration::from_secs(10), || times(&dir, "start").len() > starts_before));
        let stopped = times(&dir, "stop").get(stops_before).map(|(_, t)| *t).expect("stop recorded");
        let started = times(&dir, "start").last().map(|(_, t)| *t).unwrap_or(0);
        outage.push(started.saturating_sub(stopped) as f64 / 1000.0);
    }
    record("default", "planned_move", "planned move: old instance stopped -> new one started", "s", outage);
    assert!(lines(&dir, "failures").is_empty());
}

#[test]
#[ignore = "benchmark: run with scripts/bench"]
fn bench_drain_of_50_roles() {
    let mut c = Cluster::new(133, 3, 0);
    c.form();
    for i in 0..50 {
        let name = format!("d{i:02}");
        let out = c.halo(&[
            "role",
            "create",
            &name,
            "--type",
            "process",
            "--param",
            "command=exec sleep 100000",
            "--preferred",
            "n1",
        ]);
        assert!(out.status.success(), "{}", text(&out));
    }
    assert!(wait_until(Duration::from_secs(60), || c
        .json(&["role", "list"])
        .as_array()
        .is_some_and(|a| a.iter().all(|r| r["state"] == "online"))));
    let t = std::time::Instant::now();
    let out = c.halo(&["node", "pause", "n1", "--drain"]);
    assert!(out.status.success(), "{}", text(&out));
    record("default", "drain_50", "drain of a node with 50 process roles", "s", vec![t.elapsed().as_secs_f64()]);
    let t = std::time::Instant::now();
    let out = c.halo(&["node", "resume", "n1", "--failback"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(wait_until(Duration::from_secs(60), || c
        .json(&["role", "list"])
        .as_array()
        .is_some_and(|a| a.iter().all(|r| r["state"] == "online" && r["owner"] == "n1"))));
    record("default", "failback_50", "resume with failback of 50 process roles", "s", vec![t.elapsed().as_secs_f64()]);
}

#[test]
#[ignore = "benchmark: run with scripts/bench"]
fn bench_node_crash_with_fence_agent_default_profile() {
    crash_bench(134, "default", true);
}

#[test]
#[ignore = "benchmark: run with scripts/bench"]
fn bench_node_crash_with_fence_agent_fast_profile() {
    crash_bench(135, "fast", true);
}
