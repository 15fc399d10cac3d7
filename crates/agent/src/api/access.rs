//! The API's door: a bearer token names a caller (`halo_core::access`), and each route needs
//! a role. What each route needs is decided here and nowhere else.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use halo_core::access::{AccessRole, Caller};

use crate::clock;
use crate::cluster::agent::Agent;
use crate::error::AgentError;

/// The role a request needs: reads are for viewers (but validating runs probes, and the token
/// list is the admin's); running the cluster is for operators; changing it is for admins.
pub fn needed(method: &Method, route: &str) -> AccessRole {
    match (method, route) {
        (&Method::GET, "/api/v1/validate") => AccessRole::Operator,
        (&Method::GET, "/api/v1/api-tokens") => AccessRole::Admin,
        (&Method::GET | &Method::HEAD, _) => AccessRole::Viewer,
        (
            &Method::POST,
            "/api/v1/roles/{name}/start"
            | "/api/v1/roles/{name}/stop"
            | "/api/v1/roles/{name}/move"
            | "/api/v1/nodes/{name}/pause"
            | "/api/v1/nodes/{name}/resume"
            | "/api/v1/probe",
        ) => AccessRole::Operator,
        _ => AccessRole::Admin,
    }
}

/// The caller presenting `token` now, or 401.
pub fn caller_of(agent: &Agent, token: Option<&str>) -> Result<Caller, AgentError> {
    let presented = token.map(halo_security::sha256_hex).ok_or_else(AgentError::unauthorized)?;
    caller_of_hash(agent, &presented)
}

/// The caller whose token hashes to `token_sha256` now (a console session keeps only that).
pub fn caller_of_hash(agent: &Agent, token_sha256: &str) -> Result<Caller, AgentError> {
    let member = agent.require_member()?;
    let state = member.reader.state();
    let cluster = state.cluster.as_ref().ok_or_else(AgentError::unauthorized)?;
    halo_core::access::caller(&cluster.admin_token_sha256, &state.api_tokens, token_sha256, clock::wall_ms())
        .ok_or_else(AgentError::unauthorized)
}

/// How long a follower waits for a token it does not know yet: one made on the leader a
/// moment ago reaches it within a heartbeat or two.
const CATCH_UP: std::time::Duration = std::time::Duration::from_millis(500);

/// As `caller_of_hash`, but a follower that does not know the token waits a moment for its
/// copy of the database to catch up: a token works on every node as soon as `token create`
/// returned. The leader's copy has every acknowledged write, so it answers at once; so does a
/// follower for a token it knows.
pub async fn caller_soon(agent: &Agent, token_sha256: &str) -> Result<Caller, AgentError> {
    let refused = match caller_of_hash(agent, token_sha256) {
        Ok(caller) => return Ok(caller),
        Err(e) => e,
    };
    let member = agent.require_member()?;
    if member.consensus.is_leader() {
        return Err(refused);
    }
    let mut reader = member.reader.clone();
    let deadline = tokio::time::Instant::now() + CATCH_UP;
    while tokio::time::timeout_at(deadline, reader.changed()).await.is_ok_and(|alive| alive) {
        if let Ok(caller) = caller_of_hash(agent, token_sha256) {
            return Ok(caller);
        }
    }
    Err(refused)
}

/// The bearer token of a request.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "))
}

/// 403 unless `caller` may do what needs `role`.
pub fn require(caller: &Caller, role: AccessRole, what: &str) -> Result<(), AgentError> {
    if caller.role.permits(role) {
        return Ok(());
    }
    Err(AgentError::forbidden(format!("token '{}' is a {} token; {what} needs {role}", caller.name, caller.role)))
}

/// Middleware of the API's protected routes: the caller, checked against the route's need,
/// goes into the request's extensions (handlers name it in what they write).
pub async fn guard(State(agent): State<Arc<Agent>>, mut request: Request, next: Next) -> Response {
    let Some(presented) = bearer(request.headers()).map(halo_security::sha256_hex) else {
        return AgentError::unauthorized().into_response();
    };
    let caller = match caller_soon(&agent, &presented).await {
        Ok(caller) => caller,
        Err(e) => return e.into_response(),
    };
    // Every routed request has its route; one without is judged as the most sensitive.
    let route = request.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string());
    let need = route.as_deref().map_or(AccessRole::Admin, |r| needed(request.method(), r));
    let what = format!("{} {}", request.method(), route.as_deref().unwrap_or(request.uri().path()));
    if let Err(e) = require(&caller, need, &what) {
        return e.into_response();
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_for_viewers_running_for_operators_the_rest_for_admins() {
        assert_eq!(needed(&Method::GET, "/api/v1/status"), AccessRole::Viewer);
        assert_eq!(needed(&Method::GET, "/metrics"), AccessRole::Viewer);
        assert_eq!(needed(&Method::GET, "/api/v1/validate"), AccessRole::Operator);
        assert_eq!(needed(&Method::POST, "/api/v1/roles/{name}/stop"), AccessRole::Operator);
        assert_eq!(needed(&Method::POST, "/api/v1/nodes/{name}/pause"), AccessRole::Operator);
        assert_eq!(needed(&Method::POST, "/api/v1/roles"), AccessRole::Admin);
        assert_eq!(needed(&Method::DELETE, "/api/v1/roles/{name}"), AccessRole::Admin);
        assert_eq!(needed(&Method::POST, "/api/v1/api-tokens"), AccessRole::Admin);
        assert_eq!(needed(&Method::GET, "/api/v1/api-tokens"), AccessRole::Admin);
        assert_eq!(needed(&Method::POST, "/api/v1/nodes/{name}/fence"), AccessRole::Admin);
    }
}
