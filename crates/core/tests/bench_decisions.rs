//! Benchmarks of the decision core at the WSFC limits (64 nodes, 8,000 roles) and beyond
//! (256 nodes, 32,000 roles): placing every role, and the recovery decisions after a node
//! with 1,000 roles is lost. The real `policy::decide`, on one thread. Ignored by the normal
//! suite; `scripts/bench decisions` runs them in a release build and prints (and records) the numbers.

use std::collections::BTreeMap;
use std::time::Instant;

use halo_bench::record;
use halo_core::NodeId;
use halo_core::capacity::Capacity;
use halo_core::command::{Command, RoleReport, RoleReportOutcome};
use halo_core::policy::{Inputs, Liveness, decide};
use halo_core::role::{RoleRecord, RoleSpec};
use halo_core::state::{ClusterState, NetworkRecord, NetworkState, NodeRecord, NodeState};

fn cluster(nodes: u64, roles: usize, on_first: usize) -> ClusterState {
    let mut state = ClusterState::default();
    for id in 1..=nodes {
        state.nodes.insert(
            id,
            NodeRecord {
                id,
                name: format!("n{id}"),
                api: format!("10.0.{}.{}:7400", id / 250, id % 250),
                networks: vec![NetworkRecord {
                    address: format!("10.0.{}.{}:7401", id / 250, id % 250),
                    state: NetworkState::Up,
                }],
                state: NodeState::Up,
                witness: false,
                voter: id <= 5,
                joined_at_ms: 0,
                state_since_ms: 0,
                drain: false,
                capacity: Some(Capacity { cpu_milli: 256_000, memory_mb: 4 << 20 }),
                fence_request: None,
                data_disk_low: None,
            },
        );
    }
    for i in 0..roles {
        // The first `on_first` prefer n1 (so it holds them); every tenth of the others has an
        // anti-affinity class of ten members.
        let preferred = if i < on_first { r#","preferred":["n1"]"# } else { "" };
        let anti =
            if i % 10 == 0 && i >= on_first { format!(r#","anti_affinity":["c{}"]"#, i / 100) } else { String::new() };
        let json = format!(
            r#"{{"name":"r{i}","resources":[{{"name":"main","type":"process","params":{{"command":"sleep 1"}}}}]{preferred}{anti},
                "cpu_milli":100,"memory_mb":256}}"#
        );
        let spec: RoleSpec = serde_json::from_str(&json).expect("role");
        state.roles.insert(spec.name.clone(), RoleRecord::new(spec, 0));
    }
    state
}

fn run(state: &mut ClusterState, liveness: &BTreeMap<NodeId, Liveness>, now_ms: u64) -> (usize, f64) {
    let started = Instant::now();
    let commands = decide(&Inputs { state, liveness, now_ms });
    let took = started.elapsed().as_secs_f64();
    for c in &commands {
        state.apply(c);
    }
    (commands.len(), took)
}

/// One fresh cluster: the placement of every role, the recovery after n1 (holding 1,000 roles)
/// is lost, and a tick with nothing to decide, in seconds.
fn scenario(nodes: u64, roles: usize) -> [f64; 3] {
    let mut state = cluster(nodes, roles, 1_000);
    let (placed, placement) = run(&mut state, &BTreeMap::new(), 1);
    assert_eq!(placed, roles, "every role placed");
    let owners: Vec<(String, NodeId, u64)> =
        state.roles.values().map(|r| (r.spec.name.clone(), r.owner.expect("placed"), r.generation)).collect();
    for (role, node, generation) in owners {
        let report =
            RoleReport { role, node, generation, outcome: RoleReportOutcome::Online, detail: String::new(), now_ms: 2 };
        state.apply(&Command::ReportRole(report));
    }
    let on_first = state.roles.values().filter(|r| r.owner == Some(1)).count();
    let mut lost = BTreeMap::new();
    lost.insert(1, Liveness::Lost("lease ran out".into()));
    state.nodes.get_mut(&1).expect("n1").state = NodeState::Down;
    let (moved, recovery) = run(&mut state, &lost, 3);
    assert_eq!((moved, on_first), (1_000, 1_000));
    let (idle, tick) = run(&mut state, &lost, 4);
    assert_eq!(idle, 0);
    [placement, recovery, tick]
}

/// Five fresh clusters of this size; the medians are what the report judges.
fn measure(nodes: u64, roles: usize) {
    let runs: Vec<[f64; 3]> = (0..5).map(|_| scenario(nodes, roles)).collect();
    let ms = |i: usize| runs.iter().map(|r| r[i] * 1000.0).collect::<Vec<f64>>();
    let on = format!("{roles} roles, {nodes} nodes");
    record("default", &format!("placement.{roles}"), &format!("placement of every role ({on})"), "ms", ms(0));
    let recovery = format!("recovery decisions for a lost node with 1000 roles ({on})");
    record("default", &format!("recovery.{roles}"), &recovery, "ms", ms(1));
    let idle = format!("a manager tick with nothing to decide ({on})");
    record("default", &format!("idle_tick.{roles}"), &idle, "ms", ms(2));
}

#[test]
#[ignore = "benchmark: scripts/bench decisions"]
fn decisions_at_the_wsfc_limits() {
    measure(64, 8_000);
}

#[test]
#[ignore = "benchmark: scripts/bench decisions"]
fn decisions_at_four_times_the_wsfc_limits() {
    measure(256, 32_000);
}
