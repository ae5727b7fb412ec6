use crate::gateway::Gateway;
use crate::protocol::types::GatewayState;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;
use std::sync::Arc;

pub async fn health(State(gw): State<Arc<Gateway>>) -> impl IntoResponse {
    Json(gw.health.snapshot())
}

/// Liveness: the process is up and serving HTTP.
pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "ok": true }))
}

/// Readiness: 200 while accepting work, 503 once draining.
pub async fn readyz(State(gw): State<Arc<Gateway>>) -> impl IntoResponse {
    let health = gw.health.snapshot();
    let ready = health.state == GatewayState::Ready;
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(json!({ "ready": ready, "state": health.state })))
}

pub async fn not_found(uri: Uri) -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        Json(json!({
            "error": "not found",
            "path": uri.path(),
            "hint": "WebSocket RPC is at / and /ws; HTTP: /health, /healthz, /readyz",
        })),
    )
}
