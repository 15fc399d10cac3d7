//! The command tree of the client verbs (the contract in the design: verbs, flags and
//! `--json` fields are kept). The `halo` binary adds the daemon's own verbs (`agent` and the
//! hidden ones the agent runs itself) beside these.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::Subcommand;
use halo_api::{cluster::*, membership::*};
use halo_core::role::RoleState;

use crate::client::{Api, ClientConfig, normalize_endpoint};
use crate::output;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, join and configure the cluster.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Nodes, quorum, leader and roles at a glance.
    Status {
        /// Answer from the contacted node's own copy of the database instead of the leader's.
        #[arg(long)]
        local: bool,
    },
    /// Inspect and manage nodes.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Create, inspect and operate roles.
    #[command(subcommand)]
    Role(crate::role::RoleCommand),
    /// API tokens with a role (admin, operator, viewer), and the admin token's rotation.
    #[command(subcommand)]
    Token(crate::token::TokenCommand),
    /// Declarative roles from a TOML file: create the missing, update the changed (idempotent).
    Apply {
        #[arg(short = 'f', long = "file")]
        file: std::path::PathBuf,
        /// Show what would change, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// What would happen if a node died now: where each of its roles would go, and how long
    /// it could take at worst. Changes nothing.
    Plan {
        #[arg(long, value_name = "NODE")]
        fail: String,
    },
    /// Validate the cluster (or, with --nodes, agents before they form one): inventory,
    /// networks, shared storage, quorum and roles, each check with a result, an explanation and
    /// a fix. Changes nothing; exits non-zero when a check fails.
    Validate(crate::validate::ValidateArgs),
    /// The cluster's event history: node, network and role changes, in words.
    Events {
        /// Keep printing new events as they happen (Ctrl-C to stop).
        #[arg(long)]
        follow: bool,
        /// How many of the newest events to show first.
        #[arg(long, default_value_t = 50)]
        last: usize,
    },
    /// Every agent's log in one time-ordered view (UTC and local time), gathered from all nodes.
    Log(crate::log::LogArgs),
    /// Start a local 3-node cluster on this machine and keep it running until Ctrl-C.
    Demo(crate::demo::DemoArgs),
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Bootstrap the (unjoined) agent at ENDPOINT as the first node; writes the client config.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        endpoint: String,
        /// Needed when the agent is not on this machine (its DATA_DIR/bootstrap.secret).
        #[arg(long, env = "HALO_BOOTSTRAP_SECRET")]
        bootstrap_secret: Option<String>,
        /// The agent's certificate fingerprint (its log, DATA_DIR/bootstrap.fingerprint):
        /// only that agent is talked to. Without it, whichever answers is, with a warning.
        #[arg(long)]
        fingerprint: Option<String>,
        /// Timing profile (`default` or `fast`): the lease timing, and the Raft timing, which
        /// is fixed from then on (a creating agent's `[timing]` overrides the latter).
        #[arg(long)]
        profile: Option<halo_core::timing::Profile>,
    },
    /// Issue a join token carrying the peers and the CA fingerprint.
    Token {
        /// How long the token is valid, e.g. 30m, 1h, 2d.
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
    /// Make the unjoined agent at ENDPOINT join the cluster named in TOKEN.
    Join {
        #[arg(long)]
        endpoint: String,
        #[arg(long)]
        token: String,
        #[arg(long, env = "HALO_BOOTSTRAP_SECRET")]
        bootstrap_secret: Option<String>,
        /// The joining agent's certificate fingerprint (see `create`).
        #[arg(long)]
        fingerprint: Option<String>,
    },
    /// Cluster settings and properties (as the leader has them).
    Show {
        /// Answer from the contacted node's own copy of the database instead of the leader's.
        #[arg(long)]
        local: bool,
    },
    /// Set cluster properties: description, label.NAME, heartbeat_interval_ms, node_timeout_ms, max_voters.
    Set {
        /// KEY=VALUE pairs, applied all together or not at all.
        #[arg(required = true)]
        properties: Vec<String>,
    },
    /// Replace the cluster CA while the cluster runs: nodes trust both, renew their
    /// certificates from the new one, then drop the old. Waits for the end and keeps the
    /// client config trusting what the nodes present; run it again to wait for one under way.
    RotateCa {
        /// Start it (or look at it) and return; the client config then trusts both CAs.
        #[arg(long)]
        no_wait: bool,
        /// How long to wait for the end, e.g. 5m.
        #[arg(long, default_value = "5m")]
        timeout: String,
    },
    /// A new key for heartbeat datagrams; nodes still accept the old one for a little while.
    RotateHeartbeatKey,
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    List,
    Show {
        name: String,
    },
    /// Remove a node from the cluster (its agent must be stopped or it becomes unjoined).
    Remove {
        name: String,
    },
    /// Place no new roles on the node; with --drain, move its roles off first.
    Pause {
        name: String,
        #[arg(long)]
        drain: bool,
    },
    /// Make a paused node available again; with --failback, bring back the roles that prefer it.
    Resume {
        name: String,
        #[arg(long)]
        failback: bool,
    },
    /// The fence device that powers the node off: a standard fence_* agent and its parameters.
    /// When the node goes silent the leader runs it (action=off); a confirmed power-off lets
    /// its roles restart at once instead of after its lease.
    Fence {
        name: String,
        /// e.g. fence_ipmilan, fence_redfish, fence_virsh
        #[arg(long, required_unless_present = "clear")]
        agent: Option<String>,
        /// KEY=VALUE given to the agent on stdin (repeatable), e.g. ip=10.0.0.9 username=admin
        #[arg(long = "param", value_name = "KEY=VALUE")]
        params: Vec<String>,
        /// Remove the node's fence device.
        #[arg(long, conflicts_with = "agent")]
        clear: bool,
    },
}

/// Run one client command; `json` prints the API's shapes instead of tables.
pub async fn run(command: Command, json: bool) -> anyhow::Result<()> {
    match command {
        Command::Demo(args) => crate::demo::run(args).await,
        Command::Cluster(c) => cluster(c, json).await,
        Command::Status { local } => {
            let (api, config) = connect()?;
            let status: StatusView =
                api.get(if local { "/api/v1/status?local=true" } else { "/api/v1/status" }).await?;
            remember_endpoints(config, &status);
            if json {
                output::print_json(&status)
            } else {
                print!("{}", output::status_text(&status));
                Ok(())
            }
        }
        Command::Role(command) => crate::role::run(&connect()?.0, command, json).await,
        Command::Token(command) => crate::token::run(&connect()?.0, command, json).await,
        Command::Apply { file, dry_run } => crate::role::apply(&connect()?.0, &file, dry_run, json).await,
        Command::Plan { fail } => {
            let plan: serde_json::Value = connect()?.0.get(&format!("/api/v1/plan?fail={fail}")).await?;
            if json {
                return output::print_json(&plan);
            }
            print!("{}", output::plan_text(&plan));
            Ok(())
        }
        Command::Validate(args) => crate::validate::run(args, json).await,
        Command::Events { follow, last } => events(&connect()?.0, follow, last, json).await,
        Command::Log(args) => crate::log::run(&connect()?.0, args, json).await,
        Command::Node(NodeCommand::List) => {
            let nodes: Vec<NodeView> = connect()?.0.get("/api/v1/nodes").await?;
            if json {
                output::print_json(&nodes)
            } else {
                println!("{}", output::nodes_table(&nodes));
                Ok(())
            }
        }
        Command::Node(NodeCommand::Show { name }) => {
            let node: NodeView = connect()?.0.get(&format!("/api/v1/nodes/{name}")).await?;
            if json {
                output::print_json(&node)
            } else {
                print!("{}", output::node_text(&node));
                Ok(())
            }
        }
        Command::Node(NodeCommand::Pause { name, drain }) => {
            let api = connect()?.0;
            api.post_no_reply(&format!("/api/v1/nodes/{name}/pause"), &serde_json::json!({ "drain": drain })).await?;
            // Done when nothing is left on the node and what moved is running again.
            let on_node = |r: &halo_api::roles::RoleView| {
                r.owner.as_deref() == Some(name.as_str()) || r.state == RoleState::Pending
            };
            let left = if drain { settle(&api, on_node).await? } else { Vec::new() };
            if json {
                return output::print_json(&serde_json::json!({ "paused": name, "drained": drain, "stayed": left }));
            }
            if !drain {
                println!("node '{name}' paused: its roles keep running; no new roles are placed on it");
            } else if left.is_empty() {
                println!("node '{name}' drained and paused");
            } else {
                bail!("node '{name}' is paused, but these roles could not leave it: {}", left.join("; "));
            }
            Ok(())
        }
        Command::Node(NodeCommand::Resume { name, failback }) => {
            let api = connect()?.0;
            let body = serde_json::json!({ "failback": failback });
            api.post_no_reply(&format!("/api/v1/nodes/{name}/resume"), &body).await?;
            let unsettled = settle(&api, |r| r.state == RoleState::Pending).await?;
            if json {
                return output::print_json(&serde_json::json!({ "resumed": name, "failback": failback }));
            }
            println!("node '{name}' resumed{}", if failback { " with failback" } else { "" });
            if !unsettled.is_empty() {
                println!("still settling: {}", unsettled.join("; "));
            }
            Ok(())
        }
        Command::Node(NodeCommand::Fence { name, agent, params, clear }) => {
            let device = match (agent, clear) {
                (Some(agent), false) => {
                    Some(halo_core::state::FenceDevice { agent, params: crate::role::parse_params(&params)? })
                }
                _ => None,
            };
            let api = connect()?.0;
            api.post_no_reply(&format!("/api/v1/nodes/{name}/fence"), &serde_json::json!({ "device": device })).await?;
            if json {
                return output::print_json(&serde_json::json!({ "node": name, "fence_device": device }));
            }
            match device {
                Some(d) => println!("node '{name}' is fenced by {} when it goes silent", d.agent),
                None => println!("node '{name}' has no fence device; its roles wait for its lease"),
            }
            Ok(())
        }
        Command::Node(NodeCommand::Remove { name }) => {
            connect()?.0.delete(&format!("/api/v1/nodes/{name}")).await?;
            if json {
                output::print_json(&serde_json::json!({ "removed": name }))
            } else {
                println!("node '{name}' removed");
                Ok(())
            }
        }
    }
}

async fn events(api: &Api, follow: bool, last: usize, json: bool) -> anyhow::Result<()> {
    use halo_core::events::Event;
    let print = |events: &[Event]| -> anyhow::Result<()> {
        for e in events {
            if json {
                println!("{}", serde_json::to_string(e)?);
            } else {
                let by = e.by.as_deref().map(|by| format!("  (by {by})")).unwrap_or_default();
                println!("{}  {:<8} {}{by}", output::time_of_day(e.at_ms), e.kind, e.message);
            }
        }
        Ok(())
    };
    let mut seen: Vec<Event> = api.get(&format!("/api/v1/events?limit={}", last.clamp(1, 1000))).await?;
    if !follow && json {
        // Without --follow, --json prints one array, like every other command.
        return output::print_json(&seen);
    }
    print(&seen)?;
    if !follow {
        return Ok(());
    }
    let mut after = seen.pop().map_or(0, |e| e.seq);
    loop {
        tokio::select! {
            _ = crate::demo::shutdown_signal() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        // Another node may answer after a failover; its history is the same.
        if let Ok(new) = api.get::<Vec<Event>>(&format!("/api/v1/events?after={after}&limit=1000")).await {
            print(&new)?;
            after = new.last().map_or(after, |e| e.seq);
        }
    }
}

/// Wait (up to a minute) until no role matches `unsettled`; returns those that still do.
async fn settle(api: &Api, unsettled: impl Fn(&halo_api::roles::RoleView) -> bool) -> anyhow::Result<Vec<String>> {
    let mut left = Vec::new();
    wait_for(Duration::from_secs(60), async || {
        let Ok(roles) = api.get::<Vec<halo_api::roles::RoleView>>("/api/v1/roles").await else { return false };
        left = roles.iter().filter(|r| unsettled(r)).map(|r| format!("{} ({})", r.name, r.detail)).collect();
        left.is_empty()
    })
    .await;
    Ok(left)
}

fn connect() -> anyhow::Result<(Api, ClientConfig)> {
    let config = ClientConfig::load()?;
    Ok((Api::from_config(&config)?, config))
}

/// Keep the client config's endpoint list current, so the CLI can fail over to any node.
fn remember_endpoints(mut config: ClientConfig, status: &StatusView) {
    if std::env::var_os("HALO_ENDPOINT").is_some() {
        return;
    }
    let mut endpoints: Vec<String> = status.nodes.iter().map(|n| n.api.clone()).collect();
    endpoints.sort();
    let mut known = config.endpoints.clone();
    known.sort();
    if !endpoints.is_empty() && endpoints != known {
        config.endpoints = status.nodes.iter().map(|n| n.api.clone()).collect();
        let _ = config.save();
    }
}

async fn cluster(command: ClusterCommand, json: bool) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Create { name, endpoint, bootstrap_secret, fingerprint, profile } => {
            let api = Api::bootstrap(&endpoint, bootstrap_secret, fingerprint.as_deref())?;
            let request = CreateClusterRequest { name: name.clone(), profile };
            let created: CreateClusterResponse = api.post("/api/v1/bootstrap/create", &request).await?;
            let config = ClientConfig {
                cluster: created.cluster.clone(),
                endpoints: vec![normalize_endpoint(&created.endpoint)?],
                ca_cert_pem: created.ca_cert_pem.clone(),
                token: created.admin_token.clone(),
            };
            let path = config.save()?;
            if json {
                output::print_json(&serde_json::json!({
                    "cluster": created.cluster, "node": created.node, "endpoint": created.endpoint,
                    "config": path.display().to_string(),
                }))
            } else {
                println!("cluster '{}' created on node '{}'", created.cluster, created.node);
                println!("client config written to {} (admin token and CA inside; keep it private)", path.display());
                Ok(())
            }
        }
        ClusterCommand::Token { ttl } => {
            let ttl = humantime::parse_duration(&ttl)
                .with_context(|| format!("invalid --ttl '{ttl}': use e.g. 30m, 1h, 2d"))?;
            let (api, _) = connect()?;
            let token: TokenResponse = api.post("/api/v1/tokens", &TokenRequest { ttl_seconds: ttl.as_secs() }).await?;
            if json {
                output::print_json(&token)
            } else {
                println!("{}", token.token);
                Ok(())
            }
        }
        ClusterCommand::Join { endpoint, token, bootstrap_secret, fingerprint } => {
            let api = Api::bootstrap(&endpoint, bootstrap_secret, fingerprint.as_deref())?;
            let joined: JoinClusterResponse = api.post("/api/v1/bootstrap/join", &JoinClusterRequest { token }).await?;
            if let Ok(mut config) = ClientConfig::load()
                && config.cluster == joined.cluster
                && !config.endpoints.contains(&joined.endpoint)
            {
                config.endpoints.push(joined.endpoint.clone());
                let _ = config.save();
            }
            if json {
                output::print_json(&joined)
            } else {
                let kind = if joined.voter { "voter" } else { "non-voting member" };
                println!("node '{}' joined cluster '{}' as {kind} (id {})", joined.node, joined.cluster, joined.id);
                Ok(())
            }
        }
        ClusterCommand::Show { local } => {
            let path = if local { "/api/v1/cluster?local=true" } else { "/api/v1/cluster" };
            let view: ClusterView = connect()?.0.get(path).await?;
            if json {
                output::print_json(&view)
            } else {
                print!("{}", output::cluster_text(&view));
                Ok(())
            }
        }
        ClusterCommand::RotateCa { no_wait, timeout } => crate::rotation::rotate_ca(json, no_wait, &timeout).await,
        ClusterCommand::RotateHeartbeatKey => crate::rotation::rotate_heartbeat_key(json).await,
        ClusterCommand::Set { properties } => {
            let mut pairs = Vec::new();
            for p in &properties {
                let (k, v) =
                    p.split_once('=').with_context(|| format!("invalid property '{p}': expected KEY=VALUE"))?;
                pairs.push((k.trim().to_string(), v.to_string()));
            }
            connect()?.0.post_no_reply("/api/v1/cluster/properties", &PropertiesRequest { properties: pairs }).await?;
            if json {
                output::print_json(&serde_json::json!({ "set": properties }))
            } else {
                println!("set {} propert(ies)", properties.len());
                Ok(())
            }
        }
    }
}

/// Poll `check` until it returns true or `timeout` passes.
pub async fn wait_for(timeout: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
