//! Roles: `halo role`, `halo apply`, `halo plan`, and node pause, resume and fence device.

use halo_core::apply::Change;
use halo_core::migration::{MigrationResult, MoveMode};
use halo_core::role::{Decision, Desired, Priority, RoleRecord, RoleSpec, RoleState};
use halo_core::state::{ClusterState, FenceDevice};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// A role at a glance: `halo role list`, and `roles[]` of `halo status`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RoleView {
    pub name: String,
    pub state: RoleState,
    pub owner: Option<String>,
    #[serde(default)]
    pub generation: u64,
    /// Why the role is in its state, in plain words.
    #[serde(default)]
    pub detail: String,
    #[serde(default)]
    pub desired: Option<Desired>,
    #[serde(default)]
    pub priority: Option<Priority>,
}

/// One role in full: `halo role show` and `halo role why`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RoleDetailView {
    #[serde(flatten)]
    pub role: RoleView,
    /// A previous owner that has not confirmed it stopped the role yet.
    pub releasing: Option<String>,
    /// The role as configured (the same shape `halo apply` takes).
    #[schema(value_type = Object)]
    pub spec: RoleSpec,
    /// Recent decisions, oldest first, each with its reasons.
    pub decisions: Vec<Decision>,
    /// A live or quick migration under way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<MigrationView>,
    /// The last migration and how it went (times in ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_migration: Option<MigrationResult>,
    /// Failovers and migrations since the role was created.
    #[serde(default)]
    pub failovers: u64,
    #[serde(default)]
    pub migrations: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MigrationView {
    pub id: u64,
    pub mode: MoveMode,
    pub to: String,
    pub started_ms: u64,
    /// Whether the target is ready to receive (live).
    pub target_ready: bool,
}

impl RoleView {
    pub fn of(state: &ClusterState, record: &RoleRecord) -> Self {
        Self {
            name: record.spec.name.clone(),
            state: record.state,
            owner: record.owner.map(|id| node_name(state, id)),
            generation: record.generation,
            detail: record.detail.clone(),
            desired: Some(record.spec.desired),
            priority: Some(record.spec.priority),
        }
    }
}

impl RoleDetailView {
    pub fn of(state: &ClusterState, record: &RoleRecord) -> Self {
        Self {
            role: RoleView::of(state, record),
            releasing: record.releasing.map(|id| node_name(state, id)),
            migration: record.migration.as_ref().map(|m| MigrationView {
                id: m.id,
                mode: m.mode,
                to: node_name(state, m.to),
                started_ms: m.started_ms,
                target_ready: m.uri.is_some(),
            }),
            last_migration: record.last_migration.clone(),
            spec: record.spec.redacted(),
            decisions: record.decisions.clone(),
            failovers: record.failovers,
            migrations: record.migrations,
        }
    }
}

fn node_name(state: &ClusterState, id: halo_core::NodeId) -> String {
    state.nodes.get(&id).map_or_else(|| format!("node {id}"), |n| n.name.clone())
}

/// `halo apply -f FILE [--dry-run]`: the whole set of roles, applied together or not at all.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyRequest {
    #[schema(value_type = Vec<Object>)]
    pub roles: Vec<RoleSpec>,
    /// Only say what would change.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ApplyResponse {
    pub changes: Vec<Change>,
    pub dry_run: bool,
}

#[derive(Debug, Deserialize, Serialize, IntoParams)]
pub struct PlanQuery {
    /// The node to imagine lost.
    pub fail: String,
}

/// `halo plan --fail NODE`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PlanView {
    pub node: String,
    /// Whether the node is the current leader (its loss costs an election first).
    pub leader: bool,
    pub recoveries: Vec<halo_core::plan::PlannedRecovery>,
}

#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveRequestBody {
    /// Target node; without it, placement picks the best other node.
    #[serde(default)]
    pub to: Option<String>,
    /// `live`, `quick` or `cold`; without it, live for a VM role and cold for any other.
    #[serde(default)]
    pub mode: Option<MoveMode>,
}

#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PauseBody {
    /// Move every role off the node.
    #[serde(default)]
    pub drain: bool,
}

#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResumeBody {
    /// Bring back the roles that prefer this node.
    #[serde(default)]
    pub failback: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FenceBody {
    /// The device; none clears it.
    pub device: Option<FenceDevice>,
}
