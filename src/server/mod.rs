//! The HTTP and WebSocket server around one [`Gateway`].

mod connection;
mod http;
mod openai_api;
mod outbound;
mod web;
mod ws;

use crate::config::{is_loopback_host, listen_host};
use crate::gateway::Gateway;
use crate::protocol::types::BindInfo;
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

pub fn router(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route("/", get(ws::upgrade))
        .route("/ws", get(ws::upgrade))
        .route("/health", get(http::health))
        .route("/healthz", get(http::healthz))
        .route("/readyz", get(http::readyz))
        .route("/ui", get(web::ui))
        .route("/chat", get(web::chat))
        .route("/web/{name}", get(web::asset))
        .route(
            "/favicon.ico",
            get(|| async { axum::http::StatusCode::NO_CONTENT }),
        )
        .route("/v1/models", get(openai_api::models))
        .route(
            "/hooks/{account}",
            axum::routing::post(crate::channels::webhook::receive),
        )
        .route(
            "/v1/chat/completions",
            axum::routing::post(openai_api::completions),
        )
        .fallback(http::not_found)
        .with_state(gw)
}

/// Binds the configured address and records it in the gateway.
pub async fn bind(gw: &Gateway) -> std::io::Result<TcpListener> {
    let config = gw.config();
    let host = listen_host(&config.gateway);
    let addr = format!("{}:{}", bracket_v6(&host), config.gateway.port);
    let listener = TcpListener::bind(&addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
    let local = listener.local_addr()?;
    let _ = gw.info.bind.set(BindInfo {
        mode: if config.gateway.host.is_some() {
            "host".to_string()
        } else {
            config.gateway.bind.to_string()
        },
        host: local.ip().to_string(),
        port: local.port(),
    });
    if !is_loopback_host(&host) {
        tracing::warn!(%local, "listening beyond loopback; clients must authenticate");
    }
    Ok(listener)
}

fn bracket_v6(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// Serves until `shutdown` resolves, then drains: clients get
/// gateway.closing, in-flight requests get drainTimeoutMs to finish, and
/// every socket is closed with a normal close frame.
pub async fn serve(
    gw: Arc<Gateway>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let scheduler = crate::cron::spawn_scheduler(&gw)
        .await
        .map_err(|e| std::io::Error::other(format!("cannot load the cron jobs: {e}")))?;
    crate::nodes::load(&gw)
        .await
        .map_err(|e| std::io::Error::other(format!("cannot load the nodes: {e}")))?;
    let watchdog = crate::nodes::spawn_watchdog(&gw);
    gw.channels.apply(&gw);
    let ticker = gw.spawn_ticker();
    let watcher = gw.spawn_config_watcher();
    let app = router(Arc::clone(&gw)).into_make_service_with_connect_info::<SocketAddr>();
    let drain_gw = Arc::clone(&gw);
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down: draining connections");
            drain_gw.begin_shutdown("shutdown", None);
        })
        .await?;
    let drain = Duration::from_millis(gw.config().gateway.shutdown.drain_timeout_ms as u64);
    if !gw
        .connections
        .wait_all_closed(drain + Duration::from_secs(2))
        .await
    {
        tracing::warn!("some connections did not close in time");
    }
    if !crate::cron::wait_idle(&gw, drain).await {
        tracing::warn!(
            "cron runs still in progress at exit are recorded as interrupted at the next start"
        );
    }
    if let Err(e) = gw.cron.writer.flush().await {
        tracing::error!("cron changes may be lost: {e}");
    }
    gw.channels.stop_all();
    scheduler.abort();
    watchdog.abort();
    ticker.abort();
    if let Some(watcher) = watcher {
        watcher.abort();
    }
    Ok(())
}
