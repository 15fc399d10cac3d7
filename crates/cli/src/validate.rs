//! `halo validate`: ask the cluster for its report, or, with `--nodes`, survey agents that are
//! not clustered yet straight from here. Either way the report prints as text (or JSON), can be
//! kept as a self-contained HTML page, and the command fails when a check fails.

use std::path::PathBuf;

use anyhow::bail;
use halo_api::validation::{ProbeReply, ProbeRequest, ValidationView};
use halo_core::validation::{self, Outcome};
use halo_survey::{self as survey, Plan, Target, Transport};

use crate::client::{Api, ClientConfig, normalize_endpoint};
use crate::output;

#[derive(Debug, Clone, clap::Args)]
pub struct ValidateArgs {
    /// Validate these agents before they form a cluster: their API addresses (HOST:PORT),
    /// comma-separated. Without it, the cluster in the client config is validated.
    #[arg(long, value_delimiter = ',')]
    pub nodes: Vec<String>,
    /// With --nodes: shared storage paths to test (a cluster tests its `shared_storage`).
    #[arg(long, value_delimiter = ',', requires = "nodes")]
    pub shared_storage: Vec<String>,
    /// With --nodes, for agents on other machines: their bootstrap secrets
    /// (DATA_DIR/bootstrap.secret), one for all or one per node in the order of --nodes.
    #[arg(long, value_delimiter = ',', requires = "nodes")]
    pub bootstrap_secret: Vec<String>,
    /// With --nodes: each agent's certificate fingerprint, one per node in the order of
    /// --nodes (see `cluster create`). Without, whichever answers is talked to, with a warning.
    #[arg(long, value_delimiter = ',', requires = "nodes")]
    pub fingerprint: Vec<String>,
    /// Also write the report to FILE as a self-contained HTML page.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

pub async fn run(args: ValidateArgs, json: bool) -> anyhow::Result<()> {
    let report = if args.nodes.is_empty() {
        let config = ClientConfig::load()?;
        Api::from_config(&config)?.get::<ValidationView>("/api/v1/validate").await?
    } else {
        validate_nodes(&args).await?
    };
    if let Some(path) = &args.html {
        std::fs::write(path, crate::html::validation_report(&report))
            .map_err(|e| anyhow::anyhow!("cannot write the HTML report to {}: {e}", path.display()))?;
    }
    if json {
        output::print_json(&report)?;
    } else {
        print!("{}", output::validation_text(&report));
        if let Some(path) = &args.html {
            println!("HTML report written to {}", path.display());
        }
    }
    // The verdict is the worst check.
    if report.result == Outcome::Fail {
        let failed = report.checks.iter().filter(|c| c.outcome == Outcome::Fail).count();
        bail!("validation failed: {failed} check{} failed", if failed == 1 { "" } else { "s" });
    }
    Ok(())
}

async fn validate_nodes(args: &ValidateArgs) -> anyhow::Result<ValidationView> {
    let endpoints = args.nodes.iter().map(|n| normalize_endpoint(n)).collect::<anyhow::Result<Vec<_>>>()?;
    let secrets = &args.bootstrap_secret;
    if secrets.len() > 1 && secrets.len() != endpoints.len() {
        bail!(
            "--bootstrap-secret: give one secret for all nodes or one per node ({} nodes, {} secrets)",
            endpoints.len(),
            secrets.len()
        );
    }
    let pins = &args.fingerprint;
    if !pins.is_empty() && pins.len() != endpoints.len() {
        bail!(
            "--fingerprint: give one per node, in the order of --nodes ({} nodes, {} fingerprints)",
            endpoints.len(),
            pins.len()
        );
    }
    let agents = endpoints
        .iter()
        .enumerate()
        .map(|(i, e)| Api::bootstrap(e, secrets.get(i).or(secrets.first()).cloned(), pins.get(i).map(String::as_str)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for path in &args.shared_storage {
        if !path.starts_with('/') {
            bail!("--shared-storage: '{path}' is not an absolute path");
        }
    }
    let targets: Vec<Target> = endpoints.iter().map(|e| Target::at(e)).collect();
    let plan = Plan { shared: args.shared_storage.clone(), ..Plan::default() };
    let found = survey::survey(&AgentApis(agents), &targets, &plan).await;
    Ok(ValidationView::new(String::new(), crate::wall_ms(), validation::judge_nodes(&found), found))
}

/// Each agent's own API, with bootstrap trust.
struct AgentApis(Vec<Api>);

impl Transport for AgentApis {
    async fn call(&self, node: usize, request: ProbeRequest) -> Result<ProbeReply, String> {
        let api = self.0.get(node).ok_or_else(|| format!("no node {node}"))?;
        api.post("/api/v1/probe", &request).await.map_err(|e| format!("{e:#}"))
    }
}
