//! The attacks of the security review (issue 13), each replayed over real
//! sockets against the real binary: every test passes because the attack
//! fails. SECURITY.md maps each threat to the test that pins it.

use crate::fake_openai::{FakeOpenAi, Script};
use crate::support::*;
use clawgate::protocol::ErrorCode;
use futures_util::SinkExt;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

fn addr(gw: &TestGateway) -> String {
    gw.url.trim_start_matches("ws://").to_string()
}

/// Sends raw request bytes; returns everything the server answered until
/// it closed the connection or `limit` passed.
async fn raw_http(addr: &str, request: &str, limit: Duration) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(limit, stream.read_to_end(&mut response)).await;
    String::from_utf8_lossy(&response).to_string()
}

fn status(response: &str) -> u16 {
    response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"))
}

/// The status line of a WebSocket upgrade sent with these Host and Origin
/// headers, as a page in a browser would send them.
async fn upgrade_status(addr: &str, host: &str, origin: Option<&str>) -> u16 {
    let origin = origin
        .map(|o| format!("Origin: {o}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {host}\r\n{origin}Upgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = vec![0u8; 12];
    tokio::time::timeout(WAIT, stream.read_exact(&mut head))
        .await
        .expect("an answer to the upgrade")
        .unwrap();
    status(&String::from_utf8_lossy(&head))
}

#[tokio::test]
async fn dns_rebinding_cannot_reach_the_gateway() {
    let gw = TestGateway::start("allowedHosts = [\"gw.example.com\"]").await;
    let addr = addr(&gw);
    let port = addr.rsplit(':').next().unwrap();
    // A page on attacker.example, rebound to 127.0.0.1: Host and Origin
    // agree with each other, and that proves nothing.
    let rebound = format!("attacker.example:{port}");
    let rebound_origin = format!("http://attacker.example:{port}");
    assert_eq!(
        upgrade_status(&addr, &rebound, Some(&rebound_origin)).await,
        421
    );
    assert_eq!(upgrade_status(&addr, "attacker.example", None).await, 421);
    for path in ["/health", "/healthz", "/ui", "/v1/models"] {
        let response = raw_http(
            &addr,
            &format!("GET {path} HTTP/1.1\r\nHost: {rebound}\r\nConnection: close\r\n\r\n"),
            WAIT,
        )
        .await;
        assert_eq!(status(&response), 421, "{path}: {response}");
    }
    // A page of another site talking to the real loopback address.
    let own = format!("127.0.0.1:{port}");
    assert_eq!(
        upgrade_status(&addr, &own, Some("http://evil.example")).await,
        403
    );
    assert_eq!(upgrade_status(&addr, &own, Some("null")).await, 403);
    // The gateway's own pages, local clients and listed names still work.
    let own_origin = format!("http://127.0.0.1:{port}");
    assert_eq!(upgrade_status(&addr, &own, Some(&own_origin)).await, 101);
    let localhost = format!("localhost:{port}");
    let localhost_origin = format!("http://localhost:{port}");
    assert_eq!(
        upgrade_status(&addr, &localhost, Some(&localhost_origin)).await,
        101
    );
    assert_eq!(upgrade_status(&addr, &own, None).await, 101);
    assert_eq!(upgrade_status(&addr, "gw.example.com", None).await, 101);
}

#[tokio::test]
async fn a_default_gateway_gives_nothing_without_the_credential_it_generated() {
    let _sqlite = crate::engines::sqlite_only(); // reads the SQLite file
    let dir = temp_dir("default");
    let gw = TestGateway::spawn(&dir, &["--port", "0"], &[]);
    // No credential: no power at all, not even reading.
    let mut ws = gw.raw().await;
    let refused = ws.connect(json!({}), None).await;
    assert_eq!(error_code(&refused), ErrorCode::Unauthorized.code());
    // The generated token is the owner's alone.
    let state = dir.join("state");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state.join("gateway.token")), 0o600);
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&state.join("clawgate.db")), 0o600);
    // The local CLI finds it by itself: the quick tour needs no flags.
    let call = |method: &str, params: &str| {
        std::process::Command::new(bin())
            .args(["call", method, params, "--url", &gw.url])
            .env("CLAWGATE_STATE_DIR", &state)
            .env_remove("CLAWGATE_TOKEN")
            .current_dir(&dir)
            .output()
            .unwrap()
    };
    let out = call("chat", r#"{"message":"hello there"}"#);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reply: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reply["message"]["content"], "hello there", "{reply}");
    // The token survives a restart unchanged.
    let token = gw.generated_token();
    let mut gw = gw;
    gw.owns_dir = false;
    drop(gw);
    let gw = TestGateway::spawn(&dir, &["--port", "0"], &[]);
    assert_eq!(gw.generated_token(), token);
    let mut ws = gw.local_operator().await;
    assert!(ws.call("status", json!({})).await.get("result").is_some());
}

#[tokio::test]
async fn without_a_credential_a_client_may_read_and_nothing_more() {
    let gw = TestGateway::start_with_file("[gateway]\nport = 0\n[gateway.auth]\nmode = \"none\"\n")
        .await;
    let mut ws = gw.raw().await;
    let hello = ws.connect(json!({}), None).await;
    assert_eq!(
        hello["result"]["scopes"],
        json!(["operator.read"]),
        "{hello}"
    );
    assert!(ws.call("health", json!({})).await.get("result").is_some());
    for (method, params) in [
        ("config", json!({})),
        ("chat", json!({"message": "touch /tmp/pwned"})),
        (
            "approvals.respond",
            json!({"id": "x", "decision": "allow-once"}),
        ),
        (
            "cron.add",
            json!({"name": "x", "schedule": {"kind": "every", "everyMs": 1000}, "payload": {"kind": "systemEvent", "text": "x"}}),
        ),
        ("nodes.approve", json!({"requestId": "x"})),
    ] {
        let frame = ws.call(method, params).await;
        assert_eq!(
            error_code(&frame),
            ErrorCode::Forbidden.code(),
            "{method}: {frame}"
        );
    }
    let mut greedy = gw.raw().await;
    let frame = greedy
        .connect(json!({}), Some(json!(["operator.admin"])))
        .await;
    assert_eq!(error_code(&frame), ErrorCode::Forbidden.code());
    // Nothing can be paired without a credential, so a node needs the
    // token of an earlier pairing.
    let mut node = gw.raw().await;
    let frame = node
        .call(
            "connect",
            json!({"protocol": {"min": 1, "max": 1}, "client": {"name": "it", "version": "1.0"},
                   "role": "node"}),
        )
        .await;
    assert_eq!(
        error_code(&frame),
        ErrorCode::Unauthorized.code(),
        "{frame}"
    );
}

#[tokio::test]
async fn a_read_only_credential_runs_no_turn_over_http() {
    let upstream = FakeOpenAi::start(Script::Text(vec!["ok"])).await;
    let gw = TestGateway::start_with_file(&format!(
        "[gateway]\nport = 0\n[gateway.auth]\ntoken = \"{TOKEN}\"\nscopes = [\"operator.read\"]\n\n\
         [gateway.http.chatCompletions]\nenabled = true\n\n[agents.main]\nprovider = \"openai\"\n\
         baseUrl = \"{}\"\nmodel = \"m\"\n",
        upstream.base_url
    ))
    .await;
    let addr = addr(&gw);
    let body = r#"{"model":"main","messages":[{"role":"user","content":"hi"}]}"#;
    let post = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let refused = raw_http(&addr, &post, WAIT).await;
    assert_eq!(status(&refused), 403, "{refused}");
    assert!(refused.contains("operator.write"), "{refused}");
    assert!(upstream.requests().is_empty(), "no turn may have run");
    let models = raw_http(
        &addr,
        &format!("GET /v1/models HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"),
        WAIT,
    )
    .await;
    assert_eq!(status(&models), 200, "{models}");
}

/// A gateway whose default agent streams what `script` says.
async fn gateway_with_upstream(script: Script) -> (FakeOpenAi, TestGateway) {
    let upstream = FakeOpenAi::start(script).await;
    let gw = TestGateway::start_with_sections(&format!(
        "[agents]\ndefault = \"gpt\"\n\n[agents.gpt]\nprovider = \"openai\"\nbaseUrl = \"{}\"\n\
         model = \"fake-model\"\ntools = [\"sessions_list\"]\n",
        upstream.base_url
    ))
    .await;
    (upstream, gw)
}

fn sse_chunk(delta: Value) -> String {
    let event = json!({"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": null}]});
    format!("data: {event}\n\n")
}

#[tokio::test]
async fn a_hostile_provider_reply_fails_the_turn_not_the_gateway() {
    let huge_index = sse_chunk(json!({"tool_calls": [{"index": 1u64 << 45, "id": "c",
        "type": "function", "function": {"name": "sessions_list", "arguments": "{}"}}]}));
    let max_index = sse_chunk(json!({"tool_calls": [{"index": u64::MAX, "id": "c",
        "type": "function", "function": {"name": "sessions_list", "arguments": "{}"}}]}));
    for script in [
        Script::Raw(vec![huge_index, "data: [DONE]\n\n".into()]),
        Script::Raw(vec![max_index, "data: [DONE]\n\n".into()]),
        Script::EndlessLine(8 * 1024 * 1024),
    ] {
        let (_upstream, mut gw) = gateway_with_upstream(script).await;
        let mut ws = gw.operator().await;
        let frame = ws.call("chat", json!({"message": "hi"})).await;
        assert_eq!(
            error_code(&frame),
            ErrorCode::UpstreamError.code(),
            "{frame}"
        );
        assert!(
            frame["error"]["message"]
                .as_str()
                .unwrap()
                .contains("malformed reply"),
            "{frame}"
        );
        assert!(gw.child.try_wait().unwrap().is_none(), "the gateway died");
        assert!(ws.call("health", json!({})).await.get("result").is_some());
    }
}

#[tokio::test]
async fn cross_site_posts_to_the_openai_api_are_refused() {
    let upstream = FakeOpenAi::start(Script::Text(vec!["ok"])).await;
    let gw = TestGateway::start_with_sections(&format!(
        "[gateway.http.chatCompletions]\nenabled = true\n\n[agents.main]\nprovider = \"openai\"\n\
         baseUrl = \"{}\"\nmodel = \"m\"\n",
        upstream.base_url
    ))
    .await;
    let addr = addr(&gw);
    let body = r#"{"model":"main","user":"victim","messages":[{"role":"user","content":"written by evil.example"}]}"#;
    let post = |headers: &str| {
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    // The no-preflight request a page can send: text/plain, foreign Origin.
    let forged = raw_http(
        &addr,
        &post("Origin: http://evil.example\r\nContent-Type: text/plain\r\n"),
        WAIT,
    )
    .await;
    assert_eq!(status(&forged), 403, "{forged}");
    // Without a credential, nothing runs.
    let anonymous = raw_http(&addr, &post("Content-Type: application/json\r\n"), WAIT).await;
    assert_eq!(status(&anonymous), 401, "{anonymous}");
    // Even with one, a body a form could send is refused.
    let bearer = format!("Authorization: Bearer {TOKEN}\r\n");
    let plain = raw_http(
        &addr,
        &post(&format!("{bearer}Content-Type: text/plain\r\n")),
        WAIT,
    )
    .await;
    assert_eq!(status(&plain), 415, "{plain}");
    assert!(upstream.requests().is_empty(), "no turn may have run");
    let mut ws = gw.operator().await;
    let sessions = ws.call("sessions", json!({})).await;
    assert_eq!(sessions["result"]["sessions"], json!([]), "{sessions}");
    // The legitimate client still gets its answer.
    let ok = raw_http(
        &addr,
        &post(&format!("{bearer}Content-Type: application/json\r\n")),
        WAIT,
    )
    .await;
    assert_eq!(status(&ok), 200, "{ok}");
}

/// Connects from a chosen source address (any of 127.0.0.0/8 is local).
async fn connect_from(source: &str, url: &str, token: &str) -> Value {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let target = url.trim_start_matches("ws://").parse().unwrap();
    let tcp = socket.connect(target).await.unwrap();
    let tcp = tokio_tungstenite::MaybeTlsStream::Plain(tcp);
    let (stream, _) = tokio_tungstenite::client_async(url, tcp).await.unwrap();
    let mut ws = Ws::from_stream(stream);
    ws.connect(json!({"token": token}), None).await
}

#[tokio::test]
async fn rotating_the_source_address_buys_no_extra_guesses() {
    let gw = TestGateway::start_with_file(&format!(
        "[gateway]\nport = 0\n[gateway.auth]\ntoken = \"{TOKEN}\"\nmaxFailuresPerMinute = 5\n"
    ))
    .await;
    let mut codes = Vec::new();
    for i in 2..14 {
        let frame = connect_from(&format!("127.0.0.{i}"), &gw.url, "guess").await;
        codes.push(error_code(&frame));
    }
    let limited = codes
        .iter()
        .filter(|c| **c == ErrorCode::RateLimited.code())
        .count();
    assert_eq!(limited, 7, "{codes:?}");
    assert!(codes[..5]
        .iter()
        .all(|c| *c == ErrorCode::Unauthorized.code()));
    // The guesses lock out guessers, not the owner: the right token still
    // gets in, over WebSocket and over HTTP.
    let owner = connect_from("127.0.0.1", &gw.url, TOKEN).await;
    assert!(owner.get("result").is_some(), "{owner}");
    let (code, health) = gw.get_authorized("/health").await;
    assert_eq!(code, 200, "{health}");
    assert!(health.get("uptime").is_some(), "{health}");
}

#[tokio::test]
async fn unauthenticated_sockets_cannot_lock_out_the_owner() {
    let gw = TestGateway::start(
        "[gateway.limits]\nmaxConnections = 4\nmaxUnauthenticatedConnections = 16\nmaxUnauthenticatedPerAddress = 16",
    )
    .await;
    let mut squatters = Vec::new();
    for _ in 0..60 {
        squatters.push(Ws::open(&gw.url).await);
    }
    let mut owner = gw.operator().await;
    assert!(owner
        .call("health", json!({}))
        .await
        .get("result")
        .is_some());
    // The oldest squatters were closed to make room.
    let first = squatters.first_mut().unwrap();
    match first.recv_or_close().await {
        Err(Closed::Code(1008, reason)) => assert!(reason.contains("unauthenticated"), "{reason}"),
        other => panic!("expected the oldest squatter to be closed, got {other:?}"),
    }
}

#[tokio::test]
async fn an_unauthenticated_frame_is_cut_off_as_it_arrives() {
    let gw = TestGateway::start("").await;
    let mut ws = gw.raw().await;
    // The connect.challenge that opens the connection, read before the
    // socket is written to directly.
    ws.skip_challenge = false;
    assert_eq!(ws.recv().await["event"], "connect.challenge");
    // Announce a 1 MiB text frame (the post-auth limit), send 128 KiB of it.
    let mut header = vec![0x81u8, 0x80 | 127];
    header.extend_from_slice(&(1024u64 * 1024).to_be_bytes());
    header.extend_from_slice(&[0, 0, 0, 0]);
    let stream = ws.stream.get_mut();
    let tcp = match stream {
        tokio_tungstenite::MaybeTlsStream::Plain(tcp) => tcp,
        _ => unreachable!(),
    };
    tcp.write_all(&header).await.unwrap();
    tcp.write_all(&vec![b' '; 128 * 1024]).await.unwrap();
    // The gateway answers now; it does not wait to buffer the megabyte.
    let mut buffer = vec![0u8; 4096];
    let n = tokio::time::timeout(WAIT, tcp.read(&mut buffer))
        .await
        .expect("the gateway refuses before the frame is complete")
        .unwrap();
    let answer = String::from_utf8_lossy(&buffer[..n]);
    assert!(
        answer.contains(&ErrorCode::PayloadTooLarge.code().to_string()),
        "{answer}"
    );
}

#[tokio::test]
async fn half_sent_requests_are_cut_off_and_do_not_hold_up_shutdown() {
    let mut gw = TestGateway::start_with_sections(
        "[gateway.limits]\nhttpHeaderTimeoutMs = 500\nhttpBodyTimeoutMs = 500\n[gateway.shutdown]\ndrainTimeoutMs = 1000\n\
         [channels.webhook.x]\nsecret = \"0123456789abcdef0123\"\n",
    )
    .await;
    let addr = addr(&gw);
    // Headers that never end.
    let started = Instant::now();
    let partial = raw_http(
        &addr,
        "GET /health HTTP/1.1\r\nHost: 127",
        Duration::from_secs(5),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "held for {:?}",
        started.elapsed()
    );
    assert!(!partial.contains("200 OK"), "{partial}");
    // A body that never ends.
    let started = Instant::now();
    let body = raw_http(
        &addr,
        &format!("POST /hooks/x HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"peer\""),
        Duration::from_secs(5),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "held for {:?}",
        started.elapsed()
    );
    assert_eq!(status(&body), 408, "{body}");
    // Half-open requests at SIGTERM: the drain still ends on time.
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(format!("POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 1000\r\n\r\n{{").as_bytes())
            .await
            .unwrap();
        stalled.push(s);
    }
    let started = Instant::now();
    let status = gw.terminate();
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "shutdown took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_client_that_pipelines_many_chats_is_answered_not_dropped() {
    let gw = TestGateway::start("[gateway.limits]\nmaxInflightPerConnection = 8").await;
    let mut ws = gw.operator().await;
    let message = "one two three four five six seven eight nine ten eleven twelve";
    let mut ids = Vec::new();
    for _ in 0..100 {
        ids.push(ws.request("chat", json!({"message": message})).await);
    }
    let mut answered = 0;
    while answered < ids.len() {
        match ws.recv_or_close().await {
            Ok(frame) if frame.get("event").is_some() => {}
            Ok(frame) => {
                assert!(frame.get("result").is_some(), "{frame}");
                answered += 1;
            }
            Err(closed) => panic!("dropped after {answered} answers: {closed:?}"),
        }
    }
}

#[tokio::test]
async fn narrowing_the_scopes_reaches_open_connections() {
    let gw = TestGateway::start("[gateway.reload]\ndebounceMs = 50").await;
    let mut admin = gw.operator().await;
    let text = std::fs::read_to_string(gw.config_path()).unwrap();
    save_file(
        &gw.config_path(),
        &format!("{text}scopes = [\"operator.read\"]\n"),
    );
    admin.event("config.changed").await;
    let frame = admin
        .call(
            "config.set",
            json!({"key": "gateway.handshakeTimeoutMs", "value": 5000}),
        )
        .await;
    assert_eq!(error_code(&frame), ErrorCode::Forbidden.code(), "{frame}");
    assert!(admin
        .call("health", json!({}))
        .await
        .get("result")
        .is_some());
}

#[tokio::test]
async fn protocol_edge_cases_get_precise_answers() {
    let gw = TestGateway::start("").await;
    // Before connect, a real method and a made-up one get the same answer.
    let mut ws = gw.raw().await;
    let known = ws.call("config.set", json!({})).await;
    let unknown = ws.call("no.such.method", json!({})).await;
    assert_eq!(error_code(&known), ErrorCode::Unauthorized.code());
    assert_eq!(error_code(&unknown), ErrorCode::Unauthorized.code());
    // A key given twice is refused, not resolved one way or the other.
    let mut ws = gw.operator().await;
    for frame in [
        r#"{"id":"a","method":"health","method":"status"}"#,
        r#"{"id":"b","method":"chat","params":{"message":"hi","message":"rm -rf /"}}"#,
    ] {
        ws.send_text(frame).await;
        let answer = ws.recv().await;
        assert_eq!(
            error_code(&answer),
            ErrorCode::InvalidRequest.code(),
            "{answer}"
        );
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("twice"),
            "{answer}"
        );
    }
    // A text frame that is not UTF-8 is closed with 1007.
    let mut ws = gw.operator().await;
    ws.stream
        .send(Message::Frame(
            tokio_tungstenite::tungstenite::protocol::frame::Frame::message(
                vec![0xff, 0xfe, b'{'],
                tokio_tungstenite::tungstenite::protocol::frame::coding::OpCode::Data(
                    tokio_tungstenite::tungstenite::protocol::frame::coding::Data::Text,
                ),
                true,
            ),
        ))
        .await
        .unwrap();
    loop {
        match ws.recv_or_close().await {
            Ok(_) => continue,
            Err(closed) => {
                assert!(matches!(closed, Closed::Code(1007, _)), "{closed:?}");
                break;
            }
        }
    }
}

/// A gateway with a paired test node declaring system.run, and an agent
/// `locked` whose exec policy is `exec` and whose model calls node_invoke
/// system.run with an rm argv.
async fn node_and_agent(exec: &str, allow: &str) -> (TestGateway, FakeOpenAi, Ws, String) {
    use crate::nodes::{node_with, register_params};
    let gw = TestGateway::start_with_sections("[nodes]\nautoApproveLoopback = true\n").await;
    let (mut node, _) = node_with(&gw, TOKEN).await;
    let paired = node
        .call("nodes.register", register_params("box", &["system.run"]))
        .await;
    let node_id = paired["result"]["nodeId"].as_str().unwrap().to_string();
    let arguments: &'static str = Box::leak(
        format!(r#"{{"nodeId": "{node_id}", "command": "system.run", "params": {{"argv": ["rm", "-rf", "/home/victim"]}}}}"#)
            .into_boxed_str(),
    );
    let upstream =
        FakeOpenAi::start(Script::ToolThenText("node_invoke", arguments, vec!["done"])).await;
    let mut text = std::fs::read_to_string(gw.config_path()).unwrap();
    text.push_str(&format!(
        "\n[agents]\ndefault = \"locked\"\n\n[agents.locked]\nprovider = \"openai\"\nbaseUrl = \"{}\"\n\
         model = \"m\"\ntools = [\"node_invoke\"]\n{allow}\n\n[agents.locked.exec]\n{exec}\n",
        upstream.base_url
    ));
    let mut operator = gw.operator().await;
    save_file(&gw.config_path(), &text);
    operator.event("config.changed").await;
    (gw, upstream, node, node_id)
}

async fn assert_node_not_asked(node: &mut Ws) {
    let nothing = tokio::time::timeout(
        Duration::from_millis(300),
        node.event("nodes.invoke.request"),
    )
    .await;
    assert!(nothing.is_err(), "the node received {nothing:?}");
}

async fn audit_mentioning(ws: &mut Ws, word: &str) -> Vec<Value> {
    let audit = ws.call("approvals.audit", json!({})).await;
    audit["result"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["command"].as_str().unwrap_or_default().contains(word))
        .cloned()
        .collect()
}

#[tokio::test]
async fn node_invoke_cannot_bypass_the_exec_policy() {
    let (gw, _upstream, mut node, _) = node_and_agent(
        "security = \"deny\"",
        "allowNodeCommands = [\"system.run\"]",
    )
    .await;
    let mut operator = gw.operator().await;
    let chat = operator.call("chat", json!({"message": "clean up"})).await;
    assert!(chat.get("result").is_some(), "{chat}");
    // The node was never asked, and the refusal is in the audit log.
    assert_node_not_asked(&mut node).await;
    let entries = audit_mentioning(&mut operator, "rm -rf").await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["decision"], "denied");
    assert_eq!(entries[0]["argv"], json!(["rm", "-rf", "/home/victim"]));
}

#[tokio::test]
async fn node_invoke_of_a_dangerous_command_asks_like_exec() {
    let (gw, _upstream, mut node, _) = node_and_agent(
        "security = \"allowlist\"\nask = \"on-miss\"",
        "allowNodeCommands = [\"system.*\"]",
    )
    .await;
    let mut operator = gw.operator().await;
    let chat = operator
        .request("chat", json!({"message": "clean up"}))
        .await;
    let asked = operator.event("approvals.requested").await["data"].clone();
    assert_eq!(asked["argv"], json!(["rm", "-rf", "/home/victim"]));
    assert!(asked["nodeId"].is_string(), "{asked}");
    let denied = operator
        .call(
            "approvals.respond",
            json!({"id": asked["id"], "decision": "deny"}),
        )
        .await;
    assert!(denied.get("result").is_some(), "{denied}");
    let done = crate::nodes::response(&mut operator, &chat).await;
    assert!(done.get("result").is_some(), "{done}");
    assert_node_not_asked(&mut node).await;
}

#[tokio::test]
async fn an_agent_invokes_only_the_node_commands_it_was_given() {
    let (gw, upstream, mut node, _) =
        node_and_agent("security = \"full\"\nask = \"off\"", "").await;
    let mut operator = gw.operator().await;
    let chat = operator.call("chat", json!({"message": "clean up"})).await;
    assert!(chat.get("result").is_some(), "{chat}");
    let told = upstream.requests().last().unwrap().1.to_string();
    assert!(told.contains("allowNodeCommands"), "{told}");
    assert_node_not_asked(&mut node).await;
}

#[tokio::test]
async fn running_code_on_a_node_directly_needs_admin_and_is_audited() {
    let (gw, _upstream, mut node, node_id) = node_and_agent("", "").await;
    let mut writer = gw.raw().await;
    writer
        .connect(
            json!({"token": TOKEN}),
            Some(json!(["operator.read", "operator.write"])),
        )
        .await;
    let params = json!({"nodeId": node_id, "command": "system.run", "params": {"argv": ["id"]}});
    let refused = writer.call("nodes.invoke", params.clone()).await;
    assert_eq!(
        error_code(&refused),
        ErrorCode::Forbidden.code(),
        "{refused}"
    );
    let mut admin = gw.operator().await;
    let id = admin.request("nodes.invoke", params).await;
    let request = node.event("nodes.invoke.request").await["data"].clone();
    node.call(
        "nodes.result",
        json!({"invokeId": request["invokeId"], "ok": true, "payload": {"stdout": "uid=0"}}),
    )
    .await;
    let done = crate::nodes::response(&mut admin, &id).await;
    assert_eq!(done["result"]["ok"], true, "{done}");
    let entries = audit_mentioning(&mut admin, "id").await;
    assert!(
        entries
            .iter()
            .any(|e| e["argv"] == json!(["id"]) && e["agentId"] == "(operator)"),
        "{entries:?}"
    );
}

#[tokio::test]
async fn an_admin_cannot_get_the_secrets_out_of_the_config() {
    let upstream = FakeOpenAi::start(Script::Text(vec!["ok"])).await;
    let gw = TestGateway::start_with_sections(&format!(
        "[gateway.reload]\ndebounceMs = 50\n\n[agents.main]\nprovider = \"openai\"\nbaseUrl = \"{}\"\nmodel = \"m\"\napiKey = \"sk-provider-key-should-not-leak\"\n",
        upstream.base_url
    ))
    .await;
    let mut admin = gw.operator().await;
    let thief = FakeOpenAi::start(Script::Text(vec!["stolen"])).await;
    // Pointing the key's endpoint elsewhere is refused...
    let moved = admin
        .call(
            "config.set",
            json!({"key": "agents.main.baseUrl", "value": thief.base_url}),
        )
        .await;
    assert_eq!(
        error_code(&moved),
        ErrorCode::InvalidParams.code(),
        "{moved}"
    );
    assert!(
        moved["error"]["message"]
            .as_str()
            .unwrap()
            .contains("agents.main.apiKey"),
        "{moved}"
    );
    // ...so is reading the environment into a value.
    for (key, value) in [
        ("agents.main.systemPrompt", "${HOME}"),
        ("agents.main.apiKey", "${HOME}"),
    ] {
        let frame = admin
            .call("config.set", json!({"key": key, "value": value}))
            .await;
        assert_eq!(
            error_code(&frame),
            ErrorCode::InvalidParams.code(),
            "{key}: {frame}"
        );
    }
    // The editor sees no secret, and saving what it saw keeps them.
    let file = admin.call("config.file", json!({})).await["result"].clone();
    let text = file["text"].as_str().unwrap();
    assert!(
        !text.contains("sk-provider-key") && !text.contains(TOKEN),
        "{text}"
    );
    let moved_text = text.replace(&upstream.base_url, &thief.base_url);
    let refused = admin
        .call(
            "config.write",
            json!({"text": moved_text, "baseHash": file["hash"]}),
        )
        .await;
    assert_eq!(
        error_code(&refused),
        ErrorCode::InvalidParams.code(),
        "{refused}"
    );
    let saved = admin
        .call("config.write", json!({"text": text.replace("model = \"m\"", "model = \"m2\""), "baseHash": file["hash"]}))
        .await;
    assert!(saved.get("result").is_some(), "{saved}");
    let on_disk = std::fs::read_to_string(gw.config_path()).unwrap();
    assert!(on_disk.contains("sk-provider-key-should-not-leak") && on_disk.contains(TOKEN));
    // A new key typed together with the new endpoint is fine.
    let file = admin.call("config.file", json!({})).await["result"].clone();
    let retyped = file["text"]
        .as_str()
        .unwrap()
        .replace(&upstream.base_url, &thief.base_url)
        .replacen(
            "apiKey = \"[redacted]\"",
            "apiKey = \"sk-for-the-new-endpoint\"",
            1,
        );
    let ok = admin
        .call(
            "config.write",
            json!({"text": retyped, "baseHash": file["hash"]}),
        )
        .await;
    assert!(ok.get("result").is_some(), "{ok}");
    admin.call("chat", json!({"message": "hi"})).await;
    let sent: Vec<String> = thief
        .requests()
        .iter()
        .filter_map(|(h, _)| {
            h.get("authorization")
                .map(|v| v.to_str().unwrap().to_string())
        })
        .collect();
    assert_eq!(sent, vec!["Bearer sk-for-the-new-endpoint".to_string()]);
}

const HOOK_SECRET: &str = "webhook-secret-0123456789";

#[tokio::test]
async fn a_captured_webhook_request_is_delivered_once() {
    use crate::channels::{hook, now_secs};
    let gw = TestGateway::start_with_sections(&format!(
        "[channels.webhook.crm]\nsecret = \"{HOOK_SECRET}\"\nallowFrom = [\"alice\"]\n"
    ))
    .await;
    let mut ws = gw.operator().await;
    let message = json!({"peer": "alice", "text": "transfer the money"});
    let at = now_secs();
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(hook(&gw, "crm", &message, HOOK_SECRET, at).await.0);
    }
    assert_eq!(statuses, [202, 409, 409, 409, 409]);
    let (status, body) = hook(&gw, "crm", &message, HOOK_SECRET, now_secs() + 240).await;
    assert_eq!(status, 401, "{body}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let history = ws
        .call("sessions.history", json!({"sessionKey": "agent:main:main"}))
        .await;
    let told = history["result"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "user")
        .count();
    assert_eq!(told, 1, "{history}");
}

#[tokio::test]
async fn webhook_failures_reveal_no_accounts_and_lock_out_no_operator() {
    use crate::channels::{hook, now_secs};
    let gw = TestGateway::start_with_file(&format!(
        "[gateway]\nport = 0\n[gateway.auth]\ntoken = \"{TOKEN}\"\nmaxFailuresPerMinute = 5\n\n\
         [channels.webhook.crm]\nsecret = \"{HOOK_SECRET}\"\nallowFrom = [\"alice\"]\n"
    ))
    .await;
    let message = json!({"peer": "alice", "text": "hi"});
    let mut statuses = Vec::new();
    for account in ["a", "b", "c", "d", "e", "crm", "f"] {
        statuses.push(
            hook(&gw, account, &message, "guessed-secret-000000", now_secs())
                .await
                .0,
        );
    }
    assert_eq!(
        statuses,
        [404, 404, 404, 404, 404, 429, 429],
        "probing account names is limited"
    );
    // The operator, on the same address, is not locked out by any of it.
    let mut ws = gw.operator().await;
    assert!(ws.call("health", json!({})).await.get("result").is_some());
}

#[tokio::test]
async fn a_flood_of_webhook_messages_queues_a_bounded_number() {
    use crate::channels::{hook, now_secs};
    let upstream = FakeOpenAi::start(Script::Hang).await;
    let gw = TestGateway::start_with_sections(&format!(
        "[agents.main]\nprovider = \"openai\"\nbaseUrl = \"{}\"\nmodel = \"m\"\n\n\
         [channels.webhook.crm]\nsecret = \"{HOOK_SECRET}\"\nallowFrom = [\"alice\"]\n",
        upstream.base_url
    ))
    .await;
    let mut statuses = std::collections::BTreeMap::new();
    for i in 0..80 {
        let message = json!({"peer": "alice", "text": format!("message {i}")});
        let status = hook(&gw, "crm", &message, HOOK_SECRET, now_secs()).await.0;
        *statuses.entry(status).or_insert(0) += 1;
    }
    assert_eq!(statuses.get(&202), Some(&64), "{statuses:?}");
    assert_eq!(statuses.get(&503), Some(&16), "{statuses:?}");
}

#[tokio::test]
async fn an_agent_reads_only_its_own_sessions() {
    let upstream = FakeOpenAi::start(Script::ToolThenText(
        "session_history",
        r#"{"sessionKey": "agent:main:main"}"#,
        vec!["nothing there"],
    ))
    .await;
    let gw = TestGateway::start_with_sections(&format!(
        "[agents.main]\nprovider = \"echo\"\n\n[agents.helper]\nprovider = \"openai\"\nbaseUrl = \"{}\"\n\
         model = \"m\"\ntools = [\"session_history\", \"sessions_list\"]\n",
        upstream.base_url
    ))
    .await;
    let mut ws = gw.operator().await;
    ws.call("chat", json!({"message": "the owner's secret plans"}))
        .await;
    let asked = ws
        .call("chat", json!({"message": "what did the owner say?", "agentId": "helper", "sessionKey": "stranger"}))
        .await;
    assert!(asked.get("result").is_some(), "{asked}");
    let tool_result = upstream.requests().last().unwrap().1["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool")
        .cloned()
        .unwrap();
    let content = tool_result["content"].as_str().unwrap();
    assert!(content.contains("no session agent:main:main"), "{content}");
    assert!(!content.contains("secret plans"), "{content}");
}

#[tokio::test]
async fn one_idempotency_key_runs_a_node_command_once() {
    use crate::nodes::{node_with, register_params, response};
    let gw = TestGateway::start_with_sections("[nodes]\nautoApproveLoopback = true\n").await;
    let (mut node, _) = node_with(&gw, TOKEN).await;
    let paired = node
        .call("nodes.register", register_params("box", &["camera.snap"]))
        .await;
    let node_id = paired["result"]["nodeId"].as_str().unwrap().to_string();
    let params = json!({"nodeId": node_id, "command": "camera.snap", "idempotencyKey": "snap-1"});
    let mut first = gw.operator().await;
    let mut second = gw.operator().await;
    let a = first.request("nodes.invoke", params.clone()).await;
    let b = second.request("nodes.invoke", params.clone()).await;
    let request = node.event("nodes.invoke.request").await["data"].clone();
    node.call(
        "nodes.result",
        json!({"invokeId": request["invokeId"], "ok": true, "payload": {"photo": 1}}),
    )
    .await;
    let a = response(&mut first, &a).await;
    let b = response(&mut second, &b).await;
    assert_eq!(a["result"], b["result"], "{a} {b}");
    let again = tokio::time::timeout(
        Duration::from_millis(300),
        node.event("nodes.invoke.request"),
    )
    .await;
    assert!(again.is_err(), "the node was asked twice");
}

#[tokio::test]
async fn expired_idempotency_keys_and_audit_entries_are_pruned() {
    let _sqlite = crate::engines::sqlite_only(); // reads the SQLite file
    let mut gw = TestGateway::start_with_sections("[approvals]\nauditRetentionDays = 30\n").await;
    gw.owns_dir = false;
    assert!(gw.terminate().success());
    let dir = gw.dir.clone();
    drop(gw);
    let db_path = dir.join("state/clawgate.db");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    const DAY: i64 = 24 * 60 * 60 * 1000;
    {
        let db = rusqlite::Connection::open(&db_path).unwrap();
        for (key, at) in [("stale", now - 2 * DAY), ("fresh", now)] {
            db.execute(
                "INSERT INTO idempotency (key, result_json, created_at) VALUES (?1, '{}', ?2)",
                rusqlite::params![key, at],
            )
            .unwrap();
        }
        for (command, at) in [("old", now - 40 * DAY), ("recent", now - DAY)] {
            db.execute(
                "INSERT INTO exec_audit (command, argv_json, agent_id, decision, requested_at, decided_at) \
                 VALUES (?1, '[]', 'main', 'allow-once', ?2, ?2)",
                rusqlite::params![command, at],
            )
            .unwrap();
        }
    }
    let config = dir.join("clawgate.toml");
    let mut gw = TestGateway::spawn(&dir, &["--config", config.to_str().unwrap()], &[]);
    let left = |sql: &str| -> Vec<String> {
        let db = rusqlite::Connection::open(&db_path).unwrap();
        let mut query = db.prepare(sql).unwrap();
        let rows = query.query_map([], |r| r.get(0)).unwrap();
        let mut rows: Vec<String> = rows.map(Result::unwrap).collect();
        rows.sort();
        rows
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while left("SELECT key FROM idempotency").len() > 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(left("SELECT key FROM idempotency"), ["fresh"]);
    assert_eq!(left("SELECT command FROM exec_audit"), ["recent"]);
    assert!(gw.terminate().success());
}

#[tokio::test]
async fn a_cron_field_that_matches_nothing_is_refused_not_searched_forever() {
    // Found by fuzzing: "," made croner search for a next run without end,
    // on a runtime thread; two such jobs would stall the gateway.
    let gw = TestGateway::start("").await;
    let mut ws = gw.operator().await;
    let frame = ws
        .call(
            "cron.add",
            json!({"name": "never", "schedule": {"kind": "cron", "expr": "*/20 , * * * *"},
                   "payload": {"kind": "systemEvent", "text": "x"}}),
        )
        .await;
    assert_eq!(
        error_code(&frame),
        ErrorCode::InvalidParams.code(),
        "{frame}"
    );
    assert!(
        frame["error"]["message"]
            .as_str()
            .unwrap()
            .contains("minute"),
        "{frame}"
    );
    assert!(ws.call("health", json!({})).await.get("result").is_some());
}
