//! The role routes of the REST API: create, list, show (with the decisions behind it), start,
//! stop, move, delete, apply, plan; and node pause, resume and fence device. Writes go to the
//! leader as commands; reads prefer the leader's view.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use halo_api::roles::{
    ApplyRequest, ApplyResponse, FenceBody, MoveRequestBody, PauseBody, PlanQuery, PlanView, ResumeBody,
    RoleDetailView, RoleView,
};
use halo_core::access::Caller;
use halo_core::command::Command;
use halo_core::role::{Desired, RoleSpec};

use crate::clock;
use crate::cluster::agent::{Agent, LeaderReply, LeaderRequest};
use crate::error::AgentError;

type AppState = Arc<Agent>;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/roles", get(list_roles).post(create_role))
        .route("/api/v1/roles/{name}", get(show_role).delete(delete_role))
        .route("/api/v1/roles/{name}/start", post(start_role))
        .route("/api/v1/roles/{name}/stop", post(stop_role))
        .route("/api/v1/roles/{name}/move", post(move_role))
        .route("/api/v1/nodes/{name}/pause", post(pause_node))
        .route("/api/v1/nodes/{name}/resume", post(resume_node))
        .route("/api/v1/apply", post(apply_roles))
        .route("/api/v1/plan", get(plan))
        .route("/api/v1/nodes/{name}/fence", post(set_fence))
}

/// Configure the fence device that powers a node off (or clear it).
#[utoipa::path(post, path = "/api/v1/nodes/{name}/fence", security(("bearer" = [])), request_body = FenceBody,
    responses((status = 200), (status = 400, body = halo_api::ErrorView), (status = 404, body = halo_api::ErrorView)))]
pub async fn set_fence(
    State(agent): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Json(body): Json<FenceBody>,
) -> Result<StatusCode, AgentError> {
    let node = node_id(&agent, &name)?;
    commit(&agent, &caller, Command::SetFenceDevice { node, device: body.device }).await
}

/// What would happen to each role of a node if it died now, with the worst-case time.
#[utoipa::path(get, path = "/api/v1/plan", security(("bearer" = [])), params(PlanQuery),
    responses((status = 200, body = PlanView), (status = 404, body = halo_api::ErrorView)))]
pub async fn plan(
    State(agent): State<AppState>,
    axum::extract::Query(query): axum::extract::Query<PlanQuery>,
) -> Result<Json<PlanView>, AgentError> {
    let member = agent.require_member()?;
    let state = member.reader.state();
    let node = node_id(&agent, &query.fail)?;
    let leader = member.consensus.status().leader;
    let recoveries = halo_core::plan::fail(&state, node, leader, halo_core::plan::PlanTiming::of(&state.settings));
    Ok(Json(PlanView { node: query.fail, leader: leader == Some(node), recoveries }))
}

/// Declarative roles: create the missing, update the changed, all together or not at all.
#[utoipa::path(post, path = "/api/v1/apply", security(("bearer" = [])), request_body = ApplyRequest,
    responses((status = 200, body = ApplyResponse), (status = 400, body = halo_api::ErrorView)))]
pub async fn apply_roles(
    State(agent): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(mut request): Json<ApplyRequest>,
) -> Result<Json<ApplyResponse>, AgentError> {
    for spec in &mut request.roles {
        resolve_resources(spec).await?;
    }
    if request.dry_run {
        let state = agent.require_member()?.reader.state();
        let changes =
            halo_core::apply::plan(&state, &request.roles).map_err(|r| AgentError::bad_request(r.to_string()))?;
        return Ok(Json(ApplyResponse { changes, dry_run: true }));
    }
    let command = Command::ApplyRoles { specs: request.roles, now_ms: clock::wall_ms() };
    let command = Command::Attributed { by: caller.name.clone(), inner: Box::new(command) };
    match agent.on_leader(LeaderRequest::Write(command)).await? {
        LeaderReply::Written(halo_core::command::CommandResult::Applied(changes)) => {
            Ok(Json(ApplyResponse { changes, dry_run: false }))
        }
        other => Err(AgentError::internal(format!("unexpected leader reply {other:?}"))),
    }
}

fn node_id(agent: &Agent, name: &str) -> Result<u64, AgentError> {
    let state = agent.require_member()?.reader.state();
    state.node_by_name(name).map(|n| n.id).ok_or_else(|| AgentError::not_found(format!("no node named '{name}'")))
}

#[utoipa::path(post, path = "/api/v1/roles/{name}/move", security(("bearer" = [])), request_body = MoveRequestBody,
    responses((status = 200), (status = 404, body = halo_api::ErrorView), (status = 409, body = halo_api::ErrorView)))]
pub async fn move_role(
    State(agent): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Json(body): Json<MoveRequestBody>,
) -> Result<StatusCode, AgentError> {
    let to = body.to.as_deref().map(|n| node_id(&agent, n)).transpose()?;
    commit(&agent, &caller, Command::MoveRole { role: name, to, mode: body.mode }).await
}

#[utoipa::path(post, path = "/api/v1/nodes/{name}/pause", security(("bearer" = [])), request_body = PauseBody,
    responses((status = 200), (status = 404, body = halo_api::ErrorView)))]
pub async fn pause_node(
    State(agent): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Json(body): Json<PauseBody>,
) -> Result<StatusCode, AgentError> {
    let node = node_id(&agent, &name)?;
    let command = Command::PauseNode { node, drain: body.drain, now_ms: clock::wall_ms() };
    commit(&agent, &caller, command).await
}

#[utoipa::path(post, path = "/api/v1/nodes/{name}/resume", security(("bearer" = [])), request_body = ResumeBody,
    responses((status = 200), (status = 404, body = halo_api::ErrorView)))]
pub async fn resume_node(
    State(agent): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Json(body): Json<ResumeBody>,
) -> Result<StatusCode, AgentError> {
    let node = node_id(&agent, &name)?;
    let command = Command::ResumeNode { node, failback: body.failback, now_ms: clock::wall_ms() };
    commit(&agent, &caller, command).await
}

#[utoipa::path(get, path = "/api/v1/roles", security(("bearer" = [])),
    responses((status = 200, body = Vec<RoleView>)))]
pub async fn list_roles(State(agent): State<AppState>) -> Result<Json<Vec<RoleView>>, AgentError> {
    Ok(Json(crate::api::current_status(&agent).await?.roles))
}

#[utoipa::path(post, path = "/api/v1/roles", security(("bearer" = [])), request_body(content = Object, description = "a role spec"),
    responses((status = 201), (status = 400, body = halo_api::ErrorView), (status = 409, body = halo_api::ErrorView)))]
pub async fn create_role(
    State(agent): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(mut spec): Json<RoleSpec>,
) -> Result<StatusCode, AgentError> {
    resolve_resources(&mut spec).await?;
    commit(&agent, &caller, Command::CreateRole { spec, now_ms: clock::wall_ms() }).await?;
    Ok(StatusCode::CREATED)
}

/// Checks what only a node can check, and fills in unset timeouts. OCF resources: the agent
/// must exist here, its parameters must be ones it knows (and include the required ones), and
/// timeouts come from its meta-data. VMs: the files they boot from exist (shared storage is
/// mounted alike on every node), and timeouts suit a guest.
pub async fn resolve_resources(spec: &mut RoleSpec) -> Result<(), AgentError> {
    let role = spec.name.clone();
    let invalid = |reason: String| AgentError::bad_request(format!("invalid role '{role}': {reason}"));
    for resource in spec.resources.iter_mut().filter(|r| r.kind == halo_core::resource_kind::ResourceKind::Vm) {
        let name = resource.name.clone();
        let vm =
            halo_core::vm::VmSpec::parse(&resource.params).map_err(|e| invalid(format!("resource '{name}': {e}")))?;
        for (what, path) in vm.files() {
            if !path.is_file() {
                return Err(invalid(format!("resource '{name}': {what} {} does not exist", path.display())));
            }
        }
        resource.agent_timeouts = halo_core::vm::TIMEOUTS;
    }
    for resource in spec.resources.iter_mut().filter(|r| r.kind == halo_core::resource_kind::ResourceKind::Ip) {
        resource.agent_timeouts = halo_core::address::TIMEOUTS;
    }
    for resource in spec.resources.iter_mut().filter(|r| r.kind.is_ocf()) {
        let refused = |e: crate::workload::ocf::OcfError| invalid(e.to_string());
        let agent = crate::workload::ocf::locate(&resource.kind).map_err(refused)?;
        let meta = crate::workload::ocf::meta_data(&agent).await.map_err(refused)?;
        crate::workload::ocf::apply_meta_data(resource, &meta).map_err(refused)?;
    }
    Ok(())
}

#[utoipa::path(get, path = "/api/v1/roles/{name}", security(("bearer" = [])),
    responses((status = 200, body = RoleDetailView), (status = 404, body = halo_api::ErrorView)))]
pub async fn show_role(
    State(agent): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<RoleDetailView>, AgentError> {
    let request = LeaderRequest::ShowRole { name: name.clone() };
    match agent.read_from_leader(request).await {
        Some(Ok(LeaderReply::Role(role))) => Ok(Json(*role)),
        Some(Err(e @ AgentError::NotFound(_))) => Err(e),
        // No leader to ask: answer from this node's copy, which may lag.
        _ => Ok(Json(agent.local_role(&name)?)),
    }
}

#[utoipa::path(delete, path = "/api/v1/roles/{name}", security(("bearer" = [])),
    responses((status = 200), (status = 404, body = halo_api::ErrorView), (status = 409, body = halo_api::ErrorView)))]
pub async fn delete_role(
    State(agent): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<StatusCode, AgentError> {
    commit(&agent, &caller, Command::DeleteRole { role: name }).await
}

#[utoipa::path(post, path = "/api/v1/roles/{name}/start", security(("bearer" = [])),
    responses((status = 200), (status = 404, body = halo_api::ErrorView)))]
pub async fn start_role(
    State(agent): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<StatusCode, AgentError> {
    set_desired(&agent, &caller, name, Desired::Started).await
}

#[utoipa::path(post, path = "/api/v1/roles/{name}/stop", security(("bearer" = [])),
    responses((status = 200), (status = 404, body = halo_api::ErrorView)))]
pub async fn stop_role(
    State(agent): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<StatusCode, AgentError> {
    set_desired(&agent, &caller, name, Desired::Stopped).await
}

/// Commit a plain write through the leader, as `caller`'s.
async fn commit(agent: &Agent, caller: &Caller, command: Command) -> Result<StatusCode, AgentError> {
    crate::api::tokens::commit(agent, caller, command).await?;
    Ok(StatusCode::OK)
}

async fn set_desired(agent: &Agent, caller: &Caller, role: String, desired: Desired) -> Result<StatusCode, AgentError> {
    commit(agent, caller, Command::SetRoleDesired { role, desired, now_ms: clock::wall_ms() }).await
}
