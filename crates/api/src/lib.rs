//! The REST API's shapes: every request and response body and query of `/api/v1`, and the
//! structured log lines `halo log` gathers. The agent serves them, the command line and the
//! console read them; field names are the stable `--json` contract: extend, never rename.
//!
//! The words these shapes are made of (role and node states, resource kinds, event kinds,
//! decisions) are the decision core's own vocabulary and are defined in `halo-core`, which
//! decides in them; they are re-exported here so a client needs only this crate's names.
//!
//! The OpenAPI document of the routes is generated from the agent's handlers (so it cannot
//! describe a route nobody serves) and committed beside this crate as `openapi.json`; a test
//! in the agent fails when the two differ.

pub mod access;
pub mod cluster;
pub mod events;
pub mod log;
pub mod membership;
pub mod roles;
pub mod validation;

pub use halo_core::events::{Change, Event, EventKind};
pub use halo_core::migration::MoveMode;
pub use halo_core::resource_kind::ResourceKind;
pub use halo_core::role::{DecisionKind, RoleState};
pub use halo_core::state::{NetworkState, NodeState};

/// The body of every error answer: what went wrong, in words that name the problem.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorView {
    pub error: String,
}
