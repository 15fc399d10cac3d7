//! Cluster security material: the cluster CA, node certificates, join tokens and the rustls
//! configurations built from them. No networking here; the agent and the CLI use these.

pub mod ca;
pub mod revocation;
pub mod tls;
pub mod token;

use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("certificate generation failed: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("TLS configuration failed: {0}")]
    Tls(#[from] rustls::Error),
    #[error("invalid PEM ({what}): {reason}")]
    Pem { what: &'static str, reason: String },
    #[error("no certificate can be valid until {0} ms after 1970")]
    Validity(u64),
    #[error("invalid join token: {0}")]
    Token(String),
}

/// Lowercase hex SHA-256 of `data`. Tokens and CA certificates are compared by this.
pub fn sha256_hex(data: impl AsRef<[u8]>) -> String {
    hex::encode(Sha256::digest(data.as_ref()))
}

/// A fresh random secret, 32 bytes, hex encoded.
pub fn random_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

/// Install ring as the process-wide rustls provider; harmless when already installed.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
