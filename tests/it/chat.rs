//! Chat turns with the offline echo agent over real connections.

use crate::support::*;
use clawgate::protocol::ErrorCode;
use serde_json::{json, Value};

/// Collects the agent.message events of one run until its final event.
async fn run_events(ws: &mut Ws, run_id: Option<&str>) -> Vec<Value> {
    let mut events = Vec::new();
    loop {
        let event = ws.event("agent.message").await;
        if run_id.is_some_and(|id| event["data"]["runId"] != id) {
            continue;
        }
        let done = event["data"]["state"] != "delta";
        events.push(event["data"].clone());
        if done {
            return events;
        }
    }
}

#[tokio::test]
async fn a_turn_streams_to_the_caller_and_to_a_watching_client_in_order() {
    let gw = TestGateway::start("").await;
    let mut caller = gw.operator().await;
    let mut watcher = gw.operator().await;
    let text = "the quick brown fox jumps over the lazy dog";
    let frame = caller.call("chat", json!({"message": text})).await;
    let result = &frame["result"];
    assert_eq!(result["agentId"], "main");
    assert_eq!(result["sessionKey"], "agent:main:main");
    assert_eq!(
        result["message"]["content"], text,
        "the echo agent answers verbatim"
    );
    assert_eq!(result["message"]["role"], "assistant");
    assert_eq!(result["stopReason"], "stop");
    assert_eq!(result["usage"]["outputTokens"], 9);
    let run_id = result["runId"].as_str().unwrap();

    for ws in [&mut caller, &mut watcher] {
        let events = run_events(ws, Some(run_id)).await;
        let seqs: Vec<u64> = events
            .iter()
            .map(|e| e["runSeq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, (1..=events.len() as u64).collect::<Vec<_>>());
        let streamed: String = events.iter().filter_map(|e| e["delta"].as_str()).collect();
        assert_eq!(streamed, text);
        let last = events.last().unwrap();
        assert_eq!(last["state"], "final");
        assert_eq!(last["message"], result["message"]);
    }
}

#[tokio::test]
async fn two_chats_on_one_session_run_one_after_the_other() {
    let gw = TestGateway::start("").await;
    let mut a = gw.operator().await;
    let mut b = gw.operator().await;
    let first = "alpha ".repeat(200);
    let second = "beta ".repeat(200);
    a.request("chat", json!({"message": first, "sessionKey": "s1"}))
        .await;
    b.request("chat", json!({"message": second, "sessionKey": "s1"}))
        .await;
    for ws in [&mut a, &mut b] {
        loop {
            let frame = ws.recv().await;
            if frame.get("event").is_none() {
                assert!(frame.get("result").is_some(), "{frame}");
                break;
            }
        }
    }
    let history = a
        .call("sessions.history", json!({"sessionKey": "s1"}))
        .await;
    let messages = history["result"]["messages"].as_array().unwrap();
    let roles: Vec<&str> = messages
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "user", "assistant"]);
    assert_eq!(
        messages[0]["content"], messages[1]["content"],
        "each reply follows its own message"
    );
    assert_eq!(messages[2]["content"], messages[3]["content"]);
}

#[tokio::test]
async fn a_repeated_idempotency_key_returns_the_first_result() {
    let gw = TestGateway::start("").await;
    let mut ws = gw.operator().await;
    let params = json!({"message": "only once", "sessionKey": "idem", "idempotencyKey": "k-1"});
    let first = ws.call("chat", params.clone()).await;
    let again = ws.call("chat", params).await;
    assert_eq!(first["result"], again["result"]);
    let history = ws
        .call("sessions.history", json!({"sessionKey": "idem"}))
        .await;
    assert_eq!(history["result"]["messages"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn an_unknown_agent_is_not_found_and_chat_needs_write_scope() {
    let gw = TestGateway::start("").await;
    let mut ws = gw.operator().await;
    let frame = ws
        .call("chat", json!({"message": "hi", "agentId": "ghost"}))
        .await;
    assert_eq!(error_code(&frame), ErrorCode::NotFound.code());
    assert!(frame["error"]["message"]
        .as_str()
        .unwrap()
        .contains("ghost"));
    let mut reader = gw.raw().await;
    reader
        .connect(json!({"token": TOKEN}), Some(json!(["operator.read"])))
        .await;
    let frame = reader.call("chat", json!({"message": "hi"})).await;
    assert_eq!(error_code(&frame), ErrorCode::Forbidden.code());
}

#[tokio::test]
async fn sessions_and_transcripts_survive_a_restart() {
    let dir = temp_dir("persist");
    let args = persistent_config(&dir);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    {
        let mut gw = TestGateway::spawn(&dir, &args, &[]);
        gw.owns_dir = false;
        let mut ws = gw.operator().await;
        ws.call(
            "chat",
            json!({"message": "remember me", "sessionKey": "keep"}),
        )
        .await;
        ws.call(
            "sessions.patch",
            json!({"sessionKey": "keep", "label": "kept"}),
        )
        .await;
        assert!(gw.terminate().success());
    }
    let gw = TestGateway::spawn(&dir, &args, &[]);
    let mut ws = gw.operator().await;
    let history = ws
        .call("sessions.history", json!({"sessionKey": "keep"}))
        .await;
    let messages = history["result"]["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[1]["content"], "remember me");
    let list = ws.call("sessions", json!({"search": "kept"})).await;
    assert_eq!(list["result"]["sessions"][0]["label"], "kept");
}

#[tokio::test]
async fn abort_stops_a_run_and_stores_the_partial_reply() {
    let gw = TestGateway::start("").await;
    let mut caller = gw.operator().await;
    let mut other = gw.operator().await;
    let long = "word ".repeat(3000);
    let id = caller
        .request("chat", json!({"message": long, "sessionKey": "ab"}))
        .await;
    let first = caller.event("agent.message").await;
    let run_id = first["data"]["runId"].as_str().unwrap().to_string();
    let look = other
        .call("chat.wait", json!({"runId": run_id, "timeoutMs": 0}))
        .await;
    assert_eq!(look["result"]["status"], "running", "{look}");
    let mut waiter = gw.operator().await;
    let waiting = waiter
        .request("chat.wait", json!({"runId": run_id, "timeoutMs": 30000}))
        .await;
    let abort = other.call("chat.abort", json!({"runId": run_id})).await;
    assert_eq!(abort["result"]["aborted"], true);
    let waited = loop {
        let frame = waiter.recv().await;
        if frame["id"] == json!(waiting) {
            break frame["result"].clone();
        }
    };
    assert_eq!(waited["status"], "aborted", "{waited}");
    assert!(waited["endedAtMs"].as_u64().unwrap() >= waited["startedAtMs"].as_u64().unwrap());
    let result = loop {
        let frame = caller.recv().await;
        if frame["id"] == json!(id) {
            break frame["result"].clone();
        }
    };
    assert_eq!(result["stopReason"], "aborted");
    assert_eq!(result["message"]["status"], "aborted");
    let partial = result["message"]["content"].as_str().unwrap();
    assert!(
        partial.len() < long.len() && long.starts_with(partial),
        "a prefix of the reply is kept"
    );
    let history = other
        .call("sessions.history", json!({"sessionKey": "ab"}))
        .await;
    assert_eq!(history["result"]["messages"][1]["status"], "aborted");
    let again = other.call("chat.abort", json!({"runId": run_id})).await;
    assert_eq!(again["result"]["aborted"], false);
}

#[tokio::test]
async fn a_kill_during_a_streaming_turn_leaves_a_consistent_store() {
    let _sqlite = crate::engines::sqlite_only(); // reads the SQLite file
    let dir = temp_dir("kill9");
    let args = persistent_config(&dir);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    {
        let mut gw = TestGateway::spawn(&dir, &args, &[]);
        gw.owns_dir = false;
        let mut ws = gw.operator().await;
        ws.call(
            "chat",
            json!({"message": "before the crash", "sessionKey": "k"}),
        )
        .await;
        ws.request(
            "chat",
            json!({"message": "word ".repeat(3000), "sessionKey": "k"}),
        )
        .await;
        for _ in 0..20 {
            ws.event("agent.message").await;
        }
        unsafe_kill(gw.child.id(), "KILL");
        wait_exit(&mut gw.child, std::time::Duration::from_secs(5)).expect("killed");
    }
    let db = rusqlite::Connection::open(dir.join("state/clawgate.db")).unwrap();
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    drop(db);

    let gw = TestGateway::spawn(&dir, &args, &[]);
    let mut ws = gw.operator().await;
    let history = ws
        .call("sessions.history", json!({"sessionKey": "k"}))
        .await;
    let messages = history["result"]["messages"].as_array().unwrap();
    let roles: Vec<&str> = messages
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        ["user", "assistant", "user"],
        "the interrupted reply is not half-stored"
    );
    let session = ws.call("sessions", json!({})).await["result"]["sessions"][0].clone();
    assert_eq!(
        session["messageCount"], 3,
        "counts agree with the transcript"
    );
    let next = ws
        .call("chat", json!({"message": "after", "sessionKey": "k"}))
        .await;
    assert_eq!(next["result"]["message"]["content"], "after");
}

#[tokio::test]
async fn a_busy_session_fails_fast_when_asked_not_to_wait() {
    let gw = TestGateway::start("").await;
    let mut first = gw.operator().await;
    let mut second = gw.operator().await;
    first
        .request(
            "chat",
            json!({"message": "busy ".repeat(2000), "sessionKey": "busy"}),
        )
        .await;
    first.event("agent.message").await;
    let frame = second
        .call(
            "chat",
            json!({"message": "me too", "sessionKey": "busy", "wait": false}),
        )
        .await;
    assert_eq!(error_code(&frame), ErrorCode::Conflict.code());
    assert!(frame["error"]["message"].as_str().unwrap().contains("busy"));
}

#[tokio::test]
async fn a_client_chosen_run_id_names_the_run_and_cannot_be_used_twice_at_once() {
    let gw = TestGateway::start("").await;
    let mut caller = gw.operator().await;
    let mut other = gw.operator().await;
    let long = "word ".repeat(3000);
    let id = caller
        .request(
            "chat",
            json!({"message": long, "sessionKey": "mine-a", "runId": "client-run-1"}),
        )
        .await;
    let first = caller.event("agent.message").await;
    assert_eq!(first["data"]["runId"], "client-run-1");
    let clash = other
        .call(
            "chat",
            json!({"message": "hi", "sessionKey": "mine-b", "runId": "client-run-1"}),
        )
        .await;
    assert_eq!(error_code(&clash), ErrorCode::Conflict.code(), "{clash}");
    let abort = other
        .call("chat.abort", json!({"runId": "client-run-1"}))
        .await;
    assert_eq!(abort["result"]["aborted"], true);
    let result = loop {
        let frame = caller.recv().await;
        if frame["id"] == json!(id) {
            break frame["result"].clone();
        }
    };
    assert_eq!(result["runId"], "client-run-1");
    // Once it ended, the id may be used again.
    let again = other
        .call(
            "chat",
            json!({"message": "hi", "sessionKey": "mine-b", "runId": "client-run-1"}),
        )
        .await;
    assert_eq!(again["result"]["runId"], "client-run-1", "{again}");
}
