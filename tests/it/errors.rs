use crate::support::*;
use clawgate::protocol::ErrorCode;
use serde_json::json;

#[test]
fn error_codes_follow_json_rpc_where_it_defines_them() {
    assert_eq!(ErrorCode::ParseError.code(), -32700);
    assert_eq!(ErrorCode::InvalidRequest.code(), -32600);
    assert_eq!(ErrorCode::MethodNotFound.code(), -32601);
    assert_eq!(ErrorCode::InvalidParams.code(), -32602);
    assert_eq!(ErrorCode::InternalError.code(), -32603);
}

#[tokio::test]
async fn unparsable_json_gets_parse_error_with_null_id_and_the_connection_survives() {
    let gw = TestGateway::start("").await;
    let mut ws = gw.operator().await;
    ws.send_text("{\"id\": \"1\", \"method\": ").await;
    let frame = ws.recv().await;
    assert_eq!(error_code(&frame), -32700);
    assert_eq!(frame["id"], json!(null));
    assert!(ws.call("health", json!({})).await.get("result").is_some());
}

#[tokio::test]
async fn frames_that_are_not_requests_get_invalid_request() {
    let gw = TestGateway::start("").await;
    let mut ws = gw.operator().await;
    for (text, id) in [
        (r#"{"id": "a1"}"#, json!("a1")),
        (r#"{"id": 7, "method": "health"}"#, json!(null)),
        (r#"[1, 2, 3]"#, json!(null)),
        (
            r#"{"id": "a2", "method": "health", "extra": true}"#,
            json!("a2"),
        ),
    ] {
        ws.send_text(text).await;
        let frame = ws.recv().await;
        assert_eq!(error_code(&frame), -32600, "{text} -> {frame}");
        assert_eq!(frame["id"], id, "{text} -> {frame}");
    }
    ws.stream
        .send(tokio_tungstenite::tungstenite::Message::Binary(
            vec![1, 2, 3].into(),
        ))
        .await
        .unwrap();
    assert_eq!(error_code(&ws.recv().await), -32600);
    assert!(ws.call("health", json!({})).await.get("result").is_some());
}

use futures_util::SinkExt;

#[tokio::test]
async fn an_unknown_method_gets_method_not_found() {
    let gw = TestGateway::start("").await;
    let mut ws = gw.operator().await;
    let frame = ws.call("no.such.method", json!({})).await;
    assert_eq!(error_code(&frame), -32601);
    assert!(frame["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no.such.method"));
}

#[tokio::test]
async fn params_that_fail_the_schema_get_invalid_params_with_pointers() {
    let gw = TestGateway::start("").await;
    let mut ws = gw.operator().await;
    let frame = ws.call("status", json!({"verbose": true})).await;
    assert_eq!(error_code(&frame), -32602);
    assert_eq!(frame["error"]["data"]["errors"][0]["pointer"], "/verbose");

    let mut fresh = gw.raw().await;
    let frame = fresh
        .call(
            "connect",
            json!({"protocol": {"min": "one", "max": 1}, "client": {"name": "it", "version": "1"}, "role": "operator", "auht": {}}),
        )
        .await;
    assert_eq!(error_code(&frame), -32602);
    let errors = frame["error"]["data"]["errors"].as_array().unwrap();
    let pointers: Vec<&str> = errors
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    assert!(pointers.contains(&"/protocol/min"), "{pointers:?}");
    let unknown = errors
        .iter()
        .find(|e| e["pointer"] == "/auht")
        .expect("unknown key reported");
    assert!(unknown["message"]
        .as_str()
        .unwrap()
        .contains("did you mean `auth`"));
}

#[tokio::test]
async fn an_oversized_frame_gets_payload_too_large_and_a_clean_close() {
    let gw = TestGateway::start("[gateway.limits]\nmaxPayloadBytes = 4096").await;
    let mut ws = gw.operator().await;
    let big = format!(
        r#"{{"id":"big","method":"health","params":{{"pad":"{}"}}}}"#,
        "x".repeat(8192)
    );
    ws.send_text(&big).await;
    let frame = ws.recv().await;
    assert_eq!(error_code(&frame), ErrorCode::PayloadTooLarge.code());
    assert!(frame["error"]["message"].as_str().unwrap().contains("4096"));
    assert_eq!(
        ws.expect_close().await,
        Closed::Code(1009, "frame too large".into())
    );
    // The gateway itself is unaffected.
    let mut other = gw.operator().await;
    assert!(other
        .call("health", json!({}))
        .await
        .get("result")
        .is_some());
}

#[tokio::test]
async fn frames_before_connect_are_capped_lower() {
    let gw = TestGateway::start("[gateway.limits]\nmaxPreAuthPayloadBytes = 1024").await;
    let mut ws = gw.raw().await;
    let big = format!(
        r#"{{"id":"x","method":"connect","params":{{"pad":"{}"}}}}"#,
        "x".repeat(2000)
    );
    ws.send_text(&big).await;
    assert_eq!(
        error_code(&ws.recv().await),
        ErrorCode::PayloadTooLarge.code()
    );
    assert_eq!(
        ws.expect_close().await,
        Closed::Code(1009, "frame too large".into())
    );
}
