//! The WebSocket upgrade: admission checks before a connection exists.
//! Host and Origin were checked for every request before this runs.

use super::{connection, http::refuse, Peer};
use crate::gateway::{ConnectionSlot, Gateway};
use axum::extract::ws::{rejection::WebSocketUpgradeRejection, WebSocketUpgrade};
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use std::sync::Arc;

/// Read and write buffers stay small so an idle connection costs little.
const SOCKET_BUFFER_BYTES: usize = 4096;
/// Frame headers and the tail of a read chunk that may arrive with the
/// largest allowed pre-auth frame.
const PRE_AUTH_SLACK_BYTES: usize = 2 * SOCKET_BUFFER_BYTES;

pub async fn upgrade(
    State(gw): State<Arc<Gateway>>,
    Extension(peer): Extension<Peer>,
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
    let limits = &config.gateway.limits;
    let ticket = peer.ticket.lock().expect("ticket lock").take();
    let ticket = ticket.unwrap_or_else(|| {
        peer.admission.admit(
            peer.remote.ip(),
            limits.max_unauthenticated_connections.get() as usize,
            limits.max_unauthenticated_per_address.get() as usize,
        )
    });
    let pre_auth = limits.max_pre_auth_payload_bytes as usize;
    peer.budget.limit_to(pre_auth + PRE_AUTH_SLACK_BYTES);
    let slot = ConnectionSlot::open(&gw);
    let max_payload = limits.max_payload_bytes as usize;
    let remote = peer.remote;
    let budget = peer.budget;
    let serve_claim = if crate::tailscale::identity_allowed(&config.gateway) {
        crate::tailscale::claim(remote, peer.local, &headers)
            .await
            .map(Box::new)
    } else {
        None
    };
    ws.read_buffer_size(SOCKET_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_write_buffer_size(max_payload.saturating_mul(2))
        .max_message_size(max_payload)
        .max_frame_size(max_payload)
        .on_upgrade(move |socket| {
            connection::run(
                gw,
                socket,
                remote,
                slot,
                connection::PreAuth {
                    ticket,
                    budget,
                    serve_claim,
                },
            )
        })
}
