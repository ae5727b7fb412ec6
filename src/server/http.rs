use crate::gateway::{AuthRefused, Gateway};
use crate::protocol::types::{GatewayState, Role, Scope};
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
    let snapshot = gw.rt.health.snapshot();
    match may_read(&gw, remote.ip(), &headers) {
        Access::Granted => Json(snapshot).into_response(),
        Access::NoCredential => Json(json!({
            "state": snapshot.state,
            "detail": "send Authorization: Bearer <gateway token> for the full snapshot",
        }))
        .into_response(),
        Access::Refused(code, why) => refuse(code, &why),
    }
}

/// GET /metrics: off unless configured, and like the full /health it
/// needs a credential that grants operator.read.
pub async fn metrics(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(remote): ConnectInfo<std::net::SocketAddr>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    if !gw.config().gateway.http.metrics.enabled {
        return refuse(StatusCode::NOT_FOUND, "metrics are off in the config");
    }
    match may_read(&gw, remote.ip(), &headers) {
        Access::Granted => {}
        Access::NoCredential => {
            let mut response = refuse(
                StatusCode::UNAUTHORIZED,
                "send Authorization: Bearer <gateway token>",
            );
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
            return response;
        }
        Access::Refused(code, why) => return refuse(code, &why),
    }
    let counts = gw.connections.counts();
    let live = crate::metrics::Live {
        connections: vec![
            (Role::Operator.to_string(), counts.operator),
            (Role::Node.to_string(), counts.node),
            (
                "unauthenticated".to_string(),
                counts.total.saturating_sub(counts.operator + counts.node),
            ),
        ],
        channels: gw
            .channels
            .status()
            .into_iter()
            .map(|c| crate::metrics::ChannelCounts {
                channel: c.channel.to_string(),
                account: c.account_id,
                received: c.received,
                sent: c.replied,
                dropped: c.dropped,
            })
            .collect(),
    };
    let exposition = gw.rt.metrics.render(&live);
    let wants_openmetrics = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    let (content_type, body) = if wants_openmetrics {
        (crate::metrics::OPENMETRICS, exposition)
    } else {
        (
            crate::metrics::PROMETHEUS_TEXT,
            crate::metrics::prometheus_text(&exposition),
        )
    };
    ([(axum::http::header::CONTENT_TYPE, content_type)], body).into_response()
}

/// What a request's bearer credential allows.
pub(super) enum Access {
    Granted,
    /// No credential was sent, and one is needed.
    NoCredential,
    Refused(StatusCode, String),
}

/// Whether the request's bearer credential grants operator.read.
fn may_read(gw: &Gateway, ip: std::net::IpAddr, headers: &axum::http::HeaderMap) -> Access {
    authorize(gw, ip, headers, Scope::OperatorRead)
}

/// Whether the request's bearer credential grants `needed`.
pub(super) fn authorize(
    gw: &Gateway,
    ip: std::net::IpAddr,
    headers: &axum::http::HeaderMap,
    needed: Scope,
) -> Access {
    let config = gw.config();
    let auth = &config.gateway.auth;
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(presented) = presented else {
        return if auth.mode == crate::protocol::types::AuthConfigMode::None {
            Access::Granted
        } else {
            Access::NoCredential
        };
    };
    match gw.check_bearer(ip, presented) {
        Err(AuthRefused::Limited(limited)) => {
            Access::Refused(StatusCode::TOO_MANY_REQUESTS, limited.message)
        }
        Err(AuthRefused::Invalid) => {
            Access::Refused(StatusCode::UNAUTHORIZED, "invalid credential".into())
        }
        Ok(()) if !crate::gateway::credential_grants(auth, needed) => Access::Refused(
            StatusCode::FORBIDDEN,
            format!("the credential does not grant {needed} (gateway.auth.scopes)"),
        ),
        Ok(()) => Access::Granted,
    }
}

/// Liveness: the process is up and serving HTTP.
pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "ok": true }))
}

/// Readiness: 200 while accepting work, 503 once draining.
pub async fn readyz(State(gw): State<Arc<Gateway>>) -> impl IntoResponse {
    let health = gw.rt.health.snapshot();
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
