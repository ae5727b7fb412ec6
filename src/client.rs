//! The Rust client of the gateway protocol: one typed method per RPC and
//! typed events, generated from the schema (`client.rs` in OUT_DIR), over
//! a small frame layer that `clawgate call` also uses by method name.
//! Used by the CLI, the benchmark and the integration tests.

use crate::protocol::types::{self, ConnectResult, ErrorObject, Role, Scope};
use crate::protocol::{Event, EventKind, Method, SUPPORTED_PROTOCOL};
use futures_util::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
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
    Rpc(Box<ErrorObject>),
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
    /// An event, decoded to its type.
    Event(Box<Event>),
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
    /// Which certificates a wss:// gateway may present.
    pub tls: crate::tls::client::Trust,
    /// The client certificate to present, for a gateway that asks for one.
    pub tls_identity: Option<crate::tls::client::Identity>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            token: None,
            password: None,
            role: Role::Operator,
            scopes: None,
            client_name: "clawgate-client".to_string(),
            tls: Default::default(),
            tls_identity: None,
        }
    }
}

pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    /// The connect result; None only while connecting.
    hello: Option<ConnectResult>,
    /// Events that arrived while a call waited, decoded when asked for.
    events: VecDeque<(EventKind, Value)>,
}

include!(concat!(env!("OUT_DIR"), "/client.rs"));

impl Client {
    /// Opens the socket and performs the connect handshake.
    pub async fn connect(url: &str, opts: &ConnectOptions) -> Result<Client, ClientError> {
        let secure = url
            .get(..6)
            .is_some_and(|s| s.eq_ignore_ascii_case("wss://"));
        let connector = match (secure, &opts.tls) {
            (true, trust) => Some(tokio_tungstenite::Connector::Rustls(
                crate::tls::client::client_config(trust, opts.tls_identity.as_ref())
                    .map_err(ClientError::Transport)?,
            )),
            (false, crate::tls::client::Trust::Platform) => None,
            (false, _) => {
                return Err(ClientError::Transport(format!(
                    "a TLS fingerprint is pinned, but {url} is not a wss:// URL"
                )))
            }
        };
        let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(
            url,
            Some(small_buffers()),
            true,
            connector,
        )
        .await
        .map_err(|e| ClientError::Transport(format!("cannot connect to {url}: {e}")))?;
        let mut client = Client {
            ws,
            next_id: 0,
            hello: None,
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
        let hello = client.call(Method::Connect.name(), params).await?;
        client.hello = Some(
            serde_json::from_value(hello)
                .map_err(|e| ClientError::Transport(format!("unreadable connect result: {e}")))?,
        );
        Ok(client)
    }

    /// What the gateway answered to connect.
    pub fn hello(&self) -> &ConnectResult {
        self.hello.as_ref().expect("connected")
    }

    /// Sends one typed request and decodes its result.
    pub async fn request<P: Serialize, R: DeserializeOwned>(
        &mut self,
        method: Method,
        params: &P,
    ) -> Result<R, ClientError> {
        let params = serde_json::to_value(params)
            .map_err(|e| ClientError::Transport(format!("cannot encode params: {e}")))?;
        let result = self.call(method.name(), params).await?;
        serde_json::from_value(result).map_err(|e| {
            ClientError::Transport(format!("unreadable {} result: {e}", method.name()))
        })
    }

    /// Sends one request by method name and waits for its response
    /// (`clawgate call`); events that arrive meanwhile are kept for
    /// [`Client::next_event`].
    pub async fn call(&mut self, method: &str, params: Value) -> Result<Value, ClientError> {
        let id = self.send(method, params).await?;
        loop {
            match self.read_raw().await? {
                Raw::Event(kind, data) => self.events.push_back((kind, data)),
                Raw::Response(frame) => {
                    if let Frame::Response { id: got, outcome } = *frame {
                        if got.as_deref() == Some(&id) || got.is_none() {
                            return outcome.map_err(|e| ClientError::Rpc(Box::new(e)));
                        }
                    }
                }
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
        let raw = match self.events.pop_front() {
            Some((kind, data)) => Raw::Event(kind, data),
            None => self.read_raw().await?,
        };
        match raw {
            Raw::Event(kind, data) => decode(kind, data).map(|e| Frame::Event(Box::new(e))),
            Raw::Response(frame) => Ok(*frame),
        }
    }

    /// The next frame: a response, or an event of a kind this client
    /// knows, not yet decoded (one of a newer gateway is skipped).
    async fn read_raw(&mut self) -> Result<Raw, ClientError> {
        loop {
            let mut frame = self.read_frame().await?;
            let Some(name) = frame.get("event") else {
                return Self::response(frame)
                    .map(|frame| Raw::Response(Box::new(frame)))
                    .map_err(ClientError::Transport);
            };
            let Some(kind) = name.as_str().and_then(EventKind::from_name) else {
                continue;
            };
            let data = frame.get_mut("data").map(Value::take).unwrap_or_default();
            return Ok(Raw::Event(kind, data));
        }
    }

    fn response(mut frame: Value) -> Result<Frame, String> {
        let id = frame["id"].as_str().map(str::to_string);
        let outcome = match frame.get_mut("error").map(Value::take) {
            Some(error) => Err(serde_json::from_value(error)
                .map_err(|e| format!("unreadable error frame: {e}"))?),
            None => Ok(frame.get_mut("result").map(Value::take).unwrap_or_default()),
        };
        Ok(Frame::Response { id, outcome })
    }

    /// The next event; responses to requests sent with
    /// [`Client::send`] that arrive meanwhile are dropped.
    pub async fn next_event(&mut self) -> Result<Event, ClientError> {
        if let Some((kind, data)) = self.events.pop_front() {
            return decode(kind, data);
        }
        loop {
            if let Raw::Event(kind, data) = self.read_raw().await? {
                return decode(kind, data);
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

/// A frame as read, before an event's payload is decoded.
enum Raw {
    Event(EventKind, Value),
    Response(Box<Frame>),
}

fn decode(kind: EventKind, data: Value) -> Result<Event, ClientError> {
    Event::from_data(kind, data)
        .map_err(|e| ClientError::Transport(format!("unreadable {} event: {e}", kind.name())))
}

/// Socket buffers sized for small RPC frames, so thousands of clients fit
/// in one process.
pub fn small_buffers() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}
