//! Benchmarks of the cluster core. Ignored by the normal suite; run with `scripts/bench`.
//! They print numbers (for docs/benchmarks.md) and assert nothing about speed.

mod common;

use std::time::{Duration, Instant};

use common::*;

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
    summary("leader loss -> new leader (s)", samples);
}

#[test]
#[ignore = "benchmark: run with scripts/bench"]
fn bench_committed_writes_per_second() {
    let mut c = Cluster::new(121, 3, 0);
    c.form();
    let config: toml::Value = toml::from_str(&std::fs::read_to_string(&c.config).expect("config")).expect("toml");
    let token = config["token"].as_str().expect("token").to_string();
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
            println!(
                "BENCH committed writes/s (3 nodes, fsync, {concurrency} client(s)): {:.0}",
                total as f64 / start.elapsed().as_secs_f64()
            );
        }
    });
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    f.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
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
    for (i, &pid) in pids.iter().enumerate() {
        let cpu = (cpu_ticks(pid) - before[i]) as f64 / ticks_per_s / window * 100.0;
        println!(
            "BENCH idle agent {}: RSS {:.1} MB, CPU {:.2}% of a core",
            c.nodes[i].name,
            rss_kb(pid) as f64 / 1024.0,
            cpu
        );
    }
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
    summary("whole-cluster cold start -> quorum, all up (s)", samples);
}
