//! Chat turns: one run at a time per session, the reply streamed as
//! agent.message events, both sides of the turn stored.

use super::{idempotency, now_ms, Gateway};
use crate::agent::ToolBox;
use crate::agent::{Agent, Delta, Reply};
use crate::protocol::types::{
    AgentMessageEvent, AgentMessageEventState, AgentThinkingEvent, ChatAbortParams,
    ChatAbortResult, ChatMessage, ChatMessageStatus, ChatParams, ChatResult, ChatResultStopReason,
    Usage,
};
use crate::protocol::types::{AgentToolEvent, AgentToolEventPhase};
use crate::protocol::Tool;
use crate::protocol::{ErrorCode, Event, RpcError};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// Running turns by run id, so chat.abort can stop them.
#[derive(Default)]
pub struct Runs {
    running: Mutex<HashMap<String, tokio::sync::watch::Sender<bool>>>,
}

impl Runs {
    fn start(&self, run_id: &str) -> RunGuard<'_> {
        let (tx, rx) = tokio::sync::watch::channel(false);
        self.running
            .lock()
            .expect("runs")
            .insert(run_id.to_string(), tx);
        RunGuard {
            runs: self,
            run_id: run_id.to_string(),
            aborted: rx,
        }
    }

    /// Signals the run to stop; false when it is not running.
    pub fn abort(&self, run_id: &str) -> bool {
        let running = self.running.lock().expect("runs");
        running.get(run_id).is_some_and(|tx| tx.send(true).is_ok())
    }
}

struct RunGuard<'a> {
    runs: &'a Runs,
    run_id: String,
    aborted: tokio::sync::watch::Receiver<bool>,
}

impl RunGuard<'_> {
    async fn aborted(&mut self) {
        let _ = self.aborted.wait_for(|a| *a).await;
    }
}

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        self.runs.running.lock().expect("runs").remove(&self.run_id);
    }
}

/// One lock per session key, held for the length of a run.
#[derive(Default)]
pub struct SessionLocks {
    locks: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
}

impl SessionLocks {
    pub fn get(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().expect("session locks");
        if let Some(lock) = locks.get(key).and_then(Weak::upgrade) {
            return lock;
        }
        locks.retain(|_, weak| weak.strong_count() > 0);
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        locks.insert(key.to_string(), Arc::downgrade(&lock));
        lock
    }
}

pub async fn chat(gw: &Gateway, owner: &str, params: ChatParams) -> Result<ChatResult, RpcError> {
    let config = gw.config();
    let agent = Agent::resolve(&config, params.agent_id.as_deref().map(|s| s.as_str()))?;
    let session_key = params
        .session_key
        .map(|k| k.to_string())
        .unwrap_or_else(|| crate::agent::main_session_key(&agent.id));
    let lock = gw.session_locks.get(&session_key);
    let _turn = if params.wait {
        lock.lock_owned().await
    } else {
        lock.try_lock_owned().map_err(|_| {
            RpcError::new(
                ErrorCode::Conflict,
                format!("session {session_key} is busy with another run"),
            )
        })?
    };
    // Checked under the session lock, so two requests with one key cannot both run.
    let idempotency_key = idempotency::key(
        crate::protocol::Method::Chat.name(),
        owner,
        params.idempotency_key.as_deref().map(String::as_str),
    );
    if let Some(earlier) = idempotency::replay(gw, idempotency_key.as_ref()).await? {
        return Ok(earlier);
    }
    let turn = TurnRequest {
        agent,
        session: Session::Stored(session_key),
        message: params.message.to_string(),
        run_id: None,
        deadline: None,
    };
    let done = run_turn(gw, turn, &mut |_| {}).await?;
    let result = ChatResult {
        run_id: done.run_id,
        session_key: done.session_key,
        agent_id: done.agent_id,
        message: done.stored.expect("stored sessions store the reply"),
        usage: done.usage,
        stop_reason: done.stop_reason,
    };
    idempotency::remember(gw, idempotency_key, &result).await?;
    Ok(result)
}

/// Where a turn's conversation lives.
pub enum Session {
    /// A stored session: history comes from and goes to the store. The
    /// caller holds the session's lock.
    Stored(String),
    /// Nothing is stored; the history is given.
    Stateless(Vec<(String, String)>),
}

pub struct TurnRequest {
    pub agent: Agent,
    pub session: Session,
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

/// Runs one turn: streams agent.message events (and each delta to
/// `on_delta`), honours chat.abort, and stores both sides of a stored
/// session's turn. Everything logged meanwhile carries the run's id,
/// session and agent.
pub async fn run_turn(
    gw: &Gateway,
    mut request: TurnRequest,
    on_delta: &mut (dyn FnMut(&str) + Send),
) -> Result<TurnDone, RpcError> {
    let run_id = request
        .run_id
        .get_or_insert_with(|| format!("run-{}", uuid::Uuid::new_v4().simple()))
        .clone();
    let session_key = match &request.session {
        Session::Stored(key) => key.clone(),
        Session::Stateless(_) => stateless_key(&run_id),
    };
    let span = tracing::info_span!("run", runId = %run_id, sessionKey = %session_key, agentId = %request.agent.id);
    tracing::Instrument::instrument(run_turn_in_span(gw, request, on_delta), span).await
}

/// The key events of a turn without a stored session carry.
fn stateless_key(run_id: &str) -> String {
    format!("stateless:{run_id}")
}

async fn run_turn_in_span(
    gw: &Gateway,
    request: TurnRequest,
    on_delta: &mut (dyn FnMut(&str) + Send),
) -> Result<TurnDone, RpcError> {
    let TurnRequest {
        agent,
        session,
        message,
        run_id,
        deadline,
    } = request;
    let run_id = run_id.expect("run_turn names every run");
    let (session_key, history, session_model) = match session {
        Session::Stored(key) => {
            let (history, model) = context(gw, &key).await?;
            gw.rt.store
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
        gw,
        run_id: run_id.clone(),
        session_key: event_session.clone(),
        agent_id: agent.id.clone(),
        seq: AtomicU64::new(0),
    };
    let event = |state: AgentMessageEventState| events.message(state);
    let tools = TurnTools {
        events: &events,
        allowed: agent
            .config
            .as_ref()
            .map(|c| c.tools.iter().filter_map(|t| Tool::from_name(t)).collect())
            .unwrap_or_default(),
    };
    let mut partial = String::new();
    let mut stream = |delta: Delta<'_>| match delta {
        Delta::Text(text) => {
            partial.push_str(text);
            on_delta(text);
            let mut e = event(AgentMessageEventState::Delta);
            e.delta = Some(text.to_string());
            gw.rt.bus.publish(Event::AgentMessage(e));
        }
        Delta::Thinking(text) => events.thinking(text),
    };
    let mut run = gw.runs.start(&run_id);
    let started = std::time::Instant::now();
    let timed_out = async {
        match deadline {
            Some(deadline) => tokio::time::sleep_until(deadline).await,
            None => std::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        reply = agent.reply(&gw.rt.http, &tools, history, session_model, &message, &mut stream) => Some(reply),
        _ = run.aborted() => None,
        _ = timed_out => Some(Err(RpcError::new(ErrorCode::Timeout, "the turn did not finish before its deadline"))),
    };
    drop(run);
    let (reply, status, state) = match outcome {
        Some(Ok(reply)) => {
            gw.rt.metrics
                .upstream(&agent.id, &agent.provider, started.elapsed());
            gw.rt.metrics.turn(&agent.id, "complete");
            gw.rt.metrics.tokens(
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
            gw.rt.metrics.turn(&agent.id, e.code.name());
            // Debug-quoted: the message may quote the upstream.
            tracing::warn!("turn failed: {:?}", e.message);
            let mut failed = event(AgentMessageEventState::Error);
            failed.error = Some(e.message.clone());
            gw.rt.bus.publish(Event::AgentMessage(failed));
            return Err(e);
        }
        None => {
            gw.rt.metrics.turn(&agent.id, "aborted");
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
            gw.rt.store
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
    gw.rt.bus.publish(Event::AgentMessage(done));
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

/// Messages of the session a provider sees, and the session's model override.
const CONTEXT_MESSAGES: usize = 100;

async fn context(
    gw: &Gateway,
    session_key: &str,
) -> Result<(Vec<(String, String)>, Option<String>), RpcError> {
    let history = gw
        .rt.store
        .history(session_key.to_string(), CONTEXT_MESSAGES, None)
        .await
        .map_err(RpcError::from)?
        .map(|(messages, _)| messages)
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.status == ChatMessageStatus::Complete)
        .map(|m| (m.role.to_string(), m.content))
        .collect();
    let model = gw
        .rt.store
        .session(session_key.to_string())
        .await
        .map_err(RpcError::from)?
        .and_then(|s| s.model);
    Ok((history, model))
}

pub fn abort(gw: &Gateway, params: ChatAbortParams) -> ChatAbortResult {
    let run_id = params.run_id.to_string();
    ChatAbortResult {
        aborted: gw.runs.abort(&run_id),
        run_id,
    }
}

/// Builds the events of one run, numbering them with one sequence.
struct RunEvents<'a> {
    gw: &'a Gateway,
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
        self.gw
            .rt.bus
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
        self.gw.rt.bus.publish(Event::AgentTool(AgentToolEvent {
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
    allowed: Vec<Tool>,
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
            .collect()
    }

    fn call<'a>(
        &'a self,
        call_id: &'a str,
        name: &'a str,
        arguments: Value,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Value, String>> + Send + 'a>>
    {
        Box::pin(async move {
            self.events
                .tool(AgentToolEventPhase::Start, call_id, name, &arguments, None);
            let outcome = match Tool::from_name(name).filter(|t| self.allowed.contains(t)) {
                Some(tool) => {
                    let caller = crate::exec::Caller {
                        agent_id: &self.events.agent_id,
                        session_key: &self.events.session_key,
                    };
                    super::tools::run(self.events.gw, &caller, tool, arguments.clone()).await
                }
                None => Err(format!("no tool {name} is available to this agent")),
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
