//! Removing nodes: a follower leaves the Raft membership and the node list; refusals change nothing.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn remove_a_follower_and_refuse_bad_removals() {
    let mut c = Cluster::new(111, 3, 0);
    c.form();
    let leader = c.leader().expect("leader");

    let out = c.halo(&["node", "remove", "nosuchnode"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no node named 'nosuchnode'"), "{}", text(&out));

    let out = c.halo(&["node", "remove", &leader]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is the current leader"), "{}", text(&out));
    assert_eq!(c.status().expect("status")["nodes"].as_array().map(Vec::len), Some(3));

    let follower = c.nodes.iter().find(|n| n.name != leader).expect("follower").name.clone();
    let i = c.index_of(&follower);
    c.kill9(i);
    let out = c.halo(&["node", "remove", &follower]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(c.wait_status(Duration::from_secs(10), |s| {
        s["voters"] == 2
            && s["nodes"].as_array().is_some_and(|a| a.len() == 2 && a.iter().all(|n| n["name"] != follower.as_str()))
    }));
    // The two remaining voters still form a quorum and take writes.
    let out = c.halo(&["cluster", "set", "label.after_remove=1"]);
    assert!(out.status.success(), "{}", text(&out));
}

/// A one-node cluster is its own quorum at every instant: idle for seconds, it still takes
/// writes and keeps the lease its roles need. (Raft records no quorum acknowledgement for a
/// sole voter while nothing is written; it once went "no quorum" after a second of quiet.)
#[test]
fn a_one_node_cluster_keeps_its_quorum_and_lease_while_idle() {
    let mut c = Cluster::new(153, 1, 0);
    c.form();
    std::thread::sleep(std::time::Duration::from_secs(4));
    let out = c.halo(&["role", "create", "solo", "--type", "process", "--param", "command=exec sleep 100000"]);
    assert!(out.status.success(), "{}", text(&out));
    let online = c.wait_online("solo", std::time::Duration::from_secs(10), |_| true);
    assert_eq!(online.as_deref(), Some("n1"), "{:?}\n{}", c.role("solo"), c.log(0));
    std::thread::sleep(std::time::Duration::from_secs(4));
    assert_eq!(c.role("solo").map(|r| r["state"].clone()), Some("online".into()), "it keeps running while idle");
    assert_eq!(c.role_processes("solo").len(), 1);
}

/// Raft timing is the cluster's: set by the agent that creates it, taken by every node that
/// joins, and refused where an agent is configured otherwise (a new leader bounds the old
/// one's late lease grants by a window that follows from the Raft heartbeat, so all must agree).
#[test]
fn every_node_runs_the_cluster_s_raft_timing() {
    const FAST: &str =
        "[timing]\nraft_heartbeat_ms = 100\nelection_timeout_min_ms = 400\nelection_timeout_max_ms = 700";
    const OTHER: &str =
        "[timing]\nraft_heartbeat_ms = 150\nelection_timeout_min_ms = 600\nelection_timeout_max_ms = 900";
    let mut c = Cluster::new(167, 3, 0);
    c.nodes[0].config_toml = Some(FAST.into());
    c.nodes[2].config_toml = Some(OTHER.into());
    c.start_all();
    c.create();
    assert!(c.join(1).status.success(), "a node without [timing] takes the cluster's");
    let shown = c.json(&["cluster", "show"]);
    assert_eq!(shown["raft"]["raft_heartbeat_ms"], 100, "{shown}");
    assert_eq!(shown["raft"]["election_timeout_max_ms"], 700, "{shown}");

    // An agent configured with other timing cannot join, and the cluster stays as it was.
    let out = c.join(2);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(err.contains("agent 'n3' is configured with Raft timing raft_heartbeat_ms=150"), "{err}");
    assert!(err.contains("this cluster runs raft_heartbeat_ms=100"), "{err}");
    assert!(c.wait_status(Duration::from_secs(10), |s| s["nodes"].as_array().is_some_and(|n| n.len() == 2)));

    // Nor can a member that is restarted with other timing: it says why and stops.
    c.kill9(1);
    let file = c.dir.path().join("n2-other.toml");
    let node = &c.nodes[1];
    let nets: Vec<String> = node.nets.iter().map(|n| format!("{n:?}")).collect();
    std::fs::write(
        &file,
        format!(
            "name = {:?}\napi = {:?}\nnetworks = [{}]\ndata_dir = {:?}\n{OTHER}\n",
            node.name,
            node.api,
            nets.join(", "),
            node.data_dir.display().to_string()
        ),
    )
    .expect("config");
    let out = std::process::Command::new(exe())
        .arg("agent")
        .arg("--config")
        .arg(&file)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("agent");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(err.contains("this agent's [timing] (raft_heartbeat_ms=150"), "{err}");
    assert!(err.contains("differs from its cluster's (raft_heartbeat_ms=100"), "{err}");

    // And the cluster's cannot be changed after the fact.
    let out = c.halo(&["cluster", "set", "raft_heartbeat_ms=50"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("fixed when the cluster is created"), "{}", text(&out));
    drop(c);

    // A cluster created with a profile runs that profile's Raft timing, and so does a node
    // that joins it; an unknown profile is refused before anything is created.
    let mut c = Cluster::new(172, 2, 0);
    c.start_all();
    let endpoint = format!("https://{}", c.nodes[0].api);
    let out = c.halo(&["cluster", "create", "--name", "t", "--endpoint", &endpoint, "--profile", "turbo"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown profile 'turbo'"), "{}", text(&out));
    c.profile = Some("fast".into());
    c.create();
    assert!(c.join(1).status.success());
    let shown = c.json(&["cluster", "show"]);
    assert_eq!(
        (shown["lease_ms"].as_u64(), shown["heartbeat_interval_ms"].as_u64()),
        (Some(1000), Some(50)),
        "{shown}"
    );
    assert_eq!(shown["raft"]["raft_heartbeat_ms"], 50, "{shown}");
    assert_eq!(shown["raft"]["election_timeout_max_ms"], 300, "{shown}");
    assert!(c.wait_status(Duration::from_secs(15), |s| s["quorum"] == true && up_count(s) == 2), "{:?}", c.status());
}
