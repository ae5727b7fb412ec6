//! The turn engine: one run at a time per session (the `SessionGuard`
//! that only `Turns` hands out), the reply streamed as agent.* events,
//! both sides of a stored session's turn kept in the store. The chat RPC,
//! channels, cron and the OpenAI-compatible API all run turns here.

use super::runs::{RunGuard, Runs};
use super::{Agent, Delta, Reply, ToolBox};
use crate::clock::now_ms;
use crate::locks::KeyedLocks;
use crate::protocol::types::{
    AgentMessageEvent, AgentMessageEventState, AgentThinkingEvent, AgentToolEvent,
    AgentToolEventPhase, ChatMessage, ChatMessageStatus, ChatResultStopReason, ChatWaitResult,
    Usage,
};
use crate::protocol::{ErrorCode, Event, RpcError, Tool};
use crate::runtime::Runtime;
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{OnceLock, Weak};
use tokio::sync::OwnedMutexGuard;

/// Who is calling a tool.
#[derive(Clone, Copy)]
pub struct Caller<'a> {
    pub agent_id: &'a str,
    pub session_key: &'a str,
}

/// A boxed future of a tool's outcome.
pub type ToolFuture<'a> = Pin<Box<dyn Future<Output = Result<Value, String>> + Send + 'a>>;

/// Runs the tools of schema/tools.json; given to `Turns` by whoever
/// builds the services the tools reach (cron, nodes, exec).
pub trait ToolRunner: Send + Sync {
    /// Runs one call of a tool the agent has; an Err is shown to the model.
    fn run<'a>(&'a self, caller: Caller<'a>, tool: Tool, arguments: Value) -> ToolFuture<'a>;

    /// The tools of running plugins among `configured` (an agent's tools
    /// list), as (name for the model, description, parameters schema).
    fn plugin_tools(&self, configured: &[String]) -> Vec<(String, String, Value)>;

    /// Runs one call of a plugin tool, by its name for the model.
    fn run_plugin<'a>(&'a self, name: &'a str, arguments: Value) -> ToolFuture<'a>;
}

/// The name of a session's lease in a cluster.
fn session_lease(key: &str) -> String {
    format!("{}{key}", crate::cluster::SESSION_LEASE_PREFIX)
}

/// Proof that the caller holds a session's lock: no other turn runs on
/// that session until it is dropped.
pub struct SessionGuard {
    key: String,
    _held: OwnedMutexGuard<()>,
    /// In a cluster: the session's lease, so no other gateway runs a
    /// turn on it either.
    lease: Option<crate::cluster::Lease>,
}

impl SessionGuard {
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Resolves when the session's lease is lost (the shared store could
    /// not be reached for its whole life): another gateway may run a turn
    /// on the session from then on. Never, outside a cluster.
    async fn lease_lost(&self) {
        match &self.lease {
            Some(lease) => lease.lost().await,
            None => std::future::pending().await,
        }
    }
}

/// Where a turn's conversation lives.
pub enum Session<'a> {
    /// A stored session: history comes from and goes to the store.
    Stored(&'a SessionGuard),
    /// Nothing is stored; the history is given as (role, content).
    Stateless(Vec<(String, String)>),
}

pub struct TurnRequest<'a> {
    pub agent: Agent,
    pub session: Session<'a>,
    pub message: String,
    /// The run's id; generated when None.
    pub run_id: Option<String>,
    /// When the turn fails with timeout (the transcript keeps the user's
    /// message, as after any failed turn).
    pub deadline: Option<tokio::time::Instant>,
}

pub struct TurnDone {
    pub run_id: String,
    pub session_key: String,
    pub agent_id: String,
    pub text: String,
    pub usage: Usage,
    pub stop_reason: ChatResultStopReason,
    /// The stored assistant message, for stored sessions.
    pub stored: Option<ChatMessage>,
}

/// The turns of every session: their locks, the runs going on, and the
/// tools they may call.
pub struct Turns {
    rt: Runtime,
    sessions: KeyedLocks,
    runs: Runs,
    tools: OnceLock<Weak<dyn ToolRunner>>,
}

impl Turns {
    pub fn new(rt: Runtime) -> Self {
        Turns {
            rt,
            sessions: KeyedLocks::default(),
            runs: Runs::default(),
            tools: OnceLock::new(),
        }
    }

    /// Gives the turns their tools. Weak, because the tools (cron's among
    /// them) run turns themselves.
    pub fn set_tools(&self, tools: Weak<dyn ToolRunner>) {
        let _ = self.tools.set(tools);
    }

    /// Waits until no other turn runs on `key`, on this gateway or (in a
    /// cluster) any other; `unavailable` if the shared store cannot be
    /// reached.
    pub async fn lock(&self, key: String) -> Result<SessionGuard, RpcError> {
        let held = self.sessions.lock(&key).await;
        let lease = match &self.rt.membership {
            Some(membership) => Some(membership.leases.acquire(&session_lease(&key)).await?),
            None => None,
        };
        Ok(SessionGuard {
            key,
            _held: held,
            lease,
        })
    }

    /// The session `key` if no turn runs on it, else `conflict`.
    pub async fn try_lock(&self, key: String) -> Result<SessionGuard, RpcError> {
        let busy = || {
            RpcError::new(
                ErrorCode::Conflict,
                format!("session {key} is busy with another run"),
            )
        };
        let held = self.sessions.try_lock(&key).map_err(|_| busy())?;
        let lease = match &self.rt.membership {
            Some(membership) => Some(
                membership
                    .leases
                    .try_acquire(&session_lease(&key))
                    .await?
                    .ok_or_else(busy)?,
            ),
            None => None,
        };
        Ok(SessionGuard {
            key,
            _held: held,
            lease,
        })
    }

    /// Signals the run to stop; false when it is not running.
    pub fn abort(&self, run_id: &str) -> bool {
        self.runs.abort(run_id)
    }

    /// Whether a run with this id runs here or ended here lately.
    pub fn knows(&self, run_id: &str) -> bool {
        self.runs.knows(run_id)
    }

    /// Whether a run with this id is running now.
    pub fn is_running(&self, run_id: &str) -> bool {
        self.runs.is_running(run_id)
    }

    /// Runs one turn: streams agent.message events (and each delta to
    /// `on_delta`), honours `abort`, and stores both sides of a stored
    /// session's turn. Everything logged meanwhile carries the run's id,
    /// session and agent.
    pub async fn run(
        &self,
        mut request: TurnRequest<'_>,
        on_delta: &mut (dyn FnMut(&str) + Send),
    ) -> Result<TurnDone, RpcError> {
        let run_id = request
            .run_id
            .get_or_insert_with(|| format!("run-{}", uuid::Uuid::new_v4().simple()))
            .clone();
        let session_key = match &request.session {
            Session::Stored(guard) => guard.key().to_string(),
            Session::Stateless(_) => stateless_key(&run_id),
        };
        let span = tracing::info_span!("run", runId = %run_id, sessionKey = %session_key, agentId = %request.agent.id);
        // Claimed first: a run id a client chose may already be in use.
        let mut run = self.runs.start(&run_id).ok_or_else(|| {
            RpcError::new(
                ErrorCode::Conflict,
                format!("run {run_id} is already running"),
            )
        })?;
        let result =
            tracing::Instrument::instrument(self.run_in_span(request, &mut run, on_delta), span)
                .await;
        run.end(&result);
        result
    }

    /// How a run ended, waiting up to `timeout` for it to end.
    pub async fn wait(&self, run_id: &str, timeout: std::time::Duration) -> ChatWaitResult {
        self.runs.wait(run_id, timeout).await
    }

    async fn run_in_span(
        &self,
        request: TurnRequest<'_>,
        run: &mut RunGuard<'_>,
        on_delta: &mut (dyn FnMut(&str) + Send),
    ) -> Result<TurnDone, RpcError> {
        let TurnRequest {
            agent,
            session,
            message,
            run_id,
            deadline,
        } = request;
        let rt = &self.rt;
        let run_id = run_id.expect("run names every run");
        let guard = match &session {
            Session::Stored(guard) => Some(*guard),
            Session::Stateless(_) => None,
        };
        let lease_lost = async {
            match guard {
                Some(guard) => guard.lease_lost().await,
                None => std::future::pending().await,
            }
        };
        let (session_key, history, session_model) = match session {
            Session::Stored(guard) => {
                let key = guard.key().to_string();
                let (history, model) = self.context(&key).await?;
                rt.stores
                    .sessions
                    .begin_turn(
                        key.clone(),
                        agent.id.clone(),
                        run_id.clone(),
                        message.clone(),
                        now_ms(),
                    )
                    .await
                    .map_err(RpcError::from)?;
                (Some(key), history, model)
            }
            Session::Stateless(history) => (None, history, None),
        };
        let event_session = session_key
            .clone()
            .unwrap_or_else(|| stateless_key(&run_id));
        let events = RunEvents {
            rt,
            run_id: run_id.clone(),
            session_key: event_session.clone(),
            agent_id: agent.id.clone(),
            seq: AtomicU64::new(0),
        };
        let event = |state: AgentMessageEventState| events.message(state);
        let configured: &[String] = agent.config.as_ref().map_or(&[], |c| &c.tools);
        let runner = self.tools.get().and_then(Weak::upgrade);
        let tools = TurnTools {
            events: &events,
            plugin: runner
                .as_ref()
                .map(|r| r.plugin_tools(configured))
                .unwrap_or_default(),
            runner,
            allowed: configured
                .iter()
                .filter_map(|t| Tool::from_name(t))
                .collect(),
        };
        let mut partial = String::new();
        let mut stream = |delta: Delta<'_>| match delta {
            Delta::Text(text) => {
                partial.push_str(text);
                on_delta(text);
                let mut e = event(AgentMessageEventState::Delta);
                e.delta = Some(text.to_string());
                rt.bus.publish(Event::AgentMessage(e));
            }
            Delta::Thinking(text) => events.thinking(text),
        };
        let started = std::time::Instant::now();
        let timed_out = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        let outcome = tokio::select! {
            reply = agent.reply(&rt.http, &tools, history, session_model, &message, &mut stream) => Some(reply),
            _ = run.aborted() => None,
            _ = timed_out => Some(Err(RpcError::new(ErrorCode::Timeout, "the turn did not finish before its deadline"))),
            _ = lease_lost => Some(Err(RpcError::new(ErrorCode::Unavailable, "the turn was stopped: this gateway lost the session's lease (the shared store could not be reached for cluster.leaseMs)"))),
        };
        run.settled();
        let (reply, status, state) = match outcome {
            Some(Ok(reply)) => {
                rt.metrics
                    .upstream(&agent.id, &agent.provider, started.elapsed());
                rt.metrics.turn(&agent.id, "complete");
                rt.metrics.tokens(
                    &agent.id,
                    reply.usage.input_tokens,
                    reply.usage.output_tokens,
                );
                (
                    reply,
                    ChatMessageStatus::Complete,
                    AgentMessageEventState::Final,
                )
            }
            Some(Err(e)) => {
                rt.metrics.turn(&agent.id, e.code.name());
                // Debug-quoted: the message may quote the upstream.
                tracing::warn!("turn failed: {:?}", e.message);
                let mut failed = event(AgentMessageEventState::Error);
                failed.error = Some(e.message.clone());
                rt.bus.publish(Event::AgentMessage(failed));
                return Err(e);
            }
            None => {
                rt.metrics.turn(&agent.id, "aborted");
                let words = partial.split_whitespace().count() as u64;
                let reply = Reply {
                    text: partial,
                    usage: Usage {
                        input_tokens: 0,
                        output_tokens: words,
                    },
                    stop_reason: ChatResultStopReason::Aborted,
                };
                (
                    reply,
                    ChatMessageStatus::Aborted,
                    AgentMessageEventState::Aborted,
                )
            }
        };
        let stored = match &session_key {
            Some(key) => Some(
                rt.stores
                    .sessions
                    .finish_turn(
                        key.clone(),
                        run_id.clone(),
                        reply.text.clone(),
                        status,
                        reply.usage.clone(),
                        now_ms(),
                    )
                    .await
                    .map_err(RpcError::from)?,
            ),
            None => None,
        };
        let mut done = event(state);
        done.message = stored.clone();
        rt.bus.publish(Event::AgentMessage(done));
        tracing::info!(
            stopReason = %reply.stop_reason,
            inputTokens = reply.usage.input_tokens,
            outputTokens = reply.usage.output_tokens,
            "turn finished"
        );
        Ok(TurnDone {
            run_id,
            session_key: event_session,
            agent_id: agent.id,
            text: reply.text,
            usage: reply.usage,
            stop_reason: reply.stop_reason,
            stored,
        })
    }

    /// The session's messages a provider sees, and its model override.
    async fn context(
        &self,
        session_key: &str,
    ) -> Result<(Vec<(String, String)>, Option<String>), RpcError> {
        let store = &self.rt.stores.sessions;
        let history = store
            .history(session_key.to_string(), CONTEXT_MESSAGES, None)
            .await
            .map_err(RpcError::from)?
            .map(|(messages, _)| messages)
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m.status == ChatMessageStatus::Complete)
            .map(|m| (m.role.to_string(), m.content))
            .collect();
        let model = store
            .session(session_key.to_string())
            .await
            .map_err(RpcError::from)?
            .and_then(|s| s.model);
        Ok((history, model))
    }
}

/// Messages of the session a provider sees, at most.
const CONTEXT_MESSAGES: usize = 100;

/// The key events of a turn without a stored session carry.
fn stateless_key(run_id: &str) -> String {
    format!("stateless:{run_id}")
}

/// Builds the events of one run, numbering them with one sequence.
struct RunEvents<'a> {
    rt: &'a Runtime,
    run_id: String,
    session_key: String,
    agent_id: String,
    seq: AtomicU64,
}

impl RunEvents<'_> {
    fn next_seq(&self) -> std::num::NonZeroU64 {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        std::num::NonZeroU64::new(seq).expect("counted from 1")
    }

    fn message(&self, state: AgentMessageEventState) -> AgentMessageEvent {
        AgentMessageEvent {
            run_id: self.run_id.clone(),
            session_key: self.session_key.clone(),
            agent_id: self.agent_id.clone(),
            run_seq: self.next_seq(),
            state,
            delta: None,
            message: None,
            error: None,
        }
    }

    fn thinking(&self, text: &str) {
        self.rt
            .bus
            .publish(Event::AgentThinking(AgentThinkingEvent {
                run_id: self.run_id.clone(),
                session_key: self.session_key.clone(),
                agent_id: self.agent_id.clone(),
                run_seq: self.next_seq(),
                delta: text.to_string(),
            }));
    }

    fn tool(
        &self,
        phase: AgentToolEventPhase,
        call_id: &str,
        name: &str,
        arguments: &Value,
        outcome: Option<&Result<Value, String>>,
    ) {
        self.rt.bus.publish(Event::AgentTool(AgentToolEvent {
            run_id: self.run_id.clone(),
            session_key: self.session_key.clone(),
            agent_id: self.agent_id.clone(),
            run_seq: self.next_seq(),
            phase,
            call_id: call_id.to_string(),
            name: name.to_string(),
            arguments: arguments.clone(),
            result: outcome.and_then(|o| o.as_ref().ok().cloned()),
            error: outcome.and_then(|o| o.as_ref().err().cloned()),
        }));
    }
}

/// The agent's configured tools, each call announced as agent.tool.
struct TurnTools<'a> {
    events: &'a RunEvents<'a>,
    runner: Option<std::sync::Arc<dyn ToolRunner>>,
    allowed: Vec<Tool>,
    /// Plugin tools as offered: (name for the model, description, schema).
    plugin: Vec<(String, String, Value)>,
}

impl ToolBox for TurnTools<'_> {
    fn offered(&self) -> Vec<(String, String, Value)> {
        self.allowed
            .iter()
            .map(|tool| {
                let schema = crate::protocol::Schemas::get()
                    .def(tool.params_def())
                    .cloned()
                    .unwrap_or(Value::Null);
                (tool.name().to_string(), tool.summary().to_string(), schema)
            })
            .chain(self.plugin.iter().cloned())
            .collect()
    }

    fn call<'a>(&'a self, call_id: &'a str, name: &'a str, arguments: Value) -> ToolFuture<'a> {
        Box::pin(async move {
            self.events
                .tool(AgentToolEventPhase::Start, call_id, name, &arguments, None);
            let tool = Tool::from_name(name).filter(|t| self.allowed.contains(t));
            let of_plugin = self.plugin.iter().any(|(n, _, _)| n == name);
            let outcome = match (tool, &self.runner) {
                (Some(tool), Some(runner)) => {
                    let caller = Caller {
                        agent_id: &self.events.agent_id,
                        session_key: &self.events.session_key,
                    };
                    runner.run(caller, tool, arguments.clone()).await
                }
                (None, Some(runner)) if of_plugin => {
                    runner.run_plugin(name, arguments.clone()).await
                }
                _ => Err(format!("no tool {name} is available to this agent")),
            };
            self.events.tool(
                AgentToolEventPhase::End,
                call_id,
                name,
                &arguments,
                Some(&outcome),
            );
            outcome
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::EventKind;
    use crate::store::SessionStore;
    use crate::testing;
    use std::sync::Arc;

    fn echo(fakes: &testing::Fakes) -> Agent {
        Agent::resolve(&fakes.rt.config(), None).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_stored_turn_streams_its_reply_and_keeps_both_sides() {
        let fakes = testing::runtime(testing::config(""));
        let turns = Turns::new(fakes.rt.clone());
        let session = turns.lock("agent:main:main".into()).await.unwrap();
        let mut streamed = String::new();
        let request = TurnRequest {
            agent: echo(&fakes),
            session: Session::Stored(&session),
            message: "hello there".into(),
            run_id: None,
            deadline: None,
        };
        let done = turns
            .run(request, &mut |d| streamed.push_str(d))
            .await
            .unwrap();
        assert_eq!(
            (done.text.as_str(), streamed.as_str()),
            ("hello there", "hello there")
        );
        assert_eq!(
            done.stored.as_ref().unwrap().status,
            ChatMessageStatus::Complete
        );
        let events = fakes.bus.payloads(EventKind::AgentMessage);
        let states: Vec<&str> = events
            .iter()
            .map(|e| e["state"].as_str().unwrap())
            .collect();
        assert_eq!(states, ["delta", "delta", "final"]);
        let seqs: Vec<u64> = events
            .iter()
            .map(|e| e["runSeq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, [1, 2, 3]);
        let (messages, _) = fakes
            .store
            .history("agent:main:main".into(), 10, None)
            .await
            .unwrap()
            .unwrap();
        let contents: Vec<&str> = messages.iter().map(|m| m.content.as_str()).collect();
        assert_eq!(contents, ["hello there", "hello there"]);
    }

    #[tokio::test]
    async fn a_session_runs_one_turn_at_a_time() {
        let fakes = testing::runtime(testing::config(""));
        let turns = Turns::new(fakes.rt.clone());
        let held = turns.try_lock("s".into()).await.unwrap();
        let busy = turns.try_lock("s".into()).await.err().unwrap();
        assert_eq!(busy.code, ErrorCode::Conflict);
        assert!(turns.try_lock("other".into()).await.is_ok());
        drop(held);
        assert!(turns.try_lock("s".into()).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn an_aborted_turn_keeps_what_was_said_so_far() {
        let fakes = testing::runtime(testing::config(""));
        let turns = Arc::new(Turns::new(fakes.rt.clone()));
        let running = tokio::spawn({
            let turns = Arc::clone(&turns);
            let agent = echo(&fakes);
            async move {
                let session = turns.lock("s".into()).await.unwrap();
                let request = TurnRequest {
                    agent,
                    session: Session::Stored(&session),
                    message: "word ".repeat(1000),
                    run_id: Some("run-1".into()),
                    deadline: None,
                };
                turns.run(request, &mut |_| {}).await
            }
        });
        while fakes.bus.payloads(EventKind::AgentMessage).len() < 3 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        assert!(turns.abort("run-1"));
        let done = running.await.unwrap().unwrap();
        assert_eq!(done.stop_reason, ChatResultStopReason::Aborted);
        let stored = done.stored.unwrap();
        assert_eq!(stored.status, ChatMessageStatus::Aborted);
        assert!(stored.content.starts_with("word word") && stored.content.len() < 5000);
        assert!(!turns.abort("run-1"), "a finished run cannot be aborted");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stateless_turn_stores_nothing() {
        let fakes = testing::runtime(testing::config(""));
        let turns = Turns::new(fakes.rt.clone());
        let request = TurnRequest {
            agent: echo(&fakes),
            session: Session::Stateless(vec![("user".into(), "earlier".into())]),
            message: "now".into(),
            run_id: None,
            deadline: None,
        };
        let done = turns.run(request, &mut |_| {}).await.unwrap();
        assert!(done.stored.is_none() && done.session_key.starts_with("stateless:"));
        let (sessions, _) = fakes
            .store
            .list_sessions(crate::store::SessionFilter {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(sessions.is_empty());
    }
}
