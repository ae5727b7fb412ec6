//! Messages the gateway sends on its own initiative (heartbeats): to
//! where the owner last wrote from, or to a named chat of an account.

use super::inbound::{split, Reply};
use super::{webhook, Account, ChannelManager, Key};
use crate::protocol::types::ChannelKind;
use std::collections::HashMap;
use std::sync::atomic::Ordering;

/// Where a message goes.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// Where the session was last written to in a direct message: the
    /// conversation its context comes from.
    Last,
    /// A chat of an account of this kind (the only enabled one if None).
    Channel {
        kind: ChannelKind,
        account: Option<String>,
        to: String,
    },
}

/// Where a message went, and whether it got there.
pub struct Delivery {
    pub key: Key,
    pub to: String,
    /// The pieces sent, or why sending failed.
    pub sent: Result<u64, String>,
}

/// By session: the account and chat of the last direct message.
#[derive(Default)]
pub struct LastDirect(HashMap<String, (Key, String)>);

/// Sessions remembered at most; past it, an arbitrary one is forgotten.
const MAX_SESSIONS: usize = 10_000;

impl Reply {
    /// The chat, nick or peer it writes to.
    fn target(&self) -> String {
        match self {
            Reply::Telegram(r) => r.target(),
            Reply::Irc(r) => r.target(),
            Reply::Webhook(r) => r.target(),
            Reply::Plugin(r) => r.target(),
        }
    }

    fn retarget(&self, to: &str) -> Result<Reply, String> {
        Ok(match self {
            Reply::Telegram(r) => Reply::Telegram(r.retarget(to)?),
            Reply::Irc(r) => Reply::Irc(r.retarget(to)?),
            Reply::Webhook(r) => Reply::Webhook(r.retarget(to)),
            Reply::Plugin(r) => Reply::Plugin(r.retarget(to)?),
        })
    }
}

impl ChannelManager {
    /// Records that a direct message of `session` was answered through
    /// `reply`.
    pub(super) fn remember_direct(&self, session: &str, key: &Key, reply: &Reply) {
        let mut last = self.last_direct.lock().expect("last direct");
        if last.0.len() >= MAX_SESSIONS && !last.0.contains_key(session) {
            let evicted = last.0.keys().next().cloned();
            if let Some(evicted) = evicted {
                last.0.remove(&evicted);
            }
        }
        last.0
            .insert(session.to_string(), (key.clone(), reply.target()));
    }

    /// Sends `text` of `session` to `target`, in pieces the channel takes.
    /// Err when the target names no running account (or `last` has no
    /// direct message of the session to go by).
    pub async fn deliver(
        &self,
        target: &Target,
        text: &str,
        session: &str,
    ) -> Result<Delivery, String> {
        let (key, to) = match target {
            Target::Last => self
                .last_direct
                .lock()
                .expect("last direct")
                .0
                .get(session)
                .cloned()
                .ok_or_else(|| {
                    format!("target last: no direct message of session {session} has come in since the gateway started")
                })?,
            Target::Channel { kind, account, to } => (self.account_of(kind, account.as_deref())?, to.clone()),
        };
        let reply = self.sender(&key, &to)?;
        let mut sent = 0;
        let mut outcome = Ok(());
        for piece in split(text, reply.limit()) {
            outcome = reply.send(&piece, session).await;
            if outcome.is_err() {
                break;
            }
            sent += 1;
        }
        if let Some(m) = self.monitors.lock().expect("channels").get(&key) {
            m.counters.replied.fetch_add(sent, Ordering::Relaxed);
        }
        Ok(Delivery {
            key,
            to,
            sent: outcome.map(|()| sent),
        })
    }

    /// The running account of `kind` named `account`, or its only one.
    fn account_of(&self, kind: &ChannelKind, account: Option<&str>) -> Result<Key, String> {
        let monitors = self.monitors.lock().expect("channels");
        let mut of_kind = monitors.keys().filter(|key| key.kind == *kind);
        match account {
            Some(id) => of_kind
                .find(|key| key.account == id)
                .cloned()
                .ok_or_else(|| format!("no enabled {kind} account {id}")),
            None => match (of_kind.next(), of_kind.next()) {
                (Some(key), None) => Ok(key.clone()),
                (None, _) => Err(format!("no enabled {kind} account")),
                (Some(_), Some(_)) => Err(format!(
                    "several {kind} accounts are enabled; name one with accountId"
                )),
            },
        }
    }

    /// A sender of `key`'s connection, writing to `to`.
    fn sender(&self, key: &Key, to: &str) -> Result<Reply, String> {
        let monitors = self.monitors.lock().expect("channels");
        let monitor = monitors
            .get(key)
            .ok_or_else(|| format!("channel account {key} is not enabled"))?;
        if let Account::Webhook(config) = &monitor.account {
            return Ok(Reply::Webhook(webhook::Replier::new(
                self.rt.http.clone(),
                config,
                to,
            )));
        }
        let template = monitor.sender.lock().expect("channel sender").clone();
        match template {
            Some(template) => template.retarget(to),
            None => Err(format!("channel account {key} is not connected")),
        }
    }
}
