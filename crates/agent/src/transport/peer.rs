//! Node-to-node transport: HTTPS with mutual TLS on every network address of every node.
//!
//! Raft RPC and requests forwarded to the leader go to the first network of the target that the
//! heartbeat detector currently hears; when none is heard, the networks are tried in turn. So a
//! failed network costs no election, and Raft keeps working while any network connects.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::Context;
use halo_core::heartbeat::Endpoint;
use halo_store::PeerNode;
use halo_store::rpc::{JSON, RaftRoute, RaftTransport, SendError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::clock;

/// HTTPS clients with this node's certificate, one per local network (bound to its address so
/// traffic leaves on that network). Every clone (Raft holds one) sees a renewed certificate.
#[derive(Clone)]
pub struct PeerClients {
    by_network: Arc<RwLock<Arc<Vec<reqwest::Client>>>>,
    local_networks: Arc<Vec<String>>,
    heartbeats: Arc<Mutex<Endpoint>>,
    /// Node id of each peer, by its first network address, for the detector lookup.
    ids: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl PeerClients {
    pub fn new(
        tls: &crate::transport::identity::NodeTls,
        local_networks: &[String],
        heartbeats: Arc<Mutex<Endpoint>>,
        revoked: &halo_security::revocation::Revoked,
    ) -> anyhow::Result<Self> {
        let by_network = Self::clients(tls, local_networks, revoked)?;
        Ok(Self {
            by_network: Arc::new(RwLock::new(Arc::new(by_network))),
            local_networks: Arc::new(local_networks.to_vec()),
            heartbeats,
            ids: Arc::new(Mutex::new(BTreeMap::new())),
        })
    }

    fn clients(
        tls: &crate::transport::identity::NodeTls,
        local_networks: &[String],
        revoked: &halo_security::revocation::Revoked,
    ) -> anyhow::Result<Vec<reqwest::Client>> {
        let mut by_network = Vec::new();
        for net in local_networks {
            let ip: std::net::IpAddr = net.parse::<std::net::SocketAddr>().context("network address")?.ip();
            let config = halo_security::tls::peer_client_config(&tls.ca_pem, &tls.cert_pem, &tls.key_pem, revoked)?;
            let client = reqwest::Client::builder()
                .tls_backend_preconfigured(config)
                .local_address(ip)
                .connect_timeout(Duration::from_millis(500))
                .pool_idle_timeout(Duration::from_secs(30))
                .no_proxy()
                .build()
                .context("building peer HTTPS client")?;
            by_network.push(client);
        }
        Ok(by_network)
    }

    /// Present a new certificate from now on (connections already open keep the old one
    /// until they close; it stays valid until it expires).
    pub fn reload(
        &self,
        tls: &crate::transport::identity::NodeTls,
        revoked: &halo_security::revocation::Revoked,
    ) -> anyhow::Result<()> {
        let fresh = Arc::new(Self::clients(tls, &self.local_networks, revoked)?);
        match self.by_network.write() {
            Ok(mut clients) => *clients = fresh,
            Err(_) => anyhow::bail!("peer clients lock poisoned"),
        }
        Ok(())
    }

    fn current(&self) -> Arc<Vec<reqwest::Client>> {
        self.by_network.read().map(|c| c.clone()).unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    pub fn remember(&self, id: u64, node: &PeerNode) {
        if let (Ok(mut ids), Some(first)) = (self.ids.lock(), node.networks.first()) {
            ids.insert(first.clone(), id);
        }
    }

    /// Network indexes of `node` in the order to try them: heard ones first.
    fn route(&self, node: &PeerNode) -> Vec<usize> {
        let count = node.networks.len().min(self.local_networks.len());
        let id = node.networks.first().and_then(|a| self.ids.lock().ok().and_then(|ids| ids.get(a).copied()));
        let now = clock::monotonic_ms();
        let heard = |i: usize| {
            id.is_some_and(|id| self.heartbeats.lock().map(|h| h.network_alive(id, i, now)).unwrap_or(false))
        };
        let mut order: Vec<usize> = (0..count).filter(|&i| heard(i)).collect();
        order.extend((0..count).filter(|&i| !heard(i)));
        order
    }

    /// POST `body` as JSON to `path` on `node`, trying its networks in route order.
    pub async fn post<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        node: &PeerNode,
        path: &str,
        body: &Req,
        timeout: Duration,
    ) -> Result<Resp, PeerError> {
        let body = serde_json::to_vec(body).map_err(|e| PeerError::Protocol(format!("encoding {path}: {e}")))?;
        self.post_bytes(node, path, JSON, body.into(), timeout).await
    }

    /// POST `body` (of `content_type`) to `path` on `node`, trying its networks in route order.
    pub async fn post_bytes<Resp: DeserializeOwned>(
        &self,
        node: &PeerNode,
        path: &str,
        content_type: &'static str,
        body: axum::body::Bytes,
        timeout: Duration,
    ) -> Result<Resp, PeerError> {
        let reply = self.post_raw(node, path, content_type, body, timeout).await?;
        serde_json::from_slice(&reply).map_err(|e| PeerError::Protocol(format!("{path} on {}: {e}", node.name)))
    }

    /// POST `body` to `path` on `node`; the reply's bytes.
    async fn post_raw(
        &self,
        node: &PeerNode,
        path: &str,
        content_type: &'static str,
        body: axum::body::Bytes,
        timeout: Duration,
    ) -> Result<axum::body::Bytes, PeerError> {
        let mut last = PeerError::Unreachable(format!("node '{}' has no network in common with us", node.name));
        let clients = self.current();
        for i in self.route(node) {
            let url = format!("https://{}{path}", node.networks[i]);
            let request = clients[i]
                .post(&url)
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body.clone())
                .timeout(timeout);
            match request.send().await {
                Ok(resp) if resp.status().is_success() => {
                    return resp.bytes().await.map_err(|e| PeerError::Protocol(format!("{url}: {e}")));
                }
                Ok(resp) => {
                    let status = resp.status();
                    let text = resp.text().await.unwrap_or_default();
                    return Err(PeerError::Status(status.as_u16(), text));
                }
                Err(e) if e.is_connect() || e.is_timeout() => last = PeerError::Unreachable(format!("{url}: {e}")),
                Err(e) => last = PeerError::Unreachable(format!("{url}: {e}")),
            }
        }
        Err(last)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("unreachable: {0}")]
    Unreachable(String),
    #[error("peer answered {0}: {1}")]
    Status(u16, String),
    #[error("bad answer from peer: {0}")]
    Protocol(String),
}

/// Raft's messages travel over the same clients and routes as everything else.
impl RaftTransport for PeerClients {
    fn remember(&self, id: u64, node: &PeerNode) {
        PeerClients::remember(self, id, node);
    }

    async fn send(
        &self,
        node: &PeerNode,
        route: RaftRoute,
        content_type: &'static str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, SendError> {
        match self.post_raw(node, route.path(), content_type, body.into(), timeout).await {
            Ok(reply) => Ok(reply.to_vec()),
            Err(e @ PeerError::Unreachable(_)) => Err(SendError::Unreachable(e.to_string())),
            Err(e) => Err(SendError::Failed(e.to_string())),
        }
    }
}
