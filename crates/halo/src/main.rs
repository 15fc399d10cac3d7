//! The `halo` binary: the agent daemon and the command line in one executable.

use clap::Parser;
use halo_cli::{Cli, Command};

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Agent(ref args) => run_agent(args),
        Command::FenceGuard { ref data_dir } => halo_agent::guard::run(data_dir),
        _ => run_cli(cli),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run_agent(args: &halo_agent::AgentArgs) -> anyhow::Result<()> {
    let config = halo_agent::AgentConfig::from_args(args)?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HALO_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn")),
        )
        .with_target(false)
        .init();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(halo_agent::run(config, halo_cli::demo::shutdown_signal()))
}

fn run_cli(cli: Cli) -> anyhow::Result<()> {
    halo_agent::clock::monotonic_ms();
    rustls::crypto::ring::default_provider().install_default().ok();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(halo_cli::commands::run(cli))
}
