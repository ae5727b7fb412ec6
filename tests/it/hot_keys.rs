//! Every config key the schema marks `hot` really is: each is changed on a
//! running gateway the way an operator changes it (`config.set`, which
//! returns once the services have applied it) and the change is observed
//! as a client would see it. `every_hot_key_is_probed` walks the schema
//! and fails for a hot key no probe below changes.

use crate::channels::{hook, now_secs};
use crate::fake_anthropic::{self, FakeAnthropic};
use crate::fake_openai::{FakeOpenAi, Script};
use crate::fake_telegram::{FakeTelegram, TOKEN as BOT_TOKEN};
use crate::nodes::{node_with, register_params};
use crate::support::*;
use clawgate::protocol::ErrorCode;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Each hot key and the probe below that changes it and sees the effect.
const PROBES: &[(&str, &str)] = &[
    ("$schema", "no_behaviour"),
    ("version", "no_behaviour"),
    ("gateway.auth.token", "token"),
    ("gateway.auth.password", "password"),
    ("gateway.auth.scopes", "scopes"),
    ("gateway.auth.maxFailuresPerMinute", "auth_limits"),
    ("gateway.auth.maxFailuresPerMinuteTotal", "auth_limits"),
    ("gateway.allowedOrigins", "http_surface"),
    ("gateway.allowedHosts", "http_surface"),
    ("gateway.http.chatCompletions.enabled", "http_surface"),
    ("gateway.http.metrics.enabled", "http_surface"),
    ("gateway.controlUi.enabled", "http_surface"),
    ("gateway.handshakeTimeoutMs", "connection_limits"),
    ("gateway.limits.maxConnections", "connection_limits"),
    ("gateway.limits.maxPayloadBytes", "connection_limits"),
    ("gateway.limits.maxPreAuthPayloadBytes", "connection_limits"),
    (
        "gateway.limits.maxUnauthenticatedConnections",
        "connection_limits",
    ),
    (
        "gateway.limits.maxUnauthenticatedPerAddress",
        "connection_limits",
    ),
    ("gateway.limits.httpHeaderTimeoutMs", "connection_limits"),
    ("gateway.limits.httpBodyTimeoutMs", "connection_limits"),
    ("gateway.limits.outboundQueueFrames", "outbound_queue"),
    (
        "gateway.limits.maxInflightPerConnection",
        "inflight_and_drain",
    ),
    ("gateway.shutdown.drainTimeoutMs", "inflight_and_drain"),
    ("gateway.reload.mode", "reload_settings"),
    ("gateway.reload.debounceMs", "reload_settings"),
    ("logging.level", "log_level"),
    ("agents.default", "agent_settings"),
    ("agents.*.provider", "agent_settings"),
    ("agents.*.model", "agent_settings"),
    ("agents.*.baseUrl", "agent_settings"),
    ("agents.*.apiKey", "agent_settings"),
    ("agents.*.systemPrompt", "agent_settings"),
    ("agents.*.temperature", "agent_settings"),
    ("agents.*.maxTokens", "agent_settings"),
    ("agents.*.timeoutMs", "agent_settings"),
    ("agents.*.tools", "agent_settings"),
    ("agents.*.exec.security", "exec_settings"),
    ("agents.*.exec.ask", "exec_settings"),
    ("agents.*.exec.allowlist", "exec_settings"),
    ("agents.*.exec.cwd", "exec_settings"),
    ("agents.*.exec.timeoutMs", "exec_settings"),
    ("agents.*.exec.maxOutputBytes", "exec_settings"),
    ("approvals.timeoutMs", "exec_settings"),
    ("approvals.auditRetentionDays", "audit_retention"),
    ("session.retentionDays", "session_retention"),
    ("agents.*.allowNodeCommands", "node_settings"),
    ("agents.*.workspace", "heartbeat_settings"),
    ("agents.*.heartbeat.every", "heartbeat_settings"),
    ("agents.*.heartbeat.activeHours.start", "heartbeat_settings"),
    ("agents.*.heartbeat.activeHours.end", "heartbeat_settings"),
    (
        "agents.*.heartbeat.activeHours.timezone",
        "heartbeat_settings",
    ),
    ("agents.*.heartbeat.prompt", "heartbeat_settings"),
    ("agents.*.heartbeat.session", "heartbeat_settings"),
    ("agents.*.heartbeat.target", "heartbeat_settings"),
    ("agents.*.heartbeat.accountId", "heartbeat_settings"),
    ("agents.*.heartbeat.to", "heartbeat_settings"),
    ("agents.*.heartbeat.ackToken", "heartbeat_settings"),
    ("agents.*.heartbeat.ackMaxChars", "heartbeat_settings"),
    ("devices.autoApproveLoopback", "device_settings"),
    ("devices.pairingTimeoutMs", "device_settings"),
    ("nodes.autoApproveLoopback", "node_settings"),
    ("nodes.pairingTimeoutMs", "node_settings"),
    ("nodes.heartbeatTimeoutMs", "node_settings"),
    ("nodes.invokeTimeoutMs", "node_settings"),
    ("nodes.allowCommands", "node_settings"),
    ("nodes.dangerousCommands", "node_settings"),
    ("cron.enabled", "cron_settings"),
    ("cron.timezone", "cron_settings"),
    ("cron.runTimeoutMs", "cron_settings"),
    ("cron.historyLimit", "cron_settings"),
    ("cron.jobs.*.name", "cron_settings"),
    ("cron.jobs.*.enabled", "cron_settings"),
    ("cron.jobs.*.schedule", "cron_settings"),
    ("cron.jobs.*.payload", "cron_settings"),
    ("cron.jobs.*.agentId", "cron_settings"),
    ("cron.jobs.*.sessionKey", "cron_settings"),
    ("cron.jobs.*.timeoutMs", "cron_settings"),
    ("channels.webhook.*.enabled", "webhook_accounts"),
    ("channels.webhook.*.dmPolicy", "webhook_accounts"),
    ("channels.webhook.*.allowFrom", "webhook_accounts"),
    ("channels.webhook.*.groups", "webhook_accounts"),
    ("channels.webhook.*.requireMention", "webhook_accounts"),
    ("channels.webhook.*.groupPolicy", "webhook_accounts"),
    ("channels.webhook.*.groupAllowFrom", "webhook_accounts"),
    ("channels.webhook.*.secret", "webhook_accounts"),
    ("channels.webhook.*.replyUrl", "webhook_accounts"),
    ("channels.telegram.*.enabled", "telegram_accounts"),
    ("channels.telegram.*.dmPolicy", "telegram_accounts"),
    ("channels.telegram.*.allowFrom", "telegram_accounts"),
    ("channels.telegram.*.groups", "telegram_accounts"),
    ("channels.telegram.*.requireMention", "telegram_accounts"),
    ("channels.telegram.*.groupPolicy", "telegram_accounts"),
    ("channels.telegram.*.groupAllowFrom", "telegram_accounts"),
    ("channels.telegram.*.token", "telegram_accounts"),
    ("channels.telegram.*.apiBase", "telegram_accounts"),
    ("channels.telegram.*.pollTimeoutSec", "telegram_accounts"),
    ("channels.irc.*.enabled", "irc_accounts"),
    ("channels.irc.*.dmPolicy", "irc_accounts"),
    ("channels.irc.*.allowFrom", "irc_accounts"),
    ("channels.irc.*.groups", "irc_accounts"),
    ("channels.irc.*.requireMention", "irc_accounts"),
    ("channels.irc.*.groupPolicy", "irc_accounts"),
    ("channels.irc.*.groupAllowFrom", "irc_accounts"),
    ("channels.irc.*.server", "irc_accounts"),
    ("channels.irc.*.port", "irc_accounts"),
    ("channels.irc.*.tls", "irc_accounts"),
    ("channels.irc.*.nick", "irc_accounts"),
    ("channels.irc.*.channels", "irc_accounts"),
    ("channels.irc.*.password", "irc_accounts"),
    ("bindings", "routing"),
    ("session.dmScope", "routing"),
    ("plugins.*.command", "plugin_settings"),
    ("plugins.*.args", "plugin_settings"),
    ("plugins.*.env.*", "plugin_settings"),
    ("plugins.*.startTimeoutMs", "plugin_settings"),
    ("plugins.*.enabled", "plugin_settings"),
    ("plugins.*.config", "plugin_settings"),
    ("plugins.*.callTimeoutMs", "plugin_settings"),
    ("plugins.*.maxInflight", "plugin_settings"),
    ("plugins.*.maxEventsPerSecond", "plugin_settings"),
    ("plugins.*.grants", "plugin_channels"),
    ("plugins.*.channels.*.*.enabled", "plugin_channels"),
    ("plugins.*.channels.*.*.dmPolicy", "plugin_channels"),
    ("plugins.*.channels.*.*.allowFrom", "plugin_channels"),
    ("plugins.*.channels.*.*.groups", "plugin_channels"),
    ("plugins.*.channels.*.*.requireMention", "plugin_channels"),
    ("plugins.*.channels.*.*.groupPolicy", "plugin_channels"),
    ("plugins.*.channels.*.*.groupAllowFrom", "plugin_channels"),
    ("plugins.*.channels.*.*.config", "plugin_channels"),
];

// ---- the schema walk ----------------------------------------------------

/// The hot leaf keys of schema/config.json, dotted, `*` for map entries.
fn hot_keys() -> BTreeSet<String> {
    let read = |name: &str| -> Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("schema")
            .join(name);
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let config = read("config.json");
    let common = read("common.json");
    let mut keys = BTreeSet::new();
    walk(&config, &config, &common, "", "restart", &mut keys);
    keys
}

fn walk(
    node: &Value,
    config: &Value,
    common: &Value,
    path: &str,
    inherited: &str,
    out: &mut BTreeSet<String>,
) {
    let mut node = node.clone();
    if let Some(reference) = node.get("$ref").and_then(Value::as_str) {
        let (file, pointer) = reference.split_once('#').unwrap();
        let doc = if file.is_empty() { config } else { common };
        let target = doc.pointer(pointer).unwrap().clone();
        let mut merged = target.as_object().unwrap().clone();
        for (k, v) in node.as_object().unwrap() {
            if k != "$ref" {
                merged.insert(k.clone(), v.clone());
            }
        }
        node = Value::Object(merged);
    }
    let class = node
        .get("x-reload")
        .and_then(Value::as_str)
        .unwrap_or(inherited);
    let child = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    let properties = node.get("properties").and_then(Value::as_object);
    let entries = node.get("additionalProperties").filter(|a| a.is_object());
    if properties.is_none() && entries.is_none() {
        if class == "hot" {
            out.insert(path.to_string());
        }
        return;
    }
    for (key, value) in properties.into_iter().flatten() {
        walk(value, config, common, &child(key), class, out);
    }
    if let Some(entries) = entries {
        walk(entries, config, common, &child("*"), class, out);
    }
}

#[test]
fn every_hot_key_is_probed() {
    let hot = hot_keys();
    let probed: BTreeSet<String> = PROBES.iter().map(|(k, _)| k.to_string()).collect();
    let missing: Vec<&String> = hot.difference(&probed).collect();
    let stale: Vec<&String> = probed.difference(&hot).collect();
    assert!(
        missing.is_empty(),
        "hot keys no probe changes (probe them here, or mark them restart): {missing:?}"
    );
    assert!(stale.is_empty(), "probed keys that are not hot: {stale:?}");
    let source = include_str!("hot_keys.rs");
    for (key, probe) in PROBES {
        assert!(
            source.contains(&format!("async fn {probe}()"))
                || source.contains(&format!("fn {probe}()")),
            "{key}: no probe named {probe}"
        );
    }
}

/// `$schema` only tells editors where the schema is; `version` only
/// which renames a file predates (see tests/it/migrations.rs).
#[test]
fn no_behaviour() {}

// ---- helpers ------------------------------------------------------------

/// A gateway and an admin connection to change it with.
struct Live {
    gw: TestGateway,
    admin: Ws,
}

impl Live {
    async fn start(sections: &str) -> Live {
        let gw = TestGateway::start_with_sections(sections).await;
        let admin = gw.operator().await;
        Live { gw, admin }
    }

    /// Sets one key as an operator does; returns once it is in force.
    async fn set(&mut self, key: &str, value: Value) {
        let set = self
            .admin
            .call("config.set", json!({"key": key, "value": value}))
            .await;
        assert!(set["error"].is_null(), "config.set {key}: {set}");
    }

    fn addr(&self) -> String {
        self.gw.url.trim_start_matches("ws://").to_string()
    }

    async fn value(&mut self, key: &str) -> Value {
        self.admin.call("config", json!({"key": key})).await["result"]["value"].clone()
    }

    async fn chat(&mut self, params: Value) -> Value {
        self.admin.call("chat", params).await
    }
}

/// Sends raw request bytes; everything answered until the server closed
/// the connection or `limit` passed, and how long that took.
async fn raw_http(addr: &str, request: &str, limit: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(limit, stream.read_to_end(&mut response)).await;
    (
        String::from_utf8_lossy(&response).to_string(),
        started.elapsed(),
    )
}

fn status_of(response: &str) -> u16 {
    response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

async fn get(live: &Live, path: &str, headers: &str) -> u16 {
    let addr = live.addr();
    let (response, _) = raw_http(
        &addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\r\n"),
        WAIT,
    )
    .await;
    status_of(&response)
}

async fn post_completion(live: &Live) -> u16 {
    let addr = live.addr();
    let body =
        json!({"model": "main", "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let (response, _) = raw_http(
        &addr,
        &format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
        WAIT,
    )
    .await;
    status_of(&response)
}

async fn connect_with(live: &Live, auth: Value) -> Value {
    let mut ws = live.gw.raw().await;
    ws.connect(auth, None).await
}

/// Waits until `$check` (an expression that may await) holds, polling;
/// panics naming `$what` after the wait limit.
macro_rules! eventually {
    ($what:expr, $check:expr) => {{
        let deadline = Instant::now() + WAIT;
        loop {
            if $check {
                break;
            }
            assert!(Instant::now() < deadline, "never: {}", $what);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }};
}

// ---- gateway access -----------------------------------------------------

#[tokio::test]
async fn token() {
    let mut live = Live::start("").await;
    // Rotating the credential closes the connection that used it, once the
    // new one is in force, after the answers to the requests it was
    // running: a turn of the echo agent (a word a millisecond) and the
    // config.set that did it.
    let words = vec!["word"; 300].join(" ");
    let turn = live.admin.request("chat", json!({"message": words})).await;
    let set = live
        .admin
        .request(
            "config.set",
            json!({"key": "gateway.auth.token", "value": "rotated-token-0123456789"}),
        )
        .await;
    let mut answered = Vec::new();
    let closed = loop {
        match live.admin.recv_or_close().await {
            Ok(frame) if frame["result"].is_object() => answered.push(frame["id"].clone()),
            Ok(_) => {}
            Err(closed) => break closed,
        }
    };
    assert!(matches!(closed, Closed::Code(1008, _)), "{closed:?}");
    let mut expected = vec![json!(turn), json!(set)];
    expected.sort_by_key(|id| id.to_string());
    answered.sort_by_key(|id| id.to_string());
    assert_eq!(answered, expected, "the running turn was answered too");
    let new = connect_with(&live, json!({"token": "rotated-token-0123456789"})).await;
    assert!(new["result"].is_object(), "{new}");
    let old = connect_with(&live, json!({"token": TOKEN})).await;
    assert_eq!(error_code(&old), ErrorCode::Unauthorized.code());
}

#[tokio::test]
async fn password() {
    let gw = TestGateway::start_with_file(
        "[gateway]\nport = 0\n[gateway.auth]\nmode = \"password\"\npassword = \"first-password-1\"\n",
    )
    .await;
    let mut admin = gw.raw().await;
    let hello = admin
        .connect(json!({"password": "first-password-1"}), None)
        .await;
    assert!(hello["result"].is_object(), "{hello}");
    admin
        .request(
            "config.set",
            json!({"key": "gateway.auth.password", "value": "second-password-2"}),
        )
        .await;
    assert!(matches!(admin.expect_close().await, Closed::Code(1008, _)));
    let mut new = gw.raw().await;
    let hello = new
        .connect(json!({"password": "second-password-2"}), None)
        .await;
    assert!(hello["result"].is_object(), "{hello}");
    let mut old = gw.raw().await;
    let refused = old
        .connect(json!({"password": "first-password-1"}), None)
        .await;
    assert_eq!(error_code(&refused), ErrorCode::Unauthorized.code());
}

#[tokio::test]
async fn scopes() {
    let mut live = Live::start("").await;
    let before = connect_with(&live, json!({"token": TOKEN})).await;
    assert!(before["result"]["scopes"]
        .as_array()
        .unwrap()
        .contains(&json!("operator.admin")));
    // A device paired for read and write first...
    let key = crate::openclaw_v4::DeviceKey::new();
    let (_, paired) =
        crate::openclaw_v4::device_connect(&live.gw, &key, json!({"token": TOKEN})).await;
    let device_token = paired["payload"]["auth"]["deviceToken"].clone();
    let (mut device, _) =
        crate::openclaw_v4::device_connect(&live.gw, &key, json!({"deviceToken": device_token}))
            .await;
    live.set("gateway.auth.scopes", json!(["operator.read"]))
        .await;
    let after = connect_with(&live, json!({"token": TOKEN})).await;
    assert_eq!(after["result"]["scopes"], json!(["operator.read"]));
    // ...is held to the new ceiling too, connected or connecting anew.
    let mut write = Value::Null;
    for _ in 0..50 {
        write =
            crate::openclaw_v4::request(&mut device, "w", "sessions.delete", json!({"key": "x"}))
                .await;
        if write["error"]["details"]["missingScope"] == "operator.write" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        write["error"]["details"]["missingScope"], "operator.write",
        "{write}"
    );
    let (_, again) =
        crate::openclaw_v4::device_connect(&live.gw, &key, json!({"deviceToken": device_token}))
            .await;
    assert_eq!(
        again["payload"]["auth"]["scopes"],
        json!(["operator.read"]),
        "{again}"
    );
}

#[tokio::test]
async fn auth_limits() {
    for (key, whom) in [
        ("gateway.auth.maxFailuresPerMinute", "this address"),
        ("gateway.auth.maxFailuresPerMinuteTotal", "all addresses"),
    ] {
        let mut live = Live::start("").await;
        live.set(key, json!(1)).await;
        let first = connect_with(&live, json!({"token": "wrong"})).await;
        assert_eq!(error_code(&first), ErrorCode::Unauthorized.code());
        let second = connect_with(&live, json!({"token": "wrong"})).await;
        assert_eq!(
            error_code(&second),
            ErrorCode::RateLimited.code(),
            "{key}: {second}"
        );
        assert!(
            second["error"]["message"].as_str().unwrap().contains(whom),
            "{key}: {second}"
        );
    }
}

#[tokio::test]
async fn http_surface() {
    let mut live = Live::start("").await;
    let foreign_host = "Host: gw.example\r\n";
    let addr = live.addr();
    let with_host = |host: &str| format!("GET /health HTTP/1.1\r\n{host}Connection: close\r\n\r\n");
    let (refused, _) = raw_http(&addr, &with_host(foreign_host), WAIT).await;
    assert_eq!(status_of(&refused), 421, "{refused}");
    live.set("gateway.allowedHosts", json!(["gw.example"]))
        .await;
    let (allowed, _) = raw_http(&addr, &with_host(foreign_host), WAIT).await;
    assert_eq!(status_of(&allowed), 200, "{allowed}");

    let origin = "Origin: https://app.example\r\n";
    assert_eq!(get(&live, "/health", origin).await, 403);
    live.set("gateway.allowedOrigins", json!(["https://app.example"]))
        .await;
    assert_eq!(get(&live, "/health", origin).await, 200);

    assert_eq!(post_completion(&live).await, 404);
    live.set("gateway.http.chatCompletions.enabled", json!(true))
        .await;
    assert_eq!(post_completion(&live).await, 200);

    let bearer = format!("Authorization: Bearer {TOKEN}\r\n");
    assert_eq!(get(&live, "/metrics", &bearer).await, 404);
    live.set("gateway.http.metrics.enabled", json!(true)).await;
    assert_eq!(get(&live, "/metrics", &bearer).await, 200);

    assert_eq!(get(&live, "/ui", "").await, 200);
    live.set("gateway.controlUi.enabled", json!(false)).await;
    assert_eq!(get(&live, "/ui", "").await, 404);
}

// ---- connections --------------------------------------------------------

#[tokio::test]
async fn connection_limits() {
    let mut live = Live::start("").await;

    live.set("gateway.handshakeTimeoutMs", json!(300)).await;
    let started = Instant::now();
    let mut silent = live.gw.raw().await;
    assert!(matches!(silent.expect_close().await, Closed::Code(1008, _)));
    assert!(started.elapsed() < Duration::from_secs(3));
    live.set("gateway.handshakeTimeoutMs", json!(10000)).await;

    let padded = |bytes: usize| {
        json!({"id": "big", "method": "health", "params": {"pad": "x".repeat(bytes)}}).to_string()
    };
    let mut early = live.gw.raw().await;
    early.send_text(&padded(2000)).await;
    let answer = early.recv_or_close().await;
    assert!(
        !format!("{answer:?}").contains(&ErrorCode::PayloadTooLarge.code().to_string()),
        "{answer:?}"
    );
    live.set("gateway.limits.maxPreAuthPayloadBytes", json!(1024))
        .await;
    let mut early = live.gw.raw().await;
    early.send_text(&padded(2000)).await;
    let answer = early.recv_or_close().await;
    assert!(
        format!("{answer:?}").contains(&ErrorCode::PayloadTooLarge.code().to_string()),
        "{answer:?}"
    );

    let mut client = live.gw.operator().await;
    client.send_text(&padded(4000)).await;
    let answer = client.recv().await;
    assert_eq!(
        error_code(&answer),
        ErrorCode::InvalidParams.code(),
        "{answer}"
    );
    live.set("gateway.limits.maxPayloadBytes", json!(2048))
        .await;
    let mut client = live.gw.operator().await;
    client.send_text(&padded(4000)).await;
    let answer = client.recv_or_close().await;
    assert!(
        format!("{answer:?}").contains(&ErrorCode::PayloadTooLarge.code().to_string()),
        "{answer:?}"
    );
    drop(client);

    live.set("gateway.limits.maxConnections", json!(1)).await;
    let refused = connect_with(&live, json!({"token": TOKEN})).await;
    assert!(refused["error"].is_object(), "{refused}");
    live.set("gateway.limits.maxConnections", json!(100)).await;
    let admitted = connect_with(&live, json!({"token": TOKEN})).await;
    assert!(admitted["result"].is_object(), "{admitted}");

    for (key, other) in [
        (
            "gateway.limits.maxUnauthenticatedConnections",
            "gateway.limits.maxUnauthenticatedPerAddress",
        ),
        (
            "gateway.limits.maxUnauthenticatedPerAddress",
            "gateway.limits.maxUnauthenticatedConnections",
        ),
    ] {
        live.set(other, json!(1024)).await;
        live.set(key, json!(1)).await;
        let mut first = live.gw.raw().await;
        let _second = live.gw.raw().await;
        match first.recv_or_close().await {
            Err(Closed::Code(1008, reason)) => {
                assert!(reason.contains("unauthenticated"), "{key}: {reason}")
            }
            other => panic!("{key}: the older connection stays: {other:?}"),
        }
        live.set(key, json!(1024)).await;
    }

    live.set("gateway.limits.httpHeaderTimeoutMs", json!(300))
        .await;
    let (_, held) = raw_http(
        &live.addr(),
        "GET /health HTTP/1.1\r\nHost: 127",
        Duration::from_secs(8),
    )
    .await;
    assert!(held < Duration::from_secs(3), "held for {held:?}");

    live.set("gateway.http.chatCompletions.enabled", json!(true))
        .await;
    live.set("gateway.limits.httpBodyTimeoutMs", json!(300))
        .await;
    let addr = live.addr();
    let (answer, held) = raw_http(
        &addr,
        &format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"model\""
        ),
        Duration::from_secs(8),
    )
    .await;
    assert_eq!(status_of(&answer), 408, "{answer}");
    assert!(held < Duration::from_secs(3), "held for {held:?}");
}

/// Another client runs `turns` chats with large replies while this one
/// reads nothing; then it reads: how many replies it was sent before its
/// connection ended.
/// An operator that never reads, with a small fixed receive window: the
/// kernel would otherwise grow a loopback window to `tcp_rmem`'s maximum
/// (32 MiB on some hosts) and hold the whole flood.
async fn stalled_operator(live: &Live) -> Ws {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    let tcp = socket.connect(live.addr().parse().unwrap()).await.unwrap();
    let (stream, _) = tokio_tungstenite::client_async(
        live.gw.url.as_str(),
        tokio_tungstenite::MaybeTlsStream::Plain(tcp),
    )
    .await
    .unwrap();
    let mut ws = Ws::from_stream(stream);
    let hello = ws.connect(json!({"token": TOKEN}), None).await;
    assert!(hello.get("result").is_some(), "{hello}");
    ws
}

async fn replies_seen_by_a_stalled_reader(live: &Live, turns: usize) -> usize {
    let mut stalled = stalled_operator(live).await;
    let mut writer = live.gw.operator().await;
    let big = "x".repeat(100_000);
    for i in 0..turns {
        let answer = writer
            .call(
                "chat",
                json!({"message": format!("{big}{i}"), "sessionKey": "flood"}),
            )
            .await;
        assert!(answer["error"].is_null(), "{answer}");
    }
    let mut finals = 0;
    while finals < turns {
        match stalled.recv_or_close().await {
            Ok(frame) if frame["event"] == "agent.message" && frame["data"]["state"] == "final" => {
                finals += 1
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    finals
}

#[tokio::test]
async fn outbound_queue() {
    let mut live = Live::start("[agents.main]\nprovider = \"echo\"\n").await;
    // Each turn sends a reader about 200 KB; 100 turns outgrow what the
    // sockets buffer, so the rest waits in the reader's queue.
    const TURNS: usize = 100;
    live.set("gateway.limits.outboundQueueFrames", json!(1_000_000))
        .await;
    assert_eq!(replies_seen_by_a_stalled_reader(&live, TURNS).await, TURNS);
    // Through a new connection: the first one read none of the flood, and
    // the new limit may close it before it reads its answer.
    let mut fresh = live.gw.operator().await;
    let set = fresh
        .call(
            "config.set",
            json!({"key": "gateway.limits.outboundQueueFrames", "value": 8}),
        )
        .await;
    assert!(set["error"].is_null(), "{set}");
    let seen = replies_seen_by_a_stalled_reader(&live, TURNS).await;
    assert!(seen < TURNS, "a reader 8 frames behind is disconnected");
}

#[tokio::test]
async fn inflight_and_drain() {
    let upstream = FakeOpenAi::start(Script::Hang).await;
    let mut live = Live::start(&format!(
        "[gateway.shutdown]\ndrainTimeoutMs = 60000\n[agents.slow]\nprovider = \"openai\"\nbaseUrl = \"{}\"\nmodel = \"m\"\n",
        upstream.base_url
    ))
    .await;
    // A hanging turn, then a health call on the same connection.
    let url = live.gw.url.clone();
    let hang_then_health = |session: &'static str| {
        let url = url.clone();
        async move {
            let mut ws = Ws::open(&url).await;
            ws.connect(json!({"token": TOKEN}), None).await;
            ws.request(
                "chat",
                json!({"message": "x", "agentId": "slow", "sessionKey": session}),
            )
            .await;
            let health = ws.request("health", json!({})).await;
            let answered = tokio::time::timeout(Duration::from_secs(1), async {
                loop {
                    if ws.recv().await["id"] == health {
                        return;
                    }
                }
            })
            .await
            .is_ok();
            (ws, answered)
        }
    };
    let (_busy, answered) = hang_then_health("a").await;
    assert!(answered, "with room for more, health is answered");
    live.set("gateway.limits.maxInflightPerConnection", json!(1))
        .await;
    let (_saturated, answered) = hang_then_health("b").await;
    assert!(!answered, "at one request in flight, the next waits");

    live.set("gateway.shutdown.drainTimeoutMs", json!(300))
        .await;
    let started = Instant::now();
    let status = live.gw.terminate();
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "the drain took {:?}",
        started.elapsed()
    );
}

// ---- reload and logging -------------------------------------------------

#[tokio::test]
async fn reload_settings() {
    let mut live = Live::start("[gateway.reload]\ndebounceMs = 50\n").await;
    let path = live.gw.config_path();
    let edit = |value: u64| {
        let text = std::fs::read_to_string(&path).unwrap();
        let text = match text.find("\n[gateway.shutdown]") {
            Some(at) => text[..at].to_string(),
            None => text,
        };
        save_file(
            &path,
            &format!("{text}\n[gateway.shutdown]\ndrainTimeoutMs = {value}\n"),
        );
    };
    let key = "gateway.shutdown.drainTimeoutMs";
    edit(1111);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(live.value(key).await, 1111, "hybrid mode applies an edit");

    live.set("gateway.reload.mode", json!("off")).await;
    edit(2222);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(live.value(key).await, 1111, "with mode off, edits wait");
    live.admin.call("config.reload", json!({})).await;
    assert_eq!(live.value(key).await, 2222);

    live.set("gateway.reload.mode", json!("hybrid")).await;
    live.set("gateway.reload.debounceMs", json!(60000)).await;
    // From the watcher's next look, at most the old interval away.
    tokio::time::sleep(Duration::from_millis(300)).await;
    edit(3333);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        live.value(key).await,
        2222,
        "a minute's debounce has not passed"
    );
}

#[tokio::test]
async fn log_level() {
    let dir = temp_dir("log-level");
    let config = dir.join("clawgate.toml");
    std::fs::write(
        &config,
        format!("{}\n[logging]\nlevel = \"warn\"\n", token_config()),
    )
    .unwrap();
    let log = dir.join("stderr.log");
    let mut child = std::process::Command::new(bin())
        .args(["run", "--config", config.to_str().unwrap(), "--state-dir"])
        .arg(dir.join("state"))
        .env_remove("CLAWGATE_LOG")
        .env("HOME", &dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let url = line.trim().strip_prefix("clawgate listening on ").unwrap();
    let mut admin = Ws::open(url).await;
    admin.connect(json!({"token": TOKEN}), None).await;
    let set = |key: &str, value: Value| json!({"key": key, "value": value});
    admin
        .call("config.set", set("gateway.handshakeTimeoutMs", json!(9000)))
        .await;
    let logged = || std::fs::read_to_string(&log).unwrap();
    assert!(!logged().contains("config reloaded"), "{}", logged());
    admin
        .call("config.set", set("logging.level", json!("info")))
        .await;
    admin
        .call("config.set", set("gateway.handshakeTimeoutMs", json!(8000)))
        .await;
    let _ = child.kill();
    let _ = child.wait();
    assert!(logged().contains("config reloaded"), "{}", logged());
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- agents, exec and approvals -----------------------------------------

#[tokio::test]
async fn agent_settings() {
    let first = FakeOpenAi::start(Script::Text(vec!["one"])).await;
    let second = FakeOpenAi::start(Script::Hang).await;
    let anthropic = FakeAnthropic::start(fake_anthropic::Script::Reply {
        thinking: vec![],
        text: vec!["three"],
    })
    .await;
    let agent = |base_url: &str| json!({"provider": "openai", "baseUrl": base_url, "model": "m1", "apiKey": "key-one-0123456789"});
    let mut live = Live::start(&format!(
        "[agents]\ndefault = \"main\"\n[agents.main]\nprovider = \"echo\"\n[agents.gpt]\nprovider = \"openai\"\nbaseUrl = \"{}\"\nmodel = \"m1\"\napiKey = \"key-one-0123456789\"\n",
        first.base_url
    ))
    .await;
    let chat = json!({"message": "hi", "sessionKey": "s"});
    assert_eq!(live.chat(chat.clone()).await["result"]["agentId"], "main");
    live.set("agents.default", json!("gpt")).await;
    assert_eq!(live.chat(chat.clone()).await["result"]["agentId"], "gpt");

    live.set("agents.gpt.model", json!("m2")).await;
    live.set("agents.gpt.apiKey", json!("key-two-0123456789"))
        .await;
    live.set("agents.gpt.systemPrompt", json!("Be brief."))
        .await;
    live.set("agents.gpt.temperature", json!(0.25)).await;
    live.set("agents.gpt.maxTokens", json!(77)).await;
    live.set("agents.gpt.tools", json!(["cron_list"])).await;
    let answer = live.chat(chat.clone()).await;
    assert!(answer["error"].is_null(), "{answer}");
    let (headers, body) = first.requests().last().cloned().unwrap();
    assert_eq!(body["model"], "m2");
    assert_eq!(
        headers["authorization"].to_str().unwrap(),
        "Bearer key-two-0123456789"
    );
    assert_eq!(body["messages"][0]["role"], "system");
    assert_eq!(body["messages"][0]["content"], "Be brief.");
    assert_eq!(body["temperature"], 0.25);
    assert!(
        body["max_tokens"] == 77 || body["max_completion_tokens"] == 77,
        "{body}"
    );
    assert_eq!(body["tools"][0]["function"]["name"], "cron_list", "{body}");

    live.set("agents.gpt.timeoutMs", json!(300)).await;
    live.set("agents.gpt", agent(&second.base_url)).await;
    live.set("agents.gpt.timeoutMs", json!(300)).await;
    let started = Instant::now();
    let answer = live.chat(chat.clone()).await;
    assert!(answer["error"].is_object(), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(second.requests().len(), 1, "the new baseUrl was used");

    live.set(
        "agents.gpt",
        json!({"provider": "anthropic", "baseUrl": anthropic.base_url, "model": "claude", "apiKey": "key-three-0123456789"}),
    )
    .await;
    let answer = live.chat(chat).await;
    assert_eq!(answer["result"]["message"]["content"], "three", "{answer}");
    assert_eq!(anthropic.requests().len(), 1);
}

/// A gateway whose default agent, gpt, has `tool`, and a fake model that
/// calls it with the user's message as the arguments; `sections` follow.
async fn tool_agent(tool: &'static str, sections: &str) -> (FakeOpenAi, Live) {
    let upstream = FakeOpenAi::start(Script::ToolByMessage(
        tool,
        |message| message.to_string(),
        vec!["done"],
    ))
    .await;
    let live = Live::start(&format!(
        "[agents]\ndefault = \"gpt\"\n[agents.gpt]\nprovider = \"openai\"\nbaseUrl = \"{}\"\nmodel = \"m\"\ntools = [\"{tool}\"]\n{sections}",
        upstream.base_url
    ))
    .await;
    (upstream, live)
}

/// The exec call's end event of the next turn.
async fn exec_end(ws: &mut Ws, command: Value) -> Value {
    ws.request(
        "chat",
        json!({"message": command.to_string(), "sessionKey": "x"}),
    )
    .await;
    tool_end(ws).await
}

#[tokio::test]
async fn exec_settings() {
    let (_upstream, mut live) = tool_agent(
        "exec",
        "[agents.gpt.exec]\nsecurity = \"deny\"\nask = \"off\"\n",
    )
    .await;
    let mut ws = live.gw.operator().await;
    let echo = json!({"command": "echo hi"});
    let end = exec_end(&mut ws, echo.clone()).await;
    assert!(end["error"].as_str().unwrap().contains("deny"), "{end}");

    live.set("agents.gpt.exec.security", json!("allowlist"))
        .await;
    let end = exec_end(&mut ws, echo.clone()).await;
    assert!(
        end["error"].as_str().unwrap().contains("allowlist"),
        "{end}"
    );
    live.set("agents.gpt.exec.allowlist", json!(["echo *", "pwd"]))
        .await;
    let end = exec_end(&mut ws, echo.clone()).await;
    assert_eq!(end["result"]["stdout"], "hi\n", "{end}");

    let dir = temp_dir("exec-cwd");
    live.set("agents.gpt.exec.cwd", json!(dir.to_str().unwrap()))
        .await;
    let end = exec_end(&mut ws, json!({"command": "pwd"})).await;
    assert_eq!(
        end["result"]["stdout"].as_str().unwrap().trim(),
        dir.to_str().unwrap(),
        "{end}"
    );

    live.set("agents.gpt.exec.security", json!("full")).await;
    live.set("agents.gpt.exec.timeoutMs", json!(300)).await;
    let started = Instant::now();
    let end = exec_end(&mut ws, json!({"command": "sleep 5"})).await;
    assert_eq!(end["result"]["timedOut"], true, "{end}");
    assert!(started.elapsed() < Duration::from_secs(4));

    live.set("agents.gpt.exec.maxOutputBytes", json!(1024))
        .await;
    let end = exec_end(&mut ws, json!({"command": "seq 1 20000"})).await;
    assert_eq!(end["result"]["truncated"], true, "{end}");
    assert_eq!(end["result"]["stdout"].as_str().unwrap().len(), 1024);

    live.set("agents.gpt.exec.security", json!("allowlist"))
        .await;
    live.set("agents.gpt.exec.ask", json!("always")).await;
    live.set("approvals.timeoutMs", json!(1000)).await;
    let started = Instant::now();
    let end = exec_end(&mut ws, echo).await;
    assert!(end["error"].is_string(), "unanswered: {end}");
    assert!(started.elapsed() < Duration::from_secs(4));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A time this many days ago, in unix milliseconds.
fn days_ago(days: i64) -> i64 {
    now_secs() as i64 * 1000 - days * 24 * 60 * 60 * 1000
}

#[tokio::test]
async fn audit_retention() {
    let _sqlite = crate::engines::sqlite_only(); // reads the SQLite file
    let gw = TestGateway::start_with_sections("[approvals]\nauditRetentionDays = 3650\n").await;
    let gw = restart_with_db_edit(gw, |db| {
        db.execute(
            "INSERT INTO exec_audit (command, argv_json, agent_id, decision, requested_at, decided_at) \
             VALUES ('old', '[]', 'main', 'allow-once', ?1, ?1)",
            rusqlite::params![days_ago(400)],
        )
        .unwrap();
    });
    let mut admin = gw.operator().await;
    let entries = |frame: Value| frame["result"]["entries"].as_array().unwrap().len();
    assert_eq!(entries(admin.call("approvals.audit", json!({})).await), 1);
    let set = admin
        .call(
            "config.set",
            json!({"key": "approvals.auditRetentionDays", "value": 30}),
        )
        .await;
    assert!(set["error"].is_null(), "{set}");
    eventually!(
        "the old entry is pruned",
        entries(admin.call("approvals.audit", json!({})).await) == 0
    );
    // status shows the upkeep tasks and how each last ran: the prune the
    // change set off, and the write-ahead log checkpoint of the start.
    async fn task(admin: &mut Ws, name: &str) -> Value {
        let status = admin.call("status", json!({})).await;
        let tasks = status["result"]["maintenance"].as_array().unwrap().clone();
        tasks.into_iter().find(|t| t["task"] == name).unwrap()
    }
    eventually!("the prune is recorded", {
        task(&mut admin, "store-prune").await["lastResult"]
            == "0 idempotency keys, 1 audit entries deleted"
    });
    let prune = task(&mut admin, "store-prune").await;
    assert_eq!(prune["lastOutcome"], "ok");
    assert_eq!(prune["everyMs"], 3_600_000);
    assert!(
        prune["nextRunAtMs"].as_u64() > prune["lastRunAtMs"].as_u64(),
        "{prune}"
    );
    let compact = task(&mut admin, "store-compact").await;
    assert_eq!(compact["lastOutcome"], "ok", "{compact}");
    assert!(
        compact["lastResult"]
            .as_str()
            .unwrap()
            .ends_with("write-ahead log pages checkpointed"),
        "{compact}"
    );
}

/// Sessions idle longer than the retention go, with their transcripts,
/// once it is set; recent ones stay.
#[tokio::test]
async fn session_retention() {
    let _sqlite = crate::engines::sqlite_only(); // reads the SQLite file
    let gw = TestGateway::start("").await;
    let mut admin = gw.operator().await;
    for key in ["old", "recent"] {
        let reply = admin
            .call("chat", json!({"message": "hi", "sessionKey": key}))
            .await;
        assert!(reply["result"].is_object(), "{reply}");
    }
    drop(admin);
    let gw = restart_with_db_edit(gw, |db| {
        db.execute(
            "UPDATE sessions SET updated_at = ?1 WHERE key = 'old'",
            rusqlite::params![days_ago(40)],
        )
        .unwrap();
    });
    let mut admin = gw.operator().await;
    let keys = |frame: Value| -> Vec<String> {
        frame["result"]["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["key"].as_str().unwrap().to_string())
            .collect()
    };
    // Kept forever by default.
    assert_eq!(
        keys(admin.call("sessions", json!({})).await),
        ["recent", "old"]
    );
    let set = admin
        .call(
            "config.set",
            json!({"key": "session.retentionDays", "value": 30}),
        )
        .await;
    assert!(set["error"].is_null(), "{set}");
    eventually!(
        "the idle session is deleted",
        keys(admin.call("sessions", json!({})).await) == ["recent"]
    );
    let history = admin
        .call("sessions.history", json!({"sessionKey": "old"}))
        .await;
    assert_eq!(
        error_code(&history),
        ErrorCode::NotFound.code(),
        "{history}"
    );
    eventually!("status shows the run", {
        let status = admin.call("status", json!({})).await;
        status["result"]["maintenance"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| {
                t["task"] == "session-prune"
                    && t["lastResult"] == "1 sessions idle over 30 days deleted"
            })
    });
}

// ---- devices ------------------------------------------------------------

#[tokio::test]
async fn device_settings() {
    use crate::openclaw_v4::{device_connect, DeviceKey};
    let mut live = Live::start("").await;
    live.set("devices.autoApproveLoopback", json!(false)).await;
    let key = DeviceKey::new();
    let (_, refused) = device_connect(&live.gw, &key, json!({"token": TOKEN})).await;
    assert_eq!(refused["error"]["code"], "NOT_PAIRED", "{refused}");
    // A request lapses pairingTimeoutMs after the device last asked.
    live.set("devices.pairingTimeoutMs", json!(1000)).await;
    let (_, refused) = device_connect(&live.gw, &key, json!({"token": TOKEN})).await;
    assert_eq!(refused["error"]["code"], "NOT_PAIRED", "{refused}");
    let pending = live.admin.call("devices.list", json!({})).await;
    assert_eq!(pending["result"]["pending"].as_array().unwrap().len(), 1);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let lapsed = live.admin.call("devices.list", json!({})).await;
    assert_eq!(lapsed["result"]["pending"], json!([]), "{lapsed}");
    live.set("devices.autoApproveLoopback", json!(true)).await;
    let (_, hello) = device_connect(&live.gw, &key, json!({"token": TOKEN})).await;
    assert_eq!(hello["ok"], true, "{hello}");
}

// ---- nodes --------------------------------------------------------------

#[tokio::test]
async fn node_settings() {
    let (_upstream, mut live) =
        tool_agent("node_invoke", "[nodes]\npairingTimeoutMs = 60000\n").await;
    let mut operator = live.gw.operator().await;

    // Pairing waits for a person until the timeout is lowered...
    live.set("nodes.pairingTimeoutMs", json!(1000)).await;
    let (mut stranger, _) = node_with(&live.gw, TOKEN).await;
    let started = Instant::now();
    let lapsed = stranger
        .call("nodes.register", register_params("stranger", &[]))
        .await;
    assert_eq!(error_code(&lapsed), ErrorCode::Timeout.code());
    assert!(started.elapsed() < Duration::from_secs(4));
    // ...or loopback nodes are approved at once.
    live.set("nodes.autoApproveLoopback", json!(true)).await;
    let (mut node, _) = node_with(&live.gw, TOKEN).await;
    let paired = node
        .call(
            "nodes.register",
            register_params("box", &["system.which", "camera.snap"]),
        )
        .await;
    let node_id = paired["result"]["nodeId"].as_str().unwrap().to_string();
    let token = paired["result"]["token"].as_str().unwrap().to_string();
    let (mut node, _) = node_with(&live.gw, &token).await;
    let invoke = |command: &str| json!({"nodeId": node_id, "command": command});

    live.set("nodes.allowCommands", json!(["system.*"])).await;
    let refused = operator.call("nodes.invoke", invoke("camera.snap")).await;
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nodes.allowCommands"),
        "{refused}"
    );
    live.set("nodes.allowCommands", json!(["*"])).await;
    live.set("nodes.invokeTimeoutMs", json!(300)).await;
    let started = Instant::now();
    let timed_out = operator.call("nodes.invoke", invoke("camera.snap")).await;
    assert_eq!(error_code(&timed_out), ErrorCode::Timeout.code());
    assert!(started.elapsed() < Duration::from_secs(3));
    let request = node.event("nodes.invoke.request").await["data"].clone();
    assert_eq!(request["command"], "camera.snap");

    // A writer may run a command until it is named dangerous, which
    // takes an admin.
    let mut writer = live.gw.raw().await;
    writer
        .connect(
            json!({"token": TOKEN}),
            Some(json!(["operator.read", "operator.write"])),
        )
        .await;
    let ran = writer.call("nodes.invoke", invoke("system.which")).await;
    assert_eq!(error_code(&ran), ErrorCode::Timeout.code(), "{ran}");
    let request = node.event("nodes.invoke.request").await["data"].clone();
    assert_eq!(request["command"], "system.which");
    live.set("nodes.dangerousCommands", json!(["system.which"]))
        .await;
    let refused = writer.call("nodes.invoke", invoke("system.which")).await;
    assert_eq!(
        error_code(&refused),
        ErrorCode::Forbidden.code(),
        "{refused}"
    );

    let by_agent = json!({"nodeId": node_id, "command": "camera.snap"}).to_string();
    operator
        .request("chat", json!({"message": by_agent, "sessionKey": "n"}))
        .await;
    let end = tool_end(&mut operator).await;
    assert!(end["error"].is_string(), "not allowed yet: {end}");
    live.set("agents.gpt.allowNodeCommands", json!(["camera.snap"]))
        .await;
    operator
        .request("chat", json!({"message": by_agent, "sessionKey": "n"}))
        .await;
    let request = node.event("nodes.invoke.request").await["data"].clone();
    assert_eq!(request["command"], "camera.snap");

    live.set("nodes.heartbeatTimeoutMs", json!(1000)).await;
    assert_eq!(
        node.expect_close().await,
        Closed::Code(1008, "heartbeat missed".into())
    );
}

async fn tool_end(ws: &mut Ws) -> Value {
    loop {
        let event = ws.event("agent.tool").await;
        if event["data"]["phase"] == "end" {
            return event["data"].clone();
        }
    }
}

// ---- cron ---------------------------------------------------------------

async fn job(live: &mut Live) -> Value {
    let list = live
        .admin
        .call("cron.list", json!({"includeDisabled": true}))
        .await;
    list["result"]["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["id"] == "beat")
        .cloned()
        .unwrap_or_else(|| panic!("no job beat: {list}"))
}

#[tokio::test]
async fn cron_settings() {
    let upstream = FakeOpenAi::start(Script::Hang).await;
    let mut live = Live::start(&format!(
        "[agents.main]\nprovider = \"echo\"\n[agents.helper]\nprovider = \"echo\"\n\
         [agents.slow]\nprovider = \"openai\"\nbaseUrl = \"{}\"\nmodel = \"m\"\n\
         [cron.jobs.beat]\nschedule = {{ kind = \"cron\", expr = \"0 0 9 * * *\" }}\npayload = {{ kind = \"systemEvent\", text = \"one\" }}\n",
        upstream.base_url
    ))
    .await;
    live.set("cron.jobs.beat.name", json!("Beat")).await;
    assert_eq!(job(&mut live).await["name"], "Beat");

    let at_nine_utc = job(&mut live).await["state"]["nextRunAtMs"].clone();
    live.set("cron.timezone", json!("Asia/Tokyo")).await;
    assert_ne!(job(&mut live).await["state"]["nextRunAtMs"], at_nine_utc);

    live.set(
        "cron.jobs.beat.schedule",
        json!({"kind": "cron", "expr": "* * * * * *"}),
    )
    .await;
    let next = job(&mut live).await["state"]["nextRunAtMs"]
        .as_u64()
        .unwrap();
    assert!(next <= now_secs() * 1000 + 2000, "every second now");
    live.set(
        "cron.jobs.beat.payload",
        json!({"kind": "systemEvent", "text": "two"}),
    )
    .await;
    loop {
        let event = live.admin.event("system.event").await;
        if event["data"].to_string().contains("two") {
            break;
        }
    }

    live.set("cron.jobs.beat.enabled", json!(false)).await;
    assert_eq!(job(&mut live).await["enabled"], false);
    live.set("cron.jobs.beat.enabled", json!(true)).await;
    live.set("cron.enabled", json!(false)).await;
    let listed = live.admin.call("cron.list", json!({})).await;
    assert_eq!(listed["result"]["enabled"], false, "{listed}");
    live.set("cron.enabled", json!(true)).await;

    live.set(
        "cron.jobs.beat.schedule",
        json!({"kind": "cron", "expr": "0 0 0 1 1 *"}),
    )
    .await;
    live.set(
        "cron.jobs.beat.payload",
        json!({"kind": "agentTurn", "message": "hello"}),
    )
    .await;
    live.set("cron.jobs.beat.agentId", json!("helper")).await;
    live.set("cron.jobs.beat.sessionKey", json!("cron-session"))
        .await;
    let run = live
        .admin
        .call("cron.run", json!({"id": "beat", "mode": "force"}))
        .await;
    assert!(run["error"].is_null(), "{run}");
    let sessions = live.admin.call("sessions", json!({})).await["result"]["sessions"].clone();
    let session = sessions
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == "cron-session")
        .cloned()
        .unwrap_or_else(|| panic!("no cron session: {sessions}"));
    assert_eq!(session["agentId"], "helper");

    live.set("cron.historyLimit", json!(1)).await;
    live.admin
        .call("cron.run", json!({"id": "beat", "mode": "force"}))
        .await;
    let runs = live.admin.call("cron.runs", json!({"id": "beat"})).await;
    assert_eq!(
        runs["result"]["runs"].as_array().unwrap().len(),
        1,
        "{runs}"
    );

    live.set("cron.jobs.beat.agentId", json!("slow")).await;
    live.set("cron.jobs.beat.timeoutMs", json!(1000)).await;
    let started = Instant::now();
    let run = live
        .admin
        .call("cron.run", json!({"id": "beat", "mode": "force"}))
        .await;
    assert!(started.elapsed() < Duration::from_secs(4), "{run}");
    live.set("cron.jobs.beat.timeoutMs", Value::Null).await;
    live.set("cron.runTimeoutMs", json!(1000)).await;
    let started = Instant::now();
    let run = live
        .admin
        .call("cron.run", json!({"id": "beat", "mode": "force"}))
        .await;
    assert!(started.elapsed() < Duration::from_secs(4), "{run}");
}

// ---- channels -----------------------------------------------------------

async fn channel(live: &mut Live, kind: &str, account: &str) -> Value {
    let list = live.admin.call("channels.status", json!({})).await["result"]["channels"].clone();
    list.as_array()
        .unwrap()
        .iter()
        .find(|c| c["channel"] == kind && c["accountId"] == account)
        .cloned()
        .unwrap_or(Value::Null)
}

const SECRET: &str = "webhook-secret-0123456789";

#[tokio::test]
async fn webhook_accounts() {
    let mut live = Live::start(&format!(
        "[agents.main]\nprovider = \"echo\"\n[channels.webhook.w]\nsecret = \"{SECRET}\"\ndmPolicy = \"open\"\n"
    ))
    .await;
    let mut secret = SECRET.to_string();
    let changes = [
        // An endpoint moves only together with a new secret.
        (
            "",
            json!({"secret": "webhook-secret-moved-0123", "dmPolicy": "open", "replyUrl": "http://127.0.0.1:9/replies"}),
        ),
        ("dmPolicy", json!("allowlist")),
        ("allowFrom", json!(["alice"])),
        ("groups", json!(["room"])),
        ("requireMention", json!(false)),
        ("groupPolicy", json!("open")),
        ("groupAllowFrom", json!(["bob"])),
        ("secret", json!("webhook-secret-second-0123")),
    ];
    for (key, value) in changes {
        let text = format!("hi {}", uuid::Uuid::new_v4());
        let (status, _) = hook(
            &live.gw,
            "w",
            &json!({"peer": "alice", "text": text}),
            &secret,
            now_secs(),
        )
        .await;
        assert_eq!(status, 202, "before {key}");
        eventually!(
            "the message is counted",
            channel(&mut live, "webhook", "w").await["received"] == 1
        );
        let path = match key {
            "" => "channels.webhook.w".to_string(),
            key => format!("channels.webhook.w.{key}"),
        };
        live.set(&path, value.clone()).await;
        if key.is_empty() {
            secret = value["secret"].as_str().unwrap().to_string();
        }
        let restarted = channel(&mut live, "webhook", "w").await;
        assert_eq!(restarted["received"], 0, "{key} restarts the account");
        if key == "secret" {
            secret = value.as_str().unwrap().to_string();
            let (old, _) = hook(
                &live.gw,
                "w",
                &json!({"peer": "alice", "text": "hi"}),
                SECRET,
                now_secs(),
            )
            .await;
            assert_eq!(old, 401);
        }
    }
    // The policy read on restart: a stranger is now dropped.
    let (status, _) = hook(
        &live.gw,
        "w",
        &json!({"peer": "mallory", "text": "hi"}),
        &secret,
        now_secs(),
    )
    .await;
    assert_eq!(status, 202);
    eventually!(
        format!(
            "the stranger is dropped: {}",
            channel(&mut live, "webhook", "w").await
        ),
        channel(&mut live, "webhook", "w").await["dropped"].as_u64() >= Some(1)
    );
    live.set("channels.webhook.w.enabled", json!(false)).await;
    assert!(channel(&mut live, "webhook", "w").await.is_null());
}

#[tokio::test]
async fn telegram_accounts() {
    let first = FakeTelegram::start().await;
    let second = FakeTelegram::start().await;
    let mut live = Live::start(&format!(
        "[agents.main]\nprovider = \"echo\"\n[channels.telegram.t]\ntoken = \"{BOT_TOKEN}\"\napiBase = \"{}\"\npollTimeoutSec = 1\n",
        first.base_url
    ))
    .await;
    let changes = [
        ("dmPolicy", json!("open")),
        ("allowFrom", json!(["42"])),
        ("groups", json!(["-100"])),
        ("requireMention", json!(false)),
        ("groupPolicy", json!("open")),
        ("groupAllowFrom", json!(["43"])),
        ("pollTimeoutSec", json!(2)),
        // Last: a token the fake does not know never connects.
        ("token", json!("123:another-token")),
    ];
    for (key, value) in changes {
        let mut since;
        eventually!("the account is connected", {
            let status = channel(&mut live, "telegram", "t").await;
            since = status["sinceMs"].clone();
            status["status"] == "connected"
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        live.set(&format!("channels.telegram.t.{key}"), value).await;
        eventually!(
            &format!("{key} restarts the account"),
            channel(&mut live, "telegram", "t").await["sinceMs"] != since
        );
    }
    let polled = first.offsets().len();
    live.set(
        "channels.telegram.t",
        json!({"token": BOT_TOKEN, "apiBase": second.base_url, "pollTimeoutSec": 1}),
    )
    .await;
    eventually!("the new apiBase is polled", !second.offsets().is_empty());
    assert!(first.offsets().len() <= polled + 1);
    live.set("channels.telegram.t.enabled", json!(false)).await;
    assert!(channel(&mut live, "telegram", "t").await.is_null());
}

/// A TCP server that records the first lines of each connection.
struct IrcListener {
    port: u16,
    connections: Arc<Mutex<Vec<String>>>,
    accepted: Arc<AtomicUsize>,
}

impl IrcListener {
    async fn start() -> IrcListener {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections: Arc<Mutex<Vec<String>>> = Arc::default();
        let accepted = Arc::new(AtomicUsize::new(0));
        let (seen, count) = (Arc::clone(&connections), Arc::clone(&accepted));
        tokio::spawn(async move {
            loop {
                let Ok((mut tcp, _)) = listener.accept().await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let slot = {
                    let mut seen = seen.lock().unwrap();
                    seen.push(String::new());
                    seen.len() - 1
                };
                let seen = Arc::clone(&seen);
                tokio::spawn(async move {
                    let mut buffer = [0u8; 1024];
                    while let Ok(n) = tcp.read(&mut buffer).await {
                        if n == 0 {
                            return;
                        }
                        seen.lock().unwrap()[slot].push_str(&String::from_utf8_lossy(&buffer[..n]));
                    }
                });
            }
        });
        IrcListener {
            port,
            connections,
            accepted,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn last(&self) -> String {
        self.connections
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap_or_default()
    }
}

#[tokio::test]
async fn irc_accounts() {
    let first = IrcListener::start().await;
    let second = IrcListener::start().await;
    let mut live = Live::start(&format!(
        "[agents.main]\nprovider = \"echo\"\n[channels.irc.i]\nserver = \"127.0.0.1\"\nport = {}\ntls = false\nnick = \"clawbot\"\n",
        first.port
    ))
    .await;
    eventually!("the account connects", first.accepted() >= 1);
    let changes = [
        ("dmPolicy", json!("open")),
        ("allowFrom", json!(["alice!*@*"])),
        ("groups", json!(["#room"])),
        ("requireMention", json!(false)),
        ("groupPolicy", json!("open")),
        ("groupAllowFrom", json!(["bob!*@*"])),
        ("channels", json!(["#room"])),
        // Endpoint keys before the password: once there is one, an
        // endpoint moves only together with it.
        ("server", json!("localhost")),
        ("tls", json!(true)),
        ("tls", json!(false)),
        ("nick", json!("otherbot")),
        ("password", json!("server-password-1")),
    ];
    for (key, value) in changes {
        let before = first.accepted();
        live.set(&format!("channels.irc.i.{key}"), value).await;
        eventually!(
            &format!("{key} reconnects the account"),
            first.accepted() > before
        );
        if key == "nick" {
            eventually!(
                "the new nick registers",
                first.last().contains("NICK otherbot")
            );
        }
        if key == "password" {
            eventually!(
                "the password is sent",
                first.last().contains("PASS server-password-1")
            );
        }
    }
    live.set(
        "channels.irc.i",
        json!({"server": "localhost", "port": second.port, "nick": "otherbot", "password": "server-password-2"}),
    )
    .await;
    eventually!("the new port is used", second.accepted() >= 1);
    live.set("channels.irc.i.enabled", json!(false)).await;
    assert!(channel(&mut live, "irc", "i").await.is_null());
}

// ---- routing ------------------------------------------------------------

/// Every stored session as (key, agent).
async fn sessions(admin: &mut Ws) -> Vec<(String, String)> {
    admin.call("sessions", json!({})).await["result"]["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["key"].as_str().unwrap().to_string(),
                s["agentId"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// A message from `peer` to webhook account w.
async fn say(gw: &TestGateway, peer: &str) {
    let text = format!("hi {}", uuid::Uuid::new_v4());
    let (status, _) = hook(
        gw,
        "w",
        &json!({"peer": peer, "text": text}),
        SECRET,
        now_secs(),
    )
    .await;
    assert_eq!(status, 202);
}

#[tokio::test]
async fn routing() {
    let mut live = Live::start(&format!(
        "[agents]\ndefault = \"main\"\n[agents.main]\nprovider = \"echo\"\n[agents.helper]\nprovider = \"echo\"\n\
         [channels.webhook.w]\nsecret = \"{SECRET}\"\ndmPolicy = \"open\"\n"
    ))
    .await;
    say(&live.gw, "alice").await;
    eventually!(
        "a session for the message",
        !sessions(&mut live.admin).await.is_empty()
    );
    let before = sessions(&mut live.admin).await;
    assert!(
        before.iter().all(|(_, agent)| agent == "main"),
        "{before:?}"
    );

    live.set("session.dmScope", json!("per-peer")).await;
    say(&live.gw, "alice").await;
    eventually!(
        "a per-peer session",
        sessions(&mut live.admin)
            .await
            .iter()
            .any(|(key, _)| key.contains("alice"))
    );

    live.set(
        "bindings",
        json!([{"agentId": "helper", "match": {"channel": "webhook"}}]),
    )
    .await;
    say(&live.gw, "bob").await;
    eventually!(
        "the binding routes to helper",
        sessions(&mut live.admin)
            .await
            .iter()
            .any(|(_, agent)| agent == "helper")
    );
}

// ---- plugins --------------------------------------------------------------

/// The launch settings (file-only) restart the plugin with the new
/// command, arguments, environment and start deadline; the others change
/// how the gateway treats it, or its config section, at once.
#[tokio::test]
async fn plugin_settings() {
    use crate::plugins::{error, python, wait_state};
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/plugins/rogue.py");
    let script = script.to_str().unwrap();
    let file = |command: &str, args: &str, extra: &str| {
        format!(
            "[plugins.rogue]\ncommand = {command:?}\nargs = [{script:?}, \"--config-schema\"{args}]\n{extra}"
        )
    };
    let mut live = Live::start(&file("/nonexistent/python3", "", "")).await;
    let failed = wait_state(&mut live.admin, "rogue", "failed").await;
    assert!(
        failed["lastError"]
            .as_str()
            .unwrap()
            .starts_with("cannot start /nonexistent/python3"),
        "{failed}"
    );

    // command, args, env and startTimeoutMs, from the file.
    let edit = |section: String| format!("{}\n{section}", token_config());
    save_file(
        &live.gw.config_path(),
        &edit(file(
            python(),
            ", \"--slow-start\", \"2\"",
            "startTimeoutMs = 300\n",
        )),
    );
    eventually!("the start deadline applies", {
        let s = wait_state(&mut live.admin, "rogue", "failed").await;
        s["lastError"] == "wrote no manifest within 300 ms"
    });
    save_file(
        &live.gw.config_path(),
        &edit(file(
            python(),
            ", \"--mark\"",
            "env = { GREETING = \"hi\" }\n",
        )),
    );
    wait_state(&mut live.admin, "rogue", "running").await;
    let init = live.admin.call("rogue.init", json!({})).await;
    assert_eq!(
        init["result"]["args"],
        json!(["--config-schema", "--mark"]),
        "{init}"
    );
    let env = live.admin.call("rogue.env", json!({})).await;
    assert!(
        env["result"]["env"]
            .as_array()
            .unwrap()
            .contains(&json!("GREETING")),
        "{env}"
    );

    // config: the plugin restarts with its new section.
    live.set("plugins.rogue.config", json!({"greeting": "hello"}))
        .await;
    eventually!("the plugin has its new config", {
        let init = live.admin.call("rogue.init", json!({})).await;
        init["result"]["init"]["config"] == json!({"greeting": "hello"})
    });

    // callTimeoutMs and maxInflight.
    live.set("plugins.rogue.callTimeoutMs", json!(400)).await;
    live.set("plugins.rogue.maxInflight", json!(1)).await;
    wait_state(&mut live.admin, "rogue", "running").await;
    let mut other = live.gw.operator().await;
    let hang = other.request("rogue.hang", json!({})).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let busy = live.admin.call("rogue.echo", json!({"text": "hi"})).await;
    let (code, message) = error(&busy);
    assert_eq!(code, -32006, "{busy}");
    assert!(message.contains("too many calls in flight"), "{message}");
    let answer = other.recv().await;
    assert_eq!(answer["id"], json!(hang));
    assert!(error(&answer).1.contains("within 400 ms"), "{answer}");

    // maxEventsPerSecond: a burst of ten is cut to the limit.
    live.set("plugins.rogue.maxEventsPerSecond", json!(2)).await;
    wait_state(&mut live.admin, "rogue", "running").await;
    let mut watcher = live.gw.operator().await;
    live.admin.call("rogue.burst", json!({"n": 10})).await;
    let mut pings = 0;
    while let Ok(frame) =
        tokio::time::timeout(Duration::from_millis(500), watcher.event("rogue.ping")).await
    {
        assert_eq!(frame["data"], json!({"n": 1}));
        pings += 1;
    }
    assert!(
        (1..=4).contains(&pings),
        "{pings} pings passed a limit of 2 per second"
    );

    // enabled.
    live.set("plugins.rogue.enabled", json!(false)).await;
    wait_state(&mut live.admin, "rogue", "disabled").await;
    assert_eq!(
        error(&live.admin.call("rogue.echo", json!({"text": "hi"})).await).0,
        -32006
    );
    live.set("plugins.rogue.enabled", json!(true)).await;
    wait_state(&mut live.admin, "rogue", "running").await;
}

/// What became of one message said in the room plugin's lobby: "taken"
/// by the pipeline, "dropped" by the account's policy, or "lost" (the
/// account is not connected yet).
async fn fate(live: &mut Live, from: &str, group: Option<(&str, bool)>) -> &'static str {
    async fn counts(live: &mut Live) -> Option<(u64, u64)> {
        let status = live.admin.call("channels.status", json!({})).await;
        let account = status["result"]["channels"]
            .as_array()?
            .iter()
            .find(|c| c["channel"] == "room.chat" && c["status"] == "connected")?
            .clone();
        Some((account["received"].as_u64()?, account["dropped"].as_u64()?))
    }
    let Some((received, dropped)) = counts(live).await else {
        return "lost";
    };
    let mut say = json!({"account": "lobby", "from": from, "text": "hi"});
    if let Some((group, mentioned)) = group {
        say["group"] = json!(group);
        say["mentioned"] = json!(mentioned);
    }
    if live.admin.call("room.say", say).await["error"].is_object() {
        return "lost";
    }
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        match counts(live).await {
            Some((r, d)) if r > received => return if d > dropped { "dropped" } else { "taken" },
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    "lost"
}

/// A plugin channel account's policy and settings, and the plugin's
/// grants, apply to the running plugin once changed over RPC.
#[tokio::test]
async fn plugin_channels() {
    use crate::plugins::{error, room_section, wait_state};
    let mut live = Live::start(&room_section("", "config = { topic = \"general\" }")).await;
    wait_state(&mut live.admin, "room", "running").await;
    let lobby = "plugins.room.channels.chat.lobby";

    // grants.
    let recall = json!({"sessionKey": "agent:main:main"});
    let refused = live.admin.call("room.recall", recall.clone()).await;
    assert_eq!(error(&refused).0, -32002, "{refused}");
    live.set("plugins.room.grants", json!(["sessions.history"]))
        .await;
    // No session yet: the gateway's own answer comes back through the plugin.
    eventually!("the grant applies", {
        let answer = live.admin.call("room.recall", recall.clone()).await;
        answer["error"]["message"] == "plugin room: no session agent:main:main"
    });

    // allowFrom, then dmPolicy.
    eventually!(
        "the account runs",
        fate(&mut live, "alice", None).await == "dropped"
    );
    live.set(&format!("{lobby}.allowFrom"), json!(["alice"]))
        .await;
    eventually!(
        "alice is let in",
        fate(&mut live, "alice", None).await == "taken"
    );
    assert_eq!(fate(&mut live, "mallory", None).await, "dropped");
    live.set(&format!("{lobby}.dmPolicy"), json!("open")).await;
    eventually!(
        "anyone is let in",
        fate(&mut live, "mallory", None).await == "taken"
    );
    live.set(&format!("{lobby}.dmPolicy"), json!("disabled"))
        .await;
    eventually!(
        "no one is let in",
        fate(&mut live, "alice", None).await == "dropped"
    );

    // groups, requireMention, groupAllowFrom, groupPolicy.
    let team = |mentioned| Some(("#team", mentioned));
    assert_eq!(fate(&mut live, "alice", team(true)).await, "dropped");
    live.set(&format!("{lobby}.groups"), json!(["#team"])).await;
    eventually!(
        "the group is joined",
        fate(&mut live, "alice", team(true)).await == "taken"
    );
    assert_eq!(fate(&mut live, "alice", team(false)).await, "dropped");
    live.set(&format!("{lobby}.requireMention"), json!(false))
        .await;
    eventually!(
        "no mention needed",
        fate(&mut live, "alice", team(false)).await == "taken"
    );
    assert_eq!(fate(&mut live, "bob", team(true)).await, "dropped");
    live.set(&format!("{lobby}.groupAllowFrom"), json!(["bob"]))
        .await;
    eventually!(
        "bob may speak in groups",
        fate(&mut live, "bob", team(true)).await == "taken"
    );
    assert_eq!(fate(&mut live, "carol", team(true)).await, "dropped");
    live.set(&format!("{lobby}.groupPolicy"), json!("open"))
        .await;
    eventually!(
        "every member may speak",
        fate(&mut live, "carol", team(true)).await == "taken"
    );

    // config: held to the channel's schema before the plugin starts.
    live.set(&format!("{lobby}.config"), json!({"topic": 7}))
        .await;
    let failed = wait_state(&mut live.admin, "room", "failed").await;
    assert!(
        failed["lastError"].as_str().unwrap().contains("at /topic"),
        "{failed}"
    );
    live.set(&format!("{lobby}.config"), json!({"topic": "news"}))
        .await;
    wait_state(&mut live.admin, "room", "running").await;

    // enabled.
    live.set(&format!("{lobby}.enabled"), json!(false)).await;
    eventually!("the account is gone", {
        let status = live.admin.call("channels.status", json!({})).await;
        status["result"]["channels"].as_array().unwrap().is_empty()
    });
}

/// Waits for a heartbeat of agent main that `check` accepts.
async fn beat_until(ws: &mut Ws, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let limit = Instant::now() + Duration::from_secs(15);
    loop {
        assert!(Instant::now() < limit, "no heartbeat {what}");
        let event = ws.event("heartbeat").await;
        if check(&event["data"]) {
            return event["data"].clone();
        }
    }
}

#[tokio::test]
async fn heartbeat_settings() {
    let mut live = Live::start("[agents.main]\nprovider = \"echo\"\n").await;
    let mut ws = live.gw.operator().await;
    let outcome = |o: &'static str| move |run: &Value| run["outcome"] == o;
    let reason =
        |r: String| move |run: &Value| run["reason"].as_str().is_some_and(|s| s.contains(&r));
    live.set(
        "agents.main.heartbeat",
        json!({"every": "1s", "prompt": "HEARTBEAT_OK", "target": "none"}),
    )
    .await;
    beat_until(&mut ws, "acknowledged", outcome("ack")).await;

    live.set("agents.main.heartbeat.ackToken", json!("ALL_CLEAR"))
        .await;
    beat_until(&mut ws, "kept under a new token", outcome("kept")).await;
    live.set(
        "agents.main.heartbeat.prompt",
        json!("ALL_CLEAR, the oven is off"),
    )
    .await;
    beat_until(&mut ws, "acknowledged with a remark", outcome("ack")).await;
    live.set("agents.main.heartbeat.ackMaxChars", json!(5))
        .await;
    beat_until(&mut ws, "kept past ackMaxChars", outcome("kept")).await;

    live.set("agents.main.heartbeat.session", json!("hb:probe"))
        .await;
    beat_until(&mut ws, "in the new session", |run| {
        run["sessionKey"] == "hb:probe"
    })
    .await;

    let hour = (clawgate::clock::now_ms() / 3_600_000 % 24) as i64;
    let at = |h: i64| format!("{:02}:00", h.rem_euclid(24));
    live.set(
        "agents.main.heartbeat.activeHours",
        json!({"start": at(hour + 2), "end": at(hour + 3)}),
    )
    .await;
    live.set("agents.main.heartbeat.activeHours.end", json!(at(hour + 4)))
        .await;
    let outside = beat_until(
        &mut ws,
        "outside active hours",
        reason("outside active hours".into()),
    )
    .await;
    assert!(
        outside["reason"].as_str().unwrap().contains(&format!(
            "{}-{} UTC",
            at(hour + 2),
            at(hour + 4)
        )),
        "{outside}"
    );
    live.set(
        "agents.main.heartbeat.activeHours.start",
        json!(at(hour + 1)),
    )
    .await;
    beat_until(
        &mut ws,
        "with the new start",
        reason(format!("{}-", at(hour + 1))),
    )
    .await;
    // Two hours east of UTC, the window holds now.
    live.set(
        "agents.main.heartbeat.activeHours.start",
        json!(at(hour + 2)),
    )
    .await;
    live.set(
        "agents.main.heartbeat.activeHours.timezone",
        json!("Etc/GMT-2"),
    )
    .await;
    beat_until(&mut ws, "inside the zone's hours", outcome("kept")).await;

    let workspace = temp_dir("hb-probe");
    std::fs::write(workspace.join("HEARTBEAT.md"), "# Nothing yet\n").unwrap();
    live.set("agents.main.heartbeat.prompt", Value::Null).await;
    live.set("agents.main.workspace", json!(workspace.to_str().unwrap()))
        .await;
    beat_until(
        &mut ws,
        "with an empty checklist",
        reason("HEARTBEAT.md lists nothing".into()),
    )
    .await;
    live.set("agents.main.heartbeat.prompt", json!("Check the oven"))
        .await;

    live.set("agents.main.heartbeat.to", json!("42")).await;
    live.set("agents.main.heartbeat.target", json!("telegram"))
        .await;
    beat_until(
        &mut ws,
        "to telegram",
        reason("no enabled telegram account".into()),
    )
    .await;
    live.set("agents.main.heartbeat.accountId", json!("home"))
        .await;
    beat_until(
        &mut ws,
        "to telegram:home",
        reason("no enabled telegram account home".into()),
    )
    .await;
    live.set("agents.main.heartbeat.every", json!("1h")).await;
    let status = live.admin.call("heartbeat.last", json!({})).await;
    let next = status["result"]["heartbeats"][0]["nextAtMs"]
        .as_u64()
        .unwrap();
    assert!(next > clawgate::clock::now_ms() + 3_500_000, "{status}");
}
