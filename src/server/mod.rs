//! The HTTP and WebSocket server around one [`Gateway`].

mod admission;
mod connection;
mod hosts;
mod http;
pub mod listen;
mod metered;
pub(crate) mod openai_api;
mod openclaw;
mod outbound;
mod plugin_http;
mod sidecars;
pub use sidecars::Sidecars;
mod tls;
mod web;
mod ws;

use crate::gateway::Gateway;
use crate::protocol::types::{AuthConfigMode, BindInfo};
use admission::{Admission, Ticket};
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use hosts::HostPolicy;
use hyper_util::rt::{TokioIo, TokioTimer};
use metered::{Metered, ReadBudget};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

pub fn router(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route("/", get(ws::upgrade))
        .route("/ws", get(ws::upgrade))
        .route("/health", get(http::health))
        .route("/healthz", get(http::healthz))
        .route("/readyz", get(http::readyz))
        .route("/metrics", get(http::metrics))
        .route("/ui", get(web::ui))
        .route("/chat", get(web::chat))
        .route("/web/{name}", get(web::asset))
        .route(
            "/favicon.ico",
            get(|| async { axum::http::StatusCode::NO_CONTENT }),
        )
        .route("/v1/models", get(openai_api::models))
        .route("/plugins/{name}", axum::routing::any(plugin_http::route))
        .route("/plugins/{name}/", axum::routing::any(plugin_http::route))
        .route(
            "/plugins/{name}/{*rest}",
            axum::routing::any(plugin_http::route),
        )
        .route(
            "/v1/chat/completions",
            axum::routing::post(openai_api::completions),
        )
        .fallback(http::not_found)
        .with_state(Arc::clone(&gw))
        .merge(
            Router::new()
                .route(
                    "/hooks/{account}",
                    axum::routing::post(crate::channels::webhook::receive),
                )
                .with_state(Arc::clone(&gw.channels)),
        )
}

/// The listening sockets, all on one port.
pub struct Listeners {
    listeners: Vec<TcpListener>,
    /// Where the next accept starts looking, so a flood on one address
    /// cannot starve the others.
    next: std::sync::atomic::AtomicUsize,
    /// TLS on every listener (gateway.tls), or plain.
    tls: Option<tls::Tls>,
}

impl Listeners {
    /// The address shown to people: the first the bind mode chose.
    pub fn primary(&self) -> std::io::Result<SocketAddr> {
        self.listeners[0].local_addr()
    }

    /// The WebSocket scheme clients use: wss with TLS, else ws.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "wss"
        } else {
            "ws"
        }
    }

    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// The next connection on any of them, taking turns.
    async fn accept(&self) -> std::io::Result<(TcpStream, SocketAddr)> {
        use std::sync::atomic::Ordering;
        let count = self.listeners.len();
        std::future::poll_fn(|cx| {
            let start = self.next.fetch_add(1, Ordering::Relaxed);
            for i in 0..count {
                let listener = &self.listeners[(start + i) % count];
                if let std::task::Poll::Ready(accepted) = listener.poll_accept(cx) {
                    return std::task::Poll::Ready(accepted);
                }
            }
            std::task::Poll::Pending
        })
        .await
    }
}

/// Resolves the bind mode, listens, and records where in the gateway.
pub async fn bind(gw: &Gateway) -> std::io::Result<Listeners> {
    let config = gw.config();
    let interfaces = listen::interfaces().unwrap_or_else(|e| {
        tracing::warn!("cannot list the network interfaces: {e}");
        Vec::new()
    });
    let plan = listen::plan(&config.gateway, &interfaces, listen::can_bind)
        .map_err(std::io::Error::other)?;
    if plan.beyond_loopback() && config.gateway.auth.mode == AuthConfigMode::None {
        return Err(std::io::Error::other(format!(
            "refusing to listen beyond loopback without authentication ({}); set gateway.auth.mode to token or password",
            plan.reason
        )));
    }
    let tls = tls::start(gw, &plan, &interfaces).map_err(std::io::Error::other)?;
    let listeners = Listeners {
        listeners: bind_all(&plan.hosts, config.gateway.port).await?,
        next: Default::default(),
        tls,
    };
    let local = listeners.primary()?;
    let _ = gw.info.bind.set(BindInfo {
        mode: plan.mode.clone(),
        host: local.ip().to_string(),
        port: local.port(),
        addresses: listeners
            .addresses()
            .iter()
            .map(|a| a.ip().to_string())
            .collect(),
        reason: plan.reason.clone(),
    });
    if let Some(tls) = &listeners.tls {
        let info = tls.certificates.info();
        tracing::info!(reason = %plan.reason, fingerprint = %info.fingerprint, cert = %info.cert_path, "listening with TLS (wss://, https://); clients can pin the certificate's SHA-256 fingerprint");
    } else if let Some(risk) = tls::plaintext_risk(&config, &plan) {
        tracing::warn!("{risk}");
    } else if plan.beyond_loopback() {
        tracing::warn!(reason = %plan.reason, "listening beyond loopback; clients must authenticate");
    } else {
        tracing::info!(reason = %plan.reason, "listening");
    }
    Ok(listeners)
}

/// Listens on every host at one port. Port 0 lets the first host pick a
/// free port, which may be taken on another address: then the whole set
/// is tried again.
async fn bind_all(hosts: &[String], port: u16) -> std::io::Result<Vec<TcpListener>> {
    const ATTEMPTS: usize = 8;
    let mut attempt = 0;
    'again: loop {
        attempt += 1;
        let mut chosen = port;
        let mut listeners = Vec::with_capacity(hosts.len());
        for host in hosts {
            let addr = listen::with_port(host, chosen);
            match TcpListener::bind(&addr).await {
                Ok(listener) => {
                    chosen = listener.local_addr()?.port();
                    listeners.push(listener);
                }
                Err(e)
                    if port == 0
                        && !listeners.is_empty()
                        && e.kind() == std::io::ErrorKind::AddrInUse
                        && attempt < ATTEMPTS =>
                {
                    continue 'again;
                }
                Err(e) => {
                    return Err(std::io::Error::new(
                        e.kind(),
                        format!("cannot listen on {addr}: {e}"),
                    ))
                }
            }
        }
        return Ok(listeners);
    }
}

/// Publishes the gateway (Tailscale) and advertises it (mDNS), as the
/// config asks; call after [`bind`]. Errs only when a required publish
/// fails.
pub async fn start_sidecars(gw: &Arc<Gateway>) -> std::io::Result<Sidecars> {
    sidecars::start(gw).await
}

/// Serves until `shutdown` resolves, then drains: clients get
/// gateway.closing, in-flight requests get drainTimeoutMs to finish, and
/// every socket is closed with a normal close frame. Whatever clients do,
/// the drain ends after drainTimeoutMs (plus the close handshake).
pub async fn serve(
    gw: Arc<Gateway>,
    listeners: Listeners,
    sidecars: Sidecars,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut sidecars = sidecars;
    let running = match gw.start().await {
        Ok(running) => running,
        Err(e) => {
            sidecars.stop(&gw).await;
            return Err(e);
        }
    };
    let app = router(Arc::clone(&gw));
    let admission = Arc::new(Admission::default());
    if let Some(tls) = &listeners.tls {
        let interval = Duration::from_millis(gw.config().gateway.tls.watch_interval_ms as u64);
        tokio::spawn(Arc::clone(&tls.certificates).watch(interval, gw.shutdown_signal()));
    }
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listeners.accept() => match accepted {
                Ok((tcp, remote)) => {
                    let accepted = Accepted { tcp, remote, admission: &admission, tls: listeners.tls.clone() };
                    connections.spawn(accepted.serve(Arc::clone(&gw), app.clone()));
                }
                Err(e) => {
                    // Out of file descriptors, most likely: let some close.
                    tracing::warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listeners);
    sidecars.withdraw().await;
    tracing::info!("shutting down: draining connections");
    gw.begin_shutdown("shutdown", None);
    let drain = Duration::from_millis(gw.config().gateway.shutdown.drain_timeout_ms as u64);
    let deadline = tokio::time::Instant::now() + drain + CLOSE_GRACE;
    let http_done = tokio::time::timeout_at(deadline, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if http_done.is_err() {
        tracing::warn!("HTTP requests still open at the end of the drain were cut off");
        connections.shutdown().await;
    }
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    if !gw.connections.wait_all_closed(left).await {
        tracing::warn!("some connections did not close in time");
    }
    sidecars.stop(&gw).await;
    gw.stop(running, drain).await;
    Ok(())
}

/// Time on top of drainTimeoutMs for close frames to go out.
const CLOSE_GRACE: Duration = Duration::from_secs(3);
/// Largest request head (request line and headers) read from a client.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// What handlers learn about the connection a request came on.
#[derive(Clone)]
pub struct Peer {
    pub remote: SocketAddr,
    pub local: SocketAddr,
    /// Caps what the socket may read while a WebSocket is unauthenticated.
    pub budget: Arc<ReadBudget>,
    /// The connection's place among unauthenticated ones; a WebSocket
    /// takes it and keeps it until connect succeeds.
    pub ticket: Arc<std::sync::Mutex<Option<Ticket>>>,
    pub admission: Arc<Admission>,
}

impl Peer {
    /// The connection presented the gateway credential: it leaves the
    /// unauthenticated ones, so it is neither capped nor evicted with them.
    pub fn authenticated(&self) {
        self.ticket.lock().expect("ticket lock").take();
    }
}

struct Accepted<'a> {
    tcp: TcpStream,
    remote: SocketAddr,
    admission: &'a Arc<Admission>,
    tls: Option<tls::Tls>,
}

impl Accepted<'_> {
    /// Serves HTTP on one connection until it closes, is upgraded to a
    /// WebSocket, is evicted to make room, or the gateway shuts down.
    fn serve(self, gw: Arc<Gateway>, app: Router) -> impl Future<Output = ()> + Send + 'static {
        let config = gw.config();
        let limits = &config.gateway.limits;
        let ticket = self.admission.admit(
            self.remote.ip(),
            limits.max_unauthenticated_connections.get() as usize,
            limits.max_unauthenticated_per_address.get() as usize,
        );
        let eviction = ticket.eviction();
        if let Err(e) = self.tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
        let local = self
            .tcp
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        let budget = Arc::new(ReadBudget::default());
        let peer = Peer {
            remote: self.remote,
            local,
            budget: Arc::clone(&budget),
            ticket: Arc::new(std::sync::Mutex::new(Some(ticket))),
            admission: Arc::clone(self.admission),
        };
        let header_timeout = Duration::from_millis(limits.http_header_timeout_ms as u64);
        let mut closing = gw.shutdown_signal();
        // HSTS only for a pair browsers can trust: with a self-signed one it
        // would forbid clicking through the certificate warning.
        let hsts = self
            .tls
            .as_ref()
            .is_some_and(|tls| !tls.certificates.generated());
        let tls_on = self.tls.is_some();
        let service_gw = Arc::clone(&gw);
        let service = hyper::service::service_fn(move |request| {
            handle(
                Arc::clone(&service_gw),
                app.clone(),
                peer.clone(),
                Served { tls: tls_on, hsts },
                request,
            )
        });
        let (tcp, tls) = (self.tcp, self.tls);
        async move {
            let http = |io| {
                hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(header_timeout)
                    .max_buf_size(MAX_HEAD_BYTES)
                    .serve_connection(io, service)
                    .with_upgrades()
            };
            let io: Box<dyn Io> = match tls {
                None => Box::new(tcp),
                Some(tls) => tokio::select! {
                    stream = tls::handshake(&tls, tcp, header_timeout) => match stream {
                        Some(stream) => Box::new(stream),
                        None => return,
                    },
                    _ = eviction.wait() => return,
                },
            };
            let conn = http(TokioIo::new(Metered::new(io, budget)));
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = eviction.wait() => return,
                _ = closing.wait_for(|closing| *closing) => {}
            }
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// A connection's byte stream: TCP, or TLS over TCP.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// How a connection is served: over TLS, and whether with HSTS.
#[derive(Clone, Copy)]
struct Served {
    tls: bool,
    hsts: bool,
}

/// Every request passes here first: the Host and Origin checks, then the
/// routes.
async fn handle(
    gw: Arc<Gateway>,
    mut app: Router,
    peer: Peer,
    served: Served,
    mut request: axum::http::Request<hyper::body::Incoming>,
) -> Result<Response, std::convert::Infallible> {
    let hsts = served.hsts && hosts::names_a_site(request.headers());
    let mut response = match refuse_foreign(&gw, &peer, served.tls, request.headers()) {
        Some(refusal) => refusal,
        None => {
            request.extensions_mut().insert(ConnectInfo(peer.remote));
            request.extensions_mut().insert(peer);
            tower_service::Service::call(&mut app, request.map(axum::body::Body::new)).await?
        }
    };
    if hsts {
        // Browsers that reached the gateway by name over https:// keep to it.
        response.headers_mut().insert(
            header::STRICT_TRANSPORT_SECURITY,
            axum::http::HeaderValue::from_static("max-age=31536000"),
        );
    }
    Ok(response)
}

/// A response when the request's Host is not this gateway's (DNS
/// rebinding) or a browser page of a foreign origin sent it.
fn refuse_foreign(gw: &Gateway, peer: &Peer, tls: bool, headers: &HeaderMap) -> Option<Response> {
    let config = gw.config();
    let port = gw.info.bind.get().map_or(peer.local.port(), |b| b.port);
    let policy = HostPolicy {
        port,
        listen_host: config.gateway.host.as_ref().map(|h| h.as_str()),
        tailnet_name: gw.tailscale.dns_name(),
        local_ip: peer.local.ip(),
        allowed_hosts: &config.gateway.allowed_hosts,
        allowed_origins: &config.gateway.allowed_origins,
        tls,
    };
    let host = headers.get(header::HOST).map(|h| h.to_str().unwrap_or(""));
    let Some(host) = host.filter(|h| policy.host_allowed(h)) else {
        tracing::warn!(remote = %peer.remote, host = ?host, "refused a request for a foreign Host");
        return Some(http::refuse(
            StatusCode::MISDIRECTED_REQUEST,
            "this gateway does not answer to that Host; list the name in gateway.allowedHosts to reach it by that name",
        ));
    };
    if let Some(origin) = headers.get(header::ORIGIN) {
        if !policy.origin_allowed(origin.to_str().unwrap_or("")) {
            tracing::warn!(remote = %peer.remote, host, origin = ?origin, "refused a request from a foreign origin");
            return Some(http::refuse(
                StatusCode::FORBIDDEN,
                "origin not allowed; list it in gateway.allowedOrigins to let its pages call the gateway",
            ));
        }
    }
    None
}
