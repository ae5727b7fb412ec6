//! `clawgate chat`: a terminal chat over the gateway's own protocol. One
//! connection carries everything: the `chat` turn, its streamed events,
//! and the requests typed while it runs (`/abort`, an approval's answer),
//! so input is read concurrently with the stream.

use super::screen::{self, Screen};
use super::{error_name, Target};
use crate::client::{Client, ClientError, Frame};
use crate::protocol::types::{
    AgentMessageEventState, AgentToolEventPhase, ApprovalDecision, ApprovalsRespondParams,
    ChatAbortParams, ChatParams, ChatParamsSessionKey, ChatResult, ChatResultStopReason,
    ErrorObject, ExecApproval, Scope, SessionsParams, SessionsResult, StatusParams,
};
use crate::protocol::{scope_covers, Event, Method};
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use tokio::sync::mpsc;

/// How many ended runs are remembered to tell their late events apart.
const FINISHED_REMEMBERED: usize = 8;

/// How many sessions `/sessions` lists.
const SESSIONS_SHOWN: u64 = 20;

const HELP: &str = "\
/sessions      list the sessions, newest first (* marks this one)
/new           start a new session
/session KEY   continue the session KEY
/abort         stop the reply that is streaming
/help          this list
/quit          leave (so does Ctrl-D)";

pub struct ChatArgs {
    pub agent: Option<String>,
    pub session: Option<String>,
    /// Send this one message, print the reply and return.
    pub message: Option<String>,
}

/// Runs the chat until the user leaves (or, with a message, until its
/// reply is complete). An Err is what ends the chat abnormally: the
/// connection, or the one message's turn, failed.
pub async fn run(target: Target, args: ChatArgs) -> Result<(), ClientError> {
    let one_shot = args.message.is_some();
    let mut client = Client::connect(&target.url, &target.options).await?;
    let hello = client.hello().clone();
    let agent = match args.agent {
        Some(agent) => agent,
        None => {
            let status = client.status(&StatusParams {}).await?;
            status
                .agents
                .into_iter()
                .find(|a| a.default)
                .map(|a| a.id)
                .unwrap_or_else(|| crate::agent::MAIN.to_string())
        }
    };
    let session = args
        .session
        .unwrap_or_else(|| crate::agent::main_session_key(&agent));
    let mut chat = Chat {
        client,
        screen: Screen::new(
            !one_shot && std::io::IsTerminal::is_terminal(&std::io::stdin()),
            one_shot,
        ),
        agent,
        session,
        can_approve: hello
            .scopes
            .iter()
            .any(|s| scope_covers(*s, Scope::OperatorApprovals)),
        turn: None,
        queue: VecDeque::new(),
        approvals: VecDeque::new(),
        pending: HashMap::new(),
        finished: VecDeque::new(),
        failed: None,
        quit: false,
    };
    let mut input = match args.message {
        Some(message) => {
            chat.queue.push_back(message);
            None
        }
        None => {
            chat.screen.status(&format!(
                "clawgate chat · agent {} · session {} · /help for commands",
                chat.agent, chat.session
            ));
            chat.screen.prompt();
            Some(read_lines())
        }
    };
    loop {
        if chat.turn.is_none() {
            if let Some(line) = chat.queue.pop_front() {
                chat.start_turn(line).await?;
            }
        }
        let idle = chat.turn.is_none() && chat.queue.is_empty() && chat.pending.is_empty();
        if chat.quit || (input.is_none() && idle) {
            break;
        }
        tokio::select! {
            line = next_line(&mut input) => match line {
                Some(line) => chat.on_line(&line).await?,
                None => input = None,
            },
            frame = chat.client.next_frame() => chat.on_frame(frame?).await?,
        }
    }
    chat.screen.end_line();
    chat.client.close().await;
    match chat.failed {
        Some(e) => Err(ClientError::Rpc(Box::new(e))),
        None => Ok(()),
    }
}

/// What a request sent by the chat was for.
enum Pending {
    Chat,
    Abort,
    Respond(ApprovalDecision),
    Sessions,
}

/// The turn this chat is running.
struct Turn {
    session: String,
    /// Learnt from the run's first event.
    run: Option<String>,
    /// /abort came before the run id was known.
    abort_asked: bool,
    /// The reply text shown so far.
    shown: String,
    aborted_shown: bool,
    thinking_shown: bool,
}

struct Chat {
    client: Client,
    screen: Screen,
    agent: String,
    session: String,
    can_approve: bool,
    turn: Option<Turn>,
    /// Lines typed while a reply streams, sent when it ends.
    queue: VecDeque<String>,
    /// Exec requests of this chat's session; the first is being asked.
    approvals: VecDeque<ExecApproval>,
    pending: HashMap<String, Pending>,
    /// Runs that ended, whose late events must not be taken for the next
    /// turn's.
    finished: VecDeque<String>,
    /// The error of the one message's turn (with -m).
    failed: Option<ErrorObject>,
    quit: bool,
}

impl Chat {
    async fn on_line(&mut self, line: &str) -> Result<(), ClientError> {
        let line = line.trim();
        if line.starts_with('/') {
            return self.command(line).await;
        }
        if !self.approvals.is_empty() {
            return self.answer(line).await;
        }
        if line.is_empty() {
            self.prompt();
        } else if self.turn.is_some() {
            self.queue.push_back(line.to_string());
            self.screen
                .status("(queued: sent when this reply ends; /abort stops it)");
        } else {
            self.start_turn(line.to_string()).await?;
        }
        Ok(())
    }

    /// A slash command (matched with its slash: `/sessions` is not the
    /// method of that name).
    async fn command(&mut self, command: &str) -> Result<(), ClientError> {
        let (name, rest) = command.split_once(' ').unwrap_or((command, ""));
        match name {
            "/quit" | "/exit" | "/q" => self.quit = true,
            "/help" | "/?" => {
                self.screen.status(HELP);
                self.prompt();
            }
            "/new" => {
                let name = format!("cli-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
                self.session = crate::agent::session_key(&self.agent, &name);
                self.screen.status(&format!("new session {}", self.session));
                self.prompt();
            }
            "/session" if !rest.trim().is_empty() => {
                match param::<ChatParamsSessionKey>(rest.trim()) {
                    Ok(key) => {
                        self.session = key.to_string();
                        self.screen.status(&format!("session {}", self.session));
                    }
                    Err(e) => self.screen.error(&e),
                }
                self.prompt();
            }
            "/sessions" => {
                let params = SessionsParams {
                    active_minutes: None,
                    agent_id: None,
                    cursor: None,
                    limit: std::num::NonZeroU64::new(SESSIONS_SHOWN).expect("not zero"),
                    search: None,
                };
                self.send(Method::Sessions, &params, Pending::Sessions)
                    .await?;
            }
            "/abort" => match &mut self.turn {
                Some(turn) => match turn.run.clone() {
                    Some(run) => self.abort(run).await?,
                    None => turn.abort_asked = true,
                },
                None => {
                    self.screen.status("nothing to abort");
                    self.prompt();
                }
            },
            _ => {
                self.screen
                    .warn(&format!("unknown command {name}; /help lists them"));
                self.prompt();
            }
        }
        Ok(())
    }

    async fn start_turn(&mut self, message: String) -> Result<(), ClientError> {
        let params = ChatParams {
            agent_id: Some(param(&self.agent).map_err(ClientError::Transport)?),
            idempotency_key: None,
            run_id: None,
            message: param(&message).map_err(ClientError::Transport)?,
            session_key: Some(param(&self.session).map_err(ClientError::Transport)?),
            wait: true,
        };
        self.send(Method::Chat, &params, Pending::Chat).await?;
        self.turn = Some(Turn {
            session: self.session.clone(),
            run: None,
            abort_asked: false,
            shown: String::new(),
            aborted_shown: false,
            thinking_shown: false,
        });
        Ok(())
    }

    async fn abort(&mut self, run: String) -> Result<(), ClientError> {
        let params = ChatAbortParams {
            run_id: param(&run).map_err(ClientError::Transport)?,
        };
        self.send(Method::ChatAbort, &params, Pending::Abort).await
    }

    async fn answer(&mut self, line: &str) -> Result<(), ClientError> {
        let decision = match line.to_ascii_lowercase().as_str() {
            "o" | "once" | "y" | "yes" => ApprovalDecision::AllowOnce,
            "a" | "always" => ApprovalDecision::AllowAlways,
            "d" | "deny" | "n" | "no" => ApprovalDecision::Deny,
            _ => {
                self.ask();
                return Ok(());
            }
        };
        let asked = self.approvals.pop_front().expect("an approval is asked");
        let params = ApprovalsRespondParams {
            decision,
            id: param(&asked.id).map_err(ClientError::Transport)?,
        };
        self.send(
            Method::ApprovalsRespond,
            &params,
            Pending::Respond(decision),
        )
        .await?;
        self.ask();
        Ok(())
    }

    async fn send(
        &mut self,
        method: Method,
        params: &impl serde::Serialize,
        purpose: Pending,
    ) -> Result<(), ClientError> {
        let params = serde_json::to_value(params)
            .map_err(|e| ClientError::Transport(format!("cannot encode params: {e}")))?;
        let id = self.client.send(method.name(), params).await?;
        self.pending.insert(id, purpose);
        Ok(())
    }

    async fn on_frame(&mut self, frame: Frame) -> Result<(), ClientError> {
        match frame {
            Frame::Response { id, outcome } => {
                let Some(purpose) = id.and_then(|id| self.pending.remove(&id)) else {
                    return Ok(());
                };
                self.on_response(purpose, outcome);
                Ok(())
            }
            Frame::Event(event) => self.on_event(*event).await,
        }
    }

    fn on_response(&mut self, purpose: Pending, outcome: Result<Value, ErrorObject>) {
        let outcome = match outcome {
            Ok(value) => value,
            Err(e) => {
                if matches!(purpose, Pending::Chat) {
                    self.turn = None;
                    if self.screen.one_shot() {
                        self.failed = Some(e);
                        return;
                    }
                }
                self.screen.error(&format!(
                    "{} ({}): {}",
                    error_name(e.code),
                    e.code,
                    e.message
                ));
                self.prompt();
                return;
            }
        };
        match purpose {
            Pending::Chat => {
                let turn = self.turn.take();
                if let Ok(result) = serde_json::from_value::<ChatResult>(outcome) {
                    // The answer can overtake the run's last events (or
                    // come without any, lacking operator.read): whatever
                    // of the reply was not shown yet is shown now, and
                    // the run's stragglers are ignored.
                    let (shown, aborted_shown) =
                        turn.map_or((String::new(), false), |t| (t.shown, t.aborted_shown));
                    let content = &result.message.content;
                    self.screen
                        .text(content.strip_prefix(shown.as_str()).unwrap_or_default());
                    if result.stop_reason == ChatResultStopReason::Aborted && !aborted_shown {
                        self.screen.status("⏹ aborted");
                    }
                    self.finished.push_back(result.run_id);
                    if self.finished.len() > FINISHED_REMEMBERED {
                        self.finished.pop_front();
                    }
                    if result.stop_reason == ChatResultStopReason::Length {
                        self.screen
                            .status("(cut off: the agent's maxTokens was reached)");
                    }
                }
                self.screen.end_line();
                self.prompt();
            }
            Pending::Abort => {
                if outcome["aborted"] == Value::Bool(false) {
                    self.screen.status("nothing to abort: the run had ended");
                }
            }
            Pending::Respond(decision) => {
                self.screen.status(&format!("✓ {decision}"));
            }
            Pending::Sessions => {
                match serde_json::from_value::<SessionsResult>(outcome) {
                    Ok(list) => self.show_sessions(&list),
                    Err(e) => self.screen.error(&format!("unreadable sessions: {e}")),
                }
                self.prompt();
            }
        }
    }

    async fn on_event(&mut self, event: Event) -> Result<(), ClientError> {
        match event {
            Event::AgentMessage(e) => {
                if !self.is_ours(&e.session_key, &e.run_id).await? {
                    return Ok(());
                }
                match e.state {
                    AgentMessageEventState::Delta => {
                        let delta = e.delta.as_deref().unwrap_or_default();
                        if let Some(turn) = &mut self.turn {
                            turn.shown.push_str(delta);
                        }
                        self.screen.text(delta);
                    }
                    AgentMessageEventState::Final => self.screen.end_line(),
                    AgentMessageEventState::Aborted => {
                        if let Some(turn) = &mut self.turn {
                            turn.aborted_shown = true;
                        }
                        self.screen.status("⏹ aborted");
                    }
                    // The chat call's error says it, once.
                    AgentMessageEventState::Error => {}
                }
            }
            Event::AgentThinking(e) => {
                if !self.is_ours(&e.session_key, &e.run_id).await? {
                    return Ok(());
                }
                let turn = self.turn.as_mut().expect("ours");
                if !std::mem::replace(&mut turn.thinking_shown, true) {
                    self.screen.status("· thinking…");
                }
            }
            Event::AgentTool(e) => {
                if !self.is_ours(&e.session_key, &e.run_id).await? {
                    return Ok(());
                }
                match (e.phase, &e.error) {
                    (AgentToolEventPhase::Start, _) => self
                        .screen
                        .status(&format!("⚙ {}", screen::tool_call(&e.name, &e.arguments))),
                    (AgentToolEventPhase::End, Some(error)) => self.screen.status(&format!(
                        "⚙ {} failed: {}",
                        e.name,
                        screen::shorten(error, 100)
                    )),
                    (AgentToolEventPhase::End, None) => {}
                }
            }
            // Other sessions' requests are for the operators watching them.
            Event::ApprovalsRequested(asked)
                if self.can_approve && !self.screen.one_shot() && self.concerns_us(&asked) =>
            {
                self.approvals.push_back(asked);
                if self.approvals.len() == 1 {
                    self.ask();
                }
            }
            Event::ApprovalsResolved(resolved) => {
                let Some(at) = self.approvals.iter().position(|a| a.id == resolved.id) else {
                    return Ok(());
                };
                self.approvals.remove(at);
                self.screen.status(&format!(
                    "the request was decided elsewhere: {}",
                    resolved.decision
                ));
                if at == 0 {
                    self.ask();
                }
            }
            Event::GatewayClosing(_) => self.screen.warn("the gateway is shutting down"),
            _ => {}
        }
        Ok(())
    }

    /// Whether an approval request comes from this chat's session or its
    /// running turn.
    fn concerns_us(&self, asked: &ExecApproval) -> bool {
        asked.session_key.as_deref() == Some(self.session.as_str())
            || self.turn.as_ref().map(|t| &t.session) == asked.session_key.as_ref()
    }

    /// Whether an agent event belongs to this chat's running turn. The
    /// first event of the turn's session names its run; an /abort that
    /// waited for it is sent then.
    async fn is_ours(&mut self, session: &str, run: &str) -> Result<bool, ClientError> {
        let Some(turn) = &mut self.turn else {
            return Ok(false);
        };
        if turn.session != session || self.finished.iter().any(|r| r == run) {
            return Ok(false);
        }
        match &turn.run {
            Some(known) => Ok(known == run),
            None => {
                turn.run = Some(run.to_string());
                if turn.abort_asked {
                    self.abort(run.to_string()).await?;
                }
                Ok(true)
            }
        }
    }

    /// Asks about the first waiting exec request, if any.
    fn ask(&mut self) {
        let Some(asked) = self.approvals.front() else {
            return;
        };
        let place = match (&asked.node_id, &asked.cwd) {
            (Some(node), _) => format!(" on node {node}"),
            (None, Some(cwd)) => format!(" in {cwd}"),
            (None, None) => String::new(),
        };
        self.screen.warn(&format!(
            "⚠ {} wants to run: {}{place}",
            asked.agent_id, asked.command
        ));
        self.screen.warn("allow once / always / deny [o/a/d]");
        self.screen.prompt();
    }

    fn show_sessions(&mut self, list: &SessionsResult) {
        if !list.sessions.iter().any(|s| s.key == self.session) {
            self.screen
                .plain(&format!("* {}  (new: no messages yet)", self.session));
        }
        let now = now_ms();
        for s in &list.sessions {
            let marker = if s.key == self.session { "*" } else { " " };
            let label = s
                .label
                .as_deref()
                .map(|l| format!(" “{l}”"))
                .unwrap_or_default();
            self.screen.plain(&format!(
                "{marker} {}{label}  {} messages, {}",
                s.key,
                s.message_count,
                ago(now.saturating_sub(s.updated_at_ms))
            ));
        }
        if list.next_cursor.is_some() {
            self.screen
                .status(&format!("(the {SESSIONS_SHOWN} most recent shown)"));
        }
    }

    /// Shows the prompt when the chat waits for the user.
    fn prompt(&mut self) {
        if self.turn.is_none() && self.approvals.is_empty() {
            self.screen.prompt();
        }
    }
}

/// A string parameter through its generated type, which checks the
/// schema's limits (a session key of at most 256 characters, say).
fn param<T: TryFrom<String>>(value: &str) -> Result<T, String>
where
    T::Error: std::fmt::Display,
{
    T::try_from(value.to_string()).map_err(|e| format!("{value:?} is not a valid parameter: {e}"))
}

/// Lines from stdin, read on a thread of their own: blocking reads never
/// hold up the stream. The channel closes at end of input.
fn read_lines() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    rx
}

async fn next_line(input: &mut Option<mpsc::Receiver<String>>) -> Option<String> {
    match input {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn ago(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => "just now".to_string(),
        60..3600 => format!("{} min ago", s / 60),
        3600..86400 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86400),
    }
}
