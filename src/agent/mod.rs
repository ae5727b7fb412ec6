//! Agents: which provider answers a turn, and how a reply streams.

mod echo;

use crate::config::Config;
use crate::protocol::types::{AgentConfig, AgentConfigProvider, ChatResultStopReason, Usage};
use crate::protocol::{ErrorCode, RpcError};

/// The agent id used when nothing is configured.
pub const MAIN: &str = "main";

/// An agent resolved from the configuration.
#[derive(Clone, Debug)]
pub struct Agent {
    pub id: String,
    pub provider: AgentConfigProvider,
    pub config: Option<AgentConfig>,
}

/// What a finished reply produced.
#[derive(Clone, Debug)]
pub struct Reply {
    pub text: String,
    pub usage: Usage,
    pub stop_reason: ChatResultStopReason,
}

impl Agent {
    /// The agent named `id`, else `agents.default`. With no agents
    /// configured, `main` is the offline echo agent.
    pub fn resolve(config: &Config, id: Option<&str>) -> Result<Agent, RpcError> {
        let id = id.unwrap_or(config.agents.default.as_str());
        if let Some(agent) = config.agents.extra.get(id) {
            return Ok(Agent {
                id: id.to_string(),
                provider: agent.provider,
                config: Some(agent.clone()),
            });
        }
        if id == MAIN && config.agents.extra.is_empty() {
            return Ok(Agent {
                id: MAIN.to_string(),
                provider: AgentConfigProvider::Echo,
                config: None,
            });
        }
        let mut known: Vec<&str> = config.agents.extra.keys().map(String::as_str).collect();
        known.sort_unstable();
        Err(RpcError::new(
            ErrorCode::NotFound,
            format!(
                "no agent {id}; configured agents: {}",
                if known.is_empty() {
                    "none (main is the offline echo agent)".to_string()
                } else {
                    known.join(", ")
                }
            ),
        ))
    }

    /// Whether the agent answers without any network (the echo provider).
    pub fn is_offline(&self) -> bool {
        self.provider == AgentConfigProvider::Echo
    }

    /// Runs one reply to `message`, calling `on_delta` with each piece of
    /// text as it arrives.
    pub async fn reply(
        &self,
        message: &str,
        on_delta: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Reply, RpcError> {
        match self.provider {
            AgentConfigProvider::Echo => Ok(echo::reply(message, on_delta).await),
            other => Err(RpcError::new(
                ErrorCode::Unavailable,
                format!("agent {}: the {other} provider is not available in this build yet; use provider echo", self.id),
            )),
        }
    }
}
