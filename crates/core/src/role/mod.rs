//! Roles: what the admin asks to keep running ([`RoleSpec`]) and what the cluster decided about
//! it ([`RoleRecord`]: owner, generation, state and the reasons behind them).
//!
//! A role is a group of resources that run together on one node, started in order and stopped
//! in reverse. The spec is validated here, against the cluster's nodes, before it is committed.

mod commands;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::NodeId;
use crate::capacity::Capacity;
use crate::command::Rejection;
use crate::migration::{Migration, MigrationResult, MoveMode, Resume};
use crate::resource_kind::ResourceKind;
use crate::state::ClusterState;
use crate::vm::VmSpec;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RoleSpec {
    pub name: String,
    pub resources: Vec<ResourceSpec>,
    /// Node names in order of preference.
    #[serde(default)]
    pub preferred: Vec<String>,
    /// Node names allowed to run the role; empty means every node that runs roles.
    #[serde(default)]
    pub possible: Vec<String>,
    #[serde(default)]
    pub anti_affinity: Vec<String>,
    /// Soft anti-affinity is a preference; hard (the default) is a rule.
    #[serde(default)]
    pub anti_affinity_soft: bool,
    #[serde(default)]
    pub priority: Priority,
    #[serde(default)]
    pub failover: FailoverPolicy,
    #[serde(default)]
    pub failback: Failback,
    #[serde(default)]
    pub desired: Desired,
    /// What the role needs of a node, in thousandths of a core; placement keeps it within
    /// what nodes declare.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cpu_milli: u64,
    /// What the role needs of a node's memory, in MiB.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub memory_mb: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ResourceSpec {
    pub name: String,
    /// `process`, `vm`, `ip`, or `ocf:PROVIDER:AGENT`.
    #[serde(rename = "type")]
    pub kind: ResourceKind,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Parameters no view, event or log shows (passwords): kept apart from `params`, given
    /// to the resource with them, shown as `SECRET_SHOWN`. Processes (`env.NAME`) and OCF
    /// agents take them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_params: BTreeMap<String, String>,
    #[serde(default)]
    pub restart: RestartPolicy,
    /// Action timeouts and the monitor interval as configured; unset ones come from
    /// `agent_timeouts`, then halo's defaults.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// What the OCF agent's meta-data says, filled in by the cluster when the role is saved.
    #[serde(default, skip_serializing_if = "Timeouts::is_unset")]
    pub agent_timeouts: Timeouts,
}

/// What views show in place of a secret parameter's value.
pub const SECRET_SHOWN: &str = "(secret)";

impl ResourceSpec {
    /// Every parameter the resource is run with, secret ones included.
    pub fn effective_params(&self) -> BTreeMap<String, String> {
        let mut all = self.params.clone();
        all.extend(self.secret_params.iter().map(|(k, v)| (k.clone(), v.clone())));
        all
    }

    /// The timeouts in force: configured, else the agent's, else halo's defaults.
    pub fn effective_timeouts(&self) -> Timeouts {
        self.timeouts.or(self.agent_timeouts)
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor_interval_ms: Option<u64>,
}

impl Timeouts {
    pub const DEFAULT_START_MS: u64 = 20_000;
    pub const DEFAULT_STOP_MS: u64 = 20_000;
    pub const DEFAULT_MONITOR_MS: u64 = 20_000;
    pub const DEFAULT_MONITOR_INTERVAL_MS: u64 = 10_000;

    pub fn start(&self) -> u64 {
        self.start_ms.unwrap_or(Self::DEFAULT_START_MS)
    }
    pub fn stop(&self) -> u64 {
        self.stop_ms.unwrap_or(Self::DEFAULT_STOP_MS)
    }
    pub fn monitor(&self) -> u64 {
        self.monitor_ms.unwrap_or(Self::DEFAULT_MONITOR_MS)
    }
    pub fn monitor_interval(&self) -> u64 {
        self.monitor_interval_ms.unwrap_or(Self::DEFAULT_MONITOR_INTERVAL_MS)
    }

    pub fn is_unset(&self) -> bool {
        *self == Self::default()
    }

    /// Fill what is unset from `other` (an agent's meta-data).
    pub fn or(self, other: Timeouts) -> Self {
        Self {
            start_ms: self.start_ms.or(other.start_ms),
            stop_ms: self.stop_ms.or(other.stop_ms),
            monitor_ms: self.monitor_ms.or(other.monitor_ms),
            monitor_interval_ms: self.monitor_interval_ms.or(other.monitor_interval_ms),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    High,
    #[default]
    Medium,
    Low,
    /// Placed when the admin starts it, but never restarted on its own: when its owner is
    /// lost or it is displaced, it waits offline for `halo role start`.
    Manual,
}

/// Fail over at most `max_failovers` times within `period_s`; past that the role is `failed`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FailoverPolicy {
    pub max_failovers: u32,
    pub period_s: u64,
}

impl Default for FailoverPolicy {
    fn default() -> Self {
        Self { max_failovers: 3, period_s: 3600 }
    }
}

/// Restart in place up to `max_restarts` times within `period_s`, then fail the role over.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RestartPolicy {
    pub max_restarts: u32,
    pub period_s: u64,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self { max_restarts: 3, period_s: 300 }
    }
}

/// Whether a role returns to a more preferred owner when that node comes back.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum Failback {
    #[default]
    Never,
    Immediate,
    /// Only between these hours (UTC, `start_hour <= h < end_hour`, wrapping past midnight).
    Window {
        start_hour: u8,
        end_hour: u8,
    },
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Desired {
    #[default]
    Started,
    Stopped,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RoleState {
    /// Running on its owner, as the owner reported.
    Online,
    /// Stopped, as asked.
    Offline,
    /// On its way: being placed, started, stopped, or waiting for a lost owner's lease.
    Pending,
    /// Cannot run; `detail` says why.
    Failed,
}

impl std::fmt::Display for RoleState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl RoleState {
    pub fn as_str(self) -> &'static str {
        match self {
            RoleState::Online => "online",
            RoleState::Offline => "offline",
            RoleState::Pending => "pending",
            RoleState::Failed => "failed",
        }
    }
}

/// One recorded decision about a role, in words an admin can read.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Decision {
    pub at_ms: u64,
    pub generation: u64,
    /// What kind of decision it is (what tools count); `summary` says it in words.
    #[serde(default)]
    pub kind: DecisionKind,
    pub summary: String,
    /// Per node: why it was chosen, or why it was not.
    pub reasons: Vec<String>,
}

/// The kinds of decision a role's history records.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DecisionKind {
    /// Placed on a node (a start, or a restart after it stopped).
    Placed,
    /// Its owner failed or was lost: placed on another node.
    FailedOver,
    /// Moving to another node by stopping and starting (a move, a drain, a failback).
    Moved,
    /// A migration to another node began.
    Migrating,
    /// A migration finished: the guest runs on the target.
    Migrated,
    /// A migration failed or was given up: the role runs on where it was.
    MigrationFailed,
    /// Stays on its owner: no other node can run it.
    Stays,
    /// Not started elsewhere: its priority or failover policy holds it.
    Held,
    /// No node can run it.
    Unplaceable,
    /// Stopped to make room for a higher-priority role.
    Displaced,
    /// Failed on its node.
    Failed,
    /// Could not be stopped: its node is being fenced.
    Fencing,
    /// A node it was leaving was lost: it runs there no more.
    Released,
    /// Recorded before decisions had kinds.
    #[default]
    Other,
}

/// How many decisions a role keeps for `halo role why`.
pub const DECISIONS_KEPT: usize = 10;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RoleRecord {
    pub spec: RoleSpec,
    /// Bumped by every placement; a node runs a role only under the current generation.
    pub generation: u64,
    pub owner: Option<NodeId>,
    /// A previous owner that has not yet confirmed it stopped the role. The owner starts only
    /// once this is clear (the old owner reported, or its lease provably ran out).
    pub releasing: Option<NodeId>,
    pub state: RoleState,
    /// Why the role is in its state, in plain words.
    pub detail: String,
    pub since_ms: u64,
    /// Wall times of recent failovers, for the failover threshold.
    pub failovers_ms: Vec<u64>,
    /// Nodes where the role failed beyond its restart policy; not tried again until it runs.
    pub failed_on: Vec<NodeId>,
    pub decisions: Vec<Decision>,
    /// A planned move asked for (`halo role move`, or failback on `halo node resume`).
    #[serde(default)]
    pub move_request: Option<MoveRequest>,
    /// A manual-priority role whose owner was lost, or a displaced one: it waits for the admin
    /// (`halo role start`) instead of being started elsewhere.
    #[serde(default)]
    pub held: bool,
    /// Roles being displaced from the owner to make room for this one; it starts there only
    /// once they have stopped.
    #[serde(default)]
    pub waits_for: Vec<String>,
    /// Bumped by every admin request about the role (start, stop, move, new spec): a manager
    /// decision computed before one of them is stale and is not applied.
    #[serde(default)]
    pub revision: u64,
    /// A live or quick migration under way (the role stays on its owner until it completes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<Migration>,
    /// Migrations begun so far; each gets the next number as its id.
    #[serde(default)]
    pub migrations: u64,
    /// Failovers so far (`failovers_ms` keeps only the recent ones).
    #[serde(default)]
    pub failovers: u64,
    /// The owner resumes a migrated guest instead of booting it (this generation only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<Resume>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_migration: Option<MigrationResult>,
}

/// A planned move: to a given node, or to wherever placement says other than the owner.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MoveRequest {
    pub to: Option<NodeId>,
    /// Why, in words, for the decision record.
    pub reason: String,
    /// How: none means live for a VM role and cold for any other.
    #[serde(default)]
    pub mode: Option<MoveMode>,
}

impl RoleRecord {
    pub fn new(spec: RoleSpec, now_ms: u64) -> Self {
        let (state, detail) = match spec.desired {
            Desired::Started => (RoleState::Pending, "waiting for placement".to_string()),
            Desired::Stopped => (RoleState::Offline, "created stopped".to_string()),
        };
        Self {
            spec,
            generation: 0,
            owner: None,
            releasing: None,
            state,
            detail,
            since_ms: now_ms,
            failovers_ms: Vec::new(),
            failed_on: Vec::new(),
            decisions: Vec::new(),
            move_request: None,
            held: false,
            waits_for: Vec::new(),
            revision: 0,
            migration: None,
            migrations: 0,
            failovers: 0,
            resume: None,
            last_migration: None,
        }
    }

    pub fn record_decision(&mut self, decision: Decision) {
        self.decisions.push(decision);
        if self.decisions.len() > DECISIONS_KEPT {
            self.decisions.remove(0);
        }
    }

    /// A migrated guest may already run at the owner while the source has yet to confirm it
    /// quit (`execution::runs`): two nodes to wait for, which one `releasing` cannot hold, so
    /// nothing new is decided about the role until one of them is gone.
    pub fn handing_over(&self) -> bool {
        self.resume.is_some() && self.releasing.is_some()
    }

    /// The admin asked for something about the role: decisions computed before are stale.
    pub fn touched(&mut self) {
        self.revision += 1;
    }

    /// The admin asked for the role to run (again): its failure history goes, and a failed
    /// role gets another chance.
    pub fn start_asked(&mut self, now_ms: u64) {
        self.failovers_ms.clear();
        self.failed_on.clear();
        self.held = false;
        if matches!(self.state, RoleState::Failed | RoleState::Offline) {
            self.set_state(RoleState::Pending, "start asked by the admin", now_ms);
        }
    }

    pub fn set_state(&mut self, state: RoleState, detail: impl Into<String>, now_ms: u64) {
        if self.state != state {
            self.since_ms = now_ms;
        }
        self.state = state;
        self.detail = detail.into();
    }
}

/// A health probe's syntax (processes and VMs): `tcp:`, `http://` or `cmd:` and something.
pub fn check_probe(probe: &str) -> Result<(), String> {
    if ["tcp:", "http://", "cmd:"].iter().any(|p| probe.starts_with(p) && probe.len() > p.len()) {
        Ok(())
    } else {
        Err(format!("invalid probe '{probe}': use tcp:HOST:PORT, http://HOST:PORT/PATH or cmd:COMMAND"))
    }
}

pub(crate) fn is_simple_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
}

impl RoleSpec {
    /// This spec as views show it: every secret parameter's value replaced.
    pub fn redacted(&self) -> RoleSpec {
        let mut spec = self.clone();
        for resource in &mut spec.resources {
            resource.secret_params.values_mut().for_each(|v| *v = SECRET_SHOWN.to_string());
        }
        spec
    }

    /// How much the role prefers node `name`: its place in `preferred` (lower is better), and
    /// after all of them (`usize::MAX`) a node it does not name. The one rank placement,
    /// failback and resume use.
    pub fn preference_rank(&self, name: &str) -> usize {
        self.preferred.iter().position(|p| p == name).unwrap_or(usize::MAX)
    }

    /// What the role takes of a node: as declared, else what its VMs need.
    pub fn needs(&self) -> Capacity {
        let memory_mb = if self.memory_mb > 0 {
            self.memory_mb
        } else {
            self.resources
                .iter()
                .filter(|r| r.kind == ResourceKind::Vm)
                .map(|r| crate::vm::memory_needed_mb(&r.params))
                .sum()
        };
        Capacity { cpu_milli: self.cpu_milli, memory_mb }
    }

    /// Another role whose `ip` resource holds `address`: two roles holding one address would
    /// answer for it on two nodes at once.
    fn holder_of<'a>(&self, state: &'a ClusterState, address: std::net::Ipv4Addr) -> Option<&'a str> {
        state.roles.values().filter(|r| r.spec.name != self.name).find_map(|r| {
            r.spec.addresses().any(|a| a.is_ok_and(|a| a.address == address)).then_some(r.spec.name.as_str())
        })
    }

    /// The definitions of the role's floating addresses.
    pub fn addresses(&self) -> impl Iterator<Item = Result<crate::address::FloatingAddress, String>> + '_ {
        self.resources
            .iter()
            .filter(|r| r.kind == ResourceKind::Ip)
            .map(|r| crate::address::FloatingAddress::parse(&r.params))
    }

    /// The definitions of the role's VM resources.
    pub fn vms(&self) -> impl Iterator<Item = Result<VmSpec, String>> + '_ {
        self.resources.iter().filter(|r| r.kind == ResourceKind::Vm).map(|r| VmSpec::parse(&r.params))
    }

    /// Checks the spec on its own and against the cluster's nodes.
    pub fn validate(&self, state: &ClusterState) -> Result<(), Rejection> {
        let invalid = |reason: String| Rejection::InvalidRole { role: self.name.clone(), reason };
        if !is_simple_name(&self.name) {
            return Err(invalid("use 1-63 letters, digits, '-', '_' or '.', starting with a letter or digit".into()));
        }
        if self.resources.is_empty() {
            return Err(invalid("a role needs at least one resource".into()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for resource in &self.resources {
            if !is_simple_name(&resource.name) {
                return Err(invalid(format!("invalid resource name '{}'", resource.name)));
            }
            if !seen.insert(resource.name.as_str()) {
                return Err(invalid(format!("resource '{}' appears twice", resource.name)));
            }
            if !resource.secret_params.is_empty() {
                let takes = resource.kind.is_ocf() || resource.kind == ResourceKind::Process;
                let bad = resource.secret_params.keys().find(|k| {
                    resource.params.contains_key(*k)
                        || (resource.kind == ResourceKind::Process && !k.starts_with("env."))
                });
                match (takes, bad) {
                    (false, _) => {
                        return Err(invalid(format!(
                            "resource '{}': only process and ocf resources take secret parameters",
                            resource.name
                        )));
                    }
                    (true, Some(key)) => {
                        return Err(invalid(format!(
                            "resource '{}': secret parameter '{key}' is also a plain one, or (for a process) not env.NAME",
                            resource.name
                        )));
                    }
                    (true, None) => {}
                }
            }
            if resource.kind == ResourceKind::Process
                && resource.params.get("command").is_none_or(|c| c.trim().is_empty())
            {
                return Err(invalid(format!("resource '{}': a process needs a 'command' parameter", resource.name)));
            }
            if resource.kind == ResourceKind::Vm {
                let vm = VmSpec::parse(&resource.params)
                    .map_err(|e| invalid(format!("resource '{}': {e}", resource.name)))?;
                vm.check_shared(&state.settings.shared_storage)
                    .map_err(|e| invalid(format!("resource '{}': {e}", resource.name)))?;
            }
            if resource.kind == ResourceKind::Ip {
                let address = crate::address::FloatingAddress::parse(&resource.params)
                    .map_err(|e| invalid(format!("resource '{}': {e}", resource.name)))?;
                if let Some(other) = self.holder_of(state, address.address) {
                    return Err(invalid(format!(
                        "resource '{}': address {} is already held by role '{other}'",
                        resource.name, address.address
                    )));
                }
            }
            if resource.kind == ResourceKind::Process
                && let Some(probe) = resource.params.get("probe")
            {
                check_probe(probe).map_err(|e| invalid(format!("resource '{}': {e}", resource.name)))?;
            }
            let t = &resource.timeouts;
            if [t.start_ms, t.stop_ms, t.monitor_ms].iter().flatten().any(|&ms| !(100..=3_600_000).contains(&ms)) {
                return Err(invalid(format!("resource '{}': timeouts must be 100 ms to 1 h", resource.name)));
            }
            if t.monitor_interval_ms.is_some_and(|ms| !(200..=86_400_000).contains(&ms)) {
                return Err(invalid(format!("resource '{}': monitor interval must be 200 ms to 1 day", resource.name)));
            }
            if resource.restart.period_s == 0 {
                return Err(invalid(format!("resource '{}': restart period must be at least 1 s", resource.name)));
            }
        }
        for name in self.preferred.iter().chain(&self.possible) {
            match state.node_by_name(name) {
                None => return Err(invalid(format!("no node named '{name}'"))),
                Some(n) if n.witness => return Err(invalid(format!("node '{name}' is a witness and runs no roles"))),
                Some(_) => {}
            }
        }
        if !self.possible.is_empty()
            && let Some(p) = self.preferred.iter().find(|p| !self.possible.contains(p))
        {
            return Err(invalid(format!("preferred owner '{p}' is not among the possible owners")));
        }
        for class in &self.anti_affinity {
            if !is_simple_name(class) {
                return Err(invalid(format!("invalid anti-affinity class '{class}'")));
            }
        }
        if let Failback::Window { start_hour, end_hour } = self.failback
            && (start_hour > 23 || end_hour > 24 || start_hour == end_hour)
        {
            return Err(invalid("failback window hours must be 0-23 and 1-24, and differ".into()));
        }
        if self.failover.period_s == 0 {
            return Err(invalid("failover period must be at least 1 s".into()));
        }
        // A role bigger than every node could never run: say so now, not at placement. A node
        // that declares no capacity is not limited.
        let needs = self.needs();
        let offers: Vec<Option<Capacity>> = state.nodes.values().filter(|n| !n.witness).map(|n| n.capacity).collect();
        let fits =
            |c: &Option<Capacity>| c.is_none_or(|c| c.memory_mb >= needs.memory_mb && c.cpu_milli >= needs.cpu_milli);
        if !offers.is_empty() && !offers.iter().any(fits) {
            let largest = offers.iter().flatten().fold(Capacity::default(), |m, c| Capacity {
                cpu_milli: m.cpu_milli.max(c.cpu_milli),
                memory_mb: m.memory_mb.max(c.memory_mb),
            });
            return Err(invalid(format!("it needs {needs}, more than any node offers (at most {largest})")));
        }
        Ok(())
    }
}

impl Failback {
    /// Whether failback may happen at this wall time.
    pub fn allows(self, wall_ms: u64) -> bool {
        match self {
            Failback::Never => false,
            Failback::Immediate => true,
            Failback::Window { start_hour, end_hour } => {
                let hour = ((wall_ms / 3_600_000) % 24) as u8;
                if start_hour < end_hour {
                    (start_hour..end_hour).contains(&hour)
                } else {
                    hour >= start_hour || hour < end_hour
                }
            }
        }
    }
}
