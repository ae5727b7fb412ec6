//! The OpenAI-compatible HTTP API: `POST /v1/chat/completions` (plain or
//! streamed as server-sent events) and `GET /v1/models`, off unless
//! `gateway.http.chatCompletions.enabled`. `model` names the agent;
//! without a `user` field each request is stateless, with one it is a
//! stored session `openai:<agentId>:<user>`.

use super::http::is_json;
use super::Peer;
use crate::agent::Agent;
use crate::agent::{Session, TurnDone, TurnRequest};
use crate::clock::now_ms;
use crate::gateway::{AuthRefused, Gateway};
use crate::protocol::types::{AuthConfigMode, ChatResultStopReason, Scope};
use crate::protocol::{ErrorCode, RpcError};
use axum::body::{Body, Bytes};
use axum::extract::{Extension, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::sync::Arc;

const MODEL_PREFIX: &str = "clawgate:";

pub async fn models(
    State(gw): State<Arc<Gateway>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
) -> Response {
    if let Some(refusal) = refusal(&gw, &headers, &peer, Scope::OperatorRead) {
        return refusal;
    }
    let config = gw.config();
    let mut ids: Vec<String> = config.agents.extra.keys().cloned().collect();
    if ids.is_empty() {
        ids.push(crate::agent::MAIN.to_string());
    }
    ids.sort();
    let created = (gw.rt.started_at_ms / 1000) as i64;
    let data: Vec<Value> = ids
        .iter()
        .map(|id| json!({"id": format!("{MODEL_PREFIX}{id}"), "object": "model", "created": created, "owned_by": "clawgate"}))
        .collect();
    Json(json!({"object": "list", "data": data})).into_response()
}

pub async fn completions(
    State(gw): State<Arc<Gateway>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // A chat turn, as over WebSocket.
    if let Some(refusal) = refusal(&gw, &headers, &peer, Scope::OperatorWrite) {
        return refusal;
    }
    if !is_json(&headers) {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the request as Content-Type: application/json",
            "invalid_request_error",
            None,
        );
    }
    let body = match gw.request_body(body).await {
        Ok(body) => body,
        Err(e) => return error(e.status, &e.message, "invalid_request_error", None),
    };
    let request = match parse(&body) {
        Ok(r) => r,
        Err(message) => {
            return error(
                StatusCode::BAD_REQUEST,
                &message,
                "invalid_request_error",
                None,
            )
        }
    };
    let config = gw.config();
    let agent_id = request
        .model
        .strip_prefix(MODEL_PREFIX)
        .unwrap_or(&request.model)
        .to_string();
    let agent = match Agent::resolve(&config, Some(&agent_id)) {
        Ok(agent) => agent,
        Err(e) => {
            return error(
                StatusCode::NOT_FOUND,
                &e.message,
                "invalid_request_error",
                Some("model_not_found"),
            )
        }
    };
    let created = (now_ms() / 1000) as i64;
    if request.stream {
        return stream(gw, agent, request, created);
    }
    match turn(&gw, agent, request.clone(), &mut |_| {}).await {
        Ok(done) => Json(json!({
            "id": format!("chatcmpl-{}", done.run_id),
            "object": "chat.completion",
            "created": created,
            "model": request.model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": done.text},
                "finish_reason": finish_reason(done.stop_reason),
            }],
            "usage": usage(&done),
        }))
        .into_response(),
        Err(e) => rpc_error(&e),
    }
}

#[derive(Clone)]
pub(crate) struct CompletionRequest {
    model: String,
    stream: bool,
    user: Option<String>,
    /// Earlier messages as (role, content).
    history: Vec<(String, String)>,
    message: String,
}

pub(crate) fn parse(body: &[u8]) -> Result<CompletionRequest, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not valid JSON: {e}"))?;
    let model = value["model"]
        .as_str()
        .ok_or("model is required")?
        .to_string();
    let messages = value["messages"]
        .as_array()
        .filter(|m| !m.is_empty())
        .ok_or("messages must be a non-empty array")?;
    let mut turns = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m["role"]
            .as_str()
            .ok_or(format!("messages[{i}].role is required"))?;
        let content =
            text_of(&m["content"]).ok_or(format!("messages[{i}].content must be text"))?;
        turns.push((role.to_string(), content));
    }
    let (last_role, message) = turns.pop().expect("non-empty");
    if last_role != "user" {
        return Err("the last message must have role user".to_string());
    }
    Ok(CompletionRequest {
        model,
        stream: value["stream"].as_bool().unwrap_or(false),
        user: value["user"]
            .as_str()
            .filter(|u| !u.is_empty())
            .map(str::to_string),
        history: turns,
        message,
    })
}

/// A message's text: a string, or the text parts of a content array.
fn text_of(content: &Value) -> Option<String> {
    match content {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => Some(
            parts
                .iter()
                .filter(|p| p["type"] == "text")
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join(""),
        ),
        _ => None,
    }
}

async fn turn(
    gw: &Gateway,
    agent: Agent,
    request: CompletionRequest,
    on_delta: &mut (dyn FnMut(&str) + Send),
) -> Result<TurnDone, RpcError> {
    let guard = match &request.user {
        Some(user) => Some(gw.turns.lock(format!("openai:{}:{user}", agent.id)).await?),
        None => None,
    };
    let session = match &guard {
        Some(guard) => Session::Stored(guard),
        None => Session::Stateless(request.history),
    };
    gw.turns
        .run(
            TurnRequest {
                agent,
                session,
                message: request.message,
                run_id: None,
                deadline: None,
            },
            on_delta,
        )
        .await
}

fn stream(gw: Arc<Gateway>, agent: Agent, request: CompletionRequest, created: i64) -> Response {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let model = request.model.clone();
    let chunk = move |delta: Value, finish: Option<&str>| {
        let event = json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        });
        Bytes::from(format!("data: {event}\n\n"))
    };
    tokio::spawn(async move {
        let _ = tx.send(chunk(json!({"role": "assistant", "content": ""}), None));
        let sender = tx.clone();
        let delta_chunk = chunk.clone();
        let mut on_delta = move |text: &str| {
            let _ = sender.send(delta_chunk(json!({"content": text}), None));
        };
        match turn(&gw, agent, request, &mut on_delta).await {
            Ok(done) => {
                let mut last = String::from_utf8(
                    chunk(json!({}), Some(finish_reason(done.stop_reason))).to_vec(),
                )
                .expect("UTF-8");
                let with_usage: Value =
                    serde_json::from_str(last.trim_start_matches("data: ").trim())
                        .map(|mut v: Value| {
                            v["usage"] = usage(&done);
                            v
                        })
                        .expect("chunk JSON");
                last = format!("data: {with_usage}\n\n");
                let _ = tx.send(Bytes::from(last));
            }
            Err(e) => {
                let (_, kind, code) = status_of(&e);
                let body = json!({"error": {"message": e.message, "type": kind, "code": code}});
                let _ = tx.send(Bytes::from(format!("data: {body}\n\n")));
            }
        }
        let _ = tx.send(Bytes::from_static(b"data: [DONE]\n\n"));
    });
    let body = tokio_stream::wrappers::UnboundedReceiverStream::new(rx)
        .map(Ok::<_, std::convert::Infallible>);
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(body))
        .expect("SSE response")
}

fn finish_reason(stop: ChatResultStopReason) -> &'static str {
    match stop {
        ChatResultStopReason::Length => "length",
        ChatResultStopReason::Stop | ChatResultStopReason::Aborted => "stop",
    }
}

fn usage(done: &TurnDone) -> Value {
    json!({
        "prompt_tokens": done.usage.input_tokens,
        "completion_tokens": done.usage.output_tokens,
        "total_tokens": done.usage.input_tokens + done.usage.output_tokens,
    })
}

/// Why a request may not use the API (it is off, the bearer credential
/// is wrong or rate limited, or it does not grant `needed`); None when
/// it may.
fn refusal(gw: &Gateway, headers: &HeaderMap, peer: &Peer, needed: Scope) -> Option<Response> {
    let remote = peer.remote;
    let config = gw.config();
    if !config.gateway.http.chat_completions.enabled {
        return Some(error(
            StatusCode::NOT_FOUND,
            "the OpenAI-compatible API is off; set gateway.http.chatCompletions.enabled = true",
            "invalid_request_error",
            None,
        ));
    }
    let auth = &config.gateway.auth;
    if auth.mode == AuthConfigMode::None {
        return Some(error(
            StatusCode::FORBIDDEN,
            "the OpenAI-compatible API needs a credential: set gateway.auth.mode to token or password",
            "invalid_request_error",
            None,
        ));
    }
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    match gw.check_bearer(remote.ip(), presented) {
        Ok(()) => {}
        Err(AuthRefused::Limited(limited)) => {
            let mut response = error(
                StatusCode::TOO_MANY_REQUESTS,
                &limited.message,
                "rate_limit_error",
                None,
            );
            let wait_ms = limited.retry_after_ms.unwrap_or(1000);
            let seconds = wait_ms.div_ceil(1000).to_string();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, seconds.parse().expect("digits"));
            return Some(response);
        }
        Err(AuthRefused::Invalid) => {
            return Some(error(
                StatusCode::UNAUTHORIZED,
                "invalid API key: send Authorization: Bearer <gateway token or password>",
                "invalid_request_error",
                Some("invalid_api_key"),
            ))
        }
    }
    peer.authenticated();
    if !crate::gateway::credential_grants(auth, needed) {
        return Some(error(
            StatusCode::FORBIDDEN,
            &format!("the credential does not grant {needed} (gateway.auth.scopes)"),
            "permission_error",
            None,
        ));
    }
    None
}

fn status_of(e: &RpcError) -> (StatusCode, &'static str, &'static str) {
    match e.code {
        ErrorCode::NotFound => (StatusCode::NOT_FOUND, "invalid_request_error", "not_found"),
        ErrorCode::InvalidParams | ErrorCode::Conflict => (
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid_request",
        ),
        ErrorCode::Timeout => (StatusCode::GATEWAY_TIMEOUT, "api_error", "timeout"),
        ErrorCode::UpstreamError => (StatusCode::BAD_GATEWAY, "api_error", "upstream_error"),
        ErrorCode::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "api_error", "unavailable"),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            "internal_error",
        ),
    }
}

fn rpc_error(e: &RpcError) -> Response {
    let (status, kind, code) = status_of(e);
    error(status, &e.message, kind, Some(code))
}

/// An error in the OpenAI shape: `{"error": {message, type, code}}`.
fn error(status: StatusCode, message: &str, kind: &str, code: Option<&str>) -> Response {
    (
        status,
        Json(json!({"error": {"message": message, "type": kind, "param": null, "code": code}})),
    )
        .into_response()
}
