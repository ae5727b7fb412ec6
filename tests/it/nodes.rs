//! Device nodes against a running gateway, with a test node client over
//! a real WebSocket: pairing (approve, reject, lapse, auto-approve),
//! reconnecting with the node token, invocations (answered, timed out,
//! late, cut off by a disconnect), heartbeats and removal.

use crate::support::*;
use clawgate::protocol::ErrorCode;
use serde_json::{json, Value};
use std::time::Duration;

/// Opens a connection and connects as a node with this token.
pub async fn node_with(gw: &TestGateway, token: &str) -> (Ws, Value) {
    let mut ws = gw.raw().await;
    let hello = ws
        .call(
            "connect",
            json!({
                "protocol": {"min": 1, "max": 1},
                "client": {"name": "test-node", "version": "1.0"},
                "role": "node",
                "auth": {"token": token},
            }),
        )
        .await;
    (ws, hello)
}

/// The response to request `id`, keeping events for later.
pub async fn response(ws: &mut Ws, id: &str) -> Value {
    let mut events = Vec::new();
    let frame = loop {
        let frame = ws.recv().await;
        if frame["id"] == id {
            break frame;
        }
        events.push(frame);
    };
    for event in events.into_iter().rev() {
        ws.push_front(event);
    }
    frame
}

/// The next nodes.changed event with this change.
async fn node_change(ws: &mut Ws, change: &str) -> Value {
    loop {
        let event = ws.event("nodes.changed").await["data"].clone();
        if event["change"] == change {
            return event;
        }
    }
}

pub fn register_params(name: &str, commands: &[&str]) -> Value {
    json!({"name": name, "platform": "linux", "caps": ["screen"], "commands": commands})
}

/// Pairs a node through an operator's approval; returns (node id, token).
async fn pair(gw: &TestGateway, operator: &mut Ws, commands: &[&str]) -> (String, String) {
    let (mut node, _) = node_with(gw, TOKEN).await;
    let id = node
        .request("nodes.register", register_params("box", commands))
        .await;
    let asked = operator.event("nodes.pairing").await["data"].clone();
    let approved = operator
        .call("nodes.approve", json!({"requestId": asked["requestId"]}))
        .await;
    assert!(approved["error"].is_null(), "{approved}");
    let paired = response(&mut node, &id).await["result"].clone();
    (
        paired["nodeId"].as_str().unwrap().to_string(),
        paired["token"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn a_node_pairs_reconnects_with_its_token_and_answers_invokes() {
    let _sqlite = crate::engines::sqlite_only(); // reads the SQLite file
    let gw = TestGateway::start("").await;
    let mut operator = gw.operator().await;
    let (mut node, hello) = node_with(&gw, TOKEN).await;
    assert_eq!(hello["result"]["scopes"], json!(["node"]));
    let register = node
        .request(
            "nodes.register",
            register_params("studio", &["system.run", "system.which"]),
        )
        .await;
    let asked = operator.event("nodes.pairing").await["data"].clone();
    assert_eq!(asked["name"], "studio");
    assert_eq!(asked["commands"], json!(["system.run", "system.which"]));
    assert_eq!(asked["remoteIp"], "127.0.0.1");
    let pending = operator.call("nodes.pending", json!({})).await;
    assert_eq!(
        pending["result"]["requests"][0]["requestId"],
        asked["requestId"]
    );
    let approved = operator
        .call("nodes.approve", json!({"requestId": asked["requestId"]}))
        .await["result"]
        .clone();
    let paired = response(&mut node, &register).await["result"].clone();
    let node_id = paired["nodeId"].as_str().unwrap().to_string();
    let token = paired["token"].as_str().unwrap().to_string();
    assert_eq!(approved["nodeId"], node_id.as_str());
    assert!(token.starts_with("cgn_") && token.len() > 60, "{token}");
    let again = operator
        .call("nodes.approve", json!({"requestId": asked["requestId"]}))
        .await;
    assert_eq!(error_code(&again), ErrorCode::NotFound.code());

    // The connection that paired is the node now.
    let list = operator.call("nodes.list", json!({})).await["result"]["nodes"].clone();
    assert_eq!(list[0]["nodeId"], node_id.as_str());
    assert_eq!(list[0]["online"], true);
    let health = operator.call("health", json!({})).await["result"]["nodes"].clone();
    assert_eq!(health[0]["id"], node_id.as_str());
    let beat = node.call("nodes.heartbeat", json!({})).await;
    assert_eq!(beat["result"]["nodeId"], node_id.as_str());

    // The token is stored only as a hash.
    let db = std::fs::read(gw.dir.join("state").join("clawgate.db")).unwrap();
    let wal = std::fs::read(gw.dir.join("state").join("clawgate.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(
            !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
            "the node token is in the database"
        );
    }

    // Reconnect with the node token.
    drop(node);
    let offline = node_change(&mut operator, "disconnected").await;
    assert_eq!(offline["online"], false);
    let (mut node, hello) = node_with(&gw, &token).await;
    assert_eq!(hello["result"]["role"], "node");
    let online = node_change(&mut operator, "connected").await;
    assert_eq!(online["online"], true);

    // An invoke goes to the node alone, and its answer comes back.
    let (mut other, _) = node_with(&gw, TOKEN).await;
    let call = operator
        .request(
            "nodes.invoke",
            json!({"nodeId": node_id, "command": "system.run", "params": {"argv": ["echo", "hi"]}}),
        )
        .await;
    let request = node.event("nodes.invoke.request").await["data"].clone();
    assert_eq!(request["command"], "system.run");
    assert_eq!(request["params"], json!({"argv": ["echo", "hi"]}));
    assert_eq!(request["timeoutMs"], 30000);
    let answered = node
        .call(
            "nodes.result",
            json!({"invokeId": request["invokeId"], "ok": true, "payload": {"exitCode": 0, "stdout": "hi\n"}}),
        )
        .await;
    assert_eq!(answered["result"]["accepted"], true);
    let result = response(&mut operator, &call).await["result"].clone();
    assert_eq!(result["ok"], true);
    assert_eq!(result["payload"]["stdout"], "hi\n");
    assert_eq!(result["nodeId"], node_id.as_str());
    let unpaired = other.call("nodes.heartbeat", json!({})).await;
    assert_eq!(error_code(&unpaired), ErrorCode::Unauthorized.code());
    let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
    while let Ok(frame) = tokio::time::timeout_at(deadline, other.recv()).await {
        assert_ne!(
            frame["event"], "nodes.invoke.request",
            "sent to another node"
        );
    }

    // Node tokens grant node methods only; nodes cannot call operator methods.
    let mut as_operator = gw.raw().await;
    let refused = as_operator.connect(json!({"token": token}), None).await;
    assert_eq!(error_code(&refused), ErrorCode::Unauthorized.code());
    for method in ["status", "nodes.list", "nodes.invoke", "chat"] {
        let frame = node.call(method, json!({})).await;
        assert_eq!(error_code(&frame), ErrorCode::Forbidden.code(), "{method}");
    }
    let operator_register = operator
        .call("nodes.register", register_params("sneaky", &[]))
        .await;
    assert_eq!(error_code(&operator_register), ErrorCode::Forbidden.code());
}

#[tokio::test]
async fn pairing_can_be_rejected_or_lapse_and_loopback_auto_approval_is_opt_in() {
    let gw = TestGateway::start_with_sections("[nodes]\npairingTimeoutMs = 1000\n").await;
    let mut operator = gw.operator().await;
    let (mut node, _) = node_with(&gw, TOKEN).await;
    let id = node
        .request("nodes.register", register_params("stranger", &[]))
        .await;
    let asked = operator.event("nodes.pairing").await["data"].clone();
    operator
        .call(
            "nodes.reject",
            json!({"requestId": asked["requestId"], "reason": "not mine"}),
        )
        .await;
    let refused = response(&mut node, &id).await;
    assert_eq!(error_code(&refused), ErrorCode::Forbidden.code());
    assert_eq!(refused["error"]["message"], "pairing rejected: not mine");
    let resolved = operator.event("nodes.pairing.resolved").await["data"].clone();
    assert_eq!(resolved["decision"], "rejected");

    let id = node
        .request("nodes.register", register_params("stranger", &[]))
        .await;
    let lapsed = response(&mut node, &id).await;
    assert_eq!(error_code(&lapsed), ErrorCode::Timeout.code());
    let resolved = loop {
        let event = operator.event("nodes.pairing.resolved").await["data"].clone();
        if event["decision"] != "rejected" {
            break event;
        }
    };
    assert_eq!(resolved["decision"], "expired");
    assert_eq!(
        operator.call("nodes.list", json!({})).await["result"]["nodes"],
        json!([])
    );

    let auto = TestGateway::start_with_sections("[nodes]\nautoApproveLoopback = true\n").await;
    let (mut node, _) = node_with(&auto, TOKEN).await;
    let paired = node
        .call("nodes.register", register_params("local", &["system.run"]))
        .await;
    assert!(paired["result"]["nodeId"].is_string(), "{paired}");
}

#[tokio::test]
async fn invokes_fail_clearly_and_late_answers_are_discarded() {
    let gw = TestGateway::start_with_sections("[nodes]\nallowCommands = [\"system.*\"]\n").await;
    let mut operator = gw.operator().await;
    let (node_id, token) = pair(&gw, &mut operator, &["system.run", "camera.snap"]).await;
    let invoke = |command: &str, timeout: u64| json!({"nodeId": node_id, "command": command, "timeoutMs": timeout});
    let offline = operator
        .call("nodes.invoke", invoke("system.run", 1000))
        .await;
    assert_eq!(
        error_code(&offline),
        ErrorCode::Unavailable.code(),
        "{offline}"
    );
    let (mut node, _) = node_with(&gw, &token).await;
    node_change(&mut operator, "connected").await;

    let unknown = operator
        .call(
            "nodes.invoke",
            json!({"nodeId": "node-nope", "command": "system.run"}),
        )
        .await;
    assert_eq!(error_code(&unknown), ErrorCode::NotFound.code());
    let undeclared = operator
        .call("nodes.invoke", invoke("system.reboot", 1000))
        .await;
    assert_eq!(error_code(&undeclared), ErrorCode::Forbidden.code());
    assert!(undeclared["error"]["message"]
        .as_str()
        .unwrap()
        .contains("did not declare"));
    let disallowed = operator
        .call("nodes.invoke", invoke("camera.snap", 1000))
        .await;
    assert_eq!(error_code(&disallowed), ErrorCode::Forbidden.code());
    assert!(disallowed["error"]["message"]
        .as_str()
        .unwrap()
        .contains("nodes.allowCommands"));

    // No answer in time: timeout; the late answer is discarded.
    let timed_out = operator
        .call("nodes.invoke", invoke("system.run", 300))
        .await;
    assert_eq!(error_code(&timed_out), ErrorCode::Timeout.code());
    let request = node.event("nodes.invoke.request").await["data"].clone();
    let late = node
        .call(
            "nodes.result",
            json!({"invokeId": request["invokeId"], "ok": true}),
        )
        .await;
    assert_eq!(late["result"]["accepted"], false);

    // The node goes away mid-call.
    let call = operator
        .request("nodes.invoke", invoke("system.run", 5000))
        .await;
    node.event("nodes.invoke.request").await;
    drop(node);
    let cut = response(&mut operator, &call).await;
    assert_eq!(error_code(&cut), ErrorCode::Unavailable.code());
    assert!(
        cut["error"]["message"]
            .as_str()
            .unwrap()
            .contains("disconnected"),
        "{cut}"
    );

    // A failure the node reports is a result, not an error.
    let (mut node, _) = node_with(&gw, &token).await;
    let call = operator
        .request(
            "nodes.invoke",
            json!({"nodeId": node_id, "command": "system.run", "idempotencyKey": "once"}),
        )
        .await;
    let request = node.event("nodes.invoke.request").await["data"].clone();
    node.call(
        "nodes.result",
        json!({"invokeId": request["invokeId"], "ok": false, "error": "no such file"}),
    )
    .await;
    let failed = response(&mut operator, &call).await["result"].clone();
    assert_eq!(failed["ok"], false);
    assert_eq!(failed["error"], "no such file");
    let repeated = operator
        .call(
            "nodes.invoke",
            json!({"nodeId": node_id, "command": "system.run", "idempotencyKey": "once"}),
        )
        .await["result"]
        .clone();
    assert_eq!(repeated, failed, "the same key returns the first result");
}

#[tokio::test]
async fn a_silent_node_is_marked_offline_and_a_removed_one_is_cut_off() {
    let gw = TestGateway::start_with_sections("[nodes]\nheartbeatTimeoutMs = 1000\n").await;
    let mut operator = gw.operator().await;
    let (node_id, token) = pair(&gw, &mut operator, &["system.run"]).await;
    // The pairing connection is gone; a beating node stays online.
    let (mut beating, _) = node_with(&gw, &token).await;
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let beat = beating.call("nodes.heartbeat", json!({})).await;
        assert!(beat["error"].is_null(), "{beat}");
    }
    let list = operator.call("nodes.list", json!({})).await["result"]["nodes"].clone();
    assert_eq!(list[0]["online"], true);

    // Silence: offline, and the connection is closed.
    let closed = beating.expect_close().await;
    assert_eq!(closed, Closed::Code(1008, "heartbeat missed".into()));
    let missed = node_change(&mut operator, "heartbeat-missed").await;
    assert_eq!(missed["online"], false);
    let list = operator.call("nodes.list", json!({})).await["result"]["nodes"].clone();
    assert_eq!(list[0]["online"], false);

    // Removed: its connection closes and its token stops working.
    let (mut node, _) = node_with(&gw, &token).await;
    let removed = operator
        .call("nodes.remove", json!({"nodeId": node_id}))
        .await;
    assert_eq!(removed["result"]["removed"], true);
    assert_eq!(
        node.expect_close().await,
        Closed::Code(1008, "the node was removed".into())
    );
    let (_, refused) = node_with(&gw, &token).await;
    assert_eq!(error_code(&refused), ErrorCode::Unauthorized.code());
    let again = operator
        .call("nodes.remove", json!({"nodeId": node_id}))
        .await;
    assert_eq!(again["result"]["removed"], false);
}

#[tokio::test]
async fn an_agent_invokes_a_node_command_with_the_node_invoke_tool() {
    use crate::fake_openai::{FakeOpenAi, Script};
    let gw = TestGateway::start_with_sections("[nodes]\nautoApproveLoopback = true\n").await;
    let (mut node, _) = node_with(&gw, TOKEN).await;
    let paired = node
        .call(
            "nodes.register",
            register_params("phone", &["system.which"]),
        )
        .await;
    let node_id = paired["result"]["nodeId"].as_str().unwrap().to_string();
    let arguments: &'static str = Box::leak(
        format!(
            r#"{{"nodeId": "{node_id}", "command": "system.which", "params": {{"bin": "git"}}}}"#
        )
        .into_boxed_str(),
    );
    let upstream = FakeOpenAi::start(Script::ToolThenText(
        "node_invoke",
        arguments,
        vec!["Found it."],
    ))
    .await;
    let mut operator = gw.operator().await;
    for (key, value) in [
        ("agents.default", json!("gpt")),
        (
            "agents.gpt",
            json!({"provider": "openai", "baseUrl": upstream.base_url, "model": "m", "tools": ["node_invoke"], "allowNodeCommands": ["system.which"]}),
        ),
    ] {
        let set = operator
            .call("config.set", json!({"key": key, "value": value}))
            .await;
        assert!(set["error"].is_null(), "{set}");
    }
    let chat = operator
        .request("chat", json!({"message": "is git installed on my phone?"}))
        .await;
    let request = node.event("nodes.invoke.request").await["data"].clone();
    assert_eq!(request["command"], "system.which");
    assert_eq!(request["params"], json!({"bin": "git"}));
    node.call(
        "nodes.result",
        json!({"invokeId": request["invokeId"], "ok": true, "payload": {"path": "/usr/bin/git"}}),
    )
    .await;
    let done = response(&mut operator, &chat).await;
    assert_eq!(done["result"]["message"]["content"], "Found it.", "{done}");
    let told = upstream.requests().last().unwrap().1["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool")
        .cloned()
        .unwrap();
    assert!(
        told["content"].as_str().unwrap().contains("/usr/bin/git"),
        "{told}"
    );
}
