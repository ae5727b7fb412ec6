//! A fake OpenAI-compatible chat-completions server on loopback, scripted
//! per test: it streams the documented SSE chunks, fails, breaks off, or
//! hangs, and records every request it receives.

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
    /// Stream these text pieces, then finish_reason stop and usage.
    Text(Vec<&'static str>),
    /// Answer with this HTTP status and an OpenAI error body.
    Status(u16),
    /// Stream these pieces, then drop the connection without [DONE].
    BreakAfter(Vec<&'static str>),
    /// Accept the request and never answer.
    Hang,
    /// Stream these pieces, then keep the stream open without another byte.
    TextThenHang(Vec<&'static str>),
    /// First call a tool with these JSON arguments; once the tool result
    /// comes back, stream the text.
    ToolThenText(&'static str, &'static str, Vec<&'static str>),
    /// Like ToolThenText, with the tool's arguments made from the last
    /// user message.
    ToolByMessage(&'static str, fn(&str) -> String, Vec<&'static str>),
    /// Stream exactly these SSE bytes (a hostile or broken upstream).
    Raw(Vec<String>),
    /// Stream one line that never ends, this many bytes of it.
    EndlessLine(usize),
}

#[derive(Clone)]
struct Shared {
    script: Script,
    requests: Arc<Mutex<Vec<(HeaderMap, Value)>>>,
}

pub struct FakeOpenAi {
    pub base_url: String,
    requests: Arc<Mutex<Vec<(HeaderMap, Value)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeOpenAi {
    pub async fn start(script: Script) -> FakeOpenAi {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let shared = Shared {
            script,
            requests: Arc::clone(&requests),
        };
        let app = Router::new()
            .route("/v1/chat/completions", post(completions))
            .with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeOpenAi {
            base_url: format!("http://{addr}/v1"),
            requests,
            task,
        }
    }

    /// Every request received: headers and JSON body.
    pub fn requests(&self) -> Vec<(HeaderMap, Value)> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for FakeOpenAi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn chunk(delta: Value, finish: Option<&str>) -> String {
    let event = json!({
        "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": "fake-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    });
    format!("data: {event}\n\n")
}

/// The content of the last user message of the last request received.
fn body_of_last_user(shared: &Shared) -> String {
    let requests = shared.requests.lock().unwrap();
    let Some((_, body)) = requests.last() else {
        return String::new();
    };
    body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_string()
}

fn text_chunks(pieces: &[&str]) -> Vec<String> {
    let mut out = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
    out.extend(pieces.iter().map(|p| chunk(json!({"content": p}), None)));
    out
}

async fn completions(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let has_tool_result = body["messages"]
        .as_array()
        .is_some_and(|m| m.iter().any(|m| m["role"] == "tool"));
    shared.requests.lock().unwrap().push((headers, body));
    let sse = |parts: Vec<Result<Bytes, std::io::Error>>| {
        Response::builder()
            .header("content-type", "text/event-stream")
            .body(Body::from_stream(futures_util::stream::iter(parts)))
            .unwrap()
    };
    let last_user = body_of_last_user(&shared);
    let script = match shared.script {
        Script::ToolByMessage(name, arguments, pieces) => {
            let arguments: &'static str = Box::leak(arguments(&last_user).into_boxed_str());
            Script::ToolThenText(name, arguments, pieces)
        }
        other => other,
    };
    match script {
        Script::ToolByMessage(..) => unreachable!(),
        Script::Text(pieces) => {
            let mut parts = text_chunks(&pieces);
            parts.push(chunk(json!({}), Some("stop")));
            let usage = json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "choices": [],
                "usage": {"prompt_tokens": 11, "completion_tokens": pieces.len(), "total_tokens": 11 + pieces.len()}});
            parts.push(format!("data: {usage}\n\n"));
            parts.push("data: [DONE]\n\n".to_string());
            sse(parts.into_iter().map(|p| Ok(Bytes::from(p))).collect())
        }
        Script::BreakAfter(pieces) => {
            let mut parts: Vec<Result<Bytes, std::io::Error>> =
                text_chunks(&pieces).into_iter().map(|p| Ok(Bytes::from(p))).collect();
            parts.push(Err(std::io::Error::other("upstream broke off")));
            sse(parts)
        }
        Script::Status(code) => (
            StatusCode::from_u16(code).unwrap(),
            Json(json!({"error": {"message": format!("scripted failure {code}"), "type": "server_error"}})),
        )
            .into_response(),
        Script::ToolThenText(name, arguments, _) if !has_tool_result => {
            let call = json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                "function": {"name": name, "arguments": ""}}]});
            let (head, tail) = arguments.split_at(arguments.len() / 2);
            let mut parts = vec![
                chunk(json!({"role": "assistant", "content": null}), None),
                chunk(call, None),
            ];
            for part in [head, tail] {
                parts.push(chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": part}}]}),
                    None,
                ));
            }
            parts.push(chunk(json!({}), Some("tool_calls")));
            parts.push("data: [DONE]\n\n".to_string());
            sse(parts.into_iter().map(|p| Ok(Bytes::from(p))).collect())
        }
        Script::ToolThenText(_, _, pieces) => {
            let mut parts = text_chunks(&pieces);
            parts.push(chunk(json!({}), Some("stop")));
            parts.push("data: [DONE]\n\n".to_string());
            sse(parts.into_iter().map(|p| Ok(Bytes::from(p))).collect())
        }
        Script::Hang => {
            std::future::pending::<()>().await;
            unreachable!()
        }
        Script::TextThenHang(pieces) => {
            use futures_util::StreamExt;
            let parts = text_chunks(&pieces)
                .into_iter()
                .map(|p| Ok::<_, std::io::Error>(Bytes::from(p)));
            let stream = futures_util::stream::iter(parts).chain(futures_util::stream::pending());
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from_stream(stream))
                .unwrap()
        }
        Script::Raw(parts) => sse(parts.into_iter().map(|p| Ok(Bytes::from(p))).collect()),
        Script::EndlessLine(total) => {
            let piece = Bytes::from(vec![b'x'; 64 * 1024]);
            let count = total / piece.len();
            let mut parts = vec![Ok(Bytes::from_static(b"data: "))];
            parts.extend((0..count).map(|_| Ok(piece.clone())));
            sse(parts)
        }
    }
}
