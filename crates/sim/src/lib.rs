//! halo-sim: a deterministic simulation of a halo cluster (see [`world`] for what is halo's
//! own code and what is modelled). One seed is one run: faults at random times, invariant
//! checks after every step, and a liveness check at the end. A failing seed replays exactly
//! with `halo-sim --seed S --verbose`.

pub mod invariants;
pub mod world;

pub use world::{Bug, Config, World};

/// What one seed did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub seed: u64,
    pub steps: u64,
    pub faults: usize,
    pub admin_ops: usize,
    /// Power-offs confirmed by fence agents.
    pub fenced: usize,
    /// VM migrations handed over, and ones called back after the guest had left.
    pub migrated: usize,
    pub migrations_called_back: usize,
    /// Takeovers where the voters' reports bounded the former leader's lease.
    pub bounded_takeovers: usize,
    pub commits: usize,
    pub violations: Vec<String>,
    pub trace: Vec<String>,
}

/// Run one seed to the end (or to its first violation).
pub fn run(seed: u64, cfg: &Config) -> Outcome {
    let mut world = World::new(seed, cfg.clone());
    let mut steps = 0;
    while world.step() {
        steps += 1;
    }
    if world.violations.is_empty() {
        invariants::check_end(&mut world);
    }
    Outcome {
        seed,
        steps,
        faults: world.faults,
        admin_ops: world.admin_ops,
        fenced: world.fenced,
        migrated: world.migrated,
        migrations_called_back: world.migrations_called_back,
        bounded_takeovers: world.bounded_takeovers,
        commits: world.log.len(),
        violations: world.violations,
        trace: world.trace,
    }
}

/// The command that replays `seed` with the same configuration.
pub fn replay_command(seed: u64, cfg: &Config) -> String {
    let bug = match cfg.bug {
        None => "",
        Some(Bug::LyingFenceAgent) => " --bug lying-fence-agent",
    };
    format!(
        "cargo run --profile sim -p halo-sim -- --seed {seed} --profile {} --nodes {}{bug} --verbose",
        cfg.profile, cfg.nodes
    )
}
