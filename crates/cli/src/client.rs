//! The client side: the client config file (like a kubeconfig) and an HTTPS client that tries
//! every known endpoint until one answers.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use halo_api::ErrorView;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub cluster: String,
    /// `host:port` API endpoints; the first that answers is used.
    pub endpoints: Vec<String>,
    pub ca_cert_pem: String,
    pub token: String,
}

/// `$HALO_CONFIG`, else `~/.config/halo/config.toml`.
pub fn config_path() -> PathBuf {
    if let Some(p) = std::env::var_os("HALO_CONFIG") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".config/halo/config.toml")
}

impl ClientConfig {
    pub fn load() -> anyhow::Result<Self> {
        let path = config_path();
        let mut config: ClientConfig = match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).with_context(|| format!("invalid client config {}", path.display()))?,
            Err(e) => {
                bail!(
                    "cannot read client config {} ({e}); run `halo cluster create` first or set HALO_CONFIG",
                    path.display()
                )
            }
        };
        if let Ok(endpoint) = std::env::var("HALO_ENDPOINT") {
            config.endpoints = vec![normalize_endpoint(&endpoint)?];
        }
        if let Ok(token) = std::env::var("HALO_TOKEN") {
            config.token = token;
        }
        Ok(config)
    }

    /// Change the client config file as written (not as this process's environment overrode
    /// it) and save it.
    pub fn update_file(change: impl FnOnce(&mut ClientConfig)) -> anyhow::Result<PathBuf> {
        let path = config_path();
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let mut config: ClientConfig =
            toml::from_str(&text).with_context(|| format!("invalid client config {}", path.display()))?;
        change(&mut config);
        config.save()
    }

    pub fn save(&self) -> anyhow::Result<PathBuf> {
        self.save_to(&config_path())
    }

    pub fn save_to(&self, path: &std::path::Path) -> anyhow::Result<PathBuf> {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let path = path.to_path_buf();
        // It holds the admin token: created readable by its owner only (a directory it makes
        // too), never written open and tightened afterwards.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let tmp = path.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        file.write_all(toml::to_string(self)?.as_bytes()).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    }
}

/// Accept `https://host:port`, `host:port` (and a trailing `/`); return `host:port`.
pub fn normalize_endpoint(text: &str) -> anyhow::Result<String> {
    let trimmed = text.trim().trim_end_matches('/');
    let hostport = trimmed.strip_prefix("https://").unwrap_or(trimmed);
    if hostport.starts_with("http://") {
        bail!("endpoint '{text}' uses http://; the halo API is HTTPS only");
    }
    if hostport.is_empty() || !hostport.contains(':') || hostport.contains('/') {
        bail!("invalid endpoint '{text}': expected https://HOST:PORT");
    }
    Ok(hostport.to_string())
}

pub struct Api {
    http: reqwest::Client,
    endpoints: Vec<String>,
    token: Option<String>,
    bootstrap_secret: Option<String>,
    /// How an unjoined agent is authenticated (none for a cluster's, checked by its CA).
    bootstrap: Option<BootstrapTrust>,
}

/// An unjoined agent is known by its certificate's fingerprint: pinned, or seen on first use.
struct BootstrapTrust {
    pinned: Option<String>,
    seen: halo_security::tls::SeenServer,
    warned: std::sync::atomic::AtomicBool,
}

impl BootstrapTrust {
    /// Why a handshake failed, when it is the pin.
    fn mismatch(&self, endpoint: &str) -> Option<String> {
        let (pinned, seen) = (self.pinned.as_ref()?, self.seen.fingerprint()?);
        (*pinned != seen).then(|| {
            format!(
                "the agent at {endpoint} presented certificate fingerprint {seen}, not the pinned {pinned}: \
                 refused before sending anything (another machine, or someone in between)"
            )
        })
    }

    /// Trust on first use says so, once.
    fn warn_unpinned(&self, endpoint: &str) {
        if self.pinned.is_some() || self.warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let seen = self.seen.fingerprint().unwrap_or_else(|| "unknown".into());
        eprintln!(
            "warning: the agent at {endpoint} was not authenticated (no --fingerprint); it presented certificate \
             fingerprint {seen}. Compare it with the one in that agent's log or DATA_DIR/bootstrap.fingerprint, \
             and pass --fingerprint to pin it."
        );
    }
}

impl Api {
    /// A client for a configured cluster: verifies servers against the cluster CA.
    pub fn from_config(config: &ClientConfig) -> anyhow::Result<Self> {
        let tls = halo_security::tls::client_config(&config.ca_cert_pem, None)?;
        Ok(Self {
            http: build(tls)?,
            endpoints: config.endpoints.clone(),
            token: Some(config.token.clone()),
            bootstrap_secret: None,
            bootstrap: None,
        })
    }

    /// A client for an agent that belongs to no cluster yet (its certificate is self-signed):
    /// the one with `fingerprint`, or, without it, whichever answers (with a warning).
    pub fn bootstrap(endpoint: &str, secret: Option<String>, fingerprint: Option<&str>) -> anyhow::Result<Self> {
        let (tls, seen) = halo_security::tls::bootstrap_client_config(fingerprint);
        let pinned = fingerprint.map(halo_security::tls::normalize_fingerprint);
        if let Some(pinned) = &pinned
            && (pinned.len() != 64 || !pinned.chars().all(|c| c.is_ascii_hexdigit()))
        {
            bail!("--fingerprint '{}': expected the 64 hex digits of a SHA-256", fingerprint.unwrap_or_default());
        }
        Ok(Self {
            http: build(tls)?,
            endpoints: vec![normalize_endpoint(endpoint)?],
            token: None,
            bootstrap_secret: secret,
            bootstrap: Some(BootstrapTrust { pinned, seen, warned: Default::default() }),
        })
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.call(reqwest::Method::GET, path, None::<&()>).await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> anyhow::Result<T> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn post_no_reply<B: Serialize>(&self, path: &str, body: &B) -> anyhow::Result<()> {
        self.call::<B, serde_json::Value>(reqwest::Method::POST, path, Some(body)).await.map(|_| ())
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<()> {
        self.call::<(), serde_json::Value>(reqwest::Method::DELETE, path, None).await.map(|_| ())
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
    ) -> anyhow::Result<T> {
        let mut failures = Vec::new();
        for endpoint in &self.endpoints {
            let mut request = self.http.request(method.clone(), format!("https://{endpoint}{path}"));
            if let Some(token) = &self.token {
                request = request.bearer_auth(token);
            }
            if let Some(secret) = &self.bootstrap_secret {
                request = request.header("x-halo-bootstrap-secret", secret);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = match request.send().await {
                Err(_) if let Some(why) = self.bootstrap.as_ref().and_then(|b| b.mismatch(endpoint)) => bail!(why),
                Ok(r) => r,
                // Only a node that cannot be reached is skipped; an answer is final.
                Err(e) if e.is_connect() || e.is_timeout() => {
                    failures.push(format!(
                        "{endpoint}: {}",
                        if e.is_timeout() { "timed out" } else { "connection refused" }
                    ));
                    continue;
                }
                Err(e) => {
                    failures.push(format!("{endpoint}: {e}"));
                    continue;
                }
            };
            if let Some(trust) = &self.bootstrap {
                trust.warn_unpinned(endpoint);
            }
            let status = response.status();
            let text = response.text().await.context("reading the agent's answer")?;
            if status.is_success() {
                let text = if text.is_empty() { "null" } else { text.as_str() };
                return serde_json::from_str(text).with_context(|| format!("unexpected answer from {endpoint}"));
            }
            let message = serde_json::from_str::<ErrorView>(&text).map(|e| e.error).unwrap_or(text);
            bail!("{message} (HTTP {} from {endpoint})", status.as_u16());
        }
        bail!("cannot reach any halo agent: {}", failures.join("; "))
    }
}

fn build(tls: rustls::ClientConfig) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(30))
        .no_proxy()
        .build()
        .context("building HTTPS client")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_normalized() {
        assert_eq!(normalize_endpoint("https://127.0.0.1:7400/").expect("ok"), "127.0.0.1:7400");
        assert_eq!(normalize_endpoint("127.0.0.1:7400").expect("ok"), "127.0.0.1:7400");
        assert!(normalize_endpoint("http://127.0.0.1:7400").is_err());
        assert!(normalize_endpoint("nonsense").is_err());
    }
}
