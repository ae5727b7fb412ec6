//! The gateway's own pages: the Control UI at /ui and WebChat at /chat,
//! embedded in the binary, served with a strict Content-Security-Policy
//! (no inline scripts, nothing from elsewhere, no framing).

use crate::gateway::Gateway;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The embedded files: name, content type, content.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "ui.html",
        "text/html; charset=utf-8",
        include_str!("../../web/ui.html"),
    ),
    (
        "chat.html",
        "text/html; charset=utf-8",
        include_str!("../../web/chat.html"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../../web/style.css"),
    ),
    (
        "session.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/session.js"),
    ),
    (
        "ui.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/ui.js"),
    ),
    (
        "chat.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/chat.js"),
    ),
    // The generated TypeScript client is the pages' client.
    (
        "client.js",
        "text/javascript; charset=utf-8",
        crate::sdk::CLIENT_JS,
    ),
];

pub async fn ui(State(gw): State<Arc<Gateway>>) -> Response {
    serve(&gw, "ui.html")
}

pub async fn chat(State(gw): State<Arc<Gateway>>) -> Response {
    serve(&gw, "chat.html")
}

pub async fn asset(State(gw): State<Arc<Gateway>>, Path(name): Path<String>) -> Response {
    serve(&gw, &name)
}

fn serve(gw: &Gateway, name: &str) -> Response {
    let found = ASSETS.iter().find(|(n, _, _)| *n == name);
    let (Some((_, content_type, body)), true) = (found, gw.config().gateway.control_ui.enabled)
    else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({"error": "not found"})),
        )
            .into_response();
    };
    let mut response = (StatusCode::OK, *body).into_response();
    let headers = response.headers_mut();
    let set = |headers: &mut axum::http::HeaderMap, name, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(headers, header::CONTENT_TYPE, content_type);
    set(headers, header::CONTENT_SECURITY_POLICY, CSP);
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::REFERRER_POLICY, "no-referrer");
    set(headers, header::CACHE_CONTROL, "no-cache");
    response
}
