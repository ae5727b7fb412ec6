//! The config methods over a real connection: read with secrets
//! redacted, comment-preserving edits, conflicts and rejections.

use crate::support::*;
use clawgate::protocol::ErrorCode;
use serde_json::json;

const COMMENTED: &str = "# clawgate test config\n\n[gateway]\nport = 0              # ephemeral for tests\nhandshakeTimeoutMs = 10000   # ten seconds\n\n# who may connect\n[gateway.auth]\nmode = \"token\"\ntoken = \"test-token-8f3a\"   # rotate me\n\n[gateway.reload]\ndebounceMs = 50\n";

fn sha256(text: &str) -> String {
    clawgate::config::hash_text(text)
}

#[tokio::test]
async fn config_returns_the_effective_config_with_secrets_redacted_and_the_file_hash() {
    let gw = TestGateway::start_with_file(COMMENTED).await;
    let mut ws = gw.operator().await;
    let frame = ws.call("config", json!({})).await;
    let result = &frame["result"];
    assert_eq!(result["hash"], sha256(COMMENTED));
    assert_eq!(result["value"]["gateway"]["auth"]["token"], "[redacted]");
    assert_eq!(
        result["value"]["gateway"]["limits"]["maxConnections"], 4096,
        "defaults are filled in"
    );
    assert!(!frame.to_string().contains(TOKEN));
    // Where each value came from, for the UI: the file and line, or the default.
    let origins = &result["origins"];
    assert_eq!(origins["gateway.handshakeTimeoutMs"]["kind"], "file");
    assert_eq!(origins["gateway.handshakeTimeoutMs"]["line"], 5);
    assert_eq!(origins["gateway.handshakeTimeoutMs"]["column"], 22);
    assert_eq!(
        origins["gateway.handshakeTimeoutMs"]["source"],
        gw.config_path().display().to_string()
    );
    assert_eq!(origins["gateway.limits.maxConnections"]["kind"], "default");
    let key = ws.call("config", json!({"key": "gateway.auth.mode"})).await;
    assert_eq!(key["result"]["value"], "token");
    assert_eq!(key["result"]["origins"]["gateway.auth.mode"]["line"], 9);
    assert_eq!(
        key["result"]["origins"].as_object().unwrap().len(),
        1,
        "only the key asked for"
    );
    let missing = ws.call("config", json!({"key": "gateway.prot"})).await;
    assert_eq!(error_code(&missing), ErrorCode::NotFound.code());
    assert!(missing["error"]["message"]
        .as_str()
        .unwrap()
        .contains("did you mean gateway.port"));
}

#[tokio::test]
async fn config_set_changes_only_the_value_and_keeps_every_comment() {
    let gw = TestGateway::start_with_file(COMMENTED).await;
    let mut ws = gw.operator().await;
    let base = ws.call("config", json!({})).await["result"]["hash"].clone();
    let frame = ws
        .call(
            "config.set",
            json!({"key": "gateway.handshakeTimeoutMs", "value": 5000, "baseHash": base}),
        )
        .await;
    let expected = COMMENTED.replace("handshakeTimeoutMs = 10000 ", "handshakeTimeoutMs = 5000 ");
    let on_disk = std::fs::read_to_string(gw.config_path()).unwrap();
    assert_eq!(on_disk, expected, "only the value changed, byte for byte");
    assert_eq!(frame["result"]["hash"], sha256(&expected));
    assert_eq!(
        frame["result"]["changed"],
        json!(["gateway.handshakeTimeoutMs"])
    );
    assert_eq!(frame["result"]["restartRequired"], json!([]));
    let event = ws.event("config.changed").await;
    assert_eq!(event["data"]["hash"], sha256(&expected));
    let value = ws
        .call("config", json!({"key": "gateway.handshakeTimeoutMs"}))
        .await;
    assert_eq!(value["result"]["value"], 5000);

    let restart = ws
        .call(
            "config.set",
            json!({"key": "gateway.tickIntervalMs", "value": 1000}),
        )
        .await;
    assert_eq!(
        restart["result"]["restartRequired"],
        json!(["gateway.tickIntervalMs"])
    );
    let on_disk = std::fs::read_to_string(gw.config_path()).unwrap();
    assert!(on_disk.starts_with(&expected[..expected.find("\n# who").unwrap()]));
    assert!(on_disk.contains("tickIntervalMs = 1000"));
}

#[tokio::test]
async fn config_patch_sets_several_keys_in_one_edit_or_none() {
    let gw = TestGateway::start_with_file(COMMENTED).await;
    let mut ws = gw.operator().await;
    let base = ws.call("config", json!({})).await["result"]["hash"].clone();
    // One bad value in the patch: nothing is written, the error names it.
    let refused = ws
        .call(
            "config.patch",
            json!({"patch": {"gateway": {"handshakeTimeoutMs": 5000, "port": 70000}}, "baseHash": base}),
        )
        .await;
    assert_eq!(error_code(&refused), ErrorCode::InvalidParams.code());
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("gateway.port"),
        "{refused}"
    );
    assert_eq!(
        std::fs::read_to_string(gw.config_path()).unwrap(),
        COMMENTED
    );
    let unknown = ws
        .call("config.patch", json!({"patch": {"gateway": {"prot": 1}}}))
        .await;
    assert_eq!(error_code(&unknown), ErrorCode::NotFound.code());

    let frame = ws
        .call(
            "config.patch",
            json!({
                "patch": {
                    "gateway": {"handshakeTimeoutMs": 5000, "reload": {"debounceMs": null}},
                    "cron": {"enabled": false},
                },
                "baseHash": base,
            }),
        )
        .await;
    assert_eq!(
        frame["result"]["changed"],
        json!([
            "cron.enabled",
            "gateway.handshakeTimeoutMs",
            "gateway.reload.debounceMs"
        ]),
        "{frame}"
    );
    let on_disk = std::fs::read_to_string(gw.config_path()).unwrap();
    assert!(
        on_disk.contains("handshakeTimeoutMs = 5000 # ten seconds")
            || on_disk.contains("handshakeTimeoutMs = 5000   # ten seconds"),
        "{on_disk}"
    );
    assert!(
        on_disk.contains("# who may connect"),
        "comments stay: {on_disk}"
    );
    assert!(
        !on_disk.contains("debounceMs"),
        "null removed it: {on_disk}"
    );
    assert!(on_disk.contains("[cron]\nenabled = false"), "{on_disk}");
    assert_eq!(frame["result"]["hash"], sha256(&on_disk));
    let stale = ws
        .call(
            "config.patch",
            json!({"patch": {"cron": {"enabled": true}}, "baseHash": base}),
        )
        .await;
    assert_eq!(error_code(&stale), ErrorCode::Conflict.code());
}

#[tokio::test]
async fn an_invalid_value_is_rejected_and_the_file_is_untouched() {
    let gw = TestGateway::start_with_file(COMMENTED).await;
    let mut ws = gw.operator().await;
    for (key, value, hint) in [
        ("gateway.port", json!(70000), "65535"),
        ("gateway.bind", json!("everywhere"), "loopback"),
        ("gateway.auth.mode", json!("none"), ""),
    ] {
        let frame = ws
            .call("config.set", json!({"key": key, "value": value}))
            .await;
        if key == "gateway.auth.mode" {
            // mode none is valid on loopback: accepted (and restart-only).
            assert_eq!(
                frame["result"]["restartRequired"],
                json!(["gateway.auth.mode"])
            );
            continue;
        }
        assert_eq!(
            error_code(&frame),
            ErrorCode::InvalidParams.code(),
            "{frame}"
        );
        assert!(
            frame["error"]["message"].as_str().unwrap().contains(hint),
            "{frame}"
        );
        assert_eq!(
            std::fs::read_to_string(gw.config_path()).unwrap(),
            COMMENTED
        );
    }
    let unknown = ws
        .call("config.set", json!({"key": "gateway.prot", "value": 1}))
        .await;
    assert_eq!(error_code(&unknown), ErrorCode::NotFound.code());
}

#[tokio::test]
async fn a_stale_base_hash_is_a_conflict_and_writes_nothing() {
    let gw = TestGateway::start_with_file(COMMENTED).await;
    let mut ws = gw.operator().await;
    let frame = ws
        .call(
            "config.set",
            json!({"key": "gateway.handshakeTimeoutMs", "value": 5000, "baseHash": "0000"}),
        )
        .await;
    assert_eq!(error_code(&frame), ErrorCode::Conflict.code());
    assert_eq!(frame["error"]["data"]["hash"], sha256(COMMENTED));
    assert_eq!(
        std::fs::read_to_string(gw.config_path()).unwrap(),
        COMMENTED
    );
}

#[tokio::test]
async fn config_methods_need_the_admin_scope() {
    let gw = TestGateway::start_with_file(COMMENTED).await;
    let mut reader = gw.raw().await;
    reader
        .connect(
            json!({"token": TOKEN}),
            Some(json!(["operator.read", "operator.write"])),
        )
        .await;
    for method in [
        "config",
        "config.set",
        "config.patch",
        "config.reload",
        "config.schema",
    ] {
        let frame = reader
            .call(method, json!({"key": "gateway.port", "value": 1}))
            .await;
        assert_eq!(
            error_code(&frame),
            ErrorCode::Forbidden.code(),
            "{method}: {frame}"
        );
    }
    let mut admin = gw.operator().await;
    let schema = admin.call("config.schema", json!({})).await;
    assert_eq!(
        schema["result"]["schema"]["title"],
        "clawgate configuration"
    );
}

#[tokio::test]
async fn config_set_without_a_config_file_says_how_to_get_one() {
    let dir = temp_dir("nofile");
    let gw = TestGateway::spawn(&dir, &["--port", "0"], &[]);
    let mut ws = gw.local_operator().await;
    let frame = ws
        .call("config.set", json!({"key": "gateway.port", "value": 1}))
        .await;
    assert_eq!(error_code(&frame), ErrorCode::NotFound.code());
    assert!(frame["error"]["message"]
        .as_str()
        .unwrap()
        .contains("--config"));
}

#[tokio::test]
async fn config_set_when_the_file_is_gone_is_unavailable_and_retryable() {
    let gw = TestGateway::start_with_file(COMMENTED).await;
    let mut ws = gw.operator().await;
    std::fs::remove_file(gw.config_path()).unwrap();
    let frame = ws
        .call(
            "config.set",
            json!({"key": "gateway.handshakeTimeoutMs", "value": 5000}),
        )
        .await;
    assert_eq!(error_code(&frame), ErrorCode::Unavailable.code());
    assert_eq!(frame["error"]["retryable"], true);
    assert!(!gw.config_path().exists(), "nothing was written");
}

#[tokio::test]
async fn the_whole_file_is_read_validated_and_written_with_its_hash() {
    let gw = TestGateway::start("").await;
    let mut ws = gw.operator().await;
    let file = ws.call("config.file", json!({})).await["result"].clone();
    let text = file["text"].as_str().unwrap().to_string();
    // The file as on disk, with its secret masked.
    let on_disk = std::fs::read_to_string(gw.config_path()).unwrap();
    assert_eq!(text, on_disk.replace(TOKEN, "[redacted]"));
    let broken = format!("{text}[cron]\nhistoryLimit = \"many\"\n");
    let checked = ws.call("config.validate", json!({"text": broken})).await["result"].clone();
    assert_eq!(checked["ok"], false);
    let problem = &checked["errors"][0];
    assert_eq!(problem["path"], "cron.historyLimit");
    assert_eq!(
        problem["line"],
        text.lines().count() as u64 + 2,
        "{checked}"
    );
    let refused = ws
        .call(
            "config.write",
            json!({"text": broken, "baseHash": file["hash"]}),
        )
        .await;
    assert_eq!(error_code(&refused), ErrorCode::InvalidParams.code());
    assert_eq!(
        std::fs::read_to_string(gw.config_path()).unwrap(),
        on_disk,
        "nothing written"
    );
    let good = format!("{text}[cron]\nhistoryLimit = 50\n");
    assert_eq!(
        ws.call("config.validate", json!({"text": good})).await["result"]["ok"],
        true
    );
    let written = ws
        .call(
            "config.write",
            json!({"text": good, "baseHash": file["hash"]}),
        )
        .await["result"]
        .clone();
    assert_eq!(written["changed"], json!(["cron.historyLimit"]));
    assert_eq!(written["restartRequired"], json!([]));
    assert_eq!(
        std::fs::read_to_string(gw.config_path()).unwrap(),
        good.replace("[redacted]", TOKEN),
        "written as sent, the masked secret kept"
    );
    let stale = ws
        .call(
            "config.write",
            json!({"text": text, "baseHash": file["hash"]}),
        )
        .await;
    assert_eq!(error_code(&stale), ErrorCode::Conflict.code());
}
