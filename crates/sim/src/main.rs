//! `halo-sim`: run K seeds of the deterministic simulation, or one seed verbosely.

use std::time::Instant;

use anyhow::bail;
use clap::Parser;
use halo_sim::{Bug, Config, replay_command, run};

#[derive(Parser)]
#[command(about = "Deterministic simulation of a halo cluster under faults")]
struct Args {
    /// Run this one seed.
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// Run this many seeds, from --first.
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    #[arg(long, default_value_t = 1)]
    first: u64,
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Timing profile: default or fast.
    #[arg(long, default_value = "default")]
    profile: String,
    /// Break a part of the world (lying-fence-agent) to see the checkers
    /// catch it.
    #[arg(long)]
    bug: Option<String>,
    /// Print the run's trace.
    #[arg(long)]
    verbose: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let profile: halo_core::timing::Profile = args.profile.parse().map_err(anyhow::Error::msg)?;
    if !(3..=7).contains(&args.nodes) {
        bail!("--nodes must be 3 to 7");
    }
    let bug = match args.bug.as_deref() {
        None => None,
        Some("lying-fence-agent") => Some(Bug::LyingFenceAgent),
        Some(other) => bail!("unknown bug '{other}' (lying-fence-agent)"),
    };
    let cfg = Config { nodes: args.nodes, profile, bug, verbose: args.verbose, ..Config::default() };
    let seeds: Vec<u64> = match args.seed {
        Some(s) => vec![s],
        None => (args.first..args.first + args.seeds).collect(),
    };
    let started = Instant::now();
    let (mut faults, mut ops, mut fenced, mut commits, mut failed) = (0, 0, 0, 0, 0);
    let (mut migrated, mut called_back, mut bounded) = (0, 0, 0);
    for &seed in &seeds {
        let outcome = run(seed, &cfg);
        faults += outcome.faults;
        ops += outcome.admin_ops;
        fenced += outcome.fenced;
        migrated += outcome.migrated;
        called_back += outcome.migrations_called_back;
        bounded += outcome.bounded_takeovers;
        commits += outcome.commits;
        if let Some(first) = outcome.violations.first() {
            failed += 1;
            println!("seed {seed}: {first}\n  replay: {}", replay_command(seed, &cfg));
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{} seed(s), {faults} faults, {ops} admin operations, {fenced} fence power-offs, {migrated} VM migrations \
         ({called_back} called back after the guest left), {bounded} takeovers bounded by voter reports, \
         {commits} commits, {failed} with violations; {:.1} seeds/s",
        seeds.len(),
        seeds.len() as f64 / secs.max(1e-9)
    );
    if failed > 0 {
        std::process::exit(1);
    }
    Ok(())
}
