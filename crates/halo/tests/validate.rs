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

fn outcome(report: &Value, id: &str) -> String {
    check(report, id)["outcome"].as_str().unwrap_or("?").to_string()
}

fn explanation(report: &Value, id: &str) -> String {
    check(report, id)["explanation"].as_str().unwrap_or("").to_string()
}

/// `halo validate --json` (and its extra arguments), whatever its exit status.
fn validate(c: &Cluster, extra: &[&str]) -> (bool, Value) {
    let mut args = vec!["validate", "--json"];
    args.extend(extra);
    let out = c.halo(&args);
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("no report ({e}): {}", text(&out)));
    (out.status.success(), report)
}

fn set_shared_storage(c: &Cluster, path: &std::path::Path) {
    std::fs::create_dir_all(path).expect("shared dir");
    let setting = format!("shared_storage={}", path.display());
    let out = c.halo(&["cluster", "set", &setting]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_healthy_cluster_passes_under_load_and_validation_changes_nothing() {
    let mut c = Cluster::new(154, 3, 0);
    c.form();
    let shared = c.dir.path().join("shared");
    set_shared_storage(&c, &shared);
    let work = c.dir.path().join("work");
    let roles = ["web", "db", "cache", "queue"];
    for name in roles {
        let command = format!("command={}", lock_workload(&work.join(name)));
        let out = c.halo(&["role", "create", name, "--type", "process", "--param", &command]);
        assert!(out.status.success(), "{}", text(&out));
    }
    for name in roles {
        assert!(c.wait_online(name, Duration::from_secs(15), |_| true).is_some(), "{name} did not come online");
    }
    let before: Vec<Value> = roles.iter().map(|r| c.role(r).expect("role")).collect();

    let out = c.halo(&["validate"]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    for category in ["Inventory", "Network", "Storage", "Quorum", "Roles"] {
        assert!(shown.contains(&format!("\n{category}\n")) || shown.starts_with(category), "{category}: {shown}");
    }
    assert!(shown.contains("PASS     quorum.tolerance"), "{shown}");
    assert!(shown.contains("PASS     network.reachability"), "{shown}");

    let html = c.dir.path().join("report.html");
    for _ in 0..2 {
        let (ok, report) = validate(&c, &["--html", html.to_str().expect("path")]);
        assert!(ok, "{report:#}");
        // Warnings are allowed for what this machine lacks (KVM; both test networks on `lo`).
        assert_ne!(report["result"], "fail", "{report:#}");
        for id in [
            "inventory.answered",
            "inventory.version",
            "inventory.platform",
            "inventory.qemu",
            "network.reachability",
            "network.addresses",
            "network.heartbeats",
            "network.clock",
            "storage.visible",
            "storage.writable",
            "storage.shared",
            "storage.locking",
            "quorum.votes",
            "quorum.witness",
            "quorum.up",
            "roles.timing",
            "roles.placeable",
            "roles.n_plus_one",
        ] {
            assert_eq!(outcome(&report, id), "pass", "{id}: {report:#}");
        }
        assert!(explanation(&report, "quorum.tolerance").contains("any 1 of its 3"));
        assert!(explanation(&report, "network.reachability").contains("All 12 node-to-node paths"), "{report:#}");
        assert!(explanation(&report, "storage.locking").contains("refused"), "{report:#}");
        assert!(explanation(&report, "network.redundancy").contains("share interface lo"), "{report:#}");
        assert_eq!(outcome(&report, "roles.vm_shared_storage"), "skipped");
        // These agents feed no watchdog: said, as a warning.
        assert_eq!(outcome(&report, "inventory.watchdog"), "warning", "{report:#}");
        assert!(explanation(&report, "inventory.watchdog").contains("No watchdog is fed on"), "{report:#}");
        assert_eq!(report["survey"]["nodes"].as_array().map(Vec::len), Some(3));
    }
    let page = std::fs::read_to_string(&html).expect("HTML report written");
    assert!(page.contains("Validation report: test") && page.contains("<section id=\"storage\">"), "{page}");

    // Validation reads and probes: every role still runs where it ran, in the same generation,
    // never twice, and the storage test left nothing behind.
    for (name, before) in roles.iter().zip(&before) {
        let after = c.role(name).expect("role");
        assert_eq!(
            (&after["owner"], &after["generation"], &after["state"]),
            (&before["owner"], &before["generation"], &before["state"]),
            "{name}"
        );
        assert!(lines(&work.join(name), "failures").is_empty(), "{name} ran twice");
        assert_eq!(lines(&work.join(name), "starts").len(), 1, "{name} restarted");
    }
    assert_eq!(std::fs::read_dir(&shared).expect("shared").count(), 0, "the storage test left files behind");
}

#[test]
fn one_network_blocked_for_one_node_is_named() {
    let mut c = Cluster::new(157, 3, 0);
    c.form();
    let blocked = c.nodes[2].nets[1].clone();
    c.block(&blocked);
    let (ok, report) = validate(&c, &[]);
    assert!(!ok, "a blocked network passed: {report:#}");
    assert_eq!(outcome(&report, "network.reachability"), "fail");
    let said = explanation(&report, "network.reachability");
    assert!(said.contains("n1 cannot reach n3 on network 2"), "{said}");
    assert!(said.contains("n3 cannot reach n2 on network 2"), "{said}");
    assert!(!said.contains("network 1"), "network 1 is fine: {said}");
    assert!(!said.contains("n1 cannot reach n2"), "n1 and n2 are fine: {said}");
    assert!(check(&report, "network.reachability")["fix"].as_str().is_some_and(|f| f.contains("firewall")));
    c.unblock_all();
    assert!(
        wait_until(Duration::from_secs(20), || validate(&c, &[]).1["checks"]
            .as_array()
            .is_some_and(|checks| checks.iter().any(|k| k["id"] == "network.reachability" && k["outcome"] == "pass"))),
        "the network came back but validation still fails"
    );
}

/// The agent in a mount namespace of its own, where `setup` (shell) has changed what it sees.
fn own_mounts(setup: &str) -> Vec<String> {
    ["unshare", "--mount", "--propagation", "private", "sh", "-c"]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("{setup} && exec \"$0\" \"$@\"")])
        .collect()
}

#[test]
fn shared_storage_missing_read_only_or_not_shared_on_one_node_is_named() {
    let mut c = Cluster::new(158, 3, 0);
    let mnt = c.dir.path().join("mnt");
    let shared = mnt.join("shared");
    std::fs::create_dir_all(&shared).expect("shared");
    let s = shared.display().to_string();
    c.nodes[1].wrapper = own_mounts(&format!("mount --bind {s} {s} && mount -o remount,bind,ro {s}"));
    c.nodes[2].wrapper = own_mounts(&format!("mount -t tmpfs none {}", mnt.display()));
    c.form();
    set_shared_storage(&c, &shared);
    let (ok, report) = validate(&c, &[]);
    assert!(!ok, "{report:#}");
    assert_eq!(outcome(&report, "storage.visible"), "fail");
    let said = explanation(&report, "storage.visible");
    assert!(said.contains(&format!("{s} on n3")) && said.contains("does not exist"), "{said}");
    assert!(!said.contains("on n2"), "{said}");
    assert_eq!(outcome(&report, "storage.writable"), "fail");
    let said = explanation(&report, "storage.writable");
    assert!(said.contains(&format!("{s} on n2")) && said.contains("Read-only file system"), "{said}");
    assert!(check(&report, "storage.visible")["fix"].as_str().is_some_and(|f| f.contains("Mount")));

    // n3 now has a directory of its own at that path: writable, but not shared.
    c.kill9(2);
    c.nodes[2].wrapper = own_mounts(&format!("mount -t tmpfs none {s}"));
    c.start(2);
    assert!(c.wait_status(Duration::from_secs(30), |st| up_count(st) == 3));
    let (_, report) = validate(&c, &[]);
    assert_eq!(outcome(&report, "storage.visible"), "pass", "{report:#}");
    assert_eq!(outcome(&report, "storage.shared"), "fail");
    assert!(explanation(&report, "storage.shared").contains("n3 cannot read"), "{report:#}");
    assert_eq!(outcome(&report, "storage.locking"), "fail");
    assert!(explanation(&report, "storage.locking").contains("n3 got the lock"), "{report:#}");
    assert_eq!(std::fs::read_dir(&shared).expect("shared").count(), 0, "the storage test left files behind");
}

#[test]
fn an_ocf_agent_missing_on_one_node_fails_the_roles_that_need_it() {
    let mut c = Cluster::new(159, 3, 0);
    let empty = c.dir.path().join("empty-ocf");
    std::fs::create_dir_all(empty.join("resource.d")).expect("empty OCF root");
    c.nodes[2].env.push(("HALO_OCF_ROOT".into(), empty.display().to_string()));
    c.form();
    let state = format!("state={}", c.dir.path().join("dummy.state").display());
    let out =
        c.halo(&["role", "create", "dummy", "--type", "ocf:heartbeat:Dummy", "--param", &state, "--preferred", "n1"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(c.wait_online("dummy", Duration::from_secs(20), |_| true).as_deref(), Some("n1"));
    let (ok, report) = validate(&c, &[]);
    assert!(!ok, "{report:#}");
    assert_eq!(outcome(&report, "roles.ocf_agents"), "fail");
    assert!(explanation(&report, "roles.ocf_agents").contains("dummy needs ocf:heartbeat:Dummy, missing on n3"));
    // A role whose possible owners all have the agent is not named.
    let out = c.halo(&[
        "role",
        "create",
        "narrow",
        "--type",
        "ocf:heartbeat:Dummy",
        "--param",
        &format!("state={}", c.dir.path().join("narrow.state").display()),
        "--possible",
        "n1",
        "--possible",
        "n2",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let (_, report) = validate(&c, &[]);
    let said = explanation(&report, "roles.ocf_agents");
    assert!(said.contains("dummy needs") && !said.contains("narrow"), "{said}");
}

#[test]
fn agents_are_validated_before_the_cluster_exists_and_the_html_report_renders() {
    let mut c = Cluster::new(160, 3, 0);
    c.start_all();
    let shared = c.dir.path().join("shared");
    std::fs::create_dir_all(&shared).expect("shared");
    let nodes = c.nodes.iter().map(|n| n.api.clone()).collect::<Vec<_>>().join(",");
    let html = c.dir.path().join("report.html");
    let out = c.halo(&[
        "validate",
        "--nodes",
        &nodes,
        "--shared-storage",
        shared.to_str().expect("path"),
        "--html",
        html.to_str().expect("path"),
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    let names: Vec<&str> =
        report["survey"]["nodes"].as_array().expect("nodes").iter().filter_map(|n| n["name"].as_str()).collect();
    assert_eq!(names, ["n1", "n2", "n3"]);
    for id in ["inventory.answered", "network.reachability", "storage.shared", "storage.locking", "quorum.tolerance"] {
        assert_eq!(outcome(&report, id), "pass", "{id}: {report:#}");
    }
    assert!(explanation(&report, "quorum.votes").contains("3 votes"), "{report:#}");
    assert_eq!(outcome(&report, "roles.placeable"), "skipped");

    let page = render(&html);
    assert!(page.contains("Validation report: nodes before clustering"), "{page}");
    assert!(page.contains("network.reachability") && page.contains("n3"), "{page}");

    // A node that is not there fails the survey, by its address.
    let with_missing = format!("{nodes},127.160.1.9:{API_PORT}");
    let out = c.halo(&["validate", "--nodes", &with_missing]);
    assert!(!out.status.success(), "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("FAIL     inventory.answered") && shown.contains("127.160.1.9"), "{shown}");
}

/// Load `page` in headless Chromium: save a screenshot as a test artifact and return the DOM
/// as Chromium built it.
fn render(page: &std::path::Path) -> String {
    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    let screenshot = artifacts.join("validation-report.png");
    let _ = std::fs::remove_file(&screenshot);
    let url = format!("file://{}", page.display());
    let chromium = |extra: &[String]| {
        let profile = tempfile::tempdir().expect("profile dir");
        std::process::Command::new("chromium")
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"])
            .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(&url)
            .output()
            .expect("chromium must be installed (scripts/setup installs it)")
    };
    let shot = chromium(&["--window-size=1280,1800".into(), format!("--screenshot={}", screenshot.display())]);
    assert!(shot.status.success(), "chromium: {}", text(&shot));
    let png = std::fs::read(&screenshot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "a blank or broken screenshot");
    let dom = chromium(&["--dump-dom".into()]);
    assert!(dom.status.success(), "chromium: {}", text(&dom));
    String::from_utf8_lossy(&dom.stdout).into_owned()
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

#[test]
fn the_cluster_validates_itself_and_status_shows_the_result_and_its_age() {
    let mut c = Cluster::new(161, 3, 0);
    c.form();
    // A report is made once the cluster has its nodes, without being asked.
    assert!(
        c.wait_status(Duration::from_secs(30), |s| s["validation"]["nodes"].is_null()
            && s["validation"]["result"].as_str().is_some_and(|r| r != "fail")),
        "no periodic validation: {:?}",
        c.status()
    );
    let status = c.status().expect("status");
    assert_eq!(status["validation"]["by"], status["leader"], "{status:#}");
    let out = c.halo(&["status"]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("validated ") && shown.contains(" ago by "), "{shown}");

    // A network breaks; the next periodic run finds it, and the event history says so.
    let blocked = c.nodes[1].nets[1].clone();
    c.block(&blocked);
    let out = c.halo(&["cluster", "set", "validation_interval_ms=10000"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        c.wait_status(Duration::from_secs(40), |s| s["validation"]["result"] == "fail"
            && s["validation"]["failed"].as_array().is_some_and(|f| f.iter().any(|id| id == "network.reachability"))),
        "the broken network was not found: {:?}",
        c.status()
    );
    let events = c.json(&["events"]);
    assert!(
        events.as_array().is_some_and(|e| e.iter().any(|e| e["kind"] == "validation"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("validation: fail (") && m.contains("network.reachability")))),
        "{events:#}"
    );
    let out = c.halo(&["cluster", "set", "validation_interval_ms=5"]);
    assert!(!out.status.success(), "a 5 ms interval was accepted");
    assert!(String::from_utf8_lossy(&out.stderr).contains("validation_interval_ms"), "{}", text(&out));
}

#[test]
fn a_vm_disk_that_one_possible_owner_cannot_see_fails() {
    let mut c = Cluster::new(162, 3, 0);
    let shared = c.dir.path().join("shared");
    let vms = shared.join("vms");
    std::fs::create_dir_all(&vms).expect("vms dir");
    // n3 mounts the shared storage, but something else hides the VMs' directory there.
    c.nodes[2].wrapper = own_mounts(&format!("mount -t tmpfs none {}", vms.display()));
    c.form();
    set_shared_storage(&c, &shared);
    let disk = vms.join("vm1.qcow2");
    std::fs::write(&disk, b"").expect("disk");
    let disks = format!("disks={}", disk.display());
    let out =
        c.halo(&["role", "create", "vm1", "--type", "vm", "--param", "memory=64M", "--param", &disks, "--stopped"]);
    assert!(out.status.success(), "{}", text(&out));
    let (ok, report) = validate(&c, &[]);
    assert!(!ok, "{report:#}");
    assert_eq!(outcome(&report, "roles.vm_shared_storage"), "fail");
    let said = explanation(&report, "roles.vm_shared_storage");
    assert!(said.contains(&format!("vm1: disk {} is not visible on n3", disk.display())), "{said}");
    assert_eq!(outcome(&report, "storage.shared"), "pass", "the share itself is fine: {report:#}");
}
