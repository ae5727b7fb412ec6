//! Agents: which provider answers a turn, and how a reply streams.

mod anthropic;
mod echo;
mod openai;
pub mod remote;
mod runs;
pub(crate) mod sse;
pub mod turn;

pub use turn::{Caller, Session, SessionGuard, ToolRunner, TurnDone, TurnRequest, Turns};

use crate::config::Config;
use crate::protocol::types::{AgentConfig, AgentConfigProvider, ChatResultStopReason, Usage};
use crate::protocol::{ErrorCode, RpcError};
use serde_json::json;
use std::time::Duration;

/// The agent id used when nothing is configured.
pub const MAIN: &str = crate::config::MAIN_AGENT;

/// The session a chat turn joins when it names none.
pub fn main_session_key(agent_id: &str) -> String {
    session_key(agent_id, "main")
}

/// A session key of an agent's own namespace.
pub fn session_key(agent_id: &str, name: &str) -> String {
    format!("agent:{agent_id}:{name}")
}

/// An agent resolved from the configuration.
#[derive(Clone, Debug)]
pub struct Agent {
    pub id: String,
    pub provider: AgentConfigProvider,
    pub config: Option<AgentConfig>,
}

/// A piece of a streaming reply.
#[derive(Clone, Copy, Debug)]
pub enum Delta<'a> {
    Text(&'a str),
    /// Reasoning, where the provider exposes it.
    Thinking(&'a str),
}

/// Receives each piece of a reply as it arrives.
pub type OnDelta<'a> = dyn FnMut(Delta<'_>) + Send + 'a;

/// What a finished reply produced.
#[derive(Clone, Debug)]
pub struct Reply {
    pub text: String,
    pub usage: Usage,
    pub stop_reason: ChatResultStopReason,
}

/// The tools a turn may call, and how to call them.
pub trait ToolBox: Send + Sync {
    /// What the model is offered: (name, description, parameters schema).
    fn offered(&self) -> Vec<(String, String, serde_json::Value)>;
    /// Runs one call; an Err is shown to the model.
    fn call<'a>(
        &'a self,
        call_id: &'a str,
        name: &'a str,
        arguments: serde_json::Value,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<serde_json::Value, String>> + Send + 'a>,
    >;
}

/// Everything a provider needs for one reply.
pub struct Turn<'a> {
    pub agent_id: &'a str,
    pub config: &'a AgentConfig,
    pub model: String,
    /// Earlier messages of the session, oldest first, as (role, content).
    pub history: Vec<(String, String)>,
    pub message: &'a str,
    pub http: &'a reqwest::Client,
    pub tools: &'a dyn ToolBox,
}

impl Agent {
    /// The agent named `id`, else `agents.default`. With no agents
    /// configured, `main` is the offline echo agent.
    pub fn resolve(config: &Config, id: Option<&str>) -> Result<Agent, RpcError> {
        let (id, agent) = crate::config::find_agent(config, id)
            .map_err(|message| RpcError::new(ErrorCode::NotFound, message))?;
        Ok(Agent {
            id: id.to_string(),
            provider: agent.map_or(AgentConfigProvider::Echo, |a| a.provider),
            config: agent.cloned(),
        })
    }

    /// Whether the agent answers without any network (the echo provider).
    pub fn is_offline(&self) -> bool {
        self.provider == AgentConfigProvider::Echo
    }

    /// Runs one reply to `message`, calling `on_delta` with each piece of
    /// text as it arrives. `model` overrides the agent's model.
    #[allow(clippy::too_many_arguments)]
    pub async fn reply(
        &self,
        http: &reqwest::Client,
        tools: &dyn ToolBox,
        history: Vec<(String, String)>,
        model: Option<String>,
        message: &str,
        on_delta: &mut OnDelta<'_>,
    ) -> Result<Reply, RpcError> {
        let Some(config) = self.config.as_ref().filter(|_| !self.is_offline()) else {
            return Ok(echo::reply(message, on_delta).await);
        };
        let Some(model) = model.or_else(|| config.model.clone()) else {
            return Err(RpcError::new(
                ErrorCode::InvalidParams,
                format!(
                    "agent {} has no model: set agents.{}.model",
                    self.id, self.id
                ),
            ));
        };
        let turn = Turn {
            agent_id: &self.id,
            config,
            model,
            history,
            message,
            http,
            tools,
        };
        match self.provider {
            AgentConfigProvider::Openai => openai::reply(&turn, on_delta).await,
            AgentConfigProvider::Echo => Ok(echo::reply(message, on_delta).await),
            AgentConfigProvider::Anthropic => anthropic::reply(&turn, on_delta).await,
        }
    }
}

/// One upstream call (a request and its whole streamed answer), failed
/// with timeout after the agent's timeoutMs. Tool calls between upstream
/// calls do not count: a person answering an exec approval is not the
/// model being slow.
async fn within<T>(
    turn: &Turn<'_>,
    call: impl std::future::Future<Output = Result<T, RpcError>>,
) -> Result<T, RpcError> {
    let limit = Duration::from_millis(turn.config.timeout_ms as u64);
    tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
        Err(RpcError::new(
            ErrorCode::Timeout,
            format!(
                "agent {}: no complete reply within {} ms",
                turn.agent_id,
                limit.as_millis()
            ),
        ))
    })
}

/// The HTTP client for model providers. reqwest is built without a
/// default TLS provider; ring is the one linked in.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client")
}

/// Most tool calls one upstream reply may ask for.
pub const MAX_TOOL_CALLS: usize = 64;
/// Longest text (reply, tool name, tool arguments) one upstream reply may
/// stream; past it the reply is malformed, not a reason to run out of memory.
pub const MAX_REPLY_BYTES: usize = 4 * 1024 * 1024;

/// Appends a streamed piece, refusing to grow past [`MAX_REPLY_BYTES`].
fn bounded_push(agent_id: &str, text: &mut String, piece: &str) -> Result<(), RpcError> {
    if text.len() + piece.len() > MAX_REPLY_BYTES {
        return Err(malformed(
            agent_id,
            &format!("a reply longer than {MAX_REPLY_BYTES} bytes"),
        ));
    }
    text.push_str(piece);
    Ok(())
}

/// The arguments a model streamed for a tool call; empty means none.
fn tool_arguments(raw: &str) -> Result<serde_json::Value, String> {
    let raw = if raw.trim().is_empty() { "{}" } else { raw };
    serde_json::from_str(raw).map_err(|e| format!("the tool arguments are not JSON: {e}"))
}

/// The agent's API base URL without a trailing slash, or the provider's.
fn base_url<'a>(config: &'a AgentConfig, default: &'a str) -> &'a str {
    config
        .base_url
        .as_deref()
        .unwrap_or(default)
        .trim_end_matches('/')
}

/// Sends a provider request with a JSON body. An HTTP error status becomes
/// an upstream error carrying the provider's own message.
async fn send_json(
    agent_id: &str,
    request: reqwest::RequestBuilder,
    body: &serde_json::Value,
) -> Result<reqwest::Response, RpcError> {
    let response = request
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| transport_error(agent_id, &e))?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = crate::bounded::response_body(response, ERROR_BODY_BYTES)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body);
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| text.chars().take(300).collect());
    Err(status_error(agent_id, status.as_u16(), &message))
}

/// The most of an error answer read to find the provider's message.
const ERROR_BODY_BYTES: usize = 64 * 1024;

/// The provider could not be reached or the connection broke.
fn transport_error(agent_id: &str, e: &reqwest::Error) -> RpcError {
    let code = if e.is_timeout() {
        ErrorCode::Timeout
    } else {
        ErrorCode::UpstreamError
    };
    RpcError::new(
        code,
        format!("agent {agent_id}: cannot reach the provider: {e}"),
    )
    .with_retryable(true)
}

/// The provider answered with an HTTP error.
fn status_error(agent_id: &str, status: u16, message: &str) -> RpcError {
    RpcError::new(
        ErrorCode::UpstreamError,
        format!("agent {agent_id}: the provider answered {status}: {message}"),
    )
    .with_data(json!({ "httpStatus": status }))
    .with_retryable(status == 429 || status >= 500)
}

/// The provider's stream could not be understood.
fn malformed(agent_id: &str, what: &str) -> RpcError {
    RpcError::new(
        ErrorCode::UpstreamError,
        format!("agent {agent_id}: malformed reply from the provider: {what}"),
    )
    .with_retryable(true)
}
