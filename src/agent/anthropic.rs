//! The `anthropic` provider: the Messages API, streamed over server-sent
//! events, with thinking blocks passed on as reasoning deltas and tool use
//! (the model asks, the tool runs, the result goes back, the model answers).

use super::{sse::SseStream, Delta, OnDelta, Reply, Turn};
use crate::protocol::types::{ChatResultStopReason, Usage};
use crate::protocol::RpcError;
use serde_json::{json, Value};

const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
const API_VERSION: &str = "2023-06-01";
/// The Messages API requires max_tokens; used when the agent sets none.
const DEFAULT_MAX_TOKENS: u64 = 4096;
/// Model → tools → model exchanges allowed in one turn.
const MAX_TOOL_ROUNDS: usize = 8;

/// One streamed message.
struct Round {
    text: String,
    usage: Usage,
    stop: Option<String>,
    /// Tool uses by content block index: (index, id, name, partial JSON).
    tool_uses: Vec<(u64, String, String, String)>,
}

fn no_usage() -> Usage {
    Usage {
        input_tokens: 0,
        output_tokens: 0,
    }
}

pub async fn reply(turn: &Turn<'_>, on_delta: &mut OnDelta<'_>) -> Result<Reply, RpcError> {
    // The API takes only user and assistant turns; the system prompt is separate.
    let mut messages: Vec<Value> = turn
        .history
        .iter()
        .filter(|(role, _)| role == "user" || role == "assistant")
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect();
    messages.push(json!({"role": "user", "content": turn.message}));
    let tools: Vec<Value> = turn
        .tools
        .offered()
        .into_iter()
        .map(|(name, description, schema)| json!({"name": name, "description": description, "input_schema": schema}))
        .collect();
    let mut text = String::new();
    let mut usage = no_usage();
    for _ in 0..MAX_TOOL_ROUNDS {
        let round = super::within(turn, stream_round(turn, &messages, &tools, on_delta)).await?;
        text.push_str(&round.text);
        usage.input_tokens += round.usage.input_tokens;
        usage.output_tokens += round.usage.output_tokens;
        let stop = round.stop.unwrap_or_default();
        if stop != "tool_use" || round.tool_uses.is_empty() {
            let stop_reason = if stop == "max_tokens" {
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
        let mut blocks = Vec::new();
        if !round.text.is_empty() {
            blocks.push(json!({"type": "text", "text": round.text}));
        }
        let mut results = Vec::new();
        for (_, id, name, input) in round.tool_uses {
            let parsed = super::tool_arguments(&input);
            let echoed = parsed.as_ref().cloned().unwrap_or(json!({}));
            blocks.push(json!({"type": "tool_use", "id": id, "name": name, "input": echoed}));
            let outcome = match parsed {
                Ok(arguments) => turn.tools.call(&id, &name, arguments).await,
                Err(e) => Err(e),
            };
            results.push(match outcome {
                Ok(result) => json!({"type": "tool_result", "tool_use_id": id, "content": result.to_string()}),
                Err(error) => json!({"type": "tool_result", "tool_use_id": id, "content": error, "is_error": true}),
            });
        }
        messages.push(json!({"role": "assistant", "content": blocks}));
        messages.push(json!({"role": "user", "content": results}));
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
        "max_tokens": config.max_tokens.map_or(DEFAULT_MAX_TOKENS, |m| m.get()),
        "stream": true,
    });
    if !tools.is_empty() {
        body["tools"] = json!(tools);
    }
    if let Some(system) = &config.system_prompt {
        body["system"] = json!(system);
    }
    if let Some(t) = config.temperature {
        body["temperature"] = json!(t);
    }
    let mut request = turn
        .http
        .post(format!("{base}/v1/messages"))
        .header("anthropic-version", API_VERSION);
    if let Some(key) = &config.api_key {
        request = request.header("x-api-key", key.as_str());
    }
    let mut events = SseStream::new(super::send_json(turn.agent_id, request, &body).await?);
    let mut round = Round {
        text: String::new(),
        usage: no_usage(),
        stop: None,
        tool_uses: Vec::new(),
    };
    while let Some(event) = events.next(turn.agent_id).await {
        let event = event?;
        match event["type"].as_str() {
            Some("message_start") => {
                let u = &event["message"]["usage"];
                round.usage.input_tokens = u["input_tokens"].as_u64().unwrap_or(0);
                round.usage.output_tokens = u["output_tokens"].as_u64().unwrap_or(0);
            }
            Some("content_block_start") => {
                let block = &event["content_block"];
                if block["type"] == "tool_use" {
                    if round.tool_uses.len() >= super::MAX_TOOL_CALLS {
                        return Err(super::malformed(
                            turn.agent_id,
                            &format!(
                                "more than {} tool calls in one reply",
                                super::MAX_TOOL_CALLS
                            ),
                        ));
                    }
                    round.tool_uses.push((
                        event["index"].as_u64().unwrap_or(0),
                        block["id"].as_str().unwrap_or_default().to_string(),
                        block["name"].as_str().unwrap_or_default().to_string(),
                        String::new(),
                    ));
                }
            }
            Some("content_block_delta") => {
                let delta = &event["delta"];
                match delta["type"].as_str() {
                    Some("text_delta") => {
                        if let Some(t) = delta["text"].as_str() {
                            super::bounded_push(turn.agent_id, &mut round.text, t)?;
                            on_delta(Delta::Text(t));
                        }
                    }
                    Some("thinking_delta") => {
                        if let Some(t) = delta["thinking"].as_str() {
                            on_delta(Delta::Thinking(t));
                        }
                    }
                    Some("input_json_delta") => {
                        let index = event["index"].as_u64().unwrap_or(0);
                        if let Some(tool) = round.tool_uses.iter_mut().find(|t| t.0 == index) {
                            let piece = delta["partial_json"].as_str().unwrap_or_default();
                            super::bounded_push(turn.agent_id, &mut tool.3, piece)?;
                        }
                    }
                    _ => {}
                }
            }
            Some("message_delta") => {
                if let Some(out) = event["usage"]["output_tokens"].as_u64() {
                    round.usage.output_tokens = out;
                }
                round.stop = event["delta"]["stop_reason"].as_str().map(str::to_string);
            }
            Some("message_stop") => {
                if round.stop.is_none() {
                    return Err(super::malformed(
                        turn.agent_id,
                        "message_stop before a stop_reason",
                    ));
                }
                return Ok(round);
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
    Err(super::malformed(
        turn.agent_id,
        "the stream ended before message_stop",
    ))
}
