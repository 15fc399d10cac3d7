//! The cluster CA (created at `halo cluster create`) and the certificates it issues.
//!
//! A node generates its own key and sends a certificate signing request; the CA signs the
//! node's public key with the names and addresses the cluster admitted, not the ones the CSR
//! asks for, so a joining node cannot claim another node's address.

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};

use crate::SecurityError;

/// The cluster CA certificate and its private key, PEM encoded.
#[derive(Debug, Clone)]
pub struct ClusterCa {
    pub cert_pem: String,
    pub key_pem: String,
}

impl ClusterCa {
    pub fn generate(cluster_name: &str) -> Result<Self, SecurityError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("halo cluster CA {cluster_name}"));
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key)?;
        Ok(Self { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }

    /// Sign the public key in `csr_pem` for node `name`, valid for `hosts` (IPs or DNS names)
    /// from `now_ms` for `lifetime_ms`, under a fresh random serial (what revocation names).
    pub fn issue_node_certificate(
        &self,
        csr_pem: &str,
        name: &str,
        hosts: &[String],
        now_ms: u64,
        lifetime_ms: u64,
    ) -> Result<IssuedCertificate, SecurityError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)?;
        let mut params = node_params(name, hosts)?;
        // Valid a little before now: the other nodes' clocks may be behind this one's.
        params.not_before = date(now_ms.saturating_sub(CLOCK_SKEW_MS))?;
        params.not_after = date(now_ms.saturating_add(lifetime_ms))?;
        let mut serial: [u8; 16] = rand::random();
        // A positive DER integer without a padding byte: the serial reads back as written.
        serial[0] = (serial[0] & 0x7f) | 0x01;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        let key = KeyPair::from_pem(&self.key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, key)?;
        let pem = params.signed_by(&csr.public_key, &issuer)?.pem();
        let identity = crate::revocation::identity_of_pem(&pem)?;
        debug_assert_eq!(identity.serial, hex::encode(serial));
        Ok(IssuedCertificate { pem, serial: identity.serial, not_after_ms: identity.not_after_ms })
    }

    /// SHA-256 of the CA certificate's DER: what a join token pins.
    pub fn fingerprint(&self) -> Result<String, SecurityError> {
        fingerprint(&self.cert_pem)
    }
}

/// How far behind another node's clock may be when it checks a certificate issued now.
pub(crate) const CLOCK_SKEW_MS: u64 = 5 * 60 * 1000;

fn date(unix_ms: u64) -> Result<time::OffsetDateTime, SecurityError> {
    let seconds = i64::try_from(unix_ms / 1000).map_err(|_| SecurityError::Validity(unix_ms))?;
    time::OffsetDateTime::from_unix_timestamp(seconds).map_err(|_| SecurityError::Validity(unix_ms))
}

/// A node certificate as issued: the PEM, and what the cluster records of it.
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    pub pem: String,
    /// Serial number, lowercase hex.
    pub serial: String,
    pub not_after_ms: u64,
}

/// SHA-256 (hex) of the first certificate in `cert_pem`.
pub fn fingerprint(cert_pem: &str) -> Result<String, SecurityError> {
    let der = crate::tls::certs_from_pem(cert_pem)?
        .into_iter()
        .next()
        .ok_or(SecurityError::Pem { what: "certificate", reason: "no certificate found".into() })?;
    Ok(crate::sha256_hex(der.as_ref()))
}

fn node_params(name: &str, hosts: &[String]) -> Result<CertificateParams, SecurityError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    let mut sans = vec![SanType::DnsName(name.try_into()?), SanType::DnsName("localhost".try_into()?)];
    for host in hosts {
        match host.parse::<IpAddr>() {
            Ok(ip) => sans.push(SanType::IpAddress(ip)),
            Err(_) => sans.push(SanType::DnsName(host.as_str().try_into()?)),
        }
    }
    sans.dedup();
    params.subject_alt_names = sans;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    Ok(params)
}

/// A node's private key (PEM), generated on the node and never sent anywhere.
pub fn generate_node_key() -> Result<String, SecurityError> {
    Ok(KeyPair::generate()?.serialize_pem())
}

/// A certificate signing request for `key_pem` naming node `name`.
pub fn certificate_request(key_pem: &str, name: &str) -> Result<String, SecurityError> {
    let key = KeyPair::from_pem(key_pem)?;
    let params = node_params(name, &[])?;
    Ok(params.serialize_request(&key)?.pem()?)
}

/// A self-signed certificate for an agent that belongs to no cluster yet, so its API is
/// HTTPS from the first second. Callers of the bootstrap endpoints do not verify it (they
/// authenticate themselves by being local or by the bootstrap secret instead).
pub fn bootstrap_certificate(key_pem: &str, name: &str, hosts: &[String]) -> Result<String, SecurityError> {
    let key = KeyPair::from_pem(key_pem)?;
    Ok(node_params(name, hosts)?.self_signed(&key)?.pem())
}

/// Hosts (IP or name) of `host:port` addresses, without ports.
pub fn hosts_of<'a>(addresses: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut hosts: Vec<String> = addresses
        .into_iter()
        .filter_map(|a| a.rsplit_once(':').map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']').to_string()))
        .collect();
    hosts.sort();
    hosts.dedup();
    hosts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_signs_a_node_csr_with_admitted_addresses() {
        let ca = ClusterCa::generate("c").expect("ca");
        let key = generate_node_key().expect("key");
        let csr = certificate_request(&key, "n1").expect("csr");
        let now = 1_800_000_000_000;
        let cert = ca.issue_node_certificate(&csr, "n1", &["127.0.0.1".into()], now, 3_600_000).expect("cert");
        assert!(cert.pem.contains("BEGIN CERTIFICATE"));
        let identity = crate::revocation::identity_of_pem(&cert.pem).expect("identity");
        assert_eq!((identity.name.as_str(), identity.serial.len()), ("n1", 32));
        assert_eq!(identity.serial, cert.serial);
        assert_eq!((identity.not_after_ms, cert.not_after_ms), (now + 3_600_000, now + 3_600_000));
        assert_eq!(identity.renew_at_ms(), now + 2_400_000, "two thirds into its hour");
        let again = ca.issue_node_certificate(&csr, "n1", &[], now, 3_600_000).expect("cert");
        assert_ne!(again.serial, cert.serial, "every certificate gets its own serial");
        assert_eq!(ca.fingerprint().expect("fp").len(), 64);
        assert_eq!(hosts_of(["127.0.0.1:7400", "127.0.0.1:7401", "[::1]:1"]), vec!["127.0.0.1", "::1"]);
    }
}
