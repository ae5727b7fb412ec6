//! A clawgate plugin in Rust, with nothing but std and serde_json: a chat
//! room. It provides a channel (`room.chat`) whose people speak through
//! the `room.say` method, so the gateway's policy, routing and agent turn
//! answer them like Telegram or IRC users; a tool (`room.count`); a call
//! back into the gateway (`room.recall` reads a session's history, if the
//! config grants `sessions.history`); an event (`room.delivered`, each
//! reply the room received); and an HTTP route (`GET /plugins/room/outbox`).
//!
//! ```toml
//! [plugins.room]
//! command = "target/release/examples/room_plugin"   # cargo build --release --examples
//! grants = ["sessions.history"]
//! [plugins.room.channels.chat.lobby]
//! dmPolicy = "allowlist"
//! allowFrom = ["alice"]
//! config = { topic = "general" }
//! ```
//!
//! The protocol (README, "Plugins"): write the manifest as the first line
//! of stdout, read the init line, then handle one JSON frame per line.
//! Everything here runs on one thread: calls into the gateway are written
//! out and their answers picked up as they come, like any other frame.

use serde_json::{json, Map, Value};
use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, Write};

/// Replies kept for GET /outbox.
const OUTBOX: usize = 100;

fn manifest() -> Value {
    let object = |properties: Value, required: &[&str]| {
        json!({"type": "object", "additionalProperties": false,
               "required": required, "properties": properties})
    };
    json!({
        "name": "room",
        "version": "1.0.0",
        "protocol": {"min": 1, "max": 1},
        "summary": "A chat room whose people reach the assistant through the gateway.",
        "methods": {
            "say": {
                "summary": "Someone says something in the room (to the assistant, or in a group).",
                "scope": "operator.write",
                "params": object(json!({
                    "account": {"type": "string"},
                    "from": {"type": "string", "minLength": 1},
                    "text": {"type": "string", "minLength": 1},
                    "group": {"type": "string", "minLength": 1},
                    "mentioned": {"type": "boolean"}
                }), &["account", "from", "text"]),
                "result": object(json!({"accepted": {"const": true}}), &["accepted"]),
                "example": {"params": {"account": "lobby", "from": "alice", "text": "hi"},
                            "result": {"accepted": true}}
            },
            "count": {
                "summary": "Count the words and characters of a text.",
                "scope": "operator.read",
                "tool": true,
                "params": object(json!({"text": {"type": "string"}}), &["text"]),
                "result": object(json!({
                    "words": {"type": "integer", "minimum": 0},
                    "chars": {"type": "integer", "minimum": 0}
                }), &["words", "chars"])
            },
            "recall": {
                "summary": "How many messages a session has, and the last one (asks the gateway's sessions.history).",
                "scope": "operator.read",
                "params": object(json!({"sessionKey": {"type": "string", "minLength": 1}}), &["sessionKey"]),
                "result": object(json!({
                    "messages": {"type": "integer", "minimum": 0},
                    "last": {"type": "string"}
                }), &["messages"])
            }
        },
        "events": {
            "delivered": {
                "summary": "The assistant's reply was delivered in the room.",
                "scope": "operator.read",
                "payload": object(json!({
                    "account": {"type": "string"},
                    "peer": {"type": "string"},
                    "group": {"type": "string"},
                    "text": {"type": "string"}
                }), &["account", "peer", "text"])
            }
        },
        "channels": {
            "chat": {
                "summary": "The room's conversations.",
                "maxMessageChars": 500,
                "config": object(json!({"topic": {"type": "string"}}), &[])
            }
        },
        "http": {"summary": "GET /outbox: the replies delivered lately.", "scope": "operator.read"}
    })
}

struct Room {
    out: std::io::Stdout,
    /// The accounts of the chat channel the gateway runs, by id.
    accounts: Map<String, Value>,
    outbox: VecDeque<Value>,
    /// Our calls into the gateway, by our id: the request they serve.
    waiting: HashMap<String, String>,
    next_call: u64,
}

impl Room {
    fn write(&mut self, frame: Value) {
        let mut out = self.out.lock();
        let _ = writeln!(out, "{frame}");
        let _ = out.flush();
    }

    fn answer(&mut self, id: &Value, result: Value) {
        self.write(json!({"id": id, "result": result}));
    }

    fn fail(&mut self, id: &Value, code: i64, message: &str) {
        self.write(json!({"id": id, "error": {"code": code, "message": message}}));
    }

    fn on_frame(&mut self, frame: Value) {
        let id = frame.get("id").cloned().unwrap_or(Value::Null);
        if let Some(method) = frame.get("method").and_then(Value::as_str) {
            let params = frame.get("params").cloned().unwrap_or_default();
            self.on_request(&id, method, params);
        } else if let Some(send) = frame.get("send") {
            self.on_send(&id, send.clone());
        } else if let Some(request) = frame.get("http") {
            self.on_http(&id, request);
        } else if frame.get("result").is_some() || frame.get("error").is_some() {
            self.on_gateway_answer(&id, &frame);
        }
        // {"cancel": …}: every request here is answered at once anyway.
    }

    fn on_request(&mut self, id: &Value, method: &str, params: Value) {
        // The gateway checked the params against the manifest already.
        let text = |key: &str| params[key].as_str().unwrap_or_default().to_string();
        match method {
            "say" => {
                let account = text("account");
                if !self.accounts.contains_key(&account) {
                    let known: Vec<&String> = self.accounts.keys().collect();
                    let message = format!("no account {account} (running: {known:?})");
                    return self.fail(id, -32008, &message);
                }
                let mut inbound = json!({"channel": "chat", "account": account,
                                         "from": text("from"), "text": text("text")});
                if let Some(group) = params.get("group") {
                    inbound["group"] = group.clone();
                    inbound["mentioned"] = params.get("mentioned").cloned().unwrap_or(json!(false));
                }
                self.write(json!({"inbound": inbound}));
                self.answer(id, json!({"accepted": true}));
            }
            "count" => {
                let text = text("text");
                let counts = json!({"words": text.split_whitespace().count(),
                                    "chars": text.chars().count()});
                self.answer(id, counts);
            }
            "recall" => {
                self.next_call += 1;
                let call = format!("c{}", self.next_call);
                let served = serde_json::to_string(id).unwrap_or_default();
                self.waiting.insert(call.clone(), served);
                self.write(json!({"id": call, "method": "sessions.history",
                                  "params": {"sessionKey": text("sessionKey"), "limit": 1000}}));
            }
            other => self.fail(id, -32601, &format!("no method {other}")),
        }
    }

    /// The gateway's answer to one of our calls: finish the request it serves.
    fn on_gateway_answer(&mut self, call: &Value, frame: &Value) {
        let Some(served) = call.as_str().and_then(|c| self.waiting.remove(c)) else {
            return;
        };
        let id: Value = serde_json::from_str(&served).unwrap_or_default();
        if let Some(error) = frame.get("error") {
            let code = error["code"].as_i64().unwrap_or(-32603);
            let message = error["message"].as_str().unwrap_or("failed").to_string();
            return self.fail(&id, code, &message);
        }
        let messages = frame["result"]["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut result = json!({"messages": messages.len()});
        if let Some(last) = messages.last().and_then(|m| m["content"].as_str()) {
            result["last"] = json!(last);
        }
        self.answer(&id, result);
    }

    /// A reply to deliver: here delivering is keeping it and saying so.
    fn on_send(&mut self, id: &Value, send: Value) {
        let mut delivered = json!({"account": send["account"], "peer": send["peer"],
                                   "text": send["text"]});
        if let Some(group) = send.get("group") {
            delivered["group"] = group.clone();
        }
        if self.outbox.len() == OUTBOX {
            self.outbox.pop_front();
        }
        self.outbox.push_back(delivered.clone());
        self.write(json!({"event": "delivered", "data": delivered}));
        self.answer(id, json!({}));
    }

    fn on_http(&mut self, id: &Value, request: &Value) {
        let response = match (request["method"].as_str(), request["path"].as_str()) {
            (Some("GET"), Some("/outbox")) => json!({
                "status": 200,
                "headers": {"content-type": "application/json"},
                "body": Value::from(self.outbox.iter().cloned().collect::<Vec<_>>()).to_string()
            }),
            _ => json!({"status": 404, "body": "not found\n"}),
        };
        self.answer(id, response);
    }
}

fn main() {
    let mut room = Room {
        out: std::io::stdout(),
        accounts: Map::new(),
        outbox: VecDeque::new(),
        waiting: HashMap::new(),
        next_call: 0,
    };
    room.write(manifest());
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let Some(Ok(init)) = lines.next() else {
        return;
    };
    let Ok(init) = serde_json::from_str::<Value>(&init) else {
        eprintln!("room: the init line is not JSON");
        return;
    };
    if let Some(accounts) = init["channels"]["chat"].as_object() {
        room.accounts = accounts.clone();
    }
    eprintln!(
        "room: running as {} with accounts {:?}",
        init["name"],
        room.accounts.keys().collect::<Vec<_>>()
    );
    for line in lines {
        let Ok(line) = line else { return };
        match serde_json::from_str(&line) {
            Ok(frame) => room.on_frame(frame),
            Err(e) => eprintln!("room: a line that is not JSON: {e}"),
        }
    }
}
