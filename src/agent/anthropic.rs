//! The `anthropic` provider: the Messages API, streamed over server-sent
//! events, with thinking blocks passed on as reasoning deltas.

use super::{sse::SseLines, Delta, OnDelta, Reply, Turn};
use crate::protocol::types::{ChatResultStopReason, Usage};
use crate::protocol::RpcError;
use futures_util::StreamExt;
use serde_json::{json, Value};

const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
const API_VERSION: &str = "2023-06-01";
/// The Messages API requires max_tokens; used when the agent sets none.
const DEFAULT_MAX_TOKENS: u64 = 4096;

pub async fn reply(turn: &Turn<'_>, on_delta: &mut OnDelta<'_>) -> Result<Reply, RpcError> {
    let config = turn.config;
    let base = config
        .base_url
        .as_deref()
        .unwrap_or(DEFAULT_BASE_URL)
        .trim_end_matches('/');
    // The API takes only user and assistant turns; the system prompt is separate.
    let mut messages: Vec<Value> = turn
        .history
        .iter()
        .filter(|(role, _)| role == "user" || role == "assistant")
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect();
    messages.push(json!({"role": "user", "content": turn.message}));
    let mut body = json!({
        "model": turn.model,
        "messages": messages,
        "max_tokens": config.max_tokens.map_or(DEFAULT_MAX_TOKENS, |m| m.get()),
        "stream": true,
    });
    if let Some(system) = &config.system {
        body["system"] = json!(system);
    }
    if let Some(t) = config.temperature {
        body["temperature"] = json!(t);
    }
    let mut request = turn
        .http
        .post(format!("{base}/v1/messages"))
        .header("anthropic-version", API_VERSION)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_string());
    if let Some(key) = &config.api_key {
        request = request.header("x-api-key", key.as_str());
    }
    let response = request
        .send()
        .await
        .map_err(|e| super::transport_error(turn.agent_id, &e))?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| text.chars().take(300).collect());
        return Err(super::status_error(
            turn.agent_id,
            status.as_u16(),
            &message,
        ));
    }
    let mut text = String::new();
    let mut usage = Usage {
        input_tokens: 0,
        output_tokens: 0,
    };
    let mut stop = None;
    let mut lines = SseLines::default();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| super::transport_error(turn.agent_id, &e))?;
        for data in lines.push(&chunk) {
            let event: Value = serde_json::from_str(&data).map_err(|e| {
                super::malformed(turn.agent_id, &format!("an event is not JSON: {e}"))
            })?;
            match event["type"].as_str() {
                Some("message_start") => {
                    let u = &event["message"]["usage"];
                    usage.input_tokens = u["input_tokens"].as_u64().unwrap_or(0);
                    usage.output_tokens = u["output_tokens"].as_u64().unwrap_or(0);
                }
                Some("content_block_delta") => {
                    let delta = &event["delta"];
                    match delta["type"].as_str() {
                        Some("text_delta") => {
                            if let Some(t) = delta["text"].as_str() {
                                text.push_str(t);
                                on_delta(Delta::Text(t));
                            }
                        }
                        Some("thinking_delta") => {
                            if let Some(t) = delta["thinking"].as_str() {
                                on_delta(Delta::Thinking(t));
                            }
                        }
                        _ => {}
                    }
                }
                Some("message_delta") => {
                    if let Some(out) = event["usage"]["output_tokens"].as_u64() {
                        usage.output_tokens = out;
                    }
                    stop = event["delta"]["stop_reason"].as_str().map(|r| match r {
                        "max_tokens" => ChatResultStopReason::Length,
                        _ => ChatResultStopReason::Stop,
                    });
                }
                Some("message_stop") => {
                    let stop_reason = stop.ok_or_else(|| {
                        super::malformed(turn.agent_id, "message_stop before a stop_reason")
                    })?;
                    return Ok(Reply {
                        text,
                        usage,
                        stop_reason,
                    });
                }
                Some("error") => {
                    let kind = event["error"]["type"].as_str().unwrap_or("error");
                    let message = event["error"]["message"].as_str().unwrap_or_default();
                    let status = if kind == "overloaded_error" { 529 } else { 500 };
                    return Err(super::status_error(
                        turn.agent_id,
                        status,
                        &format!("{kind}: {message}"),
                    ));
                }
                _ => {}
            }
        }
    }
    Err(super::malformed(
        turn.agent_id,
        "the stream ended before message_stop",
    ))
}
