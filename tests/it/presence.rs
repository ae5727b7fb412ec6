//! Presence end to end: clients, nodes and channel accounts are listed
//! with what they said in connect and a masked address; each change moves
//! the version seen in events, the hello snapshot and health; a client
//! reports its own activity; a client that leaves stays listed offline
//! until it comes back under the same instance id.

use crate::nodes::node_with;
use crate::support::*;
use serde_json::{json, Value};

const SECRET: &str = "webhook-secret-0123456789";

async fn connect_as(gw: &TestGateway, name: &str, instance: &str) -> (Ws, Value) {
    let mut ws = gw.raw().await;
    let hello = ws
        .call(
            "connect",
            json!({
                "protocol": {"min": 1, "max": 1},
                "client": {"name": name, "version": "2.1", "platform": "macos", "instanceId": instance},
                "role": "operator",
                "auth": {"token": TOKEN},
            }),
        )
        .await;
    assert!(hello["error"].is_null(), "{hello}");
    (ws, hello["result"].clone())
}

/// The next presence change with this change kind for the entry `key`.
async fn change(ws: &mut Ws, kind: &str, key: &str) -> Value {
    loop {
        let event = ws.event("presence.changed").await;
        if event["data"]["change"] == kind && event["data"]["entry"]["key"] == key {
            return event["data"].clone();
        }
    }
}

fn entry<'a>(list: &'a Value, key: &str) -> Option<&'a Value> {
    list["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["key"] == key)
}

#[tokio::test]
async fn presence_lists_who_is_connected_and_versions_every_change() {
    let gw = TestGateway::start_with_sections(&format!(
        "[agents.main]\nprovider = \"echo\"\n[channels.webhook.crm]\nsecret = \"{SECRET}\"\n"
    ))
    .await;
    let mut watcher = gw.operator().await;
    let (mut laptop, hello) = connect_as(&gw, "clawgate-web", "laptop").await;
    let key = format!("conn:{}", hello["server"]["connId"].as_str().unwrap());
    let joined = change(&mut watcher, "joined", &key).await;
    let e = &joined["entry"];
    assert_eq!(
        (e["kind"].clone(), e["online"].clone(), e["address"].clone()),
        (json!("operator"), json!(true), json!("loopback"))
    );
    assert_eq!(
        (
            e["clientName"].clone(),
            e["clientVersion"].clone(),
            e["platform"].clone(),
            e["instanceId"].clone()
        ),
        (
            json!("clawgate-web"),
            json!("2.1"),
            json!("macos"),
            json!("laptop")
        )
    );
    // The hello's health carries the presence version; the list is one
    // call away (kept out of the hello, which every client gets).
    let version_at_hello = hello["snapshot"]["health"]["presenceVersion"]
        .as_u64()
        .unwrap();
    assert!(
        version_at_hello >= joined["version"].as_u64().unwrap() - 1,
        "{hello}"
    );
    let list = laptop.call("presence.list", json!({})).await["result"].clone();
    assert!(entry(&list, &key).is_some(), "{list}");

    let report = laptop
        .call(
            "presence.report",
            json!({"lastInputSeconds": 7, "text": "editing the config"}),
        )
        .await;
    let version = report["result"]["version"].as_u64().unwrap();
    let updated = change(&mut watcher, "updated", &key).await;
    assert_eq!(updated["version"], version);
    assert_eq!(updated["entry"]["lastInputSeconds"], 7);
    assert_eq!(updated["entry"]["text"], "editing the config");
    let health = watcher.call("health", json!({})).await;
    assert_eq!(health["result"]["presenceVersion"], version, "{health}");

    let (_node, _) = node_with(&gw, TOKEN).await;
    // The webhook account comes up on its own (on PostgreSQL, once it
    // holds its lease), maybe after the node.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let list = loop {
        let list = watcher.call("presence.list", json!({})).await["result"].clone();
        let kinds: Vec<&str> = list["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap())
            .collect();
        if kinds.contains(&"node") && kinds.contains(&"channel") && kinds.contains(&"operator") {
            break list;
        }
        assert!(std::time::Instant::now() < deadline, "{list}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let crm = entry(&list, "channel:webhook:crm").expect("the webhook account");
    assert_eq!(crm["accountId"], "crm");
    assert!(list["version"].as_u64().unwrap() > version);

    // Gone, it stays listed offline; back under its instance id, it
    // replaces its old entry.
    drop(laptop);
    let left = change(&mut watcher, "left", &key).await;
    assert_eq!(left["entry"]["online"], false);
    assert!(left["entry"]["leftAtMs"].as_u64().is_some());
    let list = watcher.call("presence.list", json!({})).await["result"].clone();
    assert_eq!(entry(&list, &key).unwrap()["online"], false);
    let (_again, hello) = connect_as(&gw, "clawgate-web", "laptop").await;
    let new_key = format!("conn:{}", hello["server"]["connId"].as_str().unwrap());
    change(&mut watcher, "expired", &key).await;
    change(&mut watcher, "joined", &new_key).await;
    let list = watcher.call("presence.list", json!({})).await["result"].clone();
    assert!(entry(&list, &key).is_none() && entry(&list, &new_key).is_some());

    // Presence needs operator.read.
    let mut narrow = gw.raw().await;
    let hello = narrow
        .connect(json!({"token": TOKEN}), Some(json!(["operator.approvals"])))
        .await;
    assert!(hello["error"].is_null(), "{hello}");
    let refused = narrow.call("presence.list", json!({})).await;
    assert_eq!(
        error_code(&refused),
        clawgate::protocol::ErrorCode::Forbidden.code(),
        "{refused}"
    );

    let status = watcher.call("status", json!({})).await;
    let prune = status["result"]["maintenance"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["task"] == "presence-prune")
        .cloned()
        .unwrap();
    assert_eq!(prune["everyMs"], 60_000, "{prune}");
    assert_eq!(prune["lastOutcome"], "ok");
}

#[tokio::test]
async fn a_report_is_checked_and_text_is_bounded() {
    let gw = TestGateway::start("").await;
    let mut ws = gw.operator().await;
    let long = "x".repeat(201);
    let refused = ws.call("presence.report", json!({"text": long})).await;
    assert_eq!(error_code(&refused), -32602, "{refused}");
    let cleared = ws.call("presence.report", json!({"text": ""})).await;
    assert!(cleared["error"].is_null(), "{cleared}");
    // A client reports at most once a second.
    let again = ws
        .call("presence.report", json!({"lastInputSeconds": 1}))
        .await;
    assert_eq!(
        error_code(&again),
        clawgate::protocol::ErrorCode::RateLimited.code(),
        "{again}"
    );
    assert!(again["error"]["retryAfterMs"].as_u64().is_some(), "{again}");
}
