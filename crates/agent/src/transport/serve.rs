//! One HTTPS accept loop for both listeners (API and peer). The TLS configuration is read per
//! connection, so certificates can change when the agent joins a cluster without a restart.
//!
//! Every listener bounds what a client can hold: open connections in all and per address, the
//! TLS handshake, the time to send a request's headers, and a connection that sends and
//! receives nothing while no request of it is being answered (`ConnectionLimits`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::config::ConnectionLimits;

/// The current TLS configuration of a listener; `None` refuses every connection.
pub type TlsSlot = Arc<RwLock<Option<Arc<ServerConfig>>>>;

/// Who is on the other end of a request, available to handlers as an extension, and the
/// local address it reached (with the remote one, that names the connection).
#[derive(Debug, Clone, Copy)]
pub struct RemoteAddr(pub SocketAddr);

#[derive(Debug, Clone, Copy)]
pub struct LocalAddr(pub SocketAddr);

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn serve(listener: TcpListener, tls: TlsSlot, router: axum::Router, limits: ConnectionLimits) {
    let open = Arc::new(OpenConnections::new(limits.max, limits.per_address));
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = open.enter(remote.ip()) else {
            tracing::debug!(%remote, "connection refused: too many open connections");
            continue;
        };
        let config = tls.read().ok().and_then(|c| c.clone());
        let Some(config) = config else { continue };
        let router = router.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let _ = stream.set_nodelay(true);
            let Ok(local) = stream.local_addr() else { return };
            let accepted = tokio::time::timeout(HANDSHAKE_TIMEOUT, TlsAcceptor::from(config).accept(stream)).await;
            let stream: TlsStream<_> = match accepted {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%remote, "TLS handshake failed: {e}");
                    return;
                }
                Err(_) => return,
            };
            // On the peer listener the handshake verified it; on the API there is none.
            let identity = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(|cert| halo_security::revocation::identity(cert.as_ref()).ok())
                .map(crate::transport::peer_identity::PeerIdentity);
            let activity = Arc::new(Activity::new());
            let busy = activity.clone();
            let service = tower::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let mut req = req.map(axum::body::Body::new);
                req.extensions_mut().insert(RemoteAddr(remote));
                req.extensions_mut().insert(LocalAddr(local));
                if let Some(identity) = &identity {
                    req.extensions_mut().insert(identity.clone());
                }
                let (router, busy) = (router.clone(), busy.clone());
                async move {
                    let _answering = busy.answering();
                    tower::ServiceExt::oneshot(router, req).await
                }
            });
            let mut builder = Builder::new(TokioExecutor::new());
            builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_timeout());
            let io = TokioIo::new(Watched { inner: stream, activity: activity.clone() });
            let connection = builder.serve_connection(io, TowerToHyperService::new(service));
            tokio::select! {
                _ = connection => {}
                () = activity.idle_for(limits.idle_timeout()) => {
                    tracing::debug!(%remote, "closed an idle connection");
                }
            }
        });
    }
}

/// Open connections of one listener, in all and per client (`throttle::client`).
struct OpenConnections {
    max: usize,
    per_address: usize,
    by_client: Mutex<HashMap<IpAddr, usize>>,
    total: AtomicUsize,
}

impl OpenConnections {
    fn new(max: usize, per_address: usize) -> Self {
        Self { max, per_address, by_client: Mutex::new(HashMap::new()), total: AtomicUsize::new(0) }
    }

    /// A slot for a new connection from `remote`, or `None` when the caps are reached.
    fn enter(self: &Arc<Self>, remote: IpAddr) -> Option<Slot> {
        let client = crate::transport::throttle::client(remote);
        let mut by_client = self.by_client.lock().ok()?;
        let mine = by_client.entry(client).or_insert(0);
        if *mine >= self.per_address || self.total.load(Ordering::Relaxed) >= self.max {
            if *mine == 0 {
                by_client.remove(&client);
            }
            return None;
        }
        *mine += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        Some(Slot { open: self.clone(), client })
    }
}

/// One open connection; leaving frees its place.
struct Slot {
    open: Arc<OpenConnections>,
    client: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.total.fetch_sub(1, Ordering::Relaxed);
        if let Ok(mut by_client) = self.open.by_client.lock()
            && let Some(count) = by_client.get_mut(&self.client)
        {
            *count -= 1;
            if *count == 0 {
                by_client.remove(&self.client);
            }
        }
    }
}

/// When a connection last moved a byte, and how many of its requests are being answered.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
    answering: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Self { start: Instant::now(), last_ms: AtomicU64::new(0), answering: AtomicUsize::new(0) }
    }

    fn touch(&self) {
        self.last_ms.store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn answering(self: &Arc<Self>) -> Answering {
        self.answering.fetch_add(1, Ordering::Relaxed);
        Answering(self.clone())
    }

    /// Resolves once no byte moved for `idle` while no request was being answered (a request
    /// that takes long to answer, like a validation, is not idleness).
    async fn idle_for(&self, idle: Duration) {
        let idle_ms = idle.as_millis() as u64;
        let mut tick = tokio::time::interval((idle / 4).max(Duration::from_millis(100)));
        loop {
            tick.tick().await;
            let now = self.start.elapsed().as_millis() as u64;
            if self.answering.load(Ordering::Relaxed) > 0 {
                self.touch();
            } else if now.saturating_sub(self.last_ms.load(Ordering::Relaxed)) >= idle_ms {
                return;
            }
        }
    }
}

struct Answering(Arc<Activity>);

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.touch();
        self.0.answering.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A stream that records when bytes move through it.
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_capped_in_all_and_per_client_and_leaving_frees_the_place() {
        let open = Arc::new(OpenConnections::new(3, 2));
        let a: IpAddr = "192.0.2.1".parse().expect("address");
        let b: IpAddr = "192.0.2.2".parse().expect("address");
        let first = open.enter(a).expect("room");
        let _second = open.enter(a).expect("room");
        assert!(open.enter(a).is_none(), "a third from one client");
        let _third = open.enter(b).expect("room for another client");
        assert!(open.enter("192.0.2.3".parse().expect("address")).is_none(), "over the total");
        drop(first);
        assert!(open.enter(a).is_some(), "a closed connection frees its place");
    }
}
