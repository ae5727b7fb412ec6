//! The OpenAI-compatible HTTP API, driven by the official `openai` Python
//! package (installed by .ci/run) against a running gateway.

use crate::support::*;
use serde_json::{json, Value};

const ENABLED: &str = "[gateway.http.chatCompletions]\nenabled = true";

#[tokio::test]
async fn the_official_openai_client_works_against_the_gateway() {
    let gw = TestGateway::start(ENABLED).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/openai_client.py");
    let base = format!("{}/v1", gw.http);
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .args([script, &base, TOKEN])
            .output()
            .expect("python3 runs")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "openai client failed (is the openai package installed? .ci/run installs it):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["plain"]["content"], "hello from python");
    assert_eq!(result["plain"]["finish_reason"], "stop");
    assert_eq!(result["plain"]["object"], "chat.completion");
    assert_eq!(result["plain"]["total_tokens"], 6);
    assert_eq!(result["stream"]["content"], "streaming works too");
    assert!(
        result["stream"]["chunks"].as_u64().unwrap() >= 3,
        "the reply streamed in pieces"
    );
    assert_eq!(result["stream"]["finish_reason"], "stop");
    assert_eq!(result["models"], json!(["clawgate:main"]));
    assert_eq!(result["missing_model"], 404);
    assert_eq!(result["bad_key"], 401);

    // Requests without `user` are stateless; `user` maps to a stored session.
    let mut ws = gw.operator().await;
    let sessions = ws.call("sessions", json!({})).await["result"]["sessions"].clone();
    let keys: Vec<&str> = sessions
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["openai:main:alice"]);
}

#[tokio::test]
async fn the_api_is_off_by_default_and_guesses_are_rate_limited() {
    let gw = TestGateway::start("").await;
    let (status, body) = http_post(&gw.http, "/v1/chat/completions", None, "{}").await;
    assert_eq!(status, 404);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("chatCompletions"));

    let gw = TestGateway::start_with_file(&format!(
        "[gateway]\nport = 0\n{ENABLED}\n[gateway.auth]\nmode = \"token\"\ntoken = \"{TOKEN}\"\nmaxFailuresPerMinute = 2\n"
    ))
    .await;
    let request = r#"{"model":"main","messages":[{"role":"user","content":"hi"}]}"#;
    for _ in 0..2 {
        let (status, body) =
            http_post(&gw.http, "/v1/chat/completions", Some("guess"), request).await;
        assert_eq!(status, 401);
        assert_eq!(body["error"]["code"], "invalid_api_key");
    }
    let (status, body) = http_post(&gw.http, "/v1/chat/completions", Some("guess"), request).await;
    assert_eq!(status, 429, "{body}");
    // The guesses lock out guessers, not the holder of the token.
    let (status, body) = gw.get_authorized("/v1/models").await;
    assert_eq!(status, 200, "{body}");
}

/// A minimal HTTP/1.1 POST over a real socket.
async fn http_post(base: &str, path: &str, bearer: Option<&str>, body: &str) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let auth = bearer
        .map(|b| format!("Authorization: Bearer {b}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status: u16 = response[9..12].parse().unwrap();
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}
