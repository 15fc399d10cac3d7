//! `GET /api/v1/validate`: the cluster's validation report. The checks the cluster database
//! allows (quorum, roles) are judged by `halo_core::validation`; validation reads, never writes.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use halo_core::validation::{self, Check, Outcome};

use crate::clock;
use crate::error::ApiError;
use crate::runtime::Agent;

type AppState = Arc<Agent>;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/validate", get(validate))
}

#[derive(Debug, serde::Deserialize, serde::Serialize, utoipa::ToSchema)]
pub struct ValidationView {
    pub cluster: String,
    /// Wall-clock milliseconds when the report was made.
    pub generated_at_ms: u64,
    /// The worst outcome of all checks.
    pub result: Outcome,
    pub checks: Vec<Check>,
}

/// Validate the cluster: quorum and roles, each check with an outcome, an explanation and a fix.
#[utoipa::path(get, path = "/api/v1/validate", security(("bearer" = [])),
    responses((status = 200, body = ValidationView), (status = 503, body = halo_core::view::ErrorView)))]
pub async fn validate(State(agent): State<AppState>) -> Result<Json<ValidationView>, ApiError> {
    let member = agent.require_member()?;
    let state = member.reader.state();
    let checks = validation::judge(&state, crate::roles_api::plan_timing(&agent, &state));
    Ok(Json(ValidationView {
        cluster: state.cluster.as_ref().map(|c| c.name.clone()).unwrap_or_default(),
        generated_at_ms: clock::wall_ms(),
        result: validation::worst(&checks),
        checks,
    }))
}
