//! Telegram through the Bot API: long polling with `getUpdates` (the
//! next offset is stored before messages are handled, so a restart never
//! handles one twice), replies with `sendMessage`.

use super::inbound::{Inbound, Reply};
use super::{Account, Link};
use crate::protocol::types::TelegramAccount;
use serde_json::{json, Value};
use std::time::Duration;

/// Telegram's limit on one message's text.
pub const MAX_MESSAGE_CHARS: usize = 4096;

/// A bot's Bot API endpoint.
#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    /// `<apiBase>/bot<token>`; never logged.
    base: String,
}

impl Api {
    /// Calls a method; the result, or why it failed (the token is never
    /// part of the reason).
    async fn call(&self, method: &str, params: Value, timeout: Duration) -> Result<Value, String> {
        let response = self
            .http
            .post(format!("{}/{method}", self.base))
            .header("content-type", "application/json")
            .body(params.to_string())
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| format!("{method}: {}", e.without_url()))?;
        let status = response.status();
        let bytes = crate::bounded::response_body(response, crate::bounded::MAX_RESPONSE_BYTES)
            .await
            .map_err(|e| format!("{method}: {e}"))?;
        let body: Value = serde_json::from_slice(&bytes)
            .map_err(|e| format!("{method}: unreadable answer ({status}): {e}"))?;
        if body["ok"] == true {
            Ok(body["result"].clone())
        } else {
            let description = body["description"].as_str().unwrap_or("no description");
            let retry = body["parameters"]["retry_after"]
                .as_u64()
                .map(|s| format!(" (retry after {s} s)"))
                .unwrap_or_default();
            Err(format!("{method}: {status} {description}{retry}"))
        }
    }
}

pub async fn run(link: &Link, config: &TelegramAccount) -> Result<(), String> {
    let rt = link.runtime();
    let api = Api {
        http: rt.http.clone(),
        base: format!(
            "{}/bot{}",
            config.api_base.trim_end_matches('/'),
            config.token.as_str()
        ),
    };
    let me = api
        .call("getMe", json!({}), Duration::from_secs(15))
        .await?;
    let username = me["username"].as_str().unwrap_or_default().to_string();
    link.connected();
    link.can_send(Reply::Telegram(Replier {
        api: api.clone(),
        chat_id: 0,
    }));
    let channel = link.key.kind.to_string();
    let account = link.key.account.clone();
    let stored = |e: crate::store::StoreError| e.to_string();
    let mut offset = rt
        .stores
        .channels
        .channel_offset(channel.clone(), account.clone())
        .await
        .map_err(stored)?;
    let poll = config.poll_timeout_sec.max(0) as u64;
    let policy = Account::Telegram(config.clone()).policy();
    loop {
        let mut params = json!({"timeout": poll, "allowed_updates": ["message"]});
        if let Some(offset) = offset {
            params["offset"] = json!(offset);
        }
        let updates = tokio::select! {
            updates = api.call("getUpdates", params, Duration::from_secs(poll + 15)) => updates?,
            _ = link.stopped() => return Ok(()),
        };
        let updates = updates.as_array().cloned().unwrap_or_default();
        let Some(last) = updates.iter().filter_map(|u| u["update_id"].as_i64()).max() else {
            continue;
        };
        // Stored first: after a crash a message is lost rather than answered twice.
        offset = Some(last + 1);
        rt.stores
            .channels
            .set_channel_offset(channel.clone(), account.clone(), last + 1)
            .await
            .map_err(stored)?;
        for update in &updates {
            if let Some((message, chat_id)) = parse(update, &username) {
                let reply = Reply::Telegram(Replier {
                    api: api.clone(),
                    chat_id,
                });
                let _ = link.dispatch(&policy, message, reply);
            }
        }
    }
}

/// A text message (or a caption) from a person, with its chat.
fn parse(update: &Value, username: &str) -> Option<(Inbound, i64)> {
    let message = &update["message"];
    let from = &message["from"];
    if from["is_bot"] == true {
        return None;
    }
    let text = message["text"]
        .as_str()
        .or_else(|| message["caption"].as_str())?;
    let chat_id = message["chat"]["id"].as_i64()?;
    let peer = from["id"].as_i64()?.to_string();
    let private = message["chat"]["type"] == "private";
    let handle = format!("@{username}");
    let mentioned = !username.is_empty()
        && (text.to_lowercase().contains(&handle.to_lowercase())
            || message["reply_to_message"]["from"]["username"] == username);
    let text = if username.is_empty() {
        text.to_string()
    } else {
        text.replace(&handle, "").trim().to_string()
    };
    let inbound = Inbound {
        from: peer.clone(),
        peer,
        group: (!private).then(|| chat_id.to_string()),
        text,
        mentioned,
    };
    Some((inbound, chat_id))
}

/// Answers in the chat a message came from.
#[derive(Clone)]
pub struct Replier {
    api: Api,
    chat_id: i64,
}

impl Replier {
    /// The chat it answers in.
    pub fn target(&self) -> String {
        self.chat_id.to_string()
    }

    /// The same bot, writing to the chat `to` (a numeric chat id).
    pub fn retarget(&self, to: &str) -> Result<Replier, String> {
        let chat_id = to
            .parse()
            .map_err(|_| format!("a Telegram chat is a number, not {to:?}"))?;
        Ok(Replier {
            api: self.api.clone(),
            chat_id,
        })
    }

    pub async fn send(&self, text: &str) -> Result<(), String> {
        self.api
            .call(
                "sendMessage",
                json!({"chat_id": self.chat_id, "text": text}),
                Duration::from_secs(30),
            )
            .await
            .map(|_| ())
    }
}
