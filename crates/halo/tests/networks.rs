//! Two heartbeat networks per node: one silent network degrades, only total silence is down.
//! Faults are real: iptables drops the packets of one node's address on a network.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn one_blocked_network_is_degraded_both_blocked_is_down() {
    let mut c = Cluster::new(103, 3, 0);
    c.form();
    // Keep the victim a follower, so the survivors' view is what we read.
    let leader = c.leader().expect("leader");
    let victim = c.nodes.iter().position(|n| n.name != leader).expect("a follower");
    let name = c.nodes[victim].name.clone();
    let (net0, net1) = (c.nodes[victim].nets[0].clone(), c.nodes[victim].nets[1].clone());

    c.block(&net0);
    assert!(
        c.wait_status(Duration::from_secs(10), |s| {
            let n = node(s, &name);
            n["state"] == "up" && n["networks"][0]["state"] == "degraded" && n["networks"][1]["state"] == "up"
        }),
        "expected {name} up with network 0 degraded: {:?}",
        c.status()
    );
    // Stays up (no flapping to down) while the second network carries its heartbeats.
    let seq = c.last_event();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(c.went_down_after(seq), Vec::<String>::new(), "a node flapped to down over one lost network");
    let s = c.status().expect("status");
    assert_eq!(node(&s, &name)["state"], "up", "{s}");
    assert_eq!(s["quorum"], true);

    c.block(&net1);
    assert!(
        c.wait_status(Duration::from_secs(10), |s| node(s, &name)["state"] == "down"),
        "expected {name} down with both networks blocked: {:?}",
        c.status()
    );

    c.unblock_all();
    assert!(
        c.wait_status(Duration::from_secs(15), |s| {
            let n = node(s, &name);
            n["state"] == "up" && n["networks"].as_array().is_some_and(|a| a.iter().all(|x| x["state"] == "up"))
        }),
        "{name} did not recover: {:?}",
        c.status()
    );
}
