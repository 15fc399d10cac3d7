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
    assert_eq!(role_processes("solo").len(), 1);
}
