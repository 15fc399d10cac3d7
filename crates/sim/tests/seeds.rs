//! The simulation in the test suite: a fixed seed set per profile and cluster size, a few
//! hundred fresh seeds (printed, so a failure replays), and proof that the checkers catch a
//! re-introduced bug.

use halo_core::timing::Profile;
use halo_sim::{Bug, Config, replay_command, run};

fn run_seeds(cfg: &Config, seeds: impl Iterator<Item = u64>) -> (usize, usize, usize, Vec<String>) {
    let (mut count, mut faults, mut commits, mut failures) = (0, 0, 0, Vec::new());
    let mut migrated = 0;
    for seed in seeds {
        let outcome = run(seed, cfg);
        count += 1;
        migrated += outcome.migrated;
        faults += outcome.faults + outcome.admin_ops;
        commits += outcome.commits;
        if let Some(v) = outcome.violations.first() {
            failures.push(format!("seed {seed}: {v}\n  replay: {}", replay_command(seed, cfg)));
        }
    }
    println!("SIM {migrated} VM migrations handed over in those {count} seeds");
    assert!(migrated > 0, "VM roles must migrate in the simulation too");
    (count, faults, commits, failures)
}

#[test]
fn fixed_seeds_hold_every_invariant() {
    for (profile, nodes) in [(Profile::Default, 3), (Profile::Fast, 3), (Profile::Default, 5)] {
        let cfg = Config { profile, nodes, ..Config::default() };
        let (count, faults, commits, failures) = run_seeds(&cfg, 1..=60);
        println!(
            "SIM {profile} profile, {nodes} nodes: {count} seeds, {faults} faults and admin operations, {commits} commits, {} violations",
            failures.len()
        );
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}

#[test]
fn fresh_seeds_hold_every_invariant() {
    let base = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(7, |d| d.as_secs()) * 1000;
    let cfg = Config::default();
    let (count, faults, commits, failures) = run_seeds(&cfg, base..base + 200);
    println!(
        "SIM fresh seeds {base}..{}: {count} seeds, {faults} faults and admin operations, {commits} commits, {} violations",
        base + 200,
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A fence agent that reports a power-off it did not do breaks the one thing halo trusts it
/// for; the S1 checker must see the role run twice.
#[test]
fn the_checkers_catch_a_lying_fence_agent() {
    let cfg = Config { bug: Some(Bug::LyingFenceAgent), ..Config::default() };
    let caught: Vec<u64> =
        (1..=60).filter(|&seed| run(seed, &cfg).violations.iter().any(|v| v.starts_with("S1"))).collect();
    println!("SIM known bug (lying-fence-agent): S1 caught in {} of 60 seeds", caught.len());
    assert!(!caught.is_empty(), "the simulator missed a lying fence agent");
}
