//! A fake Telegram Bot API on loopback, following the documented
//! behaviour the gateway relies on: `getMe`; `getUpdates` with `offset`
//! (updates below it are confirmed and forgotten) and `timeout` (long
//! polling); `sendMessage`; `{"ok": false, "error_code", "description"}`
//! errors. Tests queue messages and read what the bot sent.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const TOKEN: &str = "123456:TEST-token";
pub const BOT_USERNAME: &str = "clawbot";

#[derive(Default)]
struct Bot {
    updates: Vec<Value>,
    next_update: i64,
    sent: Vec<Value>,
    /// getUpdates calls still to fail with 502.
    failing: usize,
    /// Every offset getUpdates was called with.
    offsets: Vec<Option<i64>>,
}

pub struct FakeTelegram {
    pub base_url: String,
    bot: Arc<Mutex<Bot>>,
}

impl FakeTelegram {
    pub async fn start() -> FakeTelegram {
        let bot = Arc::new(Mutex::new(Bot {
            next_update: 1000,
            ..Bot::default()
        }));
        let app = Router::new()
            .route("/{bot}/{method}", post(call))
            .with_state(Arc::clone(&bot));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeTelegram { base_url, bot }
    }

    /// Queues a text message from `from` in chat `chat` (negative ids are groups).
    pub fn say(&self, chat: i64, from: i64, text: &str) {
        let mut bot = self.bot.lock().unwrap();
        bot.next_update += 1;
        let chat_type = if chat < 0 { "supergroup" } else { "private" };
        let update = json!({
            "update_id": bot.next_update,
            "message": {
                "message_id": bot.next_update,
                "date": 1764057600,
                "from": {"id": from, "is_bot": false, "first_name": "Test"},
                "chat": {"id": chat, "type": chat_type},
                "text": text,
            }
        });
        bot.updates.push(update);
    }

    pub fn sent(&self) -> Vec<Value> {
        self.bot.lock().unwrap().sent.clone()
    }

    pub fn offsets(&self) -> Vec<Option<i64>> {
        self.bot.lock().unwrap().offsets.clone()
    }

    /// Makes the next `n` getUpdates calls fail.
    pub fn fail_next(&self, n: usize) {
        self.bot.lock().unwrap().failing = n;
    }

    /// Waits until the bot has sent `n` messages; returns them.
    pub async fn wait_sent(&self, n: usize) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let sent = self.sent();
            if sent.len() >= n {
                return sent;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the bot sent {} of {n} messages: {sent:?}",
                sent.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn call(
    State(bot): State<Arc<Mutex<Bot>>>,
    Path((token, method)): Path<(String, String)>,
    Json(params): Json<Value>,
) -> Response {
    if token != format!("bot{TOKEN}") {
        return failure(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    match method.as_str() {
        "getMe" => ok(
            json!({"id": 123456, "is_bot": true, "first_name": "Claw", "username": BOT_USERNAME}),
        ),
        "sendMessage" => {
            let mut bot = bot.lock().unwrap();
            bot.sent.push(params.clone());
            ok(
                json!({"message_id": bot.sent.len(), "chat": {"id": params["chat_id"]}, "text": params["text"]}),
            )
        }
        "getUpdates" => get_updates(bot, params).await,
        _ => failure(StatusCode::NOT_FOUND, "Not Found: method not found"),
    }
}

async fn get_updates(bot: Arc<Mutex<Bot>>, params: Value) -> Response {
    let offset = params["offset"].as_i64();
    let wait =
        Duration::from_secs(params["timeout"].as_u64().unwrap_or(0)).min(Duration::from_secs(1));
    {
        let mut bot = bot.lock().unwrap();
        bot.offsets.push(offset);
        if bot.failing > 0 {
            bot.failing -= 1;
            return failure(StatusCode::BAD_GATEWAY, "Bad Gateway");
        }
        if let Some(offset) = offset {
            bot.updates
                .retain(|u| u["update_id"].as_i64().unwrap() >= offset);
        }
    }
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let pending = bot.lock().unwrap().updates.clone();
        if !pending.is_empty() || tokio::time::Instant::now() >= deadline {
            return ok(Value::Array(pending));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn ok(result: Value) -> Response {
    Json(json!({"ok": true, "result": result})).into_response()
}

fn failure(status: StatusCode, description: &str) -> Response {
    (
        status,
        Json(json!({"ok": false, "error_code": status.as_u16(), "description": description})),
    )
        .into_response()
}
