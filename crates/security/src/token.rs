//! Join tokens: everything a new node needs to join, in one copy-pasteable string.
//!
//! `halo1.` + base64url(JSON). The token carries the peers' API endpoints and the fingerprint of
//! the cluster CA (so the joining node can authenticate the cluster), plus an id and a secret
//! that the cluster checks against the hash it stored when the token was issued. A token is
//! single-use and expires; both are enforced by the cluster database, not by the token.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::SecurityError;

const PREFIX: &str = "halo1.";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JoinToken {
    pub cluster: String,
    pub cluster_id: String,
    /// `host:port` API endpoints of current members.
    pub peers: Vec<String>,
    pub ca_sha256: String,
    pub id: String,
    pub secret: String,
    pub expires_at_ms: u64,
}

impl JoinToken {
    pub fn encode(&self) -> String {
        // Serializing a plain struct of strings and integers cannot fail.
        let json = serde_json::to_vec(self).expect("join token serializes");
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(json))
    }

    pub fn decode(text: &str) -> Result<Self, SecurityError> {
        let body = text
            .trim()
            .strip_prefix(PREFIX)
            .ok_or_else(|| SecurityError::Token(format!("it does not start with '{PREFIX}'")))?;
        let json =
            URL_SAFE_NO_PAD.decode(body).map_err(|e| SecurityError::Token(format!("it is not valid base64: {e}")))?;
        let token: JoinToken = serde_json::from_slice(&json)
            .map_err(|e| SecurityError::Token(format!("its content is malformed: {e}")))?;
        if token.peers.is_empty() {
            return Err(SecurityError::Token("it names no peers".into()));
        }
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let t = JoinToken {
            cluster: "c".into(),
            cluster_id: "id".into(),
            peers: vec!["127.0.0.1:7400".into()],
            ca_sha256: "ab".into(),
            id: "i".into(),
            secret: "s".into(),
            expires_at_ms: 5,
        };
        assert_eq!(JoinToken::decode(&t.encode()).expect("decodes"), t);
        assert!(JoinToken::decode("nope").is_err());
        assert!(JoinToken::decode("halo1.!!!").is_err());
        assert!(JoinToken::decode("halo1.e30").is_err());
    }
}
