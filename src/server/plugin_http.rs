//! `/plugins/<name>/…`: the HTTP routes a plugin serves. Host and Origin
//! were checked for every request before this runs; here the bearer
//! credential must grant the scope the manifest names, and only the body
//! and a few harmless headers reach the plugin (never the credential or
//! cookies).

use super::http::{authorize, refuse, Access};
use crate::gateway::Gateway;
use crate::protocol::types::Scope;
use crate::protocol::ErrorCode;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// Request headers a plugin sees.
const FORWARDED: [header::HeaderName; 3] =
    [header::CONTENT_TYPE, header::ACCEPT, header::USER_AGENT];
/// Response headers a plugin may set.
const RETURNED: [header::HeaderName; 3] = [
    header::CONTENT_TYPE,
    header::CACHE_CONTROL,
    header::LOCATION,
];

pub async fn route(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(remote): ConnectInfo<std::net::SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let below = uri.path().strip_prefix("/plugins/").unwrap_or_default();
    let (name, path) = match below.split_once('/') {
        Some((name, rest)) => (name, format!("/{rest}")),
        None => (below, "/".to_string()),
    };
    let target = gw.plugins.http_target(name);
    // Which plugins exist is not told to requests without a credential.
    let scope = match &target {
        Some(Ok(target)) => target.scope,
        _ => Scope::OperatorRead,
    };
    match authorize(&gw, remote.ip(), &headers, scope) {
        Access::Granted => {}
        Access::NoCredential => {
            let mut response = refuse(
                StatusCode::UNAUTHORIZED,
                "send Authorization: Bearer <gateway token>",
            );
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
        Access::Refused(code, why) => return refuse(code, &why),
    }
    let target = match target {
        None => {
            return refuse(
                StatusCode::NOT_FOUND,
                &format!("no plugin {name} serves HTTP"),
            )
        }
        Some(Err(e)) => return from_error(&e),
        Some(Ok(target)) => target,
    };
    let body = match gw.request_body(body).await {
        Ok(bytes) => bytes,
        Err(e) => return refuse(e.status, &e.message),
    };
    let Ok(body) = String::from_utf8(body.to_vec()) else {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "plugin routes take text bodies (UTF-8)",
        );
    };
    let forwarded: Map<String, Value> = FORWARDED
        .iter()
        .filter_map(|h| {
            Some((
                h.as_str().to_string(),
                Value::from(headers.get(h)?.to_str().ok()?),
            ))
        })
        .collect();
    let mut request =
        json!({"method": method.as_str(), "path": path, "headers": forwarded, "body": body});
    if let Some(query) = uri.query() {
        request["query"] = Value::from(query);
    }
    match target.forward(request).await {
        Ok(answer) => respond(&answer),
        Err(e) => from_error(&e),
    }
}

/// The plugin's checked `PluginHttpResponse` as an HTTP response.
fn respond(answer: &Value) -> Response {
    let status = answer["status"]
        .as_u64()
        .and_then(|s| StatusCode::from_u16(s as u16).ok())
        .unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = (
        status,
        answer["body"].as_str().unwrap_or_default().to_string(),
    )
        .into_response();
    let out = response.headers_mut();
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    for (name, value) in answer["headers"].as_object().into_iter().flatten() {
        let Some(name) = RETURNED
            .iter()
            .find(|h| h.as_str().eq_ignore_ascii_case(name))
        else {
            continue;
        };
        if let Some(value) = value.as_str().and_then(|v| HeaderValue::from_str(v).ok()) {
            out.insert(name.clone(), value);
        }
    }
    out.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

fn from_error(e: &crate::protocol::RpcError) -> Response {
    let status = match e.code {
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::BAD_GATEWAY,
    };
    let mut response = refuse(status, &e.message);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}
