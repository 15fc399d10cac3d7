//! The `halo` binary: the agent daemon and the command line in one executable.

use anyhow::Context;
use clap::Parser;
use halo_cli::{Cli, Command};

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Agent(ref args) => {
            halo_agent::identity::keep_files_private();
            run_agent(args)
        }
        Command::FenceGuard { ref data_dir, ref watchdog } => {
            halo_agent::identity::keep_files_private();
            halo_agent::guard::run(data_dir, watchdog.as_deref())
        }
        Command::FloatingIp { action, ref address, ref interface, announce } => {
            std::process::exit(halo_agent::address::main(action, address, interface, announce))
        }
        _ => run_cli(cli),
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
    let file = halo_agent::cluster_log::LogFile::open(&config.data_dir.join("logs"), &config.name)
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

fn run_cli(cli: Cli) -> anyhow::Result<()> {
    halo_agent::clock::monotonic_ms();
    rustls::crypto::ring::default_provider().install_default().ok();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(halo_cli::commands::run(cli))
}
