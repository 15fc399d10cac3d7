//! Named API tokens (`halo token ...`): create with a role, list, revoke, and rotate the
//! admin token. A token's secret is shown once, when it is made; only its hash is stored.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use halo_api::access::ApiTokenCreated;
use halo_api::access::ApiTokenRequest;
use halo_api::access::ApiTokenView;
use halo_api::access::{AdminTokenRotated, RotateAdminRequest};
use halo_core::access::{ApiToken, Caller};
use halo_core::command::Command;

use crate::clock;
use crate::cluster::agent::{Agent, LeaderRequest};
use crate::error::AgentError;

type AppState = Arc<Agent>;

/// Longest a named token may live when it is given a lifetime (ten years).
const MAX_TTL_SECONDS: u64 = 10 * 365 * 24 * 3600;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/api-tokens", get(list).post(create))
        .route("/api/v1/api-tokens/{name}", delete(revoke))
        .route("/api/v1/admin-token", post(rotate_admin))
}

/// Write `command` as `caller`'s (events name the token).
pub async fn commit(agent: &Agent, caller: &Caller, command: Command) -> Result<(), AgentError> {
    let command = Command::Attributed { by: caller.name.clone(), inner: Box::new(command) };
    agent.on_leader(LeaderRequest::Write(command)).await.map(|_| ())
}

#[utoipa::path(get, path = "/api/v1/api-tokens", security(("bearer" = [])), responses((status = 200, body = Vec<ApiTokenView>)))]
pub async fn list(State(agent): State<AppState>) -> Result<Json<Vec<ApiTokenView>>, AgentError> {
    let state = agent.require_member()?.reader.state();
    let now = clock::wall_ms();
    Ok(Json(
        state
            .api_tokens
            .iter()
            .filter(|(_, t)| t.expires_at_ms.is_none_or(|at| at > now))
            .map(|(name, t)| view(name, t))
            .collect(),
    ))
}

fn view(name: &str, token: &ApiToken) -> ApiTokenView {
    ApiTokenView {
        name: name.to_string(),
        role: token.role,
        created_at_ms: token.created_at_ms,
        expires_at_ms: token.expires_at_ms,
    }
}

#[utoipa::path(post, path = "/api/v1/api-tokens", security(("bearer" = [])), request_body = ApiTokenRequest,
    responses((status = 200, body = ApiTokenCreated), (status = 400, body = halo_api::ErrorView), (status = 409, body = halo_api::ErrorView)))]
pub async fn create(
    State(agent): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(request): Json<ApiTokenRequest>,
) -> Result<Json<ApiTokenCreated>, AgentError> {
    if let Some(ttl) = request.ttl_seconds
        && (ttl == 0 || ttl > MAX_TTL_SECONDS)
    {
        return Err(AgentError::bad_request(format!("token lifetime must be between 1 s and {MAX_TTL_SECONDS} s")));
    }
    halo_core::access::validate_token_name(&request.name).map_err(|r| AgentError::bad_request(r.to_string()))?;
    let secret = halo_security::random_secret();
    let now = clock::wall_ms();
    let token = ApiToken {
        secret_sha256: halo_security::sha256_hex(&secret),
        role: request.role,
        created_at_ms: now,
        expires_at_ms: request.ttl_seconds.map(|ttl| now + ttl * 1000),
    };
    let shown = view(&request.name, &token);
    commit(&agent, &caller, Command::CreateApiToken { name: request.name, token }).await?;
    Ok(Json(ApiTokenCreated { view: shown, token: secret }))
}

#[utoipa::path(delete, path = "/api/v1/api-tokens/{name}", security(("bearer" = [])),
    responses((status = 200), (status = 404, body = halo_api::ErrorView)))]
pub async fn revoke(
    State(agent): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<StatusCode, AgentError> {
    commit(&agent, &caller, Command::RevokeApiToken { name }).await?;
    Ok(StatusCode::OK)
}

#[utoipa::path(post, path = "/api/v1/admin-token", security(("bearer" = [])), request_body = RotateAdminRequest,
    responses((status = 200, body = AdminTokenRotated)))]
pub async fn rotate_admin(
    State(agent): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(RotateAdminRequest {}): Json<RotateAdminRequest>,
) -> Result<Json<AdminTokenRotated>, AgentError> {
    let token = halo_security::random_secret();
    commit(&agent, &caller, Command::RotateAdminToken { secret_sha256: halo_security::sha256_hex(&token) }).await?;
    Ok(Json(AdminTokenRotated { token }))
}
