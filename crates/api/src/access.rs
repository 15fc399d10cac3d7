//! API tokens with a role, and the admin token's rotation (`halo token`).

use halo_core::access::AccessRole;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `halo token create NAME --role R [--ttl D]`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiTokenRequest {
    pub name: String,
    pub role: AccessRole,
    /// Seconds it stays valid; none: until revoked.
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
}

/// A named API token as the API shows it: never its secret.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApiTokenView {
    pub name: String,
    pub role: AccessRole,
    pub created_at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
}

/// A new token, shown this once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApiTokenCreated {
    #[serde(flatten)]
    pub view: ApiTokenView,
    pub token: String,
}

/// The admin token's rotation takes an empty JSON object: a stray POST without one rotates
/// nothing.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateAdminRequest {}

/// The new admin token, shown this once; the old one no longer works.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AdminTokenRotated {
    pub token: String,
}
