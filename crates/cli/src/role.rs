//! `halo role ...`: create, list, show, start, stop, delete, why.

use clap::{Args, Subcommand};
use halo_api::roles::RoleDetailView;
use halo_api::roles::RoleView;
use halo_core::capacity;
use halo_core::resource_kind::ResourceKind;
use halo_core::role::{Desired, Failback, FailoverPolicy, Priority, ResourceSpec, RestartPolicy, RoleSpec, Timeouts};

use crate::client::Api;
use crate::output;

#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    /// Create a role of one resource (use `halo apply` for roles of several).
    Create(Box<CreateArgs>),
    List,
    Show {
        name: String,
    },
    /// Ask for the role to run; the cluster places it.
    Start {
        name: String,
    },
    /// Ask for the role to stop wherever it runs.
    Stop {
        name: String,
    },
    /// Delete a stopped role.
    Delete {
        name: String,
    },
    /// Why the role is where it is (or why it is not running), in plain words.
    Why {
        name: String,
    },
    /// Planned move. Cold: stop here, start there, never overlapping. A VM moves live by
    /// default (its memory copied while it runs), or quick (paused, saved to shared storage,
    /// restored there).
    Move {
        name: String,
        /// Target node (default: the best other node).
        #[arg(long)]
        to: Option<String>,
        /// live, quick or cold (default: live for a VM role, cold for any other).
        #[arg(long)]
        mode: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    pub name: String,
    /// Resource type: `process`, `vm`, or `ocf:PROVIDER:AGENT`.
    #[arg(long = "type")]
    pub kind: String,
    /// Resource parameter KEY=VALUE (repeatable). For `process`: command, cwd, env.NAME.
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// A parameter no view, event or log shows (a password): `env.NAME` for a process, any
    /// parameter of an OCF agent (repeatable).
    #[arg(long = "secret-param", value_name = "KEY=VALUE")]
    pub secret_params: Vec<String>,
    /// Preferred owners, most preferred first.
    #[arg(long, value_delimiter = ',')]
    pub preferred: Vec<String>,
    /// The only nodes allowed to run it (default: every node that runs roles).
    #[arg(long, value_delimiter = ',')]
    pub possible: Vec<String>,
    #[arg(long = "anti-affinity", value_delimiter = ',')]
    pub anti_affinity: Vec<String>,
    /// Make anti-affinity a preference instead of a rule.
    #[arg(long)]
    pub soft_anti_affinity: bool,
    #[arg(long, value_enum, default_value = "medium")]
    pub priority: PriorityArg,
    /// Restarts in place allowed within --restart-period before the role fails over.
    #[arg(long, default_value_t = RestartPolicy::default().max_restarts)]
    pub max_restarts: u32,
    #[arg(long, default_value_t = RestartPolicy::default().period_s, value_name = "SECONDS")]
    pub restart_period: u64,
    /// Failovers allowed within --failover-period before the role is left failed.
    #[arg(long, default_value_t = FailoverPolicy::default().max_failovers)]
    pub max_failovers: u32,
    #[arg(long, default_value_t = FailoverPolicy::default().period_s, value_name = "SECONDS")]
    pub failover_period: u64,
    /// never, immediate, or a UTC hour window like 22-06.
    #[arg(long, default_value = "never")]
    pub failback: String,
    /// Create it stopped.
    #[arg(long)]
    pub stopped: bool,
    /// Milliseconds between health checks (OCF monitor); default from the agent's meta-data.
    #[arg(long, value_name = "MS")]
    pub monitor_interval: Option<u64>,
    /// Action timeouts in milliseconds; defaults from the agent's meta-data, else 20 s.
    #[arg(long, value_name = "MS")]
    pub start_timeout: Option<u64>,
    #[arg(long, value_name = "MS")]
    pub stop_timeout: Option<u64>,
    #[arg(long, value_name = "MS")]
    pub monitor_timeout: Option<u64>,
    /// CPU the role needs of a node: cores (2, 0.5) or thousandths (500m).
    #[arg(long)]
    pub cpu: Option<String>,
    /// Memory the role needs of a node: 512M, 2G...
    #[arg(long)]
    pub memory: Option<String>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum PriorityArg {
    High,
    Medium,
    Low,
    Manual,
}

impl From<PriorityArg> for Priority {
    fn from(p: PriorityArg) -> Self {
        match p {
            PriorityArg::High => Priority::High,
            PriorityArg::Medium => Priority::Medium,
            PriorityArg::Low => Priority::Low,
            PriorityArg::Manual => Priority::Manual,
        }
    }
}

pub fn parse_failback(text: &str) -> anyhow::Result<Failback> {
    match text {
        "never" => Ok(Failback::Never),
        "immediate" => Ok(Failback::Immediate),
        window => {
            let parsed = window.split_once('-').and_then(|(a, b)| Some((a.parse::<u8>().ok()?, b.parse::<u8>().ok()?)));
            match parsed {
                Some((start_hour, end_hour)) => Ok(Failback::Window { start_hour, end_hour }),
                None => {
                    anyhow::bail!("invalid --failback '{text}': use never, immediate or a UTC hour window like 22-06")
                }
            }
        }
    }
}

pub fn parse_params(params: &[String]) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    params
        .iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => anyhow::bail!("invalid --param '{p}': expected KEY=VALUE"),
        })
        .collect()
}

impl CreateArgs {
    fn spec(&self) -> anyhow::Result<RoleSpec> {
        // Checked here too, so a typo is reported before anything is sent.
        let kind = ResourceKind::parse(&self.kind).map_err(anyhow::Error::msg)?;
        let resource_name = self.kind.rsplit(':').next().unwrap_or("main").to_lowercase();
        Ok(RoleSpec {
            name: self.name.clone(),
            resources: vec![ResourceSpec {
                secret_params: parse_params(&self.secret_params)?,
                name: resource_name,
                kind,
                params: parse_params(&self.params)?,
                restart: RestartPolicy { max_restarts: self.max_restarts, period_s: self.restart_period },
                timeouts: Timeouts {
                    start_ms: self.start_timeout,
                    stop_ms: self.stop_timeout,
                    monitor_ms: self.monitor_timeout,
                    monitor_interval_ms: self.monitor_interval,
                },
                agent_timeouts: Timeouts::default(),
            }],
            preferred: self.preferred.clone(),
            possible: self.possible.clone(),
            anti_affinity: self.anti_affinity.clone(),
            anti_affinity_soft: self.soft_anti_affinity,
            priority: self.priority.into(),
            failover: FailoverPolicy { max_failovers: self.max_failovers, period_s: self.failover_period },
            failback: parse_failback(&self.failback)?,
            desired: if self.stopped { Desired::Stopped } else { Desired::Started },
            cpu_milli: match &self.cpu {
                Some(text) => capacity::parse_cpu(text).map_err(|e| anyhow::anyhow!("--cpu: {e}"))?,
                None => 0,
            },
            memory_mb: match &self.memory {
                Some(text) => capacity::parse_memory(text).map_err(|e| anyhow::anyhow!("--memory: {e}"))?,
                None => 0,
            },
        })
    }
}

pub async fn run(api: &Api, command: RoleCommand, json: bool) -> anyhow::Result<()> {
    let done = |what: &str, name: &str| -> anyhow::Result<()> {
        if json {
            output::print_json(&serde_json::json!({ "role": name, "result": what }))
        } else {
            println!("role '{name}' {what}");
            Ok(())
        }
    };
    match command {
        RoleCommand::Create(args) => {
            let spec = args.spec()?;
            api.post_no_reply("/api/v1/roles", &spec).await?;
            done("created", &spec.name)
        }
        RoleCommand::List => {
            let roles: Vec<RoleView> = api.get("/api/v1/roles").await?;
            if json {
                output::print_json(&roles)
            } else {
                println!("{}", output::roles_table(&roles));
                Ok(())
            }
        }
        RoleCommand::Show { name } => {
            let role: RoleDetailView = api.get(&format!("/api/v1/roles/{name}")).await?;
            if json {
                return output::print_json(&role);
            }
            print!("{}", output::role_text(&role));
            Ok(())
        }
        RoleCommand::Why { name } => {
            let role: RoleDetailView = api.get(&format!("/api/v1/roles/{name}")).await?;
            if json {
                return output::print_json(&role);
            }
            print!("{}", output::role_why(&role));
            Ok(())
        }
        RoleCommand::Start { name } => {
            api.post_no_reply(&format!("/api/v1/roles/{name}/start"), &serde_json::json!({})).await?;
            done("start requested", &name)
        }
        RoleCommand::Stop { name } => {
            api.post_no_reply(&format!("/api/v1/roles/{name}/stop"), &serde_json::json!({})).await?;
            done("stop requested", &name)
        }
        RoleCommand::Move { name, to, mode } => {
            if let Some(mode) = &mode {
                halo_core::migration::MoveMode::parse(mode).map_err(|e| anyhow::anyhow!("invalid --mode: {e}"))?;
            }
            let before: RoleDetailView = api.get(&format!("/api/v1/roles/{name}")).await?;
            let earlier = before.last_migration.as_ref().map(|m| m.id);
            let vm = halo_core::migration::migratable(&before.spec).is_ok();
            let started = std::time::Instant::now();
            let body = serde_json::json!({ "to": to, "mode": mode });
            api.post_no_reply(&format!("/api/v1/roles/{name}/move"), &body).await?;
            let from = before.role.owner.clone();
            let mut last = before;
            // A migration ends when the source's QEMU says so, within its own time limit.
            let limit = std::time::Duration::from_secs(if vm { 330 } else { 60 });
            let moved = crate::commands::wait_for(limit, async || {
                match api.get::<RoleDetailView>(&format!("/api/v1/roles/{name}")).await {
                    Ok(role) => {
                        let failed = role.last_migration.as_ref().is_some_and(|m| !m.ok && Some(m.id) != earlier);
                        let done = failed
                            || (role.role.state == halo_core::role::RoleState::Online
                                && role.role.owner != from
                                && role.releasing.is_none()
                                && to.as_ref().is_none_or(|t| role.role.owner.as_ref() == Some(t)));
                        last = role;
                        done
                    }
                    Err(_) => false,
                }
            })
            .await;
            let migration = last.last_migration.clone().filter(|m| Some(m.id) != earlier);
            if let Some(m) = migration.as_ref().filter(|m| !m.ok) {
                anyhow::bail!(
                    "{} migration of role '{name}' to {} failed: {}; it keeps running on {}",
                    m.mode.as_str(),
                    m.to,
                    m.detail,
                    m.from
                );
            }
            if !moved {
                anyhow::bail!("role '{name}' has not finished moving: {} ({})", last.role.state, last.role.detail);
            }
            let took = started.elapsed().as_millis() as u64;
            let owner = last.role.owner.clone().unwrap_or_default();
            let from = from.unwrap_or_else(|| "-".into());
            if json {
                let mut out = serde_json::json!({ "role": name, "from": from, "to": owner, "elapsed_ms": took,
                    "mode": migration.as_ref().map_or("cold", |m| m.mode.as_str()) });
                if let Some(m) = &migration {
                    out["total_ms"] = m.total_ms.into();
                    out["downtime_ms"] = m.downtime_ms.into();
                    out["qemu_total_ms"] = m.qemu_total_ms.into();
                    out["qemu_downtime_ms"] = m.qemu_downtime_ms.into();
                }
                return output::print_json(&out);
            }
            match &migration {
                Some(m) => println!(
                    "role '{name}' moved from {from} to {owner} by {} migration in {} ms; the guest was paused {} ms \
                     (QEMU: {} ms in all, {} ms paused)",
                    m.mode.as_str(),
                    m.total_ms.unwrap_or(took),
                    m.downtime_ms.unwrap_or(0),
                    m.qemu_total_ms.unwrap_or(0),
                    m.qemu_downtime_ms.unwrap_or(0)
                ),
                None => println!("role '{name}' moved from {from} to {owner} in {took} ms"),
            }
            Ok(())
        }
        RoleCommand::Delete { name } => {
            api.delete(&format!("/api/v1/roles/{name}")).await?;
            done("deleted", &name)
        }
    }
}

/// The `halo apply` file: `[[role]]` tables in the shape of `halo role show R --json`'s `spec`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplyFile {
    #[serde(default)]
    role: Vec<RoleSpec>,
}

pub async fn apply(api: &Api, file: &std::path::Path, dry_run: bool, json: bool) -> anyhow::Result<()> {
    use anyhow::Context;
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let parsed: ApplyFile =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{} is not a valid roles file: {e}", file.display()))?;
    if parsed.role.is_empty() {
        anyhow::bail!("{} defines no roles (expected [[role]] tables)", file.display());
    }
    let body = serde_json::json!({ "roles": parsed.role, "dry_run": dry_run });
    let answer: serde_json::Value = api.post("/api/v1/apply", &body).await?;
    if json {
        return output::print_json(&answer);
    }
    let changes: Vec<halo_core::apply::Change> = serde_json::from_value(answer["changes"].clone())?;
    let (mut created, mut updated, mut unchanged) = (0, 0, 0);
    for change in &changes {
        match change {
            halo_core::apply::Change::Create { role } => {
                created += 1;
                println!("+ create {role}");
            }
            halo_core::apply::Change::Update { role, fields } => {
                updated += 1;
                println!("~ update {role} ({})", fields.join(", "));
            }
            halo_core::apply::Change::Unchanged { role } => {
                unchanged += 1;
                println!("= unchanged {role}");
            }
        }
    }
    let verb = if dry_run { "would be" } else { "were" };
    println!(
        "{created} {verb} created, {updated} {verb} updated, {unchanged} unchanged{}",
        if dry_run { " (dry run: nothing changed)" } else { "" }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failback_and_params_parse_or_say_what_is_wrong() {
        assert_eq!(parse_failback("never").ok(), Some(Failback::Never));
        assert_eq!(parse_failback("immediate").ok(), Some(Failback::Immediate));
        assert_eq!(parse_failback("22-06").ok(), Some(Failback::Window { start_hour: 22, end_hour: 6 }));
        assert!(parse_failback("soon").unwrap_err().to_string().contains("invalid --failback 'soon'"));
        let params = parse_params(&["a=1".into(), "b=x=y".into()]).expect("params");
        assert_eq!(params.get("b").map(String::as_str), Some("x=y"));
        assert!(parse_params(&["=1".into()]).is_err());
    }
}
