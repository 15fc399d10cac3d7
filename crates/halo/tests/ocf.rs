//! OCF resource agents with real agents: Debian's `ocf:heartbeat:Dummy` starts, is monitored,
//! is restarted when its monitor fails, moves and fails over; an agent that hangs is killed at
//! its timeout; a missing agent or an unknown parameter is a clear error.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::*;

/// An OCF root with Debian's heartbeat agents plus `halotest:Hang`, whose start never returns,
/// `halotest:Stuck`, which cannot be stopped, and `halotest:Tidy`, which records its actions.
fn ocf_root(dir: &Path) -> String {
    let root = dir.join("ocf");
    std::fs::create_dir_all(root.join("resource.d/halotest")).expect("ocf dirs");
    std::os::unix::fs::symlink("/usr/lib/ocf/lib", root.join("lib")).expect("lib link");
    std::os::unix::fs::symlink("/usr/lib/ocf/resource.d/heartbeat", root.join("resource.d/heartbeat"))
        .expect("heartbeat link");
    const DIR: &str = r#"<parameter name="dir" required="1"><content type="string"/></parameter>"#;
    test_agent(&root, "Hang", "", "", "start) exec sleep 100000 ;;\nstop) exit 0 ;;\nmonitor) exit 7 ;;\n");
    test_agent(
        &root,
        "Stuck",
        DIR,
        r#"# Starts a daemon holding an exclusive lock in $dir; its stop always fails, and its monitor
# says "running" for as long as this node's state file exists.
state="$OCF_RESKEY_dir/stuck-$HALO_NODE"
"#,
        r#"start)
  touch "$state"
  (exec 9>>"$OCF_RESKEY_dir/lock"; flock -n 9 || echo "$HALO_NODE" >> "$OCF_RESKEY_dir/failures"; exec sleep 100000) >/dev/null 2>&1 &
  echo "$HALO_NODE" >> "$OCF_RESKEY_dir/starts"
  exit 0 ;;
stop) exit 1 ;;
monitor) [ -f "$state" ] && exit 0; exit 7 ;;
"#,
    );
    test_agent(
        &root,
        "Tidy",
        DIR,
        r#"# Holds a per-node state file (think: an address it added) and records every start and stop.
state="$OCF_RESKEY_dir/tidy-$HALO_NODE"
"#,
        r#"start) touch "$state"; echo "$HALO_NODE start" >> "$OCF_RESKEY_dir/actions"; exit 0 ;;
stop) rm -f "$state"; echo "$HALO_NODE stop" >> "$OCF_RESKEY_dir/actions"; exit 0 ;;
monitor) [ -f "$state" ] && exit 0; exit 7 ;;
"#,
    );
    root.display().to_string()
}

/// Write OCF agent `halotest:NAME`: its meta-data (the given parameters, the usual actions),
/// then `preamble`, then the `case "$1"` arms of its actions.
fn test_agent(root: &Path, name: &str, parameters: &str, preamble: &str, arms: &str) {
    let path = root.join("resource.d/halotest").join(name);
    let script = format!(
        r#"#!/bin/sh
{preamble}case "$1" in
meta-data) cat <<'XML'
<?xml version="1.0"?>
<resource-agent name="{name}" version="1.0"><parameters>{parameters}</parameters>
<actions><action name="start" timeout="20s"/><action name="stop" timeout="20s"/>
<action name="monitor" timeout="20s" interval="10s"/><action name="meta-data" timeout="5s"/></actions>
</resource-agent>
XML
  exit 0 ;;
{arms}*) exit 3 ;;
esac
"#
    );
    std::fs::write(&path, script).expect("write agent");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

fn owner(c: &Cluster, role: &str) -> Option<String> {
    c.role(role).and_then(|r| r["owner"].as_str().map(str::to_string))
}

#[test]
fn dummy_runs_is_monitored_moves_and_fails_over() {
    let mut c = Cluster::new(119, 3, 0);
    let root = ocf_root(c.dir.path());
    c.env.push(("HALO_OCF_ROOT".into(), root));
    c.form();
    let state = c.dir.path().join("dummy.state");
    let out = c.halo(&[
        "role",
        "create",
        "dummy119",
        "--type",
        "ocf:heartbeat:Dummy",
        "--param",
        &format!("state={}", state.display()),
        "--monitor-interval",
        "300",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let first = c.wait_online("dummy119", Duration::from_secs(15), |_| true).expect("online");
    assert!(state.exists(), "Dummy's start creates its state file");
    // Timeouts came from the agent's meta-data where not given.
    let shown = c.role("dummy119").expect("role");
    assert_eq!(shown["spec"]["resources"][0]["agent_timeouts"]["start_ms"], 20_000);
    assert_eq!(shown["spec"]["resources"][0]["timeouts"]["monitor_interval_ms"], 300);

    // The monitor notices the resource is gone and it is started again in place.
    std::fs::remove_file(&state).expect("remove state");
    assert!(wait_until(Duration::from_secs(10), || state.exists()), "monitor did not restart it");
    assert_eq!(owner(&c, "dummy119").as_deref(), Some(first.as_str()));

    // A planned move: stopped (state file removed) on one node, started on the other.
    let target = if first == "n3" { "n2" } else { "n3" };
    let out = c.halo(&["role", "move", "dummy119", "--to", target]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(owner(&c, "dummy119").as_deref(), Some(target));
    let logs: String = (0..3).map(|i| c.log(i)).collect::<Vec<_>>().join("\n----\n");
    assert!(state.exists(), "{logs}");

    // Failover after a host crash.
    let victim = c.index_of(target);
    c.crash(victim);
    let next = c.wait_online("dummy119", Duration::from_secs(20), |o| o != target);
    assert!(next.is_some(), "{:?}", c.role("dummy119"));
}

#[test]
fn a_hanging_agent_is_killed_at_its_timeout_and_bad_agents_are_refused() {
    let mut c = Cluster::new(190, 2, 0);
    let root = ocf_root(c.dir.path());
    c.env.push(("HALO_OCF_ROOT".into(), root));
    c.form();

    let out = c.halo(&["role", "create", "hang120", "--type", "ocf:halotest:Hang", "--start-timeout", "800"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        wait_until(Duration::from_secs(20), || c.role("hang120").is_some_and(|r| r["state"] == "failed")),
        "{:?}",
        c.role("hang120")
    );
    let why = String::from_utf8_lossy(&c.halo(&["role", "why", "hang120"]).stdout).to_string();
    assert!(why.contains("start of 'hang' did not finish within its timeout and was killed"), "{why}");
    assert!(wait_until(Duration::from_secs(5), || c.role_processes("hang120").is_empty()), "the hung start survived");

    let before = c.json(&["role", "list"]);
    let out = c.halo(&["role", "create", "missing120", "--type", "ocf:heartbeat:NoSuchAgent"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(err.contains("OCF agent ocf:heartbeat:NoSuchAgent is not installed"), "{}", text(&out));
    let out = c.halo(&["role", "create", "bogus120", "--type", "ocf:heartbeat:Dummy", "--param", "bogus=1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no parameter 'bogus'"), "{}", text(&out));
    assert_eq!(c.json(&["role", "list"]), before, "refused input changed nothing");
}

/// A resource that cannot be stopped: its stop fails, halo kills what it left and asks its
/// monitor, which still says "running". Only fencing the node makes it safe to start the role
/// elsewhere: the node gets no lease, its guard kills everything at the lease's end (the other
/// roles there fail over too), and then the role starts on the target. Afterwards the node
/// holds leases again and runs roles.
#[test]
fn a_resource_that_cannot_be_stopped_gets_its_node_fenced() {
    cannot_stop(129, false);
}

/// The same on the leader: it stops renewing its own lease, and stays leader throughout.
#[test]
fn a_leader_that_cannot_stop_a_resource_fences_itself() {
    cannot_stop(127, true);
}

fn cannot_stop(test_id: u8, on_leader: bool) {
    let mut c = Cluster::new(test_id, 3, 0);
    let root = ocf_root(c.dir.path());
    c.env.push(("HALO_OCF_ROOT".into(), root));
    c.form();
    let leader = c.leader().expect("leader");
    let nodes = ["n1", "n2", "n3"];
    let victim = if on_leader { leader.as_str() } else { nodes.into_iter().find(|n| *n != leader).expect("follower") };
    let target = nodes.into_iter().find(|n| *n != leader && *n != victim).expect("another node");
    let dir = c.dir.path().join("stuck");
    std::fs::create_dir_all(&dir).expect("dir");
    let out = c.halo(&[
        "role",
        "create",
        "stuck129",
        "--type",
        "ocf:halotest:Stuck",
        "--param",
        &format!("dir={}", dir.display()),
        "--preferred",
        victim,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let work = c.dir.path().join("work");
    let command = lock_workload(&work);
    let out = c.halo(&[
        "role",
        "create",
        "by129",
        "--type",
        "process",
        "--param",
        &format!("command={command}"),
        "--preferred",
        victim,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    for role in ["stuck129", "by129"] {
        assert_eq!(c.wait_online(role, Duration::from_secs(15), |_| true).as_deref(), Some(victim), "{role}");
    }

    let out = c.halo(&["role", "move", "stuck129", "--to", target]);
    let logs: String = (0..3).map(|i| c.log(i)).collect::<Vec<_>>().join("\n----\n");
    assert!(out.status.success(), "{}\n{logs}", text(&out));
    let moved = c.wait_online("stuck129", Duration::from_secs(20), |o| o == target);
    let logs: String = (0..3).map(|i| c.log(i)).collect::<Vec<_>>().join("\n----\n");
    assert_eq!(moved.as_deref(), Some(target), "{logs}");
    // The other role on the fenced node was killed with it, and runs elsewhere.
    let by = c.wait_online("by129", Duration::from_secs(20), |o| o != victim);
    assert!(by.is_some(), "{:?}", c.role("by129"));

    let why = String::from_utf8_lossy(&c.halo(&["role", "why", "stuck129"]).stdout).to_string();
    assert!(why.contains(&format!("could not be stopped on {victim}; {victim} is being fenced")), "{why}");
    assert!(why.contains("still runs after its processes were killed"), "{why}");
    let events = String::from_utf8_lossy(&c.halo(&["events", "--last", "200"]).stdout).to_string();
    assert!(events.contains(&format!("{victim} is being fenced: could not stop role stuck129")), "{events}");
    assert!(
        wait_until(Duration::from_secs(10), || {
            let node = c.json(&["node", "show", victim]);
            node["fence_request"].is_null() && node["state"] == "up"
        }),
        "{}",
        c.json(&["node", "show", victim])
    );
    assert!(lines(&dir, "failures").is_empty(), "two daemons held the lock: {:?}", lines(&dir, "failures"));
    assert_eq!(c.leader().as_deref(), Some(leader.as_str()), "fencing changed nothing in Raft");
    assert!(lines(&work, "failures").is_empty(), "{:?}", lines(&work, "failures"));

    // Fenced and recovered, it holds leases again and runs what it is given.
    let out = c.halo(&["role", "move", "by129", "--to", victim]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(c.wait_online("by129", Duration::from_secs(15), |o| o == victim).as_deref(), Some(victim));
    assert!(lines(&work, "failures").is_empty(), "{:?}", lines(&work, "failures"));
}

/// At lease loss the fence guard kills the node's workloads, then undoes what they left
/// behind, which no kill removes (an address, a mount): it runs each OCF resource's stop.
/// Only then does it disarm the watchdog it fed while the lease held. Here the owner's agent
/// hangs (SIGSTOP): its guard stops the role there, the role runs elsewhere, and the hung
/// node's watchdog (a stand-in file) is no longer fed and is disarmed, while the others' are
/// fed on.
#[test]
fn a_hung_node_s_guard_stops_its_ocf_resources_and_disarms_its_watchdog() {
    let mut c = Cluster::new(169, 3, 0);
    let root = ocf_root(c.dir.path());
    c.env.push(("HALO_OCF_ROOT".into(), root));
    let watchdog = |c: &Cluster, name: &str| c.dir.path().join(format!("watchdog-{name}"));
    for i in 0..3 {
        let file = watchdog(&c, &c.nodes[i].name);
        std::fs::write(&file, "").expect("watchdog stand-in");
        c.nodes[i].extra_args.extend(["--watchdog".to_string(), file.display().to_string()]);
    }
    c.form();
    let work = c.dir.path().join("tidy");
    std::fs::create_dir_all(&work).expect("work dir");
    let out = c.halo(&[
        "role",
        "create",
        "tidy169",
        "--type",
        "ocf:halotest:Tidy",
        "--param",
        &format!("dir={}", work.display()),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let owner = c.wait_online("tidy169", Duration::from_secs(15), |_| true).expect("online");
    let fed = |name: &str| std::fs::read_to_string(watchdog(&c, name)).unwrap_or_default();
    for n in &c.nodes {
        assert!(wait_until(Duration::from_secs(5), || fed(&n.name).contains('.')), "{}'s watchdog is not fed", n.name);
    }
    // `halo validate` knows every node feeds one.
    let out = c.halo(&["validate", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report");
    let check = report["checks"].as_array().and_then(|a| a.iter().find(|c| c["id"] == "inventory.watchdog")).cloned();
    assert_eq!(check.as_ref().map(|c| c["outcome"].clone()), Some("pass".into()), "{report:#}");

    let victim = c.index_of(&owner);
    c.freeze(victim, true);
    let next = c.wait_online("tidy169", Duration::from_secs(20), |o| o != owner);
    assert!(next.is_some(), "{:?}", c.role("tidy169"));
    // The hung node's guard ran the stop: its state is gone although its agent never woke.
    assert!(
        wait_until(Duration::from_secs(5), || lines(&work, "actions").contains(&format!("{owner} stop"))),
        "{:?}",
        lines(&work, "actions")
    );
    assert!(!work.join(format!("tidy-{owner}")).exists());
    // And before the lease ran out, so before the new owner started it.
    let actions = lines(&work, "actions");
    let stopped = actions.iter().position(|a| *a == format!("{owner} stop"));
    let restarted = actions.iter().rposition(|a| *a == format!("{} start", next.as_deref().unwrap_or_default()));
    assert!(stopped < restarted, "{actions:?}");
    // Cleaned up, so disarmed rather than left to reset the host; and fed no more.
    assert!(wait_until(Duration::from_secs(5), || fed(&owner).ends_with('V')), "{:?}", fed(&owner));
    let (victim_fed, others_fed): (usize, Vec<usize>) =
        (fed(&owner).len(), c.nodes.iter().filter(|n| n.name != owner).map(|n| fed(&n.name).len()).collect());
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(fed(&owner).len(), victim_fed, "a node without a lease fed its watchdog");
    for (n, before) in c.nodes.iter().filter(|n| n.name != owner).zip(others_fed) {
        assert!(fed(&n.name).len() > before, "{} stopped feeding its watchdog", n.name);
    }
    c.freeze(victim, false);
}
