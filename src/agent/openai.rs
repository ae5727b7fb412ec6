//! The `openai` provider: any OpenAI-compatible chat-completions endpoint,
//! streamed over server-sent events.

use super::{sse::SseLines, Reply, Turn};
use crate::protocol::types::{ChatResultStopReason, Usage};
use crate::protocol::RpcError;
use futures_util::StreamExt;
use serde_json::{json, Value};

const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

pub async fn reply(turn: &Turn<'_>, on_delta: &mut super::OnDelta<'_>) -> Result<Reply, RpcError> {
    let config = turn.config;
    let base = config
        .base_url
        .as_deref()
        .unwrap_or(DEFAULT_BASE_URL)
        .trim_end_matches('/');
    let mut messages = Vec::new();
    if let Some(system) = &config.system {
        messages.push(json!({"role": "system", "content": system}));
    }
    for (role, content) in &turn.history {
        messages.push(json!({"role": role, "content": content}));
    }
    messages.push(json!({"role": "user", "content": turn.message}));
    let mut body = json!({
        "model": turn.model,
        "messages": messages,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    if let Some(t) = config.temperature {
        body["temperature"] = json!(t);
    }
    if let Some(max) = config.max_tokens {
        body["max_tokens"] = json!(max.get());
    }
    let mut request = turn
        .http
        .post(format!("{base}/chat/completions"))
        .json_body(&body);
    if let Some(key) = &config.api_key {
        request = request.bearer_auth(key.as_str());
    }
    let response = request
        .send()
        .await
        .map_err(|e| super::transport_error(turn.agent_id, &e))?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        return Err(super::status_error(
            turn.agent_id,
            status.as_u16(),
            &upstream_message(&text),
        ));
    }
    let mut text = String::new();
    let mut usage = None;
    let mut stop = None;
    let mut lines = SseLines::default();
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| super::transport_error(turn.agent_id, &e))?;
        for data in lines.push(&chunk) {
            if data == "[DONE]" {
                return finish(turn.agent_id, text, usage, stop);
            }
            let event: Value = serde_json::from_str(&data).map_err(|e| {
                super::malformed(turn.agent_id, &format!("an event is not JSON: {e}"))
            })?;
            if let Some(error) = event.get("error") {
                return Err(super::status_error(turn.agent_id, 502, &error.to_string()));
            }
            if let Some(choice) = event["choices"].get(0) {
                if let Some(delta) = choice["delta"]["content"]
                    .as_str()
                    .filter(|d| !d.is_empty())
                {
                    text.push_str(delta);
                    on_delta(super::Delta::Text(delta));
                }
                if let Some(reason) = choice["finish_reason"].as_str() {
                    stop = Some(if reason == "length" {
                        ChatResultStopReason::Length
                    } else {
                        ChatResultStopReason::Stop
                    });
                }
            }
            if let Some(u) = event.get("usage").filter(|u| u.is_object()) {
                usage = Some(Usage {
                    input_tokens: u["prompt_tokens"].as_u64().unwrap_or(0),
                    output_tokens: u["completion_tokens"].as_u64().unwrap_or(0),
                });
            }
        }
    }
    Err(super::malformed(
        turn.agent_id,
        "the stream ended before [DONE]",
    ))
}

fn finish(
    agent_id: &str,
    text: String,
    usage: Option<Usage>,
    stop: Option<ChatResultStopReason>,
) -> Result<Reply, RpcError> {
    let Some(stop_reason) = stop else {
        return Err(super::malformed(
            agent_id,
            "the stream ended without a finish_reason",
        ));
    };
    Ok(Reply {
        usage: usage.unwrap_or(Usage {
            input_tokens: 0,
            output_tokens: 0,
        }),
        text,
        stop_reason,
    })
}

fn upstream_message(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.chars().take(300).collect())
}

trait JsonBody {
    fn json_body(self, body: &Value) -> Self;
}

impl JsonBody for reqwest::RequestBuilder {
    fn json_body(self, body: &Value) -> Self {
        self.header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
    }
}
