use crate::gateway::{AuthRefused, Gateway};
use crate::protocol::types::{GatewayState, Scope};
use axum::extract::{ConnectInfo, State};
use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;
use std::sync::Arc;

/// The health snapshot names nodes, channel errors and config paths, so
/// it needs the gateway credential (`Authorization: Bearer`); without one
/// the answer is liveness only.
pub async fn health(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(remote): ConnectInfo<std::net::SocketAddr>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    let config = gw.config();
    let auth = &config.gateway.auth;
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let snapshot = gw.health.snapshot();
    let Some(presented) = presented else {
        if auth.mode == crate::protocol::types::AuthConfigMode::None {
            return Json(snapshot).into_response();
        }
        return Json(json!({
            "state": snapshot.state,
            "detail": "send Authorization: Bearer <gateway token> for the full snapshot",
        }))
        .into_response();
    };
    match gw.check_bearer(remote.ip(), presented) {
        Err(AuthRefused::Limited(limited)) => {
            refuse(StatusCode::TOO_MANY_REQUESTS, &limited.message)
        }
        Err(AuthRefused::Invalid) => refuse(StatusCode::UNAUTHORIZED, "invalid credential"),
        Ok(()) if !crate::gateway::credential_grants(auth, Scope::OperatorRead) => refuse(
            StatusCode::FORBIDDEN,
            &format!(
                "the credential does not grant {} (gateway.auth.scopes)",
                Scope::OperatorRead
            ),
        ),
        Ok(()) => Json(snapshot).into_response(),
    }
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

/// A refusal with a JSON body `{"error": message}`.
pub fn refuse(code: StatusCode, message: &str) -> axum::response::Response {
    (code, Json(json!({ "error": message }))).into_response()
}

/// Whether the request says its body is JSON. Browsers can send
/// text/plain, form and multipart bodies to any site without asking it
/// first; requiring JSON makes a cross-site request need a preflight,
/// which the gateway never grants.
pub fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}
