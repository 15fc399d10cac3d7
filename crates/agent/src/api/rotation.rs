//! Rotating the credentials the whole cluster shares (`halo cluster rotate-ca`,
//! `halo cluster rotate-heartbeat-key`); the admin token's is in `tokens`.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use halo_api::cluster::{CaRotationView, RotateRequest};
use halo_core::access::Caller;
use halo_core::ca_rotation;
use halo_core::command::Command;

use crate::api::tokens::commit;
use crate::clock;
use crate::cluster::agent::Agent;
use crate::error::AgentError;

type AppState = Arc<Agent>;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/cluster/ca-rotation", get(show).post(start))
        .route("/api/v1/cluster/heartbeat-key", post(rotate_heartbeat_key))
}

#[utoipa::path(get, path = "/api/v1/cluster/ca-rotation", security(("bearer" = [])), responses((status = 200, body = CaRotationView)))]
pub async fn show(State(agent): State<AppState>) -> Result<Json<CaRotationView>, AgentError> {
    let state = agent.require_member()?.reader.state();
    let cluster = state.cluster.as_ref().ok_or_else(|| AgentError::conflict("no cluster"))?;
    let ca_sha256 = match &cluster.ca_rotation {
        Some(r) => r.ca_sha256.clone(),
        None => {
            halo_security::ca::fingerprint(&cluster.ca_cert_pem).map_err(|e| AgentError::internal(e.to_string()))?
        }
    };
    Ok(Json(CaRotationView {
        stage: cluster.ca_rotation.as_ref().map(|r| r.stage),
        ca_sha256,
        waiting_for: cluster.ca_rotation.as_ref().and(ca_rotation::waiting_for(&state).err()),
        trust_pem: cluster.trust_bundle(),
    }))
}

/// A new CA, trusted beside the current one at first; the nodes take it from there.
#[utoipa::path(post, path = "/api/v1/cluster/ca-rotation", security(("bearer" = [])), request_body = RotateRequest,
    responses((status = 200, body = CaRotationView), (status = 409, body = halo_api::ErrorView)))]
pub async fn start(
    State(agent): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(RotateRequest {}): Json<RotateRequest>,
) -> Result<Json<CaRotationView>, AgentError> {
    let state = agent.require_member()?.reader.state();
    let cluster = state.cluster.as_ref().ok_or_else(|| AgentError::conflict("no cluster"))?;
    // Its own name: two CAs of one cluster never share a subject.
    let at = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    let ca = halo_security::ca::ClusterCa::generate(&format!("{} (from {at})", cluster.name))
        .map_err(|e| AgentError::internal(e.to_string()))?;
    let ca_sha256 = ca.fingerprint().map_err(|e| AgentError::internal(e.to_string()))?;
    let wanted = ca_sha256.clone();
    let command =
        Command::StartCaRotation { cert_pem: ca.cert_pem, key_pem: ca.key_pem, ca_sha256, now_ms: clock::wall_ms() };
    commit(&agent, &caller, command).await?;
    // This node's copy may trail the leader's by a moment: answer once it has the rotation.
    let member = agent.require_member()?;
    for _ in 0..40 {
        let state = member.reader.state();
        if state.cluster.as_ref().and_then(|c| c.ca_rotation.as_ref()).is_some_and(|r| r.ca_sha256 == wanted) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    show(State(agent)).await
}

#[utoipa::path(post, path = "/api/v1/cluster/heartbeat-key", security(("bearer" = [])), request_body = RotateRequest,
    responses((status = 204), (status = 409, body = halo_api::ErrorView)))]
pub async fn rotate_heartbeat_key(
    State(agent): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(RotateRequest {}): Json<RotateRequest>,
) -> Result<axum::http::StatusCode, AgentError> {
    let command = Command::RotateHeartbeatKey { heartbeat_key_hex: halo_security::random_secret() };
    commit(&agent, &caller, command).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}
