use crate::support::*;
use clawgate::protocol::ErrorCode;
use serde_json::json;

#[tokio::test]
async fn connect_returns_the_hello() {
    let gw = TestGateway::start("").await;
    let mut ws = gw.raw().await;
    let frame = ws.connect(json!({"token": TOKEN}), None).await;
    let hello = &frame["result"];
    assert_eq!(hello["protocol"], 1);
    assert_eq!(hello["server"]["name"], "clawgate");
    assert!(hello["server"]["connId"].as_str().unwrap().len() > 3);
    assert_eq!(hello["role"], "operator");
    assert!(hello["scopes"]
        .as_array()
        .unwrap()
        .contains(&json!("operator.admin")));
    for method in ["connect", "health", "status"] {
        assert!(hello["methods"]
            .as_array()
            .unwrap()
            .contains(&json!(method)));
    }
    for event in ["tick", "health.changed", "gateway.closing"] {
        assert!(hello["events"].as_array().unwrap().contains(&json!(event)));
    }
    assert_eq!(hello["policy"]["maxPayloadBytes"], 1048576);
    assert_eq!(hello["policy"]["tickIntervalMs"], 15000);
    assert_eq!(hello["snapshot"]["health"]["state"], "ready");
    let health = ws.call("health", json!({})).await;
    assert_eq!(health["result"]["state"], "ready");
}

#[tokio::test]
async fn a_method_before_connect_is_unauthorized_and_the_connection_stays() {
    let gw = TestGateway::start("").await;
    let mut ws = gw.raw().await;
    let frame = ws.call("health", json!({})).await;
    assert_eq!(error_code(&frame), ErrorCode::Unauthorized.code());
    assert!(frame["error"]["message"]
        .as_str()
        .unwrap()
        .contains("connect"));
    let hello = ws.connect(json!({"token": TOKEN}), None).await;
    assert!(hello.get("result").is_some());
}

#[tokio::test]
async fn no_connect_within_the_handshake_timeout_closes_the_connection() {
    let gw = TestGateway::start("handshakeTimeoutMs = 300").await;
    let mut ws = gw.raw().await;
    let started = std::time::Instant::now();
    match ws.expect_close().await {
        Closed::Code(code, reason) => {
            assert_eq!(code, 1008);
            assert!(reason.contains("handshake timeout"), "{reason}");
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(4));
}

#[tokio::test]
async fn a_wrong_token_is_refused_and_the_connection_closed() {
    let gw = TestGateway::start("").await;
    for auth in [
        json!({"token": "wrong"}),
        json!({}),
        json!({"password": TOKEN}),
    ] {
        let mut ws = gw.raw().await;
        let frame = ws.connect(auth, None).await;
        assert_eq!(error_code(&frame), ErrorCode::Unauthorized.code());
        assert!(
            !frame.to_string().contains(TOKEN),
            "error leaks the token: {frame}"
        );
        assert_eq!(
            ws.expect_close().await,
            Closed::Code(1008, "connect failed".into())
        );
    }
}

#[tokio::test]
async fn repeated_failures_are_rate_limited_even_on_loopback() {
    let gw = TestGateway::start_with_file(&format!(
        "[gateway]\nport = 0\n[gateway.auth]\nmode = \"token\"\ntoken = \"{TOKEN}\"\nmaxFailuresPerMinute = 3\n"
    ))
    .await;
    for _ in 0..3 {
        let mut ws = gw.raw().await;
        let frame = ws.connect(json!({"token": "guess"}), None).await;
        assert_eq!(error_code(&frame), ErrorCode::Unauthorized.code());
    }
    let mut ws = gw.raw().await;
    let frame = ws.connect(json!({"token": "guess"}), None).await;
    assert_eq!(error_code(&frame), ErrorCode::RateLimited.code());
    assert_eq!(frame["error"]["retryable"], true);
    assert!(frame["error"]["retryAfterMs"].as_u64().unwrap() > 0);
    // A token cannot be guessed, so the failures of others never keep its
    // holder out.
    let mut ws = gw.raw().await;
    let frame = ws.connect(json!({"token": TOKEN}), None).await;
    assert!(frame.get("result").is_some(), "{frame}");

    // A password might be guessed: while the limiter is closed even the
    // right one waits.
    let gw = TestGateway::start_with_file(
        "[gateway]\nport = 0\n[gateway.auth]\nmode = \"password\"\npassword = \"correct horse\"\nmaxFailuresPerMinute = 3\n",
    )
    .await;
    for _ in 0..3 {
        let mut ws = gw.raw().await;
        let frame = ws.connect(json!({"password": "guess"}), None).await;
        assert_eq!(error_code(&frame), ErrorCode::Unauthorized.code());
    }
    let mut ws = gw.raw().await;
    let frame = ws.connect(json!({"password": "correct horse"}), None).await;
    assert_eq!(error_code(&frame), ErrorCode::RateLimited.code(), "{frame}");
}

#[tokio::test]
async fn no_protocol_overlap_is_a_clear_error() {
    let gw = TestGateway::start("").await;
    let mut ws = gw.raw().await;
    let frame = ws
        .call(
            "connect",
            json!({
                "protocol": {"min": 2, "max": 3},
                "client": {"name": "future", "version": "9"},
                "role": "operator",
                "auth": {"token": TOKEN},
            }),
        )
        .await;
    assert_eq!(error_code(&frame), ErrorCode::ProtocolMismatch.code());
    assert!(frame["error"]["message"]
        .as_str()
        .unwrap()
        .contains("2..=3"));
    assert_eq!(
        frame["error"]["data"]["server"],
        json!({"min": 1, "max": 1})
    );
    assert!(matches!(ws.expect_close().await, Closed::Code(1008, _)));
}

#[tokio::test]
async fn a_client_cannot_widen_its_scopes() {
    let gw = TestGateway::start_with_file(&format!(
        "[gateway]\nport = 0\n[gateway.auth]\nmode = \"token\"\ntoken = \"{TOKEN}\"\nscopes = [\"operator.read\"]\n"
    ))
    .await;
    let mut ws = gw.raw().await;
    let frame = ws
        .connect(json!({"token": TOKEN}), Some(json!(["operator.admin"])))
        .await;
    assert_eq!(error_code(&frame), ErrorCode::Forbidden.code());
    assert_eq!(frame["error"]["data"]["denied"], json!(["operator.admin"]));

    let mut node = gw.raw().await;
    let frame = node
        .call(
            "connect",
            json!({
                "protocol": {"min": 1, "max": 1},
                "client": {"name": "phone", "version": "1"},
                "role": "node",
                "scopes": ["operator.read"],
                "auth": {"token": TOKEN},
            }),
        )
        .await;
    assert_eq!(error_code(&frame), ErrorCode::Forbidden.code());

    let mut reader = gw.raw().await;
    let hello = reader.connect(json!({"token": TOKEN}), None).await;
    assert_eq!(hello["result"]["scopes"], json!(["operator.read"]));
}

#[tokio::test]
async fn a_narrowed_connection_is_forbidden_methods_outside_its_scopes() {
    let gw = TestGateway::start("").await;
    let mut ws = gw.raw().await;
    let hello = ws
        .connect(json!({"token": TOKEN}), Some(json!(["operator.pairing"])))
        .await;
    assert_eq!(hello["result"]["scopes"], json!(["operator.pairing"]));
    let frame = ws.call("status", json!({})).await;
    assert_eq!(error_code(&frame), ErrorCode::Forbidden.code());
    assert!(frame["error"]["message"]
        .as_str()
        .unwrap()
        .contains("operator.read"));
}

#[tokio::test]
async fn connect_twice_is_a_conflict() {
    let gw = TestGateway::start("").await;
    let mut ws = gw.operator().await;
    let frame = ws.connect(json!({"token": TOKEN}), None).await;
    assert_eq!(error_code(&frame), ErrorCode::Conflict.code());
    let health = ws.call("health", json!({})).await;
    assert!(health.get("result").is_some());
}

#[tokio::test]
async fn every_connection_opens_with_openclaws_challenge_which_native_clients_skip() {
    let gw = TestGateway::start("").await;
    let mut ws = gw.raw().await;
    ws.skip_challenge = false;
    let challenge = ws.recv().await;
    assert_eq!(challenge["type"], "event");
    assert_eq!(challenge["event"], "connect.challenge");
    assert!(challenge["payload"]["nonce"].as_str().unwrap().len() >= 16);
    assert!(
        challenge.get("seq").is_none(),
        "native event numbering is untouched"
    );
    // Then a native connect is answered natively.
    let hello = ws.connect(serde_json::json!({"token": TOKEN}), None).await;
    assert_eq!(hello["result"]["protocol"], 1);
    // A native client on the next connection is served as before.
    let mut native = gw.operator().await;
    let health = native.call("health", serde_json::json!({})).await;
    assert_eq!(health["result"]["state"], "ready");
}
