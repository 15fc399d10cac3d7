//! rustls configurations: HTTPS for the API, mutual TLS between nodes.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

use crate::SecurityError;
use crate::revocation::{CheckedClients, CheckedServers, Revoked};

pub fn certs_from_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>, SecurityError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SecurityError::Pem { what: "certificate", reason: e.to_string() })?;
    if certs.is_empty() {
        return Err(SecurityError::Pem { what: "certificate", reason: "no certificate found".into() });
    }
    Ok(certs)
}

pub fn key_from_pem(pem: &str) -> Result<PrivateKeyDer<'static>, SecurityError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| SecurityError::Pem { what: "private key", reason: e.to_string() })
}

fn roots(ca_pem: &str) -> Result<RootCertStore, SecurityError> {
    let mut roots = RootCertStore::empty();
    for cert in certs_from_pem(ca_pem)? {
        roots.add(cert)?;
    }
    Ok(roots)
}

/// Server side for the API: any client may connect (it authenticates with a bearer token).
pub fn server_config(cert_pem: &str, key_pem: &str) -> Result<Arc<ServerConfig>, SecurityError> {
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs_from_pem(cert_pem)?, key_from_pem(key_pem)?)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Server side between nodes: every client presents a certificate the cluster CA issued and
/// the cluster has not revoked.
pub fn peer_server_config(
    cert_pem: &str,
    key_pem: &str,
    ca_pem: &str,
    revoked: &Revoked,
) -> Result<Arc<ServerConfig>, SecurityError> {
    let inner = WebPkiClientVerifier::builder(Arc::new(roots(ca_pem)?))
        .build()
        .map_err(|e| SecurityError::Tls(rustls::Error::General(e.to_string())))?;
    let verifier = CheckedClients { inner, revoked: revoked.clone() };
    let mut config = ServerConfig::builder()
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(certs_from_pem(cert_pem)?, key_from_pem(key_pem)?)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Client side between nodes: presents this node's certificate, and accepts a server whose
/// certificate the cluster CA issued and the cluster has not revoked.
pub fn peer_client_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
    revoked: &Revoked,
) -> Result<ClientConfig, SecurityError> {
    let inner = WebPkiServerVerifier::builder(Arc::new(roots(ca_pem)?))
        .build()
        .map_err(|e| SecurityError::Tls(rustls::Error::General(e.to_string())))?;
    let verifier = CheckedServers { inner, revoked: revoked.clone() };
    let mut config = ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(certs_from_pem(cert_pem)?, key_from_pem(key_pem)?)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Client side: trust only the cluster CA; present `identity` (cert, key) when given.
pub fn client_config(ca_pem: &str, identity: Option<(&str, &str)>) -> Result<ClientConfig, SecurityError> {
    let builder = ClientConfig::builder().with_root_certificates(roots(ca_pem)?);
    let mut config = match identity {
        Some((cert, key)) => builder.with_client_auth_cert(certs_from_pem(cert)?, key_from_pem(key)?)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// A client that does not authenticate the server. Used only to talk to an agent that has no
/// cluster yet (its certificate is self-signed) and to fetch a cluster's public CA certificate,
/// which the caller then checks against the fingerprint pinned in a join token.
pub fn unverified_client_config() -> ClientConfig {
    unverified_client_config_with(None).expect("a client without identity needs no key material")
}

/// As [`unverified_client_config`], presenting `identity` (cert, key) as client certificate.
pub fn unverified_client_config_with(identity: Option<(&str, &str)>) -> Result<ClientConfig, SecurityError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder().dangerous().with_custom_certificate_verifier(Arc::new(AnyServer(provider)));
    let mut config = match identity {
        Some((cert, key)) => builder.with_client_auth_cert(certs_from_pem(cert)?, key_from_pem(key)?)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The fingerprint (SHA-256 of the certificate, hex) of the server a bootstrap client reached.
#[derive(Debug, Clone, Default)]
pub struct SeenServer(Arc<std::sync::Mutex<Option<String>>>);

impl SeenServer {
    pub fn fingerprint(&self) -> Option<String> {
        self.0.lock().ok().and_then(|seen| seen.clone())
    }
}

/// A fingerprint as an admin may paste it: hex, any case, with or without colons or a
/// `sha256:` prefix.
pub fn normalize_fingerprint(text: &str) -> String {
    let text = text.trim();
    let text = text.strip_prefix("sha256:").or_else(|| text.strip_prefix("SHA256:")).unwrap_or(text);
    text.chars().filter(|c| *c != ':').collect::<String>().to_ascii_lowercase()
}

/// A client for an agent that belongs to no cluster yet (its certificate is self-signed, its
/// fingerprint in its log and `DATA_DIR/bootstrap.fingerprint`). With `pinned`, only the
/// server with that fingerprint is accepted, before anything is sent; without, any server is
/// (trust on first use) and the returned `SeenServer` says which one answered.
pub fn bootstrap_client_config(pinned: Option<&str>) -> (ClientConfig, SeenServer) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let seen = SeenServer::default();
    let verifier = Pinned { pinned: pinned.map(normalize_fingerprint), seen: seen.clone(), any: AnyServer(provider) };
    let mut config =
        ClientConfig::builder().dangerous().with_custom_certificate_verifier(Arc::new(verifier)).with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    (config, seen)
}

#[derive(Debug)]
struct Pinned {
    pinned: Option<String>,
    seen: SeenServer,
    any: AnyServer,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let fingerprint = crate::sha256_hex(end_entity.as_ref());
        if let Ok(mut seen) = self.seen.0.lock() {
            *seen = Some(fingerprint.clone());
        }
        match &self.pinned {
            Some(pinned) if *pinned != fingerprint => Err(rustls::Error::General(format!(
                "the server's certificate fingerprint is {fingerprint}, not the pinned {pinned}"
            ))),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.any.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.any.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.any.supported_verify_schemes()
    }
}

#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    // Signatures are still checked: the handshake must be made with the presented key.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
