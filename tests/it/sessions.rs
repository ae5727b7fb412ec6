//! The sessions methods: listing with paging and filters, history paging,
//! patch with null clearing, clear and delete.

use crate::support::*;
use clawgate::protocol::ErrorCode;
use serde_json::json;

#[tokio::test]
async fn sessions_are_listed_newest_first_with_paging_and_filters() {
    let gw = TestGateway::start("").await;
    let mut ws = gw.operator().await;
    for i in 0..5 {
        ws.call(
            "chat",
            json!({"message": format!("m{i}"), "sessionKey": format!("s{i}")}),
        )
        .await;
    }
    ws.call(
        "sessions.patch",
        json!({"sessionKey": "s1", "label": "Groceries"}),
    )
    .await;
    let page = ws.call("sessions", json!({"limit": 2})).await["result"].clone();
    let keys: Vec<&str> = page["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["s4", "s3"]);
    let mut all: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    let mut cursor = page["nextCursor"].clone();
    while !cursor.is_null() {
        let next = ws
            .call("sessions", json!({"limit": 2, "cursor": cursor}))
            .await["result"]
            .clone();
        all.extend(
            next["sessions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["key"].as_str().unwrap().to_string()),
        );
        cursor = next["nextCursor"].clone();
    }
    assert_eq!(all, ["s4", "s3", "s2", "s1", "s0"]);
    let found = ws.call("sessions", json!({"search": "grocer"})).await["result"].clone();
    assert_eq!(found["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(found["sessions"][0]["messageCount"], 2);
    let active = ws.call("sessions", json!({"activeMinutes": 5})).await["result"].clone();
    assert_eq!(active["sessions"].as_array().unwrap().len(), 5);
    let none = ws.call("sessions", json!({"agentId": "other"})).await["result"].clone();
    assert_eq!(none["sessions"], json!([]));
}

#[tokio::test]
async fn history_pages_backwards() {
    let gw = TestGateway::start("").await;
    let mut ws = gw.operator().await;
    for i in 0..3 {
        ws.call(
            "chat",
            json!({"message": format!("n{i}"), "sessionKey": "h"}),
        )
        .await;
    }
    let last = ws
        .call("sessions.history", json!({"sessionKey": "h", "limit": 4}))
        .await["result"]
        .clone();
    let contents: Vec<&str> = last["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["n1", "n1", "n2", "n2"]);
    let older = ws
        .call(
            "sessions.history",
            json!({"sessionKey": "h", "limit": 4, "before": last["nextBefore"]}),
        )
        .await["result"]
        .clone();
    assert_eq!(older["messages"].as_array().unwrap().len(), 2);
    assert!(older["nextBefore"].is_null());
}

#[tokio::test]
async fn patch_sets_and_null_clears_while_leaving_out_keeps() {
    let gw = TestGateway::start("").await;
    let mut ws = gw.operator().await;
    ws.call("chat", json!({"message": "x", "sessionKey": "p"}))
        .await;
    let set = ws
        .call(
            "sessions.patch",
            json!({"sessionKey": "p", "label": "L", "model": "m1"}),
        )
        .await;
    assert_eq!(
        (
            set["result"]["label"].clone(),
            set["result"]["model"].clone()
        ),
        (json!("L"), json!("m1"))
    );
    let cleared = ws
        .call("sessions.patch", json!({"sessionKey": "p", "label": null}))
        .await;
    assert!(
        cleared["result"].get("label").is_none(),
        "null clears: {cleared}"
    );
    assert_eq!(cleared["result"]["model"], "m1", "a key left out is kept");
    let missing = ws
        .call(
            "sessions.patch",
            json!({"sessionKey": "nope", "label": "x"}),
        )
        .await;
    assert_eq!(error_code(&missing), ErrorCode::NotFound.code());
}

#[tokio::test]
async fn clear_empties_the_transcript_and_delete_removes_the_session() {
    let gw = TestGateway::start("").await;
    let mut ws = gw.operator().await;
    ws.call("chat", json!({"message": "bye", "sessionKey": "c"}))
        .await;
    let cleared = ws.call("sessions.clear", json!({"sessionKey": "c"})).await;
    assert_eq!(cleared["result"]["removed"], 2);
    let history = ws
        .call("sessions.history", json!({"sessionKey": "c"}))
        .await;
    assert_eq!(history["result"]["messages"], json!([]));
    let deleted = ws.call("sessions.delete", json!({"sessionKey": "c"})).await;
    assert_eq!(deleted["result"]["deleted"], true);
    let again = ws.call("sessions.delete", json!({"sessionKey": "c"})).await;
    assert_eq!(again["result"]["deleted"], false);
    let gone = ws
        .call("sessions.history", json!({"sessionKey": "c"}))
        .await;
    assert_eq!(error_code(&gone), ErrorCode::NotFound.code());
}
