//! The joining side of admission: authenticate the cluster by the CA fingerprint in the token,
//! then present the token over a connection verified against that CA.

use std::time::Duration;

use halo_api::ErrorView;
use halo_api::membership::AdmissionRequest;
use halo_api::membership::AdmissionResponse;

use crate::error::AgentError;

pub enum JoinError {
    /// The cluster answered and said no: stop, trying another peer would not change that.
    Refused(AgentError),
    /// This peer could not be used; another may work.
    Unreachable(String),
}

pub async fn request_admission(
    peer: &str,
    ca_sha256: &str,
    request: &AdmissionRequest,
) -> Result<AdmissionResponse, JoinError> {
    let unverified = reqwest::Client::builder()
        .tls_backend_preconfigured(halo_security::tls::unverified_client_config())
        .timeout(Duration::from_secs(3))
        .no_proxy()
        .build()
        .map_err(|e| JoinError::Unreachable(e.to_string()))?;
    let ca_pem = unverified
        .get(format!("https://{peer}/api/v1/ca"))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| JoinError::Unreachable(describe(&e)))?
        .text()
        .await
        .map_err(|e| JoinError::Unreachable(e.to_string()))?;
    let fingerprint = halo_security::ca::fingerprint(&ca_pem).map_err(|e| JoinError::Unreachable(e.to_string()))?;
    if fingerprint != ca_sha256 {
        return Err(JoinError::Refused(AgentError::forbidden(format!(
            "peer {peer} presents a CA certificate that does not match the join token; refusing to join it"
        ))));
    }
    let config = halo_security::tls::client_config(&ca_pem, None).map_err(|e| JoinError::Unreachable(e.to_string()))?;
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .timeout(Duration::from_secs(20))
        .no_proxy()
        .build()
        .map_err(|e| JoinError::Unreachable(e.to_string()))?;
    let response = client
        .post(format!("https://{peer}/api/v1/join"))
        .json(request)
        .send()
        .await
        .map_err(|e| JoinError::Unreachable(describe(&e)))?;
    let status = response.status();
    if status.is_success() {
        return response.json().await.map_err(|e| JoinError::Unreachable(e.to_string()));
    }
    let body = response.text().await.unwrap_or_default();
    let message = serde_json::from_str::<ErrorView>(&body).map(|e| e.error).unwrap_or(body);
    if status.is_server_error() {
        Err(JoinError::Unreachable(format!("{status}: {message}")))
    } else {
        Err(JoinError::Refused(AgentError::from_status(status.as_u16(), message)))
    }
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_connect() {
        "connection refused or no route".into()
    } else if e.is_timeout() {
        "timed out".into()
    } else {
        e.to_string()
    }
}
