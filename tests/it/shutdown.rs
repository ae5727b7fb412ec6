use crate::support::*;
use serde_json::json;

#[tokio::test]
async fn sigterm_sends_gateway_closing_then_a_normal_close_and_exits_zero() {
    let mut gw = TestGateway::start("").await;
    let mut first = gw.operator().await;
    let mut second = gw.operator().await;
    assert!(first
        .call("health", json!({}))
        .await
        .get("result")
        .is_some());
    unsafe_kill(gw.child.id(), "TERM");
    for ws in [&mut first, &mut second] {
        let health = ws.event("health.changed").await;
        assert_eq!(health["data"]["state"], "draining");
        let closing = ws.event("gateway.closing").await;
        assert_eq!(
            closing["data"],
            json!({"reason": "shutdown", "restartExpectedMs": null})
        );
        assert!(closing["seq"].as_u64().unwrap() > health["seq"].as_u64().unwrap());
        assert_eq!(
            ws.expect_close().await,
            Closed::Code(1000, "gateway shutting down".into())
        );
    }
    let status = wait_exit(&mut gw.child, std::time::Duration::from_secs(10)).expect("exits");
    assert!(status.success(), "exit status {status}");
    assert!(
        tokio::net::TcpStream::connect(gw.url.trim_start_matches("ws://"))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_client_in_the_handshake_is_closed_on_shutdown_too() {
    let mut gw = TestGateway::start("").await;
    let mut pending = gw.raw().await;
    let status = gw.terminate();
    assert!(status.success());
    assert!(matches!(
        pending.expect_close().await,
        Closed::Code(1000, _) | Closed::Eof
    ));
}

#[tokio::test]
async fn a_running_turn_finishes_during_the_drain() {
    let mut gw = TestGateway::start("").await;
    let mut ws = gw.operator().await;
    let long = "word ".repeat(1500);
    let id = ws
        .request("chat", json!({"message": long, "sessionKey": "drain"}))
        .await;
    ws.event("agent.message").await;
    unsafe_kill(gw.child.id(), "TERM");
    let mut result = None;
    let closed = loop {
        match ws.recv_or_close().await {
            Ok(frame) if frame["id"] == json!(id) => result = Some(frame),
            Ok(_) => {}
            Err(closed) => break closed,
        }
    };
    let result = result.expect("the in-flight chat answered before the socket closed");
    assert_eq!(result["result"]["stopReason"], "stop", "{result}");
    assert_eq!(result["result"]["message"]["content"], long.as_str());
    assert_eq!(closed, Closed::Code(1000, "gateway shutting down".into()));
    let status = wait_exit(&mut gw.child, std::time::Duration::from_secs(10)).expect("exits");
    assert!(status.success());
}

#[tokio::test]
async fn a_sigterm_right_after_the_ready_line_is_a_clean_shutdown() {
    // A supervisor may stop the gateway the moment it reports ready; the
    // signal handlers are in place before that line is printed.
    for _ in 0..3 {
        let mut gw = TestGateway::start("").await;
        let status = gw.terminate();
        assert!(status.success(), "{status:?}");
    }
}
