//! Live reload against a running gateway: edits to the file are applied
//! or rejected while clients stay connected.

use crate::support::*;
use serde_json::json;

fn config_text(extra_gateway: &str, token: &str) -> String {
    format!(
        "# test config\n[gateway]\nport = 0\n{extra_gateway}\n[gateway.reload]\ndebounceMs = 50\n\n[gateway.auth]\nmode = \"token\"\ntoken = \"{token}\"\n"
    )
}

fn save(gw: &TestGateway, text: &str) {
    save_file(&gw.config_path(), text);
}

async fn start(extra_gateway: &str) -> TestGateway {
    TestGateway::start_with_file(&config_text(extra_gateway, TOKEN)).await
}

#[tokio::test]
async fn a_valid_edit_is_applied_and_announced() {
    let gw = start("handshakeTimeoutMs = 10000").await;
    let mut ws = gw.operator().await;
    save(
        &gw,
        &config_text("handshakeTimeoutMs = 5000\ntickIntervalMs = 1000", TOKEN),
    );
    let event = ws.event("config.changed").await;
    assert_eq!(
        event["data"]["changed"],
        json!(["gateway.handshakeTimeoutMs", "gateway.tickIntervalMs"])
    );
    assert_eq!(
        event["data"]["restartRequired"],
        json!(["gateway.tickIntervalMs"])
    );
    let hot = ws
        .call("config", json!({"key": "gateway.handshakeTimeoutMs"}))
        .await;
    assert_eq!(hot["result"]["value"], 5000);
    let restart = ws
        .call("config", json!({"key": "gateway.tickIntervalMs"}))
        .await;
    assert_eq!(
        restart["result"]["value"], 15000,
        "restart keys keep their running value"
    );
    let status = ws.call("status", json!({})).await;
    assert_eq!(
        status["result"]["config"]["restartRequired"],
        json!(["gateway.tickIntervalMs"])
    );
    assert_eq!(status["result"]["config"]["reloadOk"], true);
}

#[tokio::test]
async fn an_invalid_edit_keeps_the_old_config_and_shows_the_error_in_health() {
    let gw = start("").await;
    let mut ws = gw.operator().await;
    let bad = config_text("", "new-token").replace("port = 0", "port = \"eighty\"\nprot = 1");
    save(&gw, &bad);
    let failed = ws.event("config.reload.failed").await;
    let errors = failed["data"]["errors"].as_array().unwrap();
    let port = errors
        .iter()
        .find(|e| e["path"] == "gateway.port")
        .expect("port error");
    // Located like a compiler error: the span of the value, what the
    // schema expects, and the fix for the misspelt key.
    assert_eq!(port["line"], 3);
    assert_eq!(port["column"], 8);
    assert_eq!(port["endColumn"], 16);
    assert_eq!(port["expected"], "an integer from 0 to 65535");
    assert!(errors
        .iter()
        .any(|e| e["path"] == "gateway.prot" && e["help"] == "did you mean `port`?"));

    let health = ws.call("health", json!({})).await["result"].clone();
    assert_eq!(health["config"]["reloadOk"], false);
    assert!(health["config"]["lastError"]
        .as_str()
        .unwrap()
        .contains("invalid configuration"));
    let (_, http_health) = gw.get_authorized("/health").await;
    assert_eq!(http_health["config"]["reloadOk"], false);

    // The old token still works; the token in the rejected file does not.
    let mut old = gw.raw().await;
    assert!(old
        .connect(json!({"token": TOKEN}), None)
        .await
        .get("result")
        .is_some());
    let mut new = gw.raw().await;
    assert!(new
        .connect(json!({"token": "new-token"}), None)
        .await
        .get("error")
        .is_some());

    // Fixing the file applies it.
    save(&gw, &config_text("handshakeTimeoutMs = 4000", TOKEN));
    let changed = ws.event("config.changed").await;
    assert_eq!(
        changed["data"]["changed"],
        json!(["gateway.handshakeTimeoutMs"])
    );
    let health = ws.call("health", json!({})).await["result"].clone();
    assert_eq!(health["config"]["reloadOk"], true);
    assert!(health["config"].get("lastError").is_none());
}

#[tokio::test]
async fn an_atomic_rename_save_is_picked_up() {
    let gw = start("").await;
    let mut ws = gw.operator().await;
    let tmp = gw.dir.join(".clawgate.toml.swp");
    std::fs::write(&tmp, config_text("handshakeTimeoutMs = 3000", TOKEN)).unwrap();
    std::fs::rename(&tmp, gw.config_path()).unwrap();
    let event = ws.event("config.changed").await;
    assert_eq!(
        event["data"]["changed"],
        json!(["gateway.handshakeTimeoutMs"])
    );
}

#[tokio::test]
async fn a_deleted_and_recreated_file_is_picked_up() {
    let gw = start("").await;
    let mut ws = gw.operator().await;
    std::fs::remove_file(gw.config_path()).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(ws.call("health", json!({})).await["result"]["config"]["reloadOk"] == true);
    save(&gw, &config_text("handshakeTimeoutMs = 2000", TOKEN));
    let event = ws.event("config.changed").await;
    assert_eq!(
        event["data"]["changed"],
        json!(["gateway.handshakeTimeoutMs"])
    );
}

#[tokio::test]
async fn a_rotated_token_lets_the_new_one_in_and_keeps_the_old_one_out() {
    let gw = start("").await;
    let mut ws = gw.operator().await;
    save(&gw, &config_text("", "rotated-token"));
    let event = ws.event("config.changed").await;
    assert_eq!(event["data"]["changed"], json!(["gateway.auth.token"]));
    assert_eq!(event["data"]["restartRequired"], json!([]));
    let mut old = gw.raw().await;
    let refused = old.connect(json!({"token": TOKEN}), None).await;
    assert_eq!(
        error_code(&refused),
        clawgate::protocol::ErrorCode::Unauthorized.code()
    );
    let mut new = gw.raw().await;
    assert!(new
        .connect(json!({"token": "rotated-token"}), None)
        .await
        .get("result")
        .is_some());
    // A connection made with the old token is closed: a leaked token is
    // revoked by rotating it, without a restart.
    loop {
        match ws.recv_or_close().await {
            Ok(frame) => assert!(frame.get("event").is_some(), "{frame}"),
            Err(closed) => {
                assert!(
                    matches!(&closed, Closed::Code(1008, reason) if reason.contains("rotated")),
                    "{closed:?}"
                );
                break;
            }
        }
    }
    // One made with the new token stays.
    assert!(new.call("health", json!({})).await.get("result").is_some());
}

#[tokio::test]
async fn with_reload_off_edits_wait_for_an_explicit_reload() {
    let text = config_text("", TOKEN).replace("debounceMs = 50", "debounceMs = 50\nmode = \"off\"");
    let gw = TestGateway::start_with_file(&text).await;
    let mut ws = gw.operator().await;
    save(
        &gw,
        &text.replace("port = 0", "port = 0\nhandshakeTimeoutMs = 7000"),
    );
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let value = ws
        .call("config", json!({"key": "gateway.handshakeTimeoutMs"}))
        .await;
    assert_eq!(
        value["result"]["value"], 10000,
        "no reload while mode is off"
    );
    let reload = ws.call("config.reload", json!({})).await;
    assert_eq!(reload["result"]["ok"], true);
    assert_eq!(
        reload["result"]["changed"],
        json!(["gateway.handshakeTimeoutMs"])
    );
    let value = ws
        .call("config", json!({"key": "gateway.handshakeTimeoutMs"}))
        .await;
    assert_eq!(value["result"]["value"], 7000);
}
