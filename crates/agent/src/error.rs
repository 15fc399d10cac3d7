//! The agent's errors, each a sentence that names the problem, and the one place they become
//! HTTP: [`AgentError::status`] and its inverse for what a leader answered a forwarded
//! request ([`AgentError::from_status`]); every response body is an `ErrorView`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use halo_api::ErrorView;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    /// The request is malformed or asks for something impossible.
    #[error("{0}")]
    Invalid(String),
    /// No credential, or not one this cluster knows.
    #[error("{0}")]
    Unauthenticated(String),
    /// A known caller that may not do this.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// Refused by the cluster's state: already there, still in use, not a member yet...
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooManyRequests(String),
    /// Not now: no leader, no quorum, leadership moved, the leader out of reach. Retry.
    #[error("{0}")]
    Unavailable(String),
    /// The peers a request needed could not be reached.
    #[error("{0}")]
    PeerUnreachable(String),
    /// Something failed inside this node (its database, its disk, a bug).
    #[error("{0}")]
    Internal(String),
}

impl AgentError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::Invalid(message.into())
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::Conflict(message.into())
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound(message.into())
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::Unavailable(message.into())
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::Internal(message.into())
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::Forbidden(message.into())
    }
    pub fn unauthorized() -> Self {
        Self::Unauthenticated("missing or invalid bearer token".into())
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            AgentError::Invalid(_) => StatusCode::BAD_REQUEST,
            AgentError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            AgentError::Forbidden(_) => StatusCode::FORBIDDEN,
            AgentError::NotFound(_) => StatusCode::NOT_FOUND,
            AgentError::Conflict(_) => StatusCode::CONFLICT,
            AgentError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            AgentError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AgentError::PeerUnreachable(_) => StatusCode::BAD_GATEWAY,
            AgentError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What the leader answered a forwarded request with, as the error it was there.
    pub fn from_status(status: u16, message: String) -> Self {
        match StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR) {
            StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => AgentError::Invalid(message),
            StatusCode::UNAUTHORIZED => AgentError::Unauthenticated(message),
            StatusCode::FORBIDDEN => AgentError::Forbidden(message),
            StatusCode::NOT_FOUND => AgentError::NotFound(message),
            StatusCode::CONFLICT => AgentError::Conflict(message),
            StatusCode::TOO_MANY_REQUESTS => AgentError::TooManyRequests(message),
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT => AgentError::Unavailable(message),
            StatusCode::BAD_GATEWAY => AgentError::PeerUnreachable(message),
            _ => AgentError::Internal(message),
        }
    }
}

impl From<anyhow::Error> for AgentError {
    fn from(e: anyhow::Error) -> Self {
        Self::Internal(format!("{e:#}"))
    }
}

impl IntoResponse for AgentError {
    fn into_response(self) -> Response {
        (self.status(), Json(ErrorView { error: self.to_string() })).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forwarded_answer_comes_back_as_the_error_it_was_on_the_leader() {
        let all = [
            AgentError::Invalid("a".into()),
            AgentError::Unauthenticated("b".into()),
            AgentError::Forbidden("c".into()),
            AgentError::NotFound("d".into()),
            AgentError::Conflict("e".into()),
            AgentError::TooManyRequests("f".into()),
            AgentError::Unavailable("g".into()),
            AgentError::PeerUnreachable("i".into()),
            AgentError::Internal("h".into()),
        ];
        for e in all {
            assert_eq!(AgentError::from_status(e.status().as_u16(), e.to_string()), e);
        }
    }
}
