//! OpenClaw node hosts on clawgate: a role-node connect with a device pairs
//! the device, registers it as a native node whose declared commands wait
//! for node.pair.approve, and answers node.invoke.request; the real
//! `openclaw node run` does the same.

use crate::openclaw_v4::{
    challenged, clients_dir, conforms, installed, node, request, v4_event, DeviceKey,
};
use crate::support::{temp_dir, TestGateway, Ws, TOKEN};
use serde_json::{json, Value};
use std::time::Duration;

/// A node host's connect on a fresh socket, signed as OpenClaw's signs it.
async fn node_host(
    gw: &TestGateway,
    key: &DeviceKey,
    auth: Value,
    commands: &[&str],
) -> (Ws, Value) {
    let (mut ws, challenge) = challenged(gw).await;
    let (nonce, ts) = (
        challenge["nonce"].as_str().unwrap(),
        challenge["ts"].as_u64().unwrap(),
    );
    let token = auth["token"]
        .as_str()
        .or(auth["deviceToken"].as_str())
        .unwrap_or("");
    let payload = format!(
        "v3|{}|node-host|node|node||{ts}|{token}|{nonce}|linux|linux",
        key.id()
    );
    let params = json!({
        "minProtocol": 4, "maxProtocol": 4,
        "client": {"id": "node-host", "displayName": "shed", "version": "2026.9.6",
                   "platform": "linux", "deviceFamily": "Linux", "mode": "node"},
        "role": "node", "scopes": [], "caps": ["system"], "commands": commands,
        "auth": auth,
        "device": {"id": key.id(), "publicKey": key.public_key(), "signature": key.sign(&payload),
                   "signedAt": ts, "nonce": nonce},
    });
    let answer = request(&mut ws, "c", "connect", params).await;
    (ws, answer)
}

async fn admin(gw: &TestGateway) -> Ws {
    let (mut ws, _) = challenged(gw).await;
    let params = json!({
        "minProtocol": 4, "maxProtocol": 4,
        "client": {"id": "cli", "version": "2026.9.6", "platform": "linux", "mode": "cli"},
        "role": "operator",
        "scopes": ["operator.read", "operator.write", "operator.admin", "operator.pairing"],
        "auth": {"token": TOKEN},
    });
    let hello = request(&mut ws, "c", "connect", params).await;
    assert_eq!(hello["ok"], true, "{hello}");
    ws
}

#[tokio::test]
async fn a_node_host_pairs_waits_for_its_commands_and_answers_invocations() {
    let gw = TestGateway::start("").await;
    let mut operator = admin(&gw).await;
    let key = DeviceKey::new();

    let (mut host, hello) = node_host(&gw, &key, json!({"token": TOKEN}), &["system.which"]).await;
    assert_eq!(hello["ok"], true, "{hello}");
    conforms("/definitions/HelloOk", &hello["payload"]);
    let auth = &hello["payload"]["auth"];
    assert_eq!(
        (auth["role"].clone(), auth["scopes"].clone()),
        (json!("node"), json!([]))
    );
    let device_token = auth["deviceToken"]
        .as_str()
        .expect("a node device token")
        .to_string();

    // Its declared commands wait for an operator.
    let asked = v4_event(&mut operator, "node.pair.requested").await;
    assert_eq!(asked["payload"]["nodeId"], key.id());
    assert_eq!(asked["payload"]["commands"], json!(["system.which"]));
    let listed = request(&mut operator, "l", "node.list", json!({})).await;
    let entry = &listed["payload"]["nodes"][0];
    assert_eq!(
        (
            entry["nodeId"].clone(),
            entry["connected"].clone(),
            entry["commands"].clone()
        ),
        (json!(key.id()), json!(true), json!([])),
        "{listed}"
    );
    let invoke = json!({"nodeId": key.id(), "command": "system.which",
                        "params": {"bins": ["sh"]}, "idempotencyKey": "k1"});
    let early = request(&mut operator, "i0", "node.invoke", invoke.clone()).await;
    assert_eq!(early["ok"], false, "not approved yet: {early}");

    let approved = request(
        &mut operator,
        "a",
        "node.pair.approve",
        json!({"requestId": asked["payload"]["requestId"]}),
    )
    .await;
    assert_eq!(
        approved["payload"]["node"]["commands"],
        json!(["system.which"]),
        "{approved}"
    );
    let resolved = v4_event(&mut operator, "node.pair.resolved").await;
    assert_eq!(resolved["payload"]["decision"], "approved");

    // The invocation reaches the node host alone, which answers it.
    let asking = tokio::spawn(async move {
        let answer = request(&mut operator, "i1", "node.invoke", invoke).await;
        (operator, answer)
    });
    let sent = v4_event(&mut host, "node.invoke.request").await;
    conforms("/definitions/NodeInvokeRequestEvent", &sent["payload"]);
    assert_eq!(sent["payload"]["command"], "system.which");
    assert_eq!(sent["payload"]["paramsJSON"], r#"{"bins":["sh"]}"#);
    let result = json!({"id": sent["payload"]["id"], "nodeId": key.id(), "ok": true,
                        "payloadJSON": r#"{"bins":{"sh":"/usr/bin/sh"}}"#});
    conforms("/definitions/NodeInvokeResultParams", &result);
    let taken = request(&mut host, "r", "node.invoke.result", result).await;
    assert_eq!(taken["payload"], json!({"ok": true}));
    let (mut operator, answer) = asking.await.unwrap();
    assert_eq!(answer["ok"], true, "{answer}");
    assert_eq!(
        answer["payload"]["payload"],
        json!({"bins": {"sh": "/usr/bin/sh"}})
    );
    assert_eq!(answer["payload"]["nodeId"], key.id());

    // What a node host calls at start: node.event is a sign of life; the
    // publications clawgate does not serve get OpenClaw's exact text, which
    // the host takes as "not supported here" and stops sending.
    let event = request(
        &mut host,
        "e",
        "node.event",
        json!({"event": "node.host.stats", "payloadJSON": "{}"}),
    )
    .await;
    conforms("/definitions/NodeEventResult", &event["payload"]);
    let skills = request(&mut host, "s", "node.skills.update", json!({"skills": []})).await;
    assert_eq!(skills["error"]["code"], "INVALID_REQUEST");
    assert_eq!(
        skills["error"]["message"],
        "unknown method: node.skills.update"
    );

    // The device token alone brings it back, with its approved commands.
    drop(host);
    let (_host, again) = node_host(
        &gw,
        &key,
        json!({"token": device_token, "deviceToken": device_token}),
        &["system.which"],
    )
    .await;
    assert_eq!(again["ok"], true, "{again}");
    let described = request(
        &mut operator,
        "d",
        "node.describe",
        json!({"nodeId": key.id()}),
    )
    .await;
    assert_eq!(
        described["payload"]["commands"],
        json!(["system.which"]),
        "{described}"
    );
    assert_eq!(described["payload"]["connected"], true, "{described}");

    // A node host without a device identity is refused.
    let (mut ws, _) = challenged(&gw).await;
    let params = json!({
        "minProtocol": 4, "maxProtocol": 4,
        "client": {"id": "node-host", "version": "2026.9.6", "platform": "linux", "mode": "node"},
        "role": "node", "scopes": [], "auth": {"token": TOKEN},
    });
    let refused = request(&mut ws, "c", "connect", params).await;
    assert_eq!(
        refused["error"]["details"]["code"], "DEVICE_IDENTITY_REQUIRED",
        "{refused}"
    );
}

#[tokio::test]
async fn the_openclaw_node_host_runs_commands_for_clawgate() {
    let gw = TestGateway::start("").await;
    let port = gw
        .url
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_string();
    let home = temp_dir("openclaw-node");
    let cli = installed(clients_dir().join("node_modules/openclaw/openclaw.mjs"));
    let mut host = std::process::Command::new(node())
        .arg(cli)
        .args([
            "node",
            "run",
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--no-tls",
            "--commands",
            "system.which,system.run",
        ])
        .env("HOME", &home)
        .env("OPENCLAW_STATE_DIR", home.join(".openclaw"))
        .env("OPENCLAW_NO_AUTO_UPDATE", "1")
        .env("OPENCLAW_GATEWAY_TOKEN", TOKEN)
        .env_remove("OPENCLAW_GATEWAY_URL")
        .stdout(std::fs::File::create(home.join("node.log")).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run openclaw node run");
    let mut operator = admin(&gw).await;
    // The node host takes a few seconds to boot on a busy machine.
    let started = std::time::Instant::now();
    let asked = loop {
        let list = request(&mut operator, "l", "node.pair.list", json!({})).await;
        if let Some(first) = list["payload"]["pending"].get(0) {
            break first.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the node host never asked for its commands; its log: {}",
            std::fs::read_to_string(home.join("node.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let node_id = asked["nodeId"].as_str().unwrap().to_string();
    assert_eq!(
        asked["commands"],
        json!(["system.run", "system.which"]),
        "{asked}"
    );
    let approved = request(
        &mut operator,
        "a",
        "node.pair.approve",
        json!({"requestId": asked["requestId"]}),
    )
    .await;
    assert_eq!(approved["ok"], true, "{approved}");

    let which = request(
        &mut operator,
        "w",
        "node.invoke",
        json!({
            "nodeId": node_id, "command": "system.which",
            "params": {"bins": ["sh", "surely-not-installed-here"]}, "idempotencyKey": "w1",
        }),
    )
    .await;
    assert_eq!(which["ok"], true, "{which}");
    let bins = &which["payload"]["payload"]["bins"];
    assert!(
        bins["sh"].as_str().is_some_and(|p| p.ends_with("/sh")),
        "{which}"
    );
    assert!(bins.get("surely-not-installed-here").is_none());
    // system.run runs code: it needs operator.admin and lands in the exec
    // audit log, as a native invoke does.
    let run = request(
        &mut operator,
        "r",
        "node.invoke",
        json!({
            "nodeId": node_id, "command": "system.run",
            "params": {"command": ["echo", "hi from clawgate"]}, "idempotencyKey": "r1",
        }),
    )
    .await;
    assert_eq!(run["ok"], true, "{run}");
    assert_eq!(
        run["payload"]["payload"]["stdout"], "hi from clawgate\n",
        "{run}"
    );
    let mut native = gw.operator().await;
    let audit = native.call("approvals.audit", json!({})).await;
    assert!(
        audit["result"]["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["nodeId"] == node_id.as_str() && e["decision"] == "allowed"),
        "{audit}"
    );
    let listed = request(&mut operator, "l", "node.list", json!({})).await;
    assert_eq!(listed["payload"]["nodes"][0]["connected"], true, "{listed}");

    host.kill().unwrap();
    host.wait().unwrap();
}
