//! A small WebSocket client of the gateway protocol, used by
//! `clawgate call` and the benchmark.

use crate::protocol::types::{ErrorObject, Role, Scope};
use crate::protocol::{Method, SUPPORTED_PROTOCOL};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::VecDeque;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

#[derive(Debug)]
pub enum ClientError {
    /// The socket failed or the server sent something unreadable.
    Transport(String),
    /// The server answered with an error frame.
    Rpc(ErrorObject),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Transport(m) => write!(f, "{m}"),
            ClientError::Rpc(e) => write!(f, "error {}: {}", e.code, e.message),
        }
    }
}

impl std::error::Error for ClientError {}

/// One frame from the gateway.
#[derive(Debug)]
pub enum Frame {
    /// `{event, data, seq}`.
    Event(Value),
    /// The answer to a request; `id` is None for errors the gateway could
    /// not tie to a request.
    Response {
        id: Option<String>,
        outcome: Result<Value, ErrorObject>,
    },
}

#[derive(Clone, Debug)]
pub struct ConnectOptions {
    pub token: Option<String>,
    pub password: Option<String>,
    pub role: Role,
    pub scopes: Option<Vec<Scope>>,
    pub client_name: String,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            token: None,
            password: None,
            role: Role::Operator,
            scopes: None,
            client_name: "clawgate-client".to_string(),
        }
    }
}

pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    /// The connect result.
    pub hello: Value,
    events: VecDeque<Value>,
}

impl Client {
    /// Opens the socket and performs the connect handshake.
    pub async fn connect(url: &str, opts: &ConnectOptions) -> Result<Client, ClientError> {
        let (ws, _) =
            tokio_tungstenite::connect_async_with_config(url, Some(small_buffers()), true)
                .await
                .map_err(|e| ClientError::Transport(format!("cannot connect to {url}: {e}")))?;
        let mut client = Client {
            ws,
            next_id: 0,
            hello: Value::Null,
            events: VecDeque::new(),
        };
        let mut auth = serde_json::Map::new();
        if let Some(t) = &opts.token {
            auth.insert("token".into(), json!(t));
        }
        if let Some(p) = &opts.password {
            auth.insert("password".into(), json!(p));
        }
        let mut params = json!({
            "protocol": {"min": SUPPORTED_PROTOCOL.0, "max": SUPPORTED_PROTOCOL.1},
            "client": {"name": opts.client_name, "version": env!("CARGO_PKG_VERSION"), "platform": std::env::consts::OS},
            "role": opts.role,
        });
        if !auth.is_empty() {
            params["auth"] = Value::Object(auth);
        }
        if let Some(scopes) = &opts.scopes {
            params["scopes"] = json!(scopes);
        }
        client.hello = client.call(Method::Connect.name(), params).await?;
        Ok(client)
    }

    /// Sends one request and waits for its response; events that arrive
    /// meanwhile are kept for [`Client::next_event`].
    pub async fn call(&mut self, method: &str, params: Value) -> Result<Value, ClientError> {
        let id = self.send(method, params).await?;
        loop {
            match self.read_classified().await? {
                Frame::Event(event) => self.events.push_back(event),
                Frame::Response { id: got, outcome }
                    if got.as_deref() == Some(&id) || got.is_none() =>
                {
                    return outcome.map_err(ClientError::Rpc);
                }
                Frame::Response { .. } => {}
            }
        }
    }

    /// Sends one request without waiting; returns its id, which its
    /// response from [`Client::next_frame`] carries.
    pub async fn send(&mut self, method: &str, params: Value) -> Result<String, ClientError> {
        self.next_id += 1;
        let id = self.next_id.to_string();
        let frame = json!({"id": id, "method": method, "params": params});
        self.ws
            .send(Message::Text(frame.to_string().into()))
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        Ok(id)
    }

    /// The next frame from the gateway, event or response, for clients
    /// that keep several requests open. Cancel-safe: a frame is never
    /// half read.
    pub async fn next_frame(&mut self) -> Result<Frame, ClientError> {
        if let Some(event) = self.events.pop_front() {
            return Ok(Frame::Event(event));
        }
        self.read_classified().await
    }

    async fn read_classified(&mut self) -> Result<Frame, ClientError> {
        let frame = self.read_frame().await?;
        if frame.get("event").is_some() {
            return Ok(Frame::Event(frame));
        }
        let id = frame["id"].as_str().map(str::to_string);
        let outcome = match frame.get("error") {
            Some(error) => Err(serde_json::from_value(error.clone())
                .map_err(|e| ClientError::Transport(format!("unreadable error frame: {e}")))?),
            None => Ok(frame.get("result").cloned().unwrap_or(Value::Null)),
        };
        Ok(Frame::Response { id, outcome })
    }

    /// The next event frame (`{event, data, seq}`).
    pub async fn next_event(&mut self) -> Result<Value, ClientError> {
        if let Some(event) = self.events.pop_front() {
            return Ok(event);
        }
        loop {
            let frame = self.read_frame().await?;
            if frame.get("event").is_some() {
                return Ok(frame);
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }

    async fn read_frame(&mut self) -> Result<Value, ClientError> {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    return serde_json::from_str(text.as_str())
                        .map_err(|e| ClientError::Transport(format!("unreadable frame: {e}")));
                }
                Some(Ok(Message::Close(frame))) => {
                    let why = frame
                        .map(|f| format!("{} {}", u16::from(f.code), f.reason))
                        .unwrap_or_default();
                    return Err(ClientError::Transport(
                        format!("connection closed by the gateway {why}")
                            .trim_end()
                            .to_string(),
                    ));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(ClientError::Transport(e.to_string())),
                None => return Err(ClientError::Transport("connection closed".to_string())),
            }
        }
    }
}

/// Socket buffers sized for small RPC frames, so thousands of clients fit
/// in one process.
pub fn small_buffers() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}
