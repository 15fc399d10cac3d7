//! `halo validate` on real agents: a healthy cluster passes, each failing condition is named by
//! the right check with a fix, the exit status says whether anything failed, and validating
//! changes nothing.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

fn check<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["checks"].as_array().and_then(|c| c.iter().find(|c| c["id"] == id)).unwrap_or_else(|| panic!("no {id}"))
}

#[test]
fn a_healthy_cluster_passes_and_validation_changes_nothing() {
    let mut c = Cluster::new(154, 3, 0);
    c.form();
    let dir = c.dir.path().join("work");
    std::fs::create_dir_all(&dir).expect("dir");
    let out = c.halo(&["role", "create", "web", "--type", "process", "--param", "command=exec sleep 100000"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(c.wait_online("web", Duration::from_secs(15), |_| true).is_some());
    let before = c.role("web").expect("web");

    let out = c.halo(&["validate"]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("Quorum") && shown.contains("Roles"), "{shown}");
    assert!(shown.contains("PASS     quorum.tolerance"), "{shown}");
    assert!(shown.contains(": pass ("), "{shown}");

    let report = c.json(&["validate"]);
    assert_eq!(report["result"], "pass", "{report:#}");
    assert!(check(&report, "quorum.tolerance")["explanation"].as_str().is_some_and(|e| e.contains("any 1 of its 3")));
    for id in ["quorum.votes", "quorum.witness", "quorum.up", "roles.timing", "roles.placeable", "roles.n_plus_one"] {
        assert_eq!(check(&report, id)["outcome"], "pass", "{id}: {report:#}");
    }
    assert_eq!(check(&report, "roles.vm_shared_storage")["outcome"], "skipped");

    // Validation reads: the role still runs where it ran, in the same generation.
    let after = c.role("web").expect("web");
    assert_eq!(
        (&after["owner"], &after["generation"], &after["state"]),
        (&before["owner"], &before["generation"], &before["state"])
    );
}

#[test]
fn an_even_count_of_voters_without_a_witness_fails_and_says_how_to_fix_it() {
    let mut c = Cluster::new(155, 2, 0);
    c.form();
    let out = c.halo(&["validate"]);
    assert!(!out.status.success(), "two voters without a witness passed: {}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("validation failed"), "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("FAIL     quorum.witness"), "{shown}");
    assert!(shown.contains("fix: Add a witness"), "{shown}");
}

#[test]
fn a_role_no_node_can_host_fails_with_its_name() {
    let mut c = Cluster::new(156, 3, 0);
    c.form();
    let out = c.halo(&[
        "role",
        "create",
        "pinned",
        "--type",
        "process",
        "--param",
        "command=exec sleep 100000",
        "--possible",
        "n3",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(c.wait_online("pinned", Duration::from_secs(15), |_| true).as_deref(), Some("n3"));
    let report = c.json(&["validate"]);
    assert_eq!(report["result"], "warning", "n3's loss would strand it: {report:#}");
    assert_eq!(check(&report, "roles.n_plus_one")["outcome"], "warning");

    // n3 dies: once its lease has run out the role has nowhere to go.
    c.crash(2);
    assert!(wait_until(Duration::from_secs(20), || c.role("pinned").is_some_and(|r| r["owner"].is_null())));
    let out = c.halo(&["validate", "--json"]);
    assert!(!out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).expect("json on stdout even when failing");
    let placeable = check(&report, "roles.placeable");
    assert_eq!(placeable["outcome"], "fail", "{report:#}");
    assert!(placeable["explanation"].as_str().is_some_and(|e| e.contains("pinned")), "{placeable}");
    assert_eq!(check(&report, "quorum.up")["outcome"], "warning", "two of three voters up leave no margin");
}
