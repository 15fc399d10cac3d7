//! Known bugs put back into the *shared* code, not into a simulator copy: each mutant is this
//! workspace's `halo-core` with one safety rule broken, built together with the simulator in
//! a scratch copy, and the simulator must catch it. It proves the simulator runs the code the
//! daemon runs: a bug there is a bug here.
//!
//! Ignored by the plain suite (it builds a second copy of the core and the simulator);
//! `scripts/test` runs it after the suite, on its own.

use std::path::{Path, PathBuf};
use std::process::Command;

struct Mutant {
    what: &'static str,
    file: &'static str,
    from: &'static str,
    to: &'static str,
    profile: &'static str,
    seeds: u32,
}

const MUTANTS: &[Mutant] = &[
    Mutant {
        what: "the leader recovers a silent node's roles without waiting for its lease (liveness::verdict)",
        file: "crates/core/src/liveness.rs",
        from: "    if now_ms >= lost_at {",
        to: "    if now_ms + timing.lease_ms >= lost_at {",
        profile: "default",
        seeds: 40,
    },
    Mutant {
        what: "a node starts roles before applying what the leader had committed when it granted \
               its lease (heartbeat::Endpoint::may_start)",
        file: "crates/core/src/heartbeat/endpoint.rs",
        from: "        self.lease.valid(now_ms) && applied_index >= self.lease_index",
        to: "        self.lease.valid(now_ms)",
        profile: "default",
        seeds: 300,
    },
    Mutant {
        what: "a new leader takes the former leader's own lease as over at once, whatever the voters \
               reported (former_leader::bound)",
        file: "crates/core/src/former_leader.rs",
        from: "Some(Bound { former, acked_by_ms: receipts[majority - 1] })",
        to: "Some(Bound { former, acked_by_ms: 0 })",
        profile: "fast",
        seeds: 600,
    },
];

/// The crates the simulator is built from; the workspace's other members are left out.
const CRATES: &[&str] = &["core", "sim", "bench"];

#[test]
#[ignore = "builds the simulator against mutated shared code; scripts/test runs it after the suite"]
fn the_simulator_catches_bugs_put_back_into_the_shared_code() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root");
    let scratch = tempfile::Builder::new().prefix("halo-mutants-").tempdir().expect("scratch dir");
    copy_workspace(&root, scratch.path());
    // Shared with later runs, apart from the real build: only the mutated crates rebuild.
    let target = root.join("target/mutants");
    for mutant in MUTANTS {
        let path = scratch.path().join(mutant.file);
        let original = std::fs::read_to_string(root.join(mutant.file)).expect("source");
        assert_eq!(
            original.matches(mutant.from).count(),
            1,
            "{}: the code to mutate is not in {} exactly once; update the mutant",
            mutant.what,
            mutant.file
        );
        std::fs::write(&path, original.replacen(mutant.from, mutant.to, 1)).expect("mutate");
        let out = Command::new(env!("CARGO"))
            .current_dir(scratch.path())
            .env("CARGO_TARGET_DIR", &target)
            .args(["run", "--offline", "-q", "-p", "halo-sim", "--"])
            .args(["--seeds", &mutant.seeds.to_string(), "--profile", mutant.profile])
            .output()
            .expect("cargo run");
        std::fs::write(&path, &original).expect("restore");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let summary = stdout.lines().last().unwrap_or_default();
        println!("MUTANT {}: {summary}", mutant.what);
        let caught = caught(summary).unwrap_or_else(|| {
            panic!("{}: the simulator did not run\n{stdout}\n{}", mutant.what, String::from_utf8_lossy(&out.stderr))
        });
        assert!(caught > 0, "{}: not caught in {} seeds", mutant.what, mutant.seeds);
        assert!(!out.status.success(), "a run with violations must fail");
    }
}

/// "N seed(s), ..., K with violations; ..." → K.
fn caught(summary: &str) -> Option<u32> {
    let (before, _) = summary.split_once(" with violations")?;
    before.rsplit(' ').next()?.parse().ok()
}

/// The workspace manifest, lock file and the simulator's crates, without the other members'
/// dependency entries (their paths are not copied).
fn copy_workspace(root: &Path, to: &Path) {
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("manifest");
    let kept: Vec<&str> = manifest
        .lines()
        .filter(|line| {
            let Some((_, path)) = line.split_once("path = \"crates/") else { return true };
            CRATES.iter().any(|c| path.starts_with(&format!("{c}\"")))
        })
        .collect();
    std::fs::write(to.join("Cargo.toml"), kept.join("\n")).expect("manifest");
    std::fs::copy(root.join("Cargo.lock"), to.join("Cargo.lock")).expect("lock file");
    for name in CRATES {
        copy_dir(&root.join("crates").join(name), &to.join("crates").join(name));
    }
}

fn copy_dir(from: &Path, to: &PathBuf) {
    std::fs::create_dir_all(to).expect("dir");
    for entry in std::fs::read_dir(from).expect("read dir").flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}
