//! Two nodes and a witness: any single loss keeps quorum; losing two of three refuses writes.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn two_nodes_and_a_witness_survive_any_single_loss() {
    let mut c = Cluster::new(104, 3, 1);
    c.form();
    let s = c.status().expect("status");
    assert_eq!(s["voters"], 3);
    assert_eq!(node(&s, "n3")["witness"], true);

    for victim in [0usize, 1] {
        c.kill9(victim);
        let name = c.nodes[victim].name.clone();
        assert!(
            c.wait_status(Duration::from_secs(10), |s| s["quorum"] == true && node(s, &name)["state"] == "down"),
            "lost quorum after killing {name}: {:?}",
            c.status()
        );
        let out = c.halo(&["cluster", "set", &format!("label.without_{name}=ok")]);
        assert!(out.status.success(), "write without {name}: {}", text(&out));
        c.start(victim);
        assert!(c.wait_status(Duration::from_secs(20), |s| s["quorum"] == true && up_count(s) == 3));
    }

    // Two of three gone: no quorum, and writes are refused with a clear error.
    c.kill9(2);
    c.kill9(1);
    assert!(c.wait_status(Duration::from_secs(10), |s| s["quorum"] == false));
    let out = c.halo(&["cluster", "set", "label.must_fail=1"]);
    assert!(!out.status.success(), "write succeeded without quorum");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no quorum"), "unclear error: {err}");
}
