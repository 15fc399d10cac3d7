//! Benchmarks of the cluster core. Ignored by the normal suite; run with `scripts/bench`.
//! They print and record numbers (for `scripts/compare`) and assert nothing about speed.

mod common;

use std::time::{Duration, Instant};

use common::*;
use halo_bench::record;

#[test]
#[ignore = "benchmark: run with scripts/bench"]
fn bench_leader_loss_to_new_leader() {
    let mut c = Cluster::new(120, 3, 0);
    c.form();
    let mut samples = Vec::new();
    for _ in 0..10 {
        let old = c.leader().expect("leader");
        let i = c.index_of(&old);
        let t = Instant::now();
        c.kill9(i);
        assert!(wait_until(Duration::from_secs(15), || c.leader().is_some_and(|l| l != old)));
        samples.push(t.elapsed().as_secs_f64());
        c.start(i);
        assert!(c.wait_status(Duration::from_secs(30), |s| s["quorum"] == true && up_count(s) == 3));
    }
    record("default", "leader_loss", "leader loss -> new leader", "s", samples);
}

#[test]
#[ignore = "benchmark: run with scripts/bench"]
fn bench_committed_writes_per_second() {
    let mut c = Cluster::new(121, 3, 0);
    c.form();
    let config: toml::Value = toml::from_str(&std::fs::read_to_string(&c.config).expect("config")).expect("toml");
    let token = c.admin_token();
    let ca = config["ca_cert_pem"].as_str().expect("ca").to_string();
    let leader = c.leader().expect("leader");
    let api = c.nodes[c.index_of(&leader)].api.clone();
    halo_security::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
    rt.block_on(async {
        let tls = halo_security::tls::client_config(&ca, None).expect("tls");
        let http = reqwest::Client::builder().tls_backend_preconfigured(tls).build().expect("client");
        for concurrency in [1usize, 16] {
            let deadline = Instant::now() + Duration::from_secs(5);
            let start = Instant::now();
            let mut tasks = Vec::new();
            for w in 0..concurrency {
                let (http, api, token) = (http.clone(), api.clone(), token.clone());
                tasks.push(tokio::spawn(async move {
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        let body = serde_json::json!({ "properties": [[format!("label.w{w}"), n.to_string()]] });
                        let r = http
                            .post(format!("https://{api}/api/v1/cluster/properties"))
                            .bearer_auth(&token)
                            .json(&body)
                            .send()
                            .await
                            .expect("write");
                        assert!(r.status().is_success());
                        n += 1;
                    }
                    n
                }));
            }
            let mut total = 0;
            for t in tasks {
                total += t.await.expect("task");
            }
            record(
                "default",
                &format!("writes.{concurrency}"),
                &format!("committed writes (3 nodes, fsync, {concurrency} client(s))"),
                "writes/s",
                vec![total as f64 / start.elapsed().as_secs_f64()],
            );
        }
    });
}

/// A "<field> <n> kB" line of a /proc/<pid> file, in kB.
fn kb(pid: u32, file: &str, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The processes whose parent is `pid` (an agent's fence guard; idle roles run nothing).
fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| stat_field(p, 1) == Some(pid as u64))
        .collect()
}

/// Field `n` of /proc/<pid>/stat, counted after the command name (0 is the state, 1 the parent).
fn stat_field(pid: u32, n: usize) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(n)?.parse().ok()
}

/// User plus system time.
fn cpu_ticks(pid: u32) -> u64 {
    stat_field(pid, 11).unwrap_or(0) + stat_field(pid, 12).unwrap_or(0)
}

#[test]
#[ignore = "benchmark: run with scripts/bench"]
fn bench_idle_agent_footprint() {
    let mut c = Cluster::new(122, 3, 0);
    c.form();
    std::thread::sleep(Duration::from_secs(5));
    let pids: Vec<u32> = c.nodes.iter().map(|n| n.child.as_ref().expect("running").id()).collect();
    let before: Vec<u64> = pids.iter().map(|&p| cpu_ticks(p)).collect();
    let window = 30.0;
    std::thread::sleep(Duration::from_secs_f64(window));
    let ticks_per_s = 100.0; // USER_HZ on Linux
    let cpu = pids.iter().zip(&before).map(|(&p, b)| (cpu_ticks(p) - b) as f64 / ticks_per_s / window * 100.0);
    let mb = |kb: u64| kb as f64 / 1024.0;
    record("default", "idle_cpu", "idle agent CPU, per node", "%", cpu.collect());
    // All of halo on a node is its agent and the agent's fence guard, as Corosync and the
    // Pacemaker daemons are all of Pacemaker.
    let pss = |p: u32| {
        let guard: u64 = children(p).into_iter().map(|g| kb(g, "smaps_rollup", "Pss:")).sum();
        kb(p, "smaps_rollup", "Pss:") + guard
    };
    record(
        "default",
        "idle_rss",
        "idle agent RSS, per node",
        "MB",
        pids.iter().map(|&p| mb(kb(p, "status", "VmRSS:"))).collect(),
    );
    record(
        "default",
        "idle_pss",
        "idle agent + fence guard PSS, per node",
        "MB",
        pids.iter().map(|&p| mb(pss(p))).collect(),
    );
}

#[test]
#[ignore = "benchmark: run with scripts/bench"]
fn bench_whole_cluster_cold_start_to_quorum() {
    let mut c = Cluster::new(123, 3, 0);
    c.form();
    let mut samples = Vec::new();
    for _ in 0..5 {
        for i in 0..3 {
            c.kill9(i);
        }
        let t = Instant::now();
        c.start_all();
        assert!(wait_until(Duration::from_secs(30), || {
            c.status().is_some_and(|s| s["quorum"] == true && up_count(&s) == 3)
        }));
        samples.push(t.elapsed().as_secs_f64());
    }
    record("default", "cold_start", "whole-cluster cold start -> quorum, all up", "s", samples);
}
