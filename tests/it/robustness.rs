use crate::support::*;
use clawgate::protocol::ErrorCode;
use futures_util::SinkExt;
use serde_json::json;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// A client with a tiny receive buffer that sends requests and never reads.
async fn stalled_client(url: &str) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    let addr = url.trim_start_matches("ws://");
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(addr.parse().unwrap()).await.unwrap();
    let (ws, _) = tokio_tungstenite::client_async(url, tcp).await.unwrap();
    ws
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_and_others_keep_working() {
    let gw = TestGateway::start("[gateway.limits]\noutboundQueueFrames = 8").await;
    let mut healthy = gw.operator().await;
    let mut slow = stalled_client(&gw.url).await;
    let connect = json!({"id": "c", "method": "connect", "params": {
        "protocol": {"min": 1, "max": 1}, "client": {"name": "slow", "version": "1"},
        "role": "operator", "auth": {"token": TOKEN}}});
    slow.send(Message::Text(connect.to_string().into()))
        .await
        .unwrap();

    let started = Instant::now();
    let mut dropped = false;
    let mut sent = 0u32;
    while started.elapsed() < Duration::from_secs(20) {
        // Flood with requests whose responses the client never reads.
        let mut send_failed = false;
        for _ in 0..200 {
            let frame = json!({"id": format!("s{sent}"), "method": "status"});
            let write = tokio::time::timeout(
                Duration::from_millis(200),
                slow.send(Message::Text(frame.to_string().into())),
            )
            .await;
            sent += 1;
            if !matches!(write, Ok(Ok(()))) {
                send_failed = true;
                break;
            }
        }
        let status = healthy.call("status", json!({})).await;
        assert!(
            status.get("result").is_some(),
            "the healthy client keeps working"
        );
        if status["result"]["connections"]["total"] == 1 || send_failed {
            dropped = status["result"]["connections"]["total"] == 1;
            if dropped {
                break;
            }
        }
    }
    assert!(
        dropped,
        "the stalled client was not disconnected after {sent} requests"
    );
    assert!(healthy
        .call("health", json!({}))
        .await
        .get("result")
        .is_some());
}

#[tokio::test]
async fn connections_beyond_the_limit_are_refused_at_connect() {
    let gw = TestGateway::start("[gateway.limits]\nmaxConnections = 2").await;
    let _a = gw.operator().await;
    let b = gw.operator().await;
    // Unauthenticated sockets do not count: the third may open, but not
    // authenticate while two are connected.
    let mut c = gw.raw().await;
    let refused = c.connect(json!({"token": TOKEN}), None).await;
    assert_eq!(
        error_code(&refused),
        ErrorCode::Unavailable.code(),
        "{refused}"
    );
    drop(b);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut c = gw.operator().await;
    assert!(c.call("health", json!({})).await.get("result").is_some());
}

#[tokio::test]
async fn a_browser_page_from_another_origin_cannot_open_a_socket() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let gw = TestGateway::start("allowedOrigins = [\"http://ui.example:8080\"]").await;
    let host = gw.url.trim_start_matches("ws://").to_string();
    let attempt = |origin: String| {
        let mut request = gw.url.clone().into_client_request().unwrap();
        request
            .headers_mut()
            .insert("Origin", origin.parse().unwrap());
        tokio_tungstenite::connect_async(request)
    };
    match attempt("http://evil.example".into()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403)
        }
        other => panic!("expected HTTP 403, got {:?}", other.map(|_| ())),
    }
    assert!(
        attempt(format!("http://{host}")).await.is_ok(),
        "own origin is allowed"
    );
    assert!(
        attempt("http://ui.example:8080".into()).await.is_ok(),
        "listed origin is allowed"
    );
}

#[tokio::test]
async fn a_flood_of_malformed_frames_does_not_hurt_the_gateway() {
    let gw = TestGateway::start("").await;
    let mut bad = gw.operator().await;
    let junk = [
        "",
        "{",
        "null",
        "\"str\"",
        "{\"id\":{}}",
        "{\"id\":\"x\",\"method\":5}",
        "\u{0}\u{1}",
    ];
    for round in 0..50 {
        bad.send_text(junk[round % junk.len()]).await;
    }
    for _ in 0..50 {
        assert!(bad.recv().await.get("error").is_some());
    }
    let mut fine = gw.operator().await;
    assert!(fine.call("health", json!({})).await.get("result").is_some());
    assert!(bad.call("health", json!({})).await.get("result").is_some());
}

#[tokio::test]
async fn the_web_pages_are_served_with_a_strict_policy_and_can_be_turned_off() {
    let gw = TestGateway::start("").await;
    let response = clawgate::agent::http_client()
        .get(format!("{}/ui", gw.http.trim_end_matches('/')))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let csp = header("content-security-policy");
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(header("x-frame-options"), "DENY");
    assert_eq!(header("x-content-type-options"), "nosniff");
    let page = response.text().await.unwrap();
    assert!(
        !page.contains("<script>") && page.contains("src=\"/web/ui.js\""),
        "no inline script"
    );

    let off = TestGateway::start("[gateway.controlUi]\nenabled = false\n").await;
    for path in ["/ui", "/chat", "/web/client.js"] {
        let (status, _) = http_get(&off.http, path).await;
        assert_eq!(status, 404, "{path}");
    }
}
