//! The inbound pipeline: security policy, routing to an agent, the
//! session key, the agent turn, and the reply back through the channel
//! in pieces the channel accepts.

use super::{irc, plugin, telegram, webhook, ChannelManager, Key, Policy};
use crate::agent::Agent;
use crate::agent::{Session, TurnRequest};
use crate::protocol::types::{Binding, DmPolicy, GroupPolicy, SessionConfigDmScope};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{oneshot, Semaphore};

/// Messages of one account being answered or waiting for their turn; past
/// this, new ones are refused rather than piling up without bound.
pub const MAX_PENDING: usize = 64;

/// Message counts of one account, and its bound on pending messages.
pub struct Counters {
    pub received: AtomicU64,
    pub replied: AtomicU64,
    pub dropped: AtomicU64,
    pub failed: AtomicU64,
    pending: Arc<Semaphore>,
    /// Per conversation: the signal that the last message taken has been
    /// answered, for the next one to wait on.
    lines: Mutex<HashMap<String, (u64, oneshot::Receiver<()>)>>,
    next_place: AtomicU64,
}

/// A message's place in its conversation's line; leaving it (answered,
/// or given up) lets the next message of the conversation go.
struct Place {
    counters: Arc<Counters>,
    conversation: String,
    id: u64,
    _answered: oneshot::Sender<()>,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut lines = self.counters.lines.lock().expect("lines");
        if lines
            .get(&self.conversation)
            .is_some_and(|(id, _)| *id == self.id)
        {
            lines.remove(&self.conversation);
        }
    }
}

impl Counters {
    /// Lines a message up behind the conversation's previous one: the
    /// future resolves once that one has been answered, so a peer's
    /// messages are answered in the order they came even though each is
    /// answered in a task of its own.
    fn line_up(
        self: &Arc<Self>,
        conversation: String,
    ) -> (Place, impl std::future::Future<Output = ()>) {
        let (answered, next_may_go) = oneshot::channel();
        let id = self.next_place.fetch_add(1, Ordering::Relaxed);
        let before = self
            .lines
            .lock()
            .expect("lines")
            .insert(conversation.clone(), (id, next_may_go))
            .map(|(_, before)| before);
        let place = Place {
            counters: Arc::clone(self),
            conversation,
            id,
            _answered: answered,
        };
        (place, async move {
            if let Some(before) = before {
                let _ = before.await;
            }
        })
    }
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            received: AtomicU64::default(),
            replied: AtomicU64::default(),
            dropped: AtomicU64::default(),
            failed: AtomicU64::default(),
            pending: Arc::new(Semaphore::new(MAX_PENDING)),
            lines: Mutex::default(),
            next_place: AtomicU64::default(),
        }
    }
}

/// Why a message was not taken.
#[derive(Debug, PartialEq)]
pub enum Refused {
    /// The account's policy does not let the sender in.
    Policy(&'static str),
    /// Too many messages of the account are pending.
    Busy,
}

/// A message as every channel hands it over.
#[derive(Clone, Debug)]
pub struct Inbound {
    /// Who sent it, as allowFrom names senders (IRC: nick!user@host).
    pub from: String,
    /// Who to answer and whose session it is (IRC: the nick).
    pub peer: String,
    /// The group or channel it was said in; None for a direct message.
    pub group: Option<String>,
    pub text: String,
    /// Whether it mentions the assistant (groups only).
    pub mentioned: bool,
}

/// How to answer, by channel.
#[derive(Clone)]
pub enum Reply {
    Telegram(telegram::Replier),
    Irc(irc::Replier),
    Webhook(webhook::Replier),
    Plugin(plugin::Replier),
}

impl Reply {
    /// The longest piece the channel takes at once, in characters.
    pub(super) fn limit(&self) -> usize {
        match self {
            Reply::Telegram(_) => telegram::MAX_MESSAGE_CHARS,
            Reply::Irc(_) => irc::MAX_LINE_CHARS,
            Reply::Webhook(_) => usize::MAX,
            Reply::Plugin(r) => r.limit(),
        }
    }

    pub(super) async fn send(&self, text: &str, session_key: &str) -> Result<(), String> {
        match self {
            Reply::Telegram(r) => r.send(text).await,
            Reply::Irc(r) => r.send(text).await,
            Reply::Webhook(r) => r.send(text, session_key).await,
            Reply::Plugin(r) => r.send(text, session_key).await,
        }
    }
}

/// Takes one inbound message: drops it (counted, unanswered) when the
/// policy refuses it or the account has too many pending, else answers it
/// in the background.
pub fn dispatch(
    manager: &Arc<ChannelManager>,
    key: &Key,
    policy: &Policy,
    counters: &Arc<super::Counters>,
    message: Inbound,
    reply: Reply,
) -> Result<(), Refused> {
    counters.received.fetch_add(1, Ordering::Relaxed);
    let taken = allowed(policy, &message)
        .map_err(Refused::Policy)
        .and_then(|()| {
            Arc::clone(&counters.pending)
                .try_acquire_owned()
                .map_err(|_| Refused::Busy)
        });
    let permit = match taken {
        Ok(permit) => permit,
        Err(refused) => {
            counters.dropped.fetch_add(1, Ordering::Relaxed);
            let why = match &refused {
                Refused::Policy(why) => why,
                Refused::Busy => "too many messages of this account are pending",
            };
            tracing::info!(channel = %key, from = %message.from, group = ?message.group, "message dropped: {why}");
            return Err(refused);
        }
    };
    // A group's messages share its session; a person's direct ones theirs.
    let conversation = match &message.group {
        Some(group) => format!("group\n{group}"),
        None => format!("peer\n{}", message.peer),
    };
    let (place, turn_comes) = counters.line_up(conversation);
    let manager = Arc::clone(manager);
    let key = key.clone();
    let counters = Arc::clone(counters);
    let span = tracing::info_span!("message", channel = %key, peer = %message.peer);
    let answering = async move {
        let _pending = permit;
        let _place = place;
        turn_comes.await;
        match answer(&manager, &key, &message, &reply).await {
            Ok(pieces) => {
                counters.replied.fetch_add(pieces, Ordering::Relaxed);
            }
            Err(e) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(channel = %key, peer = %message.peer, "message not answered: {e}");
            }
        }
    };
    tokio::spawn(tracing::Instrument::instrument(answering, span));
    Ok(())
}

/// Whether the account's policy lets this message through.
pub fn allowed(policy: &Policy, message: &Inbound) -> Result<(), &'static str> {
    let listed = |list: &[String]| {
        crate::pattern::any_matches(list.iter().map(String::as_str), &message.from)
    };
    match &message.group {
        Some(group) => {
            if !policy.groups.contains(group) {
                return Err("the group is not in groups");
            }
            if policy.group_policy == GroupPolicy::Allowlist && !listed(&policy.group_allow_from) {
                return Err("the sender may not speak in groups (groupAllowFrom, else allowFrom)");
            }
            if policy.require_mention && !message.mentioned {
                return Err("the assistant was not mentioned (requireMention)");
            }
            Ok(())
        }
        None => match policy.dm_policy {
            DmPolicy::Open => Ok(()),
            DmPolicy::Disabled => Err("direct messages are disabled (dmPolicy)"),
            DmPolicy::Allowlist if listed(&policy.allow_from) => Ok(()),
            DmPolicy::Allowlist => Err("the sender is not in allowFrom"),
        },
    }
}

/// Runs the turn and delivers the reply; returns the pieces sent.
async fn answer(
    manager: &ChannelManager,
    key: &Key,
    message: &Inbound,
    reply: &Reply,
) -> Result<u64, String> {
    let config = manager.rt.config();
    let agent_id = route(&config.bindings, key, message);
    let agent = Agent::resolve(&config, agent_id.as_deref()).map_err(|e| e.message)?;
    let session_key = session_key(config.session.dm_scope, &agent.id, key, message);
    if message.group.is_none() {
        manager.remember_direct(&session_key, key, reply);
    }
    let session = manager
        .turns
        .lock(session_key.clone())
        .await
        .map_err(|e| e.message)?;
    let request = TurnRequest {
        agent,
        session: Session::Stored(&session),
        message: message.text.clone(),
        run_id: None,
        deadline: None,
    };
    let done = manager
        .turns
        .run(request, &mut |_| {})
        .await
        .map_err(|e| e.message)?;
    let mut sent = 0;
    for piece in split(&done.text, reply.limit()) {
        reply.send(&piece, &session_key).await?;
        sent += 1;
    }
    Ok(sent)
}

/// The agent of the first binding that matches; None for agents.default.
pub fn route(bindings: &[Binding], key: &Key, message: &Inbound) -> Option<String> {
    bindings
        .iter()
        .find(|b| {
            let m = &b.match_;
            m.channel.as_ref().is_none_or(|c| *c == key.kind)
                && m.account_id.as_ref().is_none_or(|a| *a == key.account)
                && m.peer.as_ref().is_none_or(|p| *p == message.peer)
                && m.group
                    .as_ref()
                    .is_none_or(|g| message.group.as_ref() == Some(g))
        })
        .map(|b| b.agent_id.to_string())
}

/// The session a message joins.
pub fn session_key(
    scope: SessionConfigDmScope,
    agent_id: &str,
    key: &Key,
    message: &Inbound,
) -> String {
    let channel = &key.kind;
    match (&message.group, scope) {
        (Some(group), _) => format!("agent:{agent_id}:{channel}:group:{group}"),
        (None, SessionConfigDmScope::Main) => crate::agent::main_session_key(agent_id),
        (None, SessionConfigDmScope::PerPeer) => format!("agent:{agent_id}:dm:{}", message.peer),
        (None, SessionConfigDmScope::PerChannelPeer) => {
            format!("agent:{agent_id}:{channel}:dm:{}", message.peer)
        }
    }
}

/// Splits text into pieces of at most `limit` characters, at a line
/// break or a space where there is one in the second half of the piece.
pub fn split(text: &str, limit: usize) -> Vec<String> {
    let text = text.trim();
    let mut pieces = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let Some((cut, _)) = rest.char_indices().nth(limit) else {
            pieces.push(rest.to_string());
            break;
        };
        let window = &rest[..cut];
        let half = window.len() / 2;
        let at = window
            .rfind('\n')
            .filter(|i| *i >= half)
            .or_else(|| window.rfind(' ').filter(|i| *i >= half))
            .unwrap_or(cut);
        pieces.push(rest[..at].trim_end().to_string());
        rest = rest[at..].trim_start();
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::types::BuiltinChannelKind;

    #[tokio::test]
    async fn a_conversations_messages_are_answered_in_the_order_they_came() {
        let counters = Arc::new(Counters::default());
        async fn waits(turn: impl std::future::Future<Output = ()>) -> bool {
            tokio::time::timeout(std::time::Duration::from_millis(20), turn)
                .await
                .is_err()
        }
        let (first, first_turn) = counters.line_up("peer\na".into());
        let (second, second_turn) = counters.line_up("peer\na".into());
        let (other, other_turn) = counters.line_up("peer\nb".into());
        assert!(!waits(first_turn).await);
        assert!(
            !waits(other_turn).await,
            "another conversation does not wait"
        );
        let mut second_turn = Box::pin(second_turn);
        assert!(
            waits(&mut second_turn).await,
            "the second waits for the first"
        );
        drop(first);
        assert!(!waits(second_turn).await);
        drop((second, other));
        assert!(counters.lines.lock().unwrap().is_empty(), "nothing kept");
    }

    fn message(peer: &str, group: Option<&str>, mentioned: bool) -> Inbound {
        Inbound {
            from: peer.into(),
            peer: peer.into(),
            group: group.map(String::from),
            text: "hi".into(),
            mentioned,
        }
    }

    fn policy(dm_policy: DmPolicy) -> Policy {
        Policy {
            dm_policy,
            allow_from: vec!["alice".into()],
            groups: vec!["#home".into()],
            require_mention: true,
            group_policy: GroupPolicy::Allowlist,
            group_allow_from: vec!["alice".into()],
        }
    }

    #[test]
    fn the_policy_decides_direct_and_group_messages() {
        let allowlist = policy(DmPolicy::Allowlist);
        assert!(allowed(&allowlist, &message("alice", None, false)).is_ok());
        assert!(allowed(&allowlist, &message("mallory", None, false)).is_err());
        assert!(allowed(&policy(DmPolicy::Open), &message("mallory", None, false)).is_ok());
        assert!(allowed(&policy(DmPolicy::Disabled), &message("alice", None, false)).is_err());
        // In an allowed group, a stranger is not let in by default...
        assert!(allowed(&allowlist, &message("bob", Some("#home"), true)).is_err());
        assert!(allowed(&allowlist, &message("alice", Some("#home"), true)).is_ok());
        assert!(allowed(&allowlist, &message("alice", Some("#home"), false)).is_err());
        assert!(allowed(&allowlist, &message("alice", Some("#other"), true)).is_err());
        // ...only when the group is open to every member.
        let open_groups = Policy {
            group_policy: GroupPolicy::Open,
            ..policy(DmPolicy::Allowlist)
        };
        assert!(allowed(&open_groups, &message("bob", Some("#home"), true)).is_ok());
    }

    #[test]
    fn session_keys_follow_the_dm_scope() {
        let key = Key {
            kind: crate::channels::builtin(BuiltinChannelKind::Telegram),
            account: "main".into(),
        };
        let dm = message("42", None, false);
        let group = message("42", Some("-100"), true);
        let scope = |s| session_key(s, "main", &key, &dm);
        assert_eq!(scope(SessionConfigDmScope::Main), "agent:main:main");
        assert_eq!(scope(SessionConfigDmScope::PerPeer), "agent:main:dm:42");
        assert_eq!(
            scope(SessionConfigDmScope::PerChannelPeer),
            "agent:main:telegram:dm:42"
        );
        assert_eq!(
            session_key(SessionConfigDmScope::Main, "main", &key, &group),
            "agent:main:telegram:group:-100"
        );
    }

    #[test]
    fn long_replies_split_at_spaces_and_lines() {
        assert_eq!(split("short", 10), ["short"]);
        assert_eq!(split("aaaa bbbb cccc", 10), ["aaaa bbbb", "cccc"]);
        assert_eq!(split("line one\nline two", 12), ["line one", "line two"]);
        assert_eq!(split("abcdefghij", 4), ["abcd", "efgh", "ij"]);
        assert_eq!(split("ééééé", 2), ["éé", "éé", "é"]);
        assert!(split("   ", 5).is_empty());
    }
}
