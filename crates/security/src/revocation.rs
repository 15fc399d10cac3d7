//! Certificates a node can no longer use: the serials the cluster revoked (a removed node's)
//! are refused in the TLS handshake, on both ends of a node-to-node connection, on top of
//! the CA check. The set is shared with the agent, which keeps it equal to the cluster
//! database's list, so a revocation takes effect on the next handshake without a restart.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::SecurityError;

/// The revoked serials (lowercase hex), shared between the TLS verifiers and their owner.
#[derive(Debug, Clone, Default)]
pub struct Revoked(Arc<RwLock<BTreeSet<String>>>);

impl Revoked {
    /// Make the set `serials`; true if it changed.
    pub fn replace(&self, serials: BTreeSet<String>) -> bool {
        match self.0.write() {
            Ok(mut current) if *current != serials => {
                *current = serials;
                true
            }
            _ => false,
        }
    }

    /// A poisoned lock counts as revoked: refusing a peer is the safe failure.
    pub fn contains(&self, serial: &str) -> bool {
        self.0.read().map_or(true, |set| set.contains(serial))
    }

    fn check(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let identity = identity(end_entity).map_err(|e| rustls::Error::General(e.to_string()))?;
        if self.contains(&identity.serial) {
            return Err(rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked));
        }
        Ok(())
    }
}

/// Who a node certificate names, and which one it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertIdentity {
    /// The node name (the subject's common name).
    pub name: String,
    /// The serial number, lowercase hex.
    pub serial: String,
    /// Start and end of validity, Unix milliseconds.
    pub not_before_ms: u64,
    pub not_after_ms: u64,
}

impl CertIdentity {
    /// When its holder renews it: once two thirds of the lifetime it was issued with have
    /// passed (its validity starts a clock skew before it was issued).
    pub fn renew_at_ms(&self) -> u64 {
        let issued = self.not_before_ms.saturating_add(crate::ca::CLOCK_SKEW_MS);
        let lifetime = self.not_after_ms.saturating_sub(issued);
        self.not_after_ms.saturating_sub(lifetime / 3)
    }
}

/// Read a certificate's node name, serial and expiry.
pub fn identity(der: &[u8]) -> Result<CertIdentity, SecurityError> {
    let bad = |reason: String| SecurityError::Pem { what: "certificate", reason };
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| bad(e.to_string()))?;
    let name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or_else(|| bad("no common name".into()))?
        .to_string();
    // Before 1970 is as good as expired.
    let ms = |t: x509_parser::time::ASN1Time| u64::try_from(t.timestamp()).unwrap_or(0).saturating_mul(1000);
    let validity = cert.validity();
    Ok(CertIdentity {
        name,
        serial: hex::encode(cert.raw_serial()),
        not_before_ms: ms(validity.not_before),
        not_after_ms: ms(validity.not_after),
    })
}

/// The identity of the first certificate in `cert_pem`.
pub fn identity_of_pem(cert_pem: &str) -> Result<CertIdentity, SecurityError> {
    let certs = crate::tls::certs_from_pem(cert_pem)?;
    let first = certs.first().ok_or(SecurityError::Pem { what: "certificate", reason: "none found".into() })?;
    identity(first.as_ref())
}

/// A client verifier (node-to-node server side): the CA check, then the revocation list.
#[derive(Debug)]
pub(crate) struct CheckedClients {
    pub inner: Arc<dyn ClientCertVerifier>,
    pub revoked: Revoked,
}

impl ClientCertVerifier for CheckedClients {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self.inner.verify_client_cert(end_entity, intermediates, now)?;
        self.revoked.check(end_entity)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A server verifier (node-to-node client side): the CA check, then the revocation list.
#[derive(Debug)]
pub(crate) struct CheckedServers {
    pub inner: Arc<WebPkiServerVerifier>,
    pub revoked: Revoked,
}

impl ServerCertVerifier for CheckedServers {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
        self.revoked.check(end_entity)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
