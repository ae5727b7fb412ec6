//! A fake Anthropic Messages API on loopback: streams the documented
//! server-sent events (thinking and text blocks), fails, or errors
//! mid-stream, and records every request.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug)]
pub enum Script {
    /// Stream thinking pieces, then text pieces, then end_turn.
    Reply {
        thinking: Vec<&'static str>,
        text: Vec<&'static str>,
    },
    /// Answer with this HTTP status.
    Status(u16),
    /// Stream some text, then an overloaded_error event.
    OverloadedAfter(Vec<&'static str>),
    /// Ask for a tool with this JSON input; once the result comes back,
    /// stream the text.
    ToolThenText(&'static str, &'static str, Vec<&'static str>),
}

type Requests = Arc<Mutex<Vec<(HeaderMap, Value)>>>;

pub struct FakeAnthropic {
    pub base_url: String,
    requests: Requests,
    task: tokio::task::JoinHandle<()>,
}

impl FakeAnthropic {
    pub async fn start(script: Script) -> FakeAnthropic {
        let requests: Requests = Arc::default();
        let app = Router::new()
            .route("/v1/messages", post(messages))
            .with_state((script, Arc::clone(&requests)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeAnthropic {
            base_url: format!("http://{addr}"),
            requests,
            task,
        }
    }

    pub fn requests(&self) -> Vec<(HeaderMap, Value)> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for FakeAnthropic {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn event(name: &str, data: Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

fn start_events() -> Vec<String> {
    vec![event(
        "message_start",
        json!({"type": "message_start", "message": {
        "id": "msg_fake", "type": "message", "role": "assistant", "content": [], "model": "claude-fake",
        "stop_reason": null, "usage": {"input_tokens": 25, "output_tokens": 1}}}),
    )]
}

fn block(index: usize, kind: &str, delta_kind: &str, field: &str, pieces: &[&str]) -> Vec<String> {
    let mut out = vec![event(
        "content_block_start",
        json!({"type": "content_block_start", "index": index,
        "content_block": {"type": kind, field: ""}}),
    )];
    for p in pieces {
        out.push(event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": index,
            "delta": {"type": delta_kind, field: p}}),
        ));
    }
    out.push(event(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": index}),
    ));
    out
}

async fn messages(
    State((script, requests)): State<(Script, Requests)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let has_tool_result = body["messages"].as_array().is_some_and(|m| {
        m.iter().any(|m| {
            m["content"]
                .as_array()
                .is_some_and(|c| c.iter().any(|b| b["type"] == "tool_result"))
        })
    });
    requests.lock().unwrap().push((headers, body));
    let sse = |parts: Vec<String>| {
        Response::builder()
            .header("content-type", "text/event-stream")
            .body(Body::from_stream(futures_util::stream::iter(
                parts
                    .into_iter()
                    .map(|p| Ok::<_, std::io::Error>(Bytes::from(p))),
            )))
            .unwrap()
    };
    match script {
        Script::Reply { thinking, text } => {
            let mut parts = start_events();
            parts.extend(block(0, "thinking", "thinking_delta", "thinking", &thinking));
            parts.extend(block(1, "text", "text_delta", "text", &text));
            parts.push(event("message_delta", json!({"type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 15}})));
            parts.push(event("message_stop", json!({"type": "message_stop"})));
            sse(parts)
        }
        Script::ToolThenText(name, input, _) if !has_tool_result => {
            let mut parts = start_events();
            parts.push(event("content_block_start", json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "tool_use", "id": "toolu_1", "name": name, "input": {}}})));
            let (head, tail) = input.split_at(input.len() / 2);
            for part in [head, tail] {
                parts.push(event("content_block_delta", json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "input_json_delta", "partial_json": part}})));
            }
            parts.push(event("content_block_stop", json!({"type": "content_block_stop", "index": 0})));
            parts.push(event("message_delta", json!({"type": "message_delta",
                "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}})));
            parts.push(event("message_stop", json!({"type": "message_stop"})));
            sse(parts)
        }
        Script::ToolThenText(_, _, text) => {
            let mut parts = start_events();
            parts.extend(block(0, "text", "text_delta", "text", &text));
            parts.push(event("message_delta", json!({"type": "message_delta",
                "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 4}})));
            parts.push(event("message_stop", json!({"type": "message_stop"})));
            sse(parts)
        }
        Script::OverloadedAfter(text) => {
            let mut parts = start_events();
            parts.extend(block(0, "text", "text_delta", "text", &text));
            parts.push(event("error", json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})));
            sse(parts)
        }
        Script::Status(code) => (
            StatusCode::from_u16(code).unwrap(),
            Json(json!({"type": "error", "error": {"type": "invalid_request_error", "message": format!("scripted {code}")}})),
        )
            .into_response(),
    }
}
