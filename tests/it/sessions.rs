//! The sessions methods: listing with paging and filters, history paging,
//! patch with null clearing, clear and delete. Through the typed client,
//! except where the JSON itself is the point (null versus a missing key).

use crate::support::*;
use clawgate::protocol::types::SessionsResult;
use clawgate::protocol::ErrorCode;
use serde_json::json;

#[tokio::test]
async fn sessions_are_listed_newest_first_with_paging_and_filters() {
    let gw = TestGateway::start("").await;
    let mut client = gw.client().await;
    for i in 0..5 {
        client
            .chat(&params(
                json!({"message": format!("m{i}"), "sessionKey": format!("s{i}")}),
            ))
            .await
            .unwrap();
    }
    client
        .sessions_patch(&params(json!({"sessionKey": "s1", "label": "Groceries"})))
        .await
        .unwrap();
    let keys = |page: &SessionsResult| -> Vec<String> {
        page.sessions.iter().map(|s| s.key.clone()).collect()
    };
    let mut page = client.sessions(&params(json!({"limit": 2}))).await.unwrap();
    assert_eq!(keys(&page), ["s4", "s3"]);
    let mut all = keys(&page);
    while let Some(cursor) = page.next_cursor {
        page = client
            .sessions(&params(json!({"limit": 2, "cursor": cursor})))
            .await
            .unwrap();
        all.extend(keys(&page));
    }
    assert_eq!(all, ["s4", "s3", "s2", "s1", "s0"]);
    let found = client
        .sessions(&params(json!({"search": "grocer"})))
        .await
        .unwrap();
    assert_eq!(found.sessions.len(), 1);
    assert_eq!(found.sessions[0].message_count, 2);
    let active = client
        .sessions(&params(json!({"activeMinutes": 5})))
        .await
        .unwrap();
    assert_eq!(active.sessions.len(), 5);
    let none = client
        .sessions(&params(json!({"agentId": "other"})))
        .await
        .unwrap();
    assert!(none.sessions.is_empty());
}

#[tokio::test]
async fn history_pages_backwards() {
    let gw = TestGateway::start("").await;
    let mut client = gw.client().await;
    for i in 0..3 {
        client
            .chat(&params(
                json!({"message": format!("n{i}"), "sessionKey": "h"}),
            ))
            .await
            .unwrap();
    }
    let last = client
        .sessions_history(&params(json!({"sessionKey": "h", "limit": 4})))
        .await
        .unwrap();
    let contents: Vec<&str> = last.messages.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(contents, ["n1", "n1", "n2", "n2"]);
    let older = client
        .sessions_history(&params(
            json!({"sessionKey": "h", "limit": 4, "before": last.next_before}),
        ))
        .await
        .unwrap();
    assert_eq!(older.messages.len(), 2);
    assert!(older.next_before.is_none());
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
    let mut client = gw.client().await;
    fn session<T: serde::de::DeserializeOwned>() -> T {
        params(json!({"sessionKey": "c"}))
    }
    client
        .chat(&params(json!({"message": "bye", "sessionKey": "c"})))
        .await
        .unwrap();
    let cleared = client.sessions_clear(&session()).await.unwrap();
    assert_eq!(cleared.removed, 2);
    let history = client.sessions_history(&session()).await.unwrap();
    assert!(history.messages.is_empty());
    assert!(client.sessions_delete(&session()).await.unwrap().deleted);
    assert!(!client.sessions_delete(&session()).await.unwrap().deleted);
    let gone = client.sessions_history(&session()).await;
    assert_eq!(rpc_code(gone), ErrorCode::NotFound.code());
}

#[tokio::test]
async fn clear_with_keep_leaves_the_latest_messages_and_waits_for_no_turn() {
    let gw = TestGateway::start("").await;
    let mut client = gw.client().await;
    for i in 0..3 {
        client
            .chat(&params(
                json!({"message": format!("m{i}"), "sessionKey": "t"}),
            ))
            .await
            .unwrap();
    }
    let trimmed = client
        .sessions_clear(&params(json!({"sessionKey": "t", "keep": 2})))
        .await
        .unwrap();
    assert_eq!((trimmed.removed, trimmed.kept), (4, 2));
    let history = client
        .sessions_history(&params(json!({"sessionKey": "t"})))
        .await
        .unwrap();
    let contents: Vec<&str> = history
        .messages
        .iter()
        .map(|m| m.content.as_str())
        .collect();
    assert_eq!(contents, ["m2", "m2"], "the last user message and its echo");
    let listed = client.sessions(&params(json!({}))).await.unwrap();
    assert_eq!(listed.sessions[0].message_count, 2);

    // Not while a turn runs on the session: its reply is about to be stored.
    let mut caller = gw.operator().await;
    let long = "word ".repeat(3000);
    caller
        .request("chat", json!({"message": long, "sessionKey": "t"}))
        .await;
    caller.event("agent.message").await;
    let busy = client
        .sessions_clear(&params(json!({"sessionKey": "t", "keep": 0})))
        .await;
    assert_eq!(rpc_code(busy), ErrorCode::Conflict.code());
}
