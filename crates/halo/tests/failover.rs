//! Leader loss, rejoin and catch-up, and whole-cluster restart, with real agent processes.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn leader_killed_new_leader_elected_writes_continue_and_node_rejoins() {
    let mut c = Cluster::new(101, 3, 0);
    c.form();
    let old = c.leader().expect("a leader");
    let old_i = c.index_of(&old);

    let killed_at = Instant::now();
    c.kill9(old_i);
    assert!(
        c.wait_status(Duration::from_secs(10), |s| s["quorum"] == true
            && s["leader"].as_str().is_some_and(|l| l != old)),
        "no new leader after killing {old}"
    );
    // How fast is the benchmark's business (bench_core), not this test's.
    eprintln!("new leader after {:.2} s", killed_at.elapsed().as_secs_f64());

    // Config writes keep working, and the dead node is seen down.
    let out = c.halo(&["cluster", "set", "label.while_down=yes"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(c.wait_status(Duration::from_secs(10), |s| node(s, &old)["state"] == "down"));

    // It rejoins and catches up: its own copy of the database has the write made while it was down.
    c.start(old_i);
    assert!(c.wait_status(Duration::from_secs(20), |s| node(s, &old)["state"] == "up" && up_count(s) == 3));
    let endpoint = c.nodes[old_i].api.clone();
    assert!(wait_until(Duration::from_secs(10), || {
        let out = c.halo_env(&["cluster", "show", "--local", "--json"], &[("HALO_ENDPOINT", &endpoint)]);
        out.status.success()
            && serde_json::from_slice::<serde_json::Value>(&out.stdout)
                .is_ok_and(|v| v["properties"]["label.while_down"] == "yes")
    }));
}

/// A hung leader (its agent stopped; its fence guard and workload run on) that owns a role:
/// the new leader learns from the voters' reports when the old one's own lease ends and brings
/// the role back then, never while the old one may still run it (the workload takes an
/// exclusive lock: two at once leave a failure).
#[test]
fn a_hung_leaders_role_comes_back_by_the_voters_reports_and_never_runs_twice() {
    let mut c = Cluster::new(173, 3, 0);
    c.profile = Some("fast".into());
    c.form();
    let old = c.leader().expect("a leader");
    let dir = c.dir.path().join("work");
    let command = lock_workload(&dir);
    let create = ["role", "create", "lead173", "--type", "process", "--preferred", &old, "--param"];
    let out = c.halo(&[&create[..], &[&format!("command={command}")]].concat());
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(c.wait_online("lead173", Duration::from_secs(15), |_| true).as_deref(), Some(old.as_str()));
    assert!(wait_until(Duration::from_secs(5), || !lines(&dir, "starts").is_empty()));

    let old_i = c.index_of(&old);
    c.freeze(old_i, true);
    let next = c.wait_online("lead173", Duration::from_secs(15), |o| o != old);
    let next = next.unwrap_or_else(|| panic!("not recovered: {:?}", c.role("lead173")));
    let leader = c.leader().expect("a new leader");
    let said = format!("took over from {old}: by the voters' reports");
    assert!(c.log(c.index_of(&leader)).contains(&said), "{leader}'s log does not say: {said}");
    assert!(wait_until(Duration::from_secs(5), || lines(&dir, "starts").last().is_some_and(|l| l.starts_with(&next))));
    assert_eq!(lines(&dir, "failures"), Vec::<String>::new(), "two instances at once");
    c.freeze(old_i, false);
    assert!(c.wait_status(Duration::from_secs(20), |s| up_count(s) == 3));
    assert_eq!(lines(&dir, "failures"), Vec::<String>::new(), "two instances at once");
}

#[test]
fn whole_cluster_restart_keeps_every_acknowledged_write() {
    let mut c = Cluster::new(102, 3, 0);
    c.form();
    for i in 0..20 {
        let out = c.halo(&["cluster", "set", &format!("label.k{i}=v{i}")]);
        assert!(out.status.success(), "write {i}: {}", text(&out));
    }
    // Every agent dies at once, without a chance to flush anything.
    for i in 0..3 {
        c.kill9(i);
    }
    let restarted = Instant::now();
    c.start_all();
    assert!(c.wait_status(Duration::from_secs(20), |s| s["quorum"] == true && up_count(s) == 3));
    eprintln!("cold start to quorum and all up: {:.2} s", restarted.elapsed().as_secs_f64());
    let shown = c.json(&["cluster", "show"]);
    for i in 0..20 {
        assert_eq!(shown["properties"][format!("label.k{i}")], format!("v{i}"), "write {i} lost");
    }
    let out = c.halo(&["cluster", "set", "label.after=restart"]);
    assert!(out.status.success(), "{}", text(&out));
}

/// A leader that hung (SIGSTOP) and was replaced meanwhile answers no read from what it had:
/// asked the moment it wakes up, it finds out it no longer leads and answers with the
/// cluster's current state, which has a role created while it slept.
#[test]
fn a_deposed_leader_that_wakes_up_answers_reads_with_the_current_state() {
    let mut c = Cluster::new(189, 3, 0);
    c.form();
    let old = c.leader().expect("a leader");
    let i = c.index_of(&old);
    let at = |n: usize| vec![("HALO_ENDPOINT", format!("https://{}", c.nodes[n].api))];
    c.freeze(i, true);
    let other = at((i + 1) % 3);
    let other: Vec<(&str, &str)> = other.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let created = wait_until(Duration::from_secs(20), || {
        let args = ["role", "create", "new189", "--type", "process", "--param", "command=exec sleep 1", "--stopped"];
        c.halo_env(&args, &other).status.success() || c.halo_env(&["role", "show", "new189"], &other).status.success()
    });
    if !created {
        c.freeze(i, false);
        panic!("the others did not take the write while {old} slept: {}", c.log((i + 1) % 3));
    }
    // The read is already waiting at its door when it wakes up.
    let woken = at(i);
    let woken: Vec<(&str, &str)> = woken.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = std::thread::scope(|s| {
        let read = s.spawn(|| c.halo_env(&["role", "show", "new189", "--json"], &woken));
        std::thread::sleep(Duration::from_millis(500));
        c.freeze(i, false);
        read.join().expect("read")
    });
    assert!(out.status.success(), "{old}, just woken, answered from what it had: {}", text(&out));
    let out = c.halo_env(&["status", "--json"], &woken);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status");
    assert_ne!(status["leader"].as_str(), Some(old.as_str()), "{old} still claims to lead: {status}");
}
