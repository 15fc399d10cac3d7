//! One HTTPS accept loop for both listeners (API and peer). The TLS configuration is read per
//! connection, so certificates can change when the agent joins a cluster without a restart.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// The current TLS configuration of a listener; `None` refuses every connection.
pub type TlsSlot = Arc<RwLock<Option<Arc<ServerConfig>>>>;

/// Who is on the other end of a request, available to handlers as an extension.
#[derive(Debug, Clone, Copy)]
pub struct RemoteAddr(pub SocketAddr);

/// Whether the client presented a certificate issued by the cluster CA (peer listener only).
#[derive(Debug, Clone, Copy)]
pub struct PeerVerified(pub bool);

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn serve(listener: TcpListener, tls: TlsSlot, router: axum::Router) {
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let config = tls.read().ok().and_then(|c| c.clone());
        let Some(config) = config else { continue };
        let router = router.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let accepted = tokio::time::timeout(HANDSHAKE_TIMEOUT, TlsAcceptor::from(config).accept(stream)).await;
            let stream: TlsStream<_> = match accepted {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%remote, "TLS handshake failed: {e}");
                    return;
                }
                Err(_) => return,
            };
            let verified = PeerVerified(stream.get_ref().1.peer_certificates().is_some_and(|c| !c.is_empty()));
            let service = tower::ServiceExt::map_request(router, move |req: hyper::Request<hyper::body::Incoming>| {
                let mut req = req.map(axum::body::Body::new);
                req.extensions_mut().insert(RemoteAddr(remote));
                req.extensions_mut().insert(verified);
                req
            });
            let _ = Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                .await;
        });
    }
}
