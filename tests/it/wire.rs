//! Wire-format snapshots: every frame kind, built from the schema examples
//! and from real round trips through a running gateway.

use crate::schema::settings;
use crate::support::*;
use clawgate::protocol::{EventKind, Method, Schemas};
use serde_json::{json, Value};

#[test]
fn method_and_event_examples_as_frames() {
    let bundle = Schemas::get().bundle();
    let mut frames = serde_json::Map::new();
    for method in Method::ALL {
        let example = &bundle["methods"][method.name()]["example"];
        frames.insert(
            method.name().to_string(),
            json!({
                "scope": method.scope().map(|s| s.to_string()),
                "request": {"id": "1", "method": method.name(), "params": example["params"]},
                "response": {"id": "1", "result": example["result"]},
            }),
        );
    }
    for kind in EventKind::ALL {
        let example = &bundle["events"][kind.name()]["example"];
        frames.insert(
            format!("event {}", kind.name()),
            json!({
                "scope": kind.scope().map(|s| s.to_string()),
                "frame": {"event": kind.name(), "data": example, "seq": 1},
            }),
        );
    }
    settings().bind(|| insta::assert_json_snapshot!("wire_examples", frames));
}

#[test]
fn error_code_table() {
    let table: Vec<Value> = clawgate::protocol::ErrorCode::ALL
        .iter()
        .map(|c| json!({"code": c.code(), "name": c.name(), "description": c.description()}))
        .collect();
    settings().bind(|| insta::assert_json_snapshot!("wire_error_codes", table));
}

/// Replaces values that change from run to run.
fn stable(mut v: Value) -> Value {
    fn walk(v: &mut Value) {
        if let Value::Array(items) = v {
            items.iter_mut().for_each(walk);
        }
        if let Value::Object(map) = v {
            for (k, child) in map.iter_mut() {
                match k.as_str() {
                    "connId" => *child = json!("[connId]"),
                    "timestamp" | "ts" | "startedAt" | "connectedAtMs" | "lastActivityAtMs" => {
                        *child = json!("[time]")
                    }
                    "key" if child.as_str().is_some_and(|k| k.starts_with("conn:")) => {
                        *child = json!("conn:[connId]")
                    }
                    "uptime" => *child = json!("[uptime]"),
                    "retryAfterMs" => *child = json!("[ms]"),
                    _ => walk(child),
                }
            }
        }
    }
    walk(&mut v);
    v
}

#[tokio::test]
async fn round_trip_frames() {
    // Its snapshot pins the embedded gateway's health (no cluster section).
    let _sqlite = crate::engines::sqlite_only();
    let gw = TestGateway::start_with_file(&format!(
        "[gateway]\nport = 0\ntickIntervalMs = 100\n[gateway.limits]\nmaxPayloadBytes = 2048\n[gateway.auth]\nmode = \"token\"\ntoken = \"{TOKEN}\"\nmaxFailuresPerMinute = 1\n"
    ))
    .await;
    let mut frames = serde_json::Map::new();
    let mut ws = gw.raw().await;
    frames.insert(
        "unauthorized (before connect)".into(),
        ws.call("health", json!({})).await,
    );
    frames.insert(
        "hello".into(),
        ws.connect(json!({"token": TOKEN}), None).await,
    );
    frames.insert("health".into(), ws.call("health", json!({})).await);
    frames.insert("tick".into(), ws.event("tick").await);
    ws.send_text("{not json").await;
    frames.insert("parse_error".into(), ws.recv().await);
    ws.send_text(r#"{"id":"x1","params":{}}"#).await;
    frames.insert("invalid_request".into(), ws.recv().await);
    frames.insert("method_not_found".into(), ws.call("nope", json!({})).await);
    frames.insert(
        "invalid_params".into(),
        ws.call("status", json!({"x": 1})).await,
    );
    frames.insert(
        "conflict".into(),
        ws.connect(json!({"token": TOKEN}), None).await,
    );

    let mut narrow = gw.raw().await;
    narrow
        .connect(json!({"token": TOKEN}), Some(json!(["operator.pairing"])))
        .await;
    frames.insert(
        "forbidden (scope)".into(),
        narrow.call("health", json!({})).await,
    );

    let mut big = gw.operator().await;
    big.send_text(&format!(
        r#"{{"id":"b","method":"health","params":{{"p":"{}"}}}}"#,
        "x".repeat(4000)
    ))
    .await;
    frames.insert("payload_too_large".into(), big.recv().await);

    let mut mismatch = gw.raw().await;
    let frame = mismatch
        .call("connect", json!({"protocol": {"min": 7, "max": 9}, "client": {"name": "it", "version": "1"}, "role": "operator"}))
        .await;
    frames.insert("protocol_mismatch".into(), frame);

    let mut guess = gw.raw().await;
    frames.insert(
        "unauthorized (wrong token)".into(),
        guess.connect(json!({"token": "nope"}), None).await,
    );
    // Another guess is limited (the right token would still get in).
    let mut again = gw.raw().await;
    frames.insert(
        "rate_limited".into(),
        again.connect(json!({"token": "nope"}), None).await,
    );

    settings()
        .bind(|| insta::assert_json_snapshot!("wire_round_trip", stable(Value::Object(frames))));
}
