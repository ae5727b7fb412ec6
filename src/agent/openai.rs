//! The `openai` provider: any OpenAI-compatible chat-completions endpoint,
//! streamed over server-sent events, with tool calls: the model asks, the
//! tool runs, the result goes back, the model answers.

use super::{sse::SseStream, Delta, OnDelta, Reply, Turn};
use crate::protocol::types::{ChatResultStopReason, Usage};
use crate::protocol::RpcError;
use serde_json::{json, Value};

const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
/// Model → tools → model exchanges allowed in one turn.
const MAX_TOOL_ROUNDS: usize = 8;

/// One streamed response.
#[derive(Default)]
struct Round {
    text: String,
    usage: Option<Usage>,
    finish: Option<String>,
    calls: Vec<ToolCall>,
}

#[derive(Default, Clone)]
struct ToolCall {
    id: String,
    name: String,
    arguments: String,
}

pub async fn reply(turn: &Turn<'_>, on_delta: &mut OnDelta<'_>) -> Result<Reply, RpcError> {
    let config = turn.config;
    let mut messages = Vec::new();
    if let Some(system) = &config.system_prompt {
        messages.push(json!({"role": "system", "content": system}));
    }
    for (role, content) in &turn.history {
        messages.push(json!({"role": role, "content": content}));
    }
    messages.push(json!({"role": "user", "content": turn.message}));
    let tools: Vec<Value> = turn
        .tools
        .offered()
        .into_iter()
        .map(|(name, description, parameters)| {
            json!({"type": "function", "function": {"name": name, "description": description, "parameters": parameters}})
        })
        .collect();
    let mut text = String::new();
    let mut usage = Usage {
        input_tokens: 0,
        output_tokens: 0,
    };
    for _ in 0..MAX_TOOL_ROUNDS {
        let round = super::within(turn, stream_round(turn, &messages, &tools, on_delta)).await?;
        text.push_str(&round.text);
        if let Some(u) = &round.usage {
            usage.input_tokens += u.input_tokens;
            usage.output_tokens += u.output_tokens;
        }
        let finish = round.finish.ok_or_else(|| {
            super::malformed(turn.agent_id, "the stream ended without a finish_reason")
        })?;
        if round.calls.is_empty() {
            let stop_reason = if finish == "length" {
                ChatResultStopReason::Length
            } else {
                ChatResultStopReason::Stop
            };
            return Ok(Reply {
                text,
                usage,
                stop_reason,
            });
        }
        let requested: Vec<Value> = round
            .calls
            .iter()
            .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
            .collect();
        let content = if round.text.is_empty() {
            Value::Null
        } else {
            json!(round.text)
        };
        messages.push(json!({"role": "assistant", "content": content, "tool_calls": requested}));
        for call in round.calls {
            let outcome = match super::tool_arguments(&call.arguments) {
                Ok(arguments) => turn.tools.call(&call.id, &call.name, arguments).await,
                Err(e) => Err(e),
            };
            let content = match outcome {
                Ok(result) => result.to_string(),
                Err(error) => json!({ "error": error }).to_string(),
            };
            messages.push(json!({"role": "tool", "tool_call_id": call.id, "content": content}));
        }
    }
    Err(super::malformed(
        turn.agent_id,
        &format!("the model kept calling tools after {MAX_TOOL_ROUNDS} rounds"),
    ))
}

async fn stream_round(
    turn: &Turn<'_>,
    messages: &[Value],
    tools: &[Value],
    on_delta: &mut OnDelta<'_>,
) -> Result<Round, RpcError> {
    let config = turn.config;
    let base = super::base_url(config, DEFAULT_BASE_URL);
    let mut body = json!({
        "model": turn.model,
        "messages": messages,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    if !tools.is_empty() {
        body["tools"] = json!(tools);
    }
    if let Some(t) = config.temperature {
        body["temperature"] = json!(t);
    }
    if let Some(max) = config.max_tokens {
        body["max_tokens"] = json!(max.get());
    }
    let mut request = turn.http.post(format!("{base}/chat/completions"));
    if let Some(key) = &config.api_key {
        request = request.bearer_auth(key.as_str());
    }
    let mut events = SseStream::new(super::send_json(turn.agent_id, request, &body).await?);
    let mut round = Round::default();
    while let Some(event) = events.next(turn.agent_id).await {
        let event = event?;
        if event == "[DONE]" {
            return Ok(round);
        }
        if let Some(error) = event.get("error") {
            return Err(super::status_error(turn.agent_id, 502, &error.to_string()));
        }
        if let Some(choice) = event["choices"].get(0) {
            let delta = &choice["delta"];
            if let Some(piece) = delta["content"].as_str().filter(|d| !d.is_empty()) {
                super::bounded_push(turn.agent_id, &mut round.text, piece)?;
                on_delta(Delta::Text(piece));
            }
            for call in delta["tool_calls"].as_array().into_iter().flatten() {
                // The index comes from the upstream: it may name the next
                // call, never make room for a trillion.
                let index = call["index"].as_u64().unwrap_or(0);
                if index > round.calls.len() as u64 || index >= super::MAX_TOOL_CALLS as u64 {
                    return Err(super::malformed(
                        turn.agent_id,
                        &format!(
                            "tool call index {index} (after {} calls; at most {} per reply)",
                            round.calls.len(),
                            super::MAX_TOOL_CALLS
                        ),
                    ));
                }
                let index = index as usize;
                if index == round.calls.len() {
                    round.calls.push(ToolCall::default());
                }
                let slot = &mut round.calls[index];
                if let Some(id) = call["id"].as_str() {
                    slot.id = id.to_string();
                }
                if let Some(name) = call["function"]["name"].as_str() {
                    super::bounded_push(turn.agent_id, &mut slot.name, name)?;
                }
                if let Some(arguments) = call["function"]["arguments"].as_str() {
                    super::bounded_push(turn.agent_id, &mut slot.arguments, arguments)?;
                }
            }
            if let Some(reason) = choice["finish_reason"].as_str() {
                round.finish = Some(reason.to_string());
            }
        }
        if let Some(u) = event.get("usage").filter(|u| u.is_object()) {
            round.usage = Some(Usage {
                input_tokens: u["prompt_tokens"].as_u64().unwrap_or(0),
                output_tokens: u["completion_tokens"].as_u64().unwrap_or(0),
            });
        }
    }
    Err(super::malformed(
        turn.agent_id,
        "the stream ended before [DONE]",
    ))
}
