//! logs.tail over a real connection: the gateway's own recent log lines,
//! followed from a cursor, never with a secret in them.

use crate::support::*;
use serde_json::{json, Value};

fn messages(answer: &Value) -> Vec<String> {
    answer["result"]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| {
            let line: Value = serde_json::from_str(line.as_str().unwrap()).expect("a JSON line");
            assert!(line["level"].is_string() && line["timestamp"].is_string());
            line["fields"]["message"].as_str().unwrap_or("").to_string()
        })
        .collect()
}

#[tokio::test]
async fn logs_tail_follows_the_gateways_log_from_a_cursor() {
    let dir = temp_dir("logs-tail");
    let gw = TestGateway::spawn(&dir, &["--port", "0"], &[("CLAWGATE_LOG", "info")]);
    let mut ws = gw.local_operator().await;
    let first = ws.call("logs.tail", json!({})).await;
    assert!(
        messages(&first).iter().any(|m| m == "gateway ready"),
        "{first}"
    );
    let cursor = first["result"]["cursor"].as_u64().unwrap();
    assert_eq!(first["result"]["truncated"], false);

    let chat = ws.call("chat", json!({"message": "hello"})).await;
    assert!(chat.get("result").is_some(), "{chat}");
    let next = ws.call("logs.tail", json!({"cursor": cursor})).await;
    let logged = messages(&next);
    assert!(logged.iter().any(|m| m == "turn finished"), "{next}");
    assert!(
        !logged.iter().any(|m| m == "gateway ready"),
        "each line once: {next}"
    );
    assert!(next["result"]["cursor"].as_u64().unwrap() > cursor);

    // A page at a time from the start; a cursor from another run resets.
    let page = ws.call("logs.tail", json!({"cursor": 0, "limit": 1})).await;
    assert_eq!(messages(&page).len(), 1);
    assert_eq!(page["result"]["truncated"], true);
    let beyond = ws
        .call("logs.tail", json!({"cursor": 1u64 << 40, "limit": 1}))
        .await;
    assert_eq!(beyond["result"]["reset"], true, "{beyond}");

    let everything = ws.call("logs.tail", json!({"cursor": 0})).await;
    assert!(!everything.to_string().contains(&gw.generated_token()));
}

#[tokio::test]
async fn openclaws_logs_command_reads_the_tail() {
    use crate::openclaw_v4::{challenged, clients_dir, conforms, installed, node, request};
    let dir = temp_dir("logs-openclaw");
    let gw = TestGateway::spawn(&dir, &["--port", "0"], &[("CLAWGATE_LOG", "info")]);
    let token = gw.generated_token();
    // Over v4, in OpenClaw's shape, with operator.read as OpenClaw asks.
    let (mut ws, _) = challenged(&gw).await;
    let mut connect = crate::openclaw_v4::connect_params(json!({"token": token}));
    connect["scopes"] = json!(["operator.read"]);
    assert_eq!(request(&mut ws, "c", "connect", connect).await["ok"], true);
    let tail = request(&mut ws, "1", "logs.tail", json!({"limit": 50})).await;
    conforms("/definitions/LogsTailResult", &tail["payload"]);
    let ready = tail["payload"]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| serde_json::from_str::<Value>(l.as_str().unwrap()).unwrap())
        .find(|l| l["message"] == "gateway ready")
        .unwrap_or_else(|| panic!("{tail}"));
    assert_eq!(ready["level"], "info");
    assert_eq!(ready["subsystem"], "clawgate");
    // The real CLI prints them.
    let home = temp_dir("logs-openclaw-home");
    let url = gw.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(node())
            .arg(installed(
                clients_dir().join("node_modules/openclaw/openclaw.mjs"),
            ))
            .args(["logs", "--url", &url, "--token", &token, "--limit", "20"])
            .env("HOME", &home)
            .env("OPENCLAW_STATE_DIR", home.join(".openclaw"))
            .env("OPENCLAW_NO_AUTO_UPDATE", "1")
            .env_remove("OPENCLAW_GATEWAY_URL")
            .env_remove("OPENCLAW_GATEWAY_TOKEN")
            .output()
            .expect("run openclaw logs")
    })
    .await
    .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        printed
            .lines()
            .any(|l| l.contains("info") && l.ends_with("gateway ready")),
        "{printed}"
    );
}
