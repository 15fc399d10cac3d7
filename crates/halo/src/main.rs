//! The `halo` binary: the agent daemon and the command line in one executable. The client
//! verbs come from `halo-cli` (which knows nothing of the daemon); this file adds the
//! daemon's own: `agent`, and the hidden ones the agent runs itself.

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "halo", version, about = "High-availability clustering for virtual machines and services")]
struct Halo {
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Debug, Subcommand)]
enum Verb {
    /// Run the node agent (the daemon).
    Agent(halo_agent::AgentArgs),
    #[command(flatten)]
    Client(halo_cli::Command),
    /// The fence guard, started by the agent itself (not for people to run).
    #[command(hide = true)]
    FenceGuard {
        #[arg(long)]
        data_dir: std::path::PathBuf,
        /// The watchdog device to feed while the node holds a lease.
        #[arg(long)]
        watchdog: Option<std::path::PathBuf>,
    },
    /// One action of an `ip` resource, run by the fence guard (not for people to run); exits
    /// with an OCF exit code.
    #[command(hide = true)]
    FloatingIp {
        action: halo_agent::workload::address::Action,
        #[arg(long)]
        address: String,
        #[arg(long)]
        interface: String,
        #[arg(long, default_value_t = halo_core::address::DEFAULT_ANNOUNCE)]
        announce: u8,
    },
}

fn main() {
    let halo = Halo::parse();
    let result = match halo.verb {
        Verb::Agent(ref args) => {
            halo_agent::child::keep_files_private();
            run_agent(args)
        }
        Verb::FenceGuard { ref data_dir, ref watchdog } => {
            halo_agent::child::keep_files_private();
            halo_agent::workload::guard::run(data_dir, watchdog.as_deref())
        }
        Verb::FloatingIp { action, ref address, ref interface, announce } => {
            std::process::exit(halo_agent::workload::address::main(action, address, interface, announce))
        }
        Verb::Client(command) => run_cli(command, halo.json),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run_agent(args: &halo_agent::AgentArgs) -> anyhow::Result<()> {
    let config = halo_agent::AgentConfig::from_args(args)?;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // Every line goes to stderr for the service manager's journal, and to the structured log
    // in the data directory that `halo log` gathers.
    let file = halo_agent::observe::cluster_log::LogFile::open(&config.data_dir.join("logs"), &config.name)
        .with_context(|| format!("opening the agent log in {}", config.data_dir.join("logs").display()))?;
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::EnvFilter::try_from_env("HALO_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn")),
        )
        .with(tracing_subscriber::fmt::layer().with_target(false))
        .with(file.layer())
        .init();
    // Several workers: one slow task (a TLS handshake, a large read) never holds up the rest.
    // Heartbeats and the fence guard's link do not depend on it at all: they have threads
    // of their own.
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).max(2);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build()?;
    runtime.block_on(halo_agent::run(config, halo_cli::demo::shutdown_signal()))
}

fn run_cli(command: halo_cli::Command, json: bool) -> anyhow::Result<()> {
    rustls::crypto::ring::default_provider().install_default().ok();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(halo_cli::run(command, json))
}
