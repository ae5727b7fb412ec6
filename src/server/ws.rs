//! The WebSocket upgrade: admission checks before a connection exists.

use super::connection;
use crate::gateway::{ConnectionSlot, Gateway};
use axum::extract::ws::{rejection::WebSocketUpgradeRejection, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;

/// Read and write buffers stay small so an idle connection costs little.
const SOCKET_BUFFER_BYTES: usize = 4096;

pub async fn upgrade(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Ok(ws) = ws else {
        return refuse(
            StatusCode::UPGRADE_REQUIRED,
            "this endpoint speaks WebSocket; connect with a WebSocket client",
        );
    };
    if gw.is_draining() {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the gateway is shutting down",
        );
    }
    let config = gw.config();
    if !origin_allowed(&headers, &config.gateway.allowed_origins) {
        tracing::warn!(%remote, "refused a WebSocket from a foreign origin");
        return refuse(StatusCode::FORBIDDEN, "origin not allowed");
    }
    let limits = &config.gateway.limits;
    let Some(slot) = ConnectionSlot::try_open(&gw, limits.max_connections.get() as usize) else {
        tracing::warn!(%remote, "refused a WebSocket: connection limit reached");
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "too many connections");
    };
    let max_payload = limits.max_payload_bytes as usize;
    ws.read_buffer_size(SOCKET_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_write_buffer_size(max_payload.saturating_mul(2))
        .max_message_size(max_payload)
        .max_frame_size(max_payload)
        .on_upgrade(move |socket| connection::run(gw, socket, remote, slot))
}

fn refuse(code: StatusCode, message: &str) -> Response {
    (code, Json(json!({ "error": message }))).into_response()
}

/// Browsers always send Origin; other clients usually do not. A browser
/// page may only connect from the gateway's own origin or a listed one,
/// so a web page on another site cannot drive a local gateway.
fn origin_allowed<S: AsRef<str>>(headers: &HeaderMap, allowed: &[S]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    if allowed
        .iter()
        .any(|a| a.as_ref().eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or_default();
    !host.is_empty() && origin_host.eq_ignore_ascii_case(host)
}
