//! Who may do what through the API: named tokens, each with a role. `admin` may do
//! everything, `operator` runs the cluster (start, stop, move, pause, resume, validate) and
//! `viewer` only reads (the API's reads, `/metrics`, the console without its buttons). The
//! cluster's first token, made at `cluster create`, is the admin token; it can be rotated.
//! Only hashes of tokens are stored.

use crate::command::CommandResult;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::command::Rejection;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AccessRole {
    Viewer,
    Operator,
    Admin,
}

impl AccessRole {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessRole::Viewer => "viewer",
            AccessRole::Operator => "operator",
            AccessRole::Admin => "admin",
        }
    }

    /// Whether a holder of `self` may do what needs `needed`.
    pub fn permits(self, needed: AccessRole) -> bool {
        self >= needed
    }
}

impl std::str::FromStr for AccessRole {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "viewer" => Ok(AccessRole::Viewer),
            "operator" => Ok(AccessRole::Operator),
            "admin" => Ok(AccessRole::Admin),
            other => Err(format!("unknown role '{other}' (viewer, operator or admin)")),
        }
    }
}

impl std::fmt::Display for AccessRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A named API token as stored: its hash, never the token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ApiToken {
    pub secret_sha256: String,
    pub role: AccessRole,
    pub created_at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
}

/// The name the admin token goes by in events and lists.
pub const ADMIN: &str = "admin";

/// Who made a request: the token's name and role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: AccessRole,
}

/// The caller presenting a token that hashes to `presented_sha256`, at `now_ms`: the admin
/// token, or a named token that has not expired.
pub fn caller(
    admin_sha256: &str,
    tokens: &BTreeMap<String, ApiToken>,
    presented_sha256: &str,
    now_ms: u64,
) -> Option<Caller> {
    if presented_sha256 == admin_sha256 {
        return Some(Caller { name: ADMIN.into(), role: AccessRole::Admin });
    }
    tokens
        .iter()
        .find(|(_, t)| t.secret_sha256 == presented_sha256 && t.expires_at_ms.is_none_or(|at| at > now_ms))
        .map(|(name, t)| Caller { name: name.to_string(), role: t.role })
}

/// A token name: like a node name, and not the admin token's.
pub fn validate_token_name(name: &str) -> Result<(), Rejection> {
    crate::state::validate_node_name(name).map_err(|_| Rejection::InvalidTokenName(name.to_string()))?;
    if name == ADMIN {
        return Err(Rejection::InvalidTokenName(name.to_string()));
    }
    Ok(())
}

impl crate::state::ClusterState {
    pub(crate) fn create_api_token(
        &mut self,
        name: &str,
        token: &crate::access::ApiToken,
    ) -> Result<CommandResult, Rejection> {
        self.require_cluster()?;
        crate::access::validate_token_name(name)?;
        if self.api_tokens.contains_key(name) {
            return Err(Rejection::DuplicateToken(name.to_string()));
        }
        // Expired tokens are dead weight; drop them while we are here.
        self.api_tokens.retain(|_, t| t.expires_at_ms.is_none_or(|at| at > token.created_at_ms));
        self.api_tokens.insert(name.to_string(), token.clone());
        Ok(CommandResult::Done)
    }

    pub(crate) fn revoke_api_token(&mut self, name: &str) -> Result<CommandResult, Rejection> {
        self.require_cluster()?;
        self.api_tokens.remove(name).ok_or_else(|| Rejection::UnknownApiToken(name.to_string()))?;
        Ok(CommandResult::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_tokens_found_by_hash_until_they_expire() {
        assert!(AccessRole::Admin.permits(AccessRole::Operator) && AccessRole::Operator.permits(AccessRole::Viewer));
        assert!(!AccessRole::Viewer.permits(AccessRole::Operator));
        let tokens = BTreeMap::from([(
            "grafana".to_string(),
            ApiToken { secret_sha256: "g".into(), role: AccessRole::Viewer, created_at_ms: 0, expires_at_ms: Some(10) },
        )]);
        assert_eq!(caller("a", &tokens, "a", 0).map(|c| c.role), Some(AccessRole::Admin));
        assert_eq!(caller("a", &tokens, "g", 5), Some(Caller { name: "grafana".into(), role: AccessRole::Viewer }));
        assert_eq!(caller("a", &tokens, "g", 10), None, "expired");
        assert_eq!(caller("a", &tokens, "x", 0), None);
        assert!(validate_token_name("admin").is_err() && validate_token_name("ci-bot").is_ok());
        assert_eq!("operator".parse::<AccessRole>(), Ok(AccessRole::Operator));
    }
}
