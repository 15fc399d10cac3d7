//! Benchmarks of VM roles (real QEMU under TCG, the 128 MB test guest). Ignored by the normal
//! suite; run with `scripts/bench vm`. They print numbers for docs/benchmarks.md and assert only
//! that the guest survived each migration. `HALO_BENCH_RUNS` sets the runs (default 10).

mod common;

use std::time::{Duration, Instant};

use common::vm::*;
use common::*;
use halo_bench::record;

fn runs() -> usize {
    std::env::var("HALO_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(10)
}

#[test]
#[ignore = "benchmark: scripts/bench vm"]
fn live_migration_of_an_idle_guest() {
    let lab = Lab::new(150, 2);
    let out = lab.create("bench", &["--preferred", "n1"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(lab.c.wait_online("bench", Duration::from_secs(60), |_| true).is_some());
    lab.wait_beating("n1", "bench", 2);
    let (mut total, mut downtime, mut qemu_total, mut qemu_downtime, mut overhead, mut command) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for run in 0..runs() {
        let (from, to) = if run % 2 == 0 { ("n1", "n2") } else { ("n2", "n1") };
        let last = *lab.beats(from, "bench").last().expect("beats");
        let started = Instant::now();
        let out = lab.c.halo(&["role", "move", "bench", "--to", to, "--mode", "live", "--json"]);
        command.push(started.elapsed().as_secs_f64());
        assert!(out.status.success(), "{}", text(&out));
        let m: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        let ms = |k: &str| m[k].as_u64().expect(k) as f64 / 1000.0;
        total.push(ms("total_ms"));
        downtime.push(ms("downtime_ms"));
        qemu_total.push(ms("qemu_total_ms"));
        qemu_downtime.push(ms("qemu_downtime_ms"));
        overhead.push(ms("total_ms") - ms("qemu_total_ms"));
        let beats = lab.wait_beating(to, "bench", 1);
        assert!(beats.iter().rev().take(1).all(|&b| b > last), "the guest restarted: {last} then {beats:?}");
    }
    record(
        "default",
        "live_migration.total",
        "live migration, 128 MB idle guest: total (request → running on the target)",
        "s",
        total,
    );
    record(
        "default",
        "live_migration.downtime",
        "live migration: guest paused (its pause at the source → resumed at the target)",
        "s",
        downtime,
    );
    record("default", "live_migration.qemu_total", "live migration: QEMU's transfer", "s", qemu_total);
    record("default", "live_migration.qemu_downtime", "live migration: QEMU's own downtime", "s", qemu_downtime);
    record(
        "default",
        "live_migration.overhead",
        "live migration: halo's overhead (total − QEMU's transfer)",
        "s",
        overhead,
    );
    record("default", "live_migration.command", "live migration: `halo role move` command, wall", "s", command);
}

#[test]
#[ignore = "benchmark: scripts/bench vm"]
fn drain_of_a_node_with_four_vms() {
    let lab = Lab::new(151, 2);
    let names = ["q1", "q2", "q3", "q4"];
    for name in names {
        let out = lab.create(name, &["--preferred", "n1"]);
        assert!(out.status.success(), "{}", text(&out));
    }
    for name in names {
        assert_eq!(lab.c.wait_online(name, Duration::from_secs(120), |_| true).as_deref(), Some("n1"));
        lab.wait_beating("n1", name, 1);
    }
    let all_on =
        |node: &str| names.iter().all(|n| lab.c.role(n).is_some_and(|r| r["owner"] == node && r["state"] == "online"));
    let started = Instant::now();
    let out = lab.c.halo(&["node", "pause", "n1", "--drain"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(wait_until(Duration::from_secs(120), || all_on("n2")));
    let drain = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let out = lab.c.halo(&["node", "resume", "n1", "--failback"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(wait_until(Duration::from_secs(120), || all_on("n1")));
    let back = started.elapsed().as_secs_f64();
    for name in names {
        let m = &lab.c.role(name).unwrap()["last_migration"];
        assert_eq!((m["mode"].as_str(), m["ok"].as_bool()), (Some("live"), Some(true)), "{name}: {m}");
    }
    record(
        "default",
        "drain_4_vms",
        "drain of a node with 4 VMs (live, 2 at a time), until all run elsewhere",
        "s",
        vec![drain],
    );
    record("default", "failback_4_vms", "resume with failback of those 4 VMs", "s", vec![back]);
}

#[test]
#[ignore = "benchmark: scripts/bench vm"]
fn node_crash_to_vm_running_elsewhere() {
    let mut lab = Lab::new(152, 3);
    let out = lab.create("crashy", &["--max-failovers", "100"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(lab.c.wait_online("crashy", Duration::from_secs(60), |_| true).is_some());
    let (mut to_qemu, mut to_beat) = (vec![], vec![]);
    for _ in 0..runs().min(5) {
        let owner = lab.c.wait_online("crashy", Duration::from_secs(60), |_| true).expect("online");
        lab.wait_beating(&owner, "crashy", 1);
        let i = lab.c.index_of(&owner);
        let old: Vec<i32> = lab.c.role_pids("crashy");
        let counts: Vec<usize> = lab.c.nodes.iter().map(|n| lab.beats(&n.name, "crashy").len()).collect();
        let crashed = Instant::now();
        lab.c.crash(i);
        assert!(wait_until(Duration::from_secs(30), || { lab.c.role_pids("crashy").iter().any(|p| !old.contains(p)) }));
        to_qemu.push(crashed.elapsed().as_secs_f64());
        let beat = wait_until(Duration::from_secs(60), || {
            lab.c.nodes.iter().zip(&counts).any(|(n, &c)| n.name != owner && lab.beats(&n.name, "crashy").len() > c)
        });
        assert!(beat, "no heartbeat from the restarted guest");
        to_beat.push(crashed.elapsed().as_secs_f64());
        lab.c.start(i);
        std::thread::sleep(Duration::from_secs(3));
    }
    record("default", "vm_crash.qemu", "node crash → QEMU started elsewhere, default profile", "s", to_qemu);
    record(
        "default",
        "vm_crash.heartbeat",
        "node crash → restarted guest's first heartbeat (boot under TCG included)",
        "s",
        to_beat,
    );
}
