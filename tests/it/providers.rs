//! The openai provider against a fake upstream over real sockets.

use crate::fake_openai::{FakeOpenAi, Script};
use crate::support::*;
use clawgate::protocol::ErrorCode;
use serde_json::json;

async fn gateway_for(upstream: &str) -> TestGateway {
    TestGateway::start_with_sections(&format!(
        "[agents]\ndefault = \"gpt\"\n\n[agents.gpt]\nprovider = \"openai\"\nbaseUrl = \"{upstream}\"\n\
         apiKey = \"sk-test-key\"\nmodel = \"fake-model\"\nsystemPrompt = \"Be brief.\"\ntimeoutMs = 1500\n"
    ))
    .await
}

#[tokio::test]
async fn a_streamed_reply_reaches_the_client_and_the_store() {
    let upstream = FakeOpenAi::start(Script::Text(vec!["Hel", "lo ", "there"])).await;
    let gw = gateway_for(&upstream.base_url).await;
    let mut ws = gw.operator().await;
    let frame = ws
        .call("chat", json!({"message": "hi", "sessionKey": "o1"}))
        .await;
    let result = &frame["result"];
    assert_eq!(result["message"]["content"], "Hello there", "{frame}");
    assert_eq!(result["agentId"], "gpt");
    assert_eq!(
        result["usage"],
        json!({"inputTokens": 11, "outputTokens": 3})
    );
    let mut deltas = String::new();
    loop {
        let event = ws.event("agent.message").await;
        match event["data"]["state"].as_str().unwrap() {
            "delta" => deltas.push_str(event["data"]["delta"].as_str().unwrap()),
            _ => break,
        }
    }
    assert_eq!(deltas, "Hello there");

    ws.call("chat", json!({"message": "again", "sessionKey": "o1"}))
        .await;
    let requests = upstream.requests();
    let (headers, body) = &requests[1];
    assert_eq!(headers["authorization"], "Bearer sk-test-key");
    assert_eq!(body["model"], "fake-model");
    assert_eq!(body["stream"], true);
    let roles: Vec<&str> = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        ["system", "user", "assistant", "user"],
        "the session history goes upstream"
    );
    assert_eq!(body["messages"][2]["content"], "Hello there");
}

#[tokio::test]
async fn upstream_failures_are_clear_errors_and_leave_no_half_reply() {
    for (script, retryable) in [
        (Script::Status(500), true),
        (Script::Status(429), true),
        (Script::Status(401), false),
        (Script::BreakAfter(vec!["partial ", "reply"]), true),
    ] {
        let upstream = FakeOpenAi::start(script.clone()).await;
        let gw = gateway_for(&upstream.base_url).await;
        let mut ws = gw.operator().await;
        let frame = ws
            .call("chat", json!({"message": "hi", "sessionKey": "f"}))
            .await;
        assert_eq!(
            error_code(&frame),
            ErrorCode::UpstreamError.code(),
            "{script:?}: {frame}"
        );
        assert_eq!(
            frame["error"]["retryable"].as_bool().unwrap_or(false),
            retryable,
            "{script:?}: {frame}"
        );
        assert!(
            !frame.to_string().contains("sk-test-key"),
            "the API key leaked: {frame}"
        );
        let history = ws
            .call("sessions.history", json!({"sessionKey": "f"}))
            .await;
        let roles: Vec<&str> = history["result"]["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["role"].as_str().unwrap())
            .collect();
        assert_eq!(
            roles,
            ["user"],
            "{script:?}: no assistant message is stored"
        );
    }
}

#[tokio::test]
async fn a_hanging_upstream_times_out() {
    let upstream = FakeOpenAi::start(Script::Hang).await;
    let gw = gateway_for(&upstream.base_url).await;
    let mut ws = gw.operator().await;
    let started = std::time::Instant::now();
    let frame = ws.call("chat", json!({"message": "hi"})).await;
    assert_eq!(error_code(&frame), ErrorCode::Timeout.code());
    assert_eq!(frame["error"]["retryable"], true);
    assert!(started.elapsed() < std::time::Duration::from_secs(4));
    let event = ws.event("agent.message").await;
    assert_eq!(event["data"]["state"], "error");
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_retryable_error() {
    let gw = gateway_for("http://127.0.0.1:9/v1").await;
    let mut ws = gw.operator().await;
    let frame = ws.call("chat", json!({"message": "hi"})).await;
    assert_eq!(
        error_code(&frame),
        ErrorCode::UpstreamError.code(),
        "{frame}"
    );
    assert_eq!(frame["error"]["retryable"], true);
}

#[tokio::test]
async fn a_tool_call_runs_and_its_result_goes_back_to_the_model() {
    let upstream = FakeOpenAi::start(Script::ToolThenText(
        "sessions_list",
        r#"{"limit": 5}"#,
        vec!["You have ", "one session."],
    ))
    .await;
    let gw = TestGateway::start_with_sections(&format!(
        "[agents]\ndefault = \"gpt\"\n\n[agents.gpt]\nprovider = \"openai\"\nbaseUrl = \"{}\"\n\
         model = \"fake-model\"\ntools = [\"sessions_list\", \"session_history\"]\n",
        upstream.base_url
    ))
    .await;
    let mut ws = gw.operator().await;
    let frame = ws
        .call(
            "chat",
            json!({"message": "what sessions do I have?", "sessionKey": "t1"}),
        )
        .await;
    assert_eq!(
        frame["result"]["message"]["content"], "You have one session.",
        "{frame}"
    );

    let mut tool_events = Vec::new();
    loop {
        let event = ws.recv().await;
        if event["event"] == "agent.tool" {
            tool_events.push(event["data"].clone());
        }
        if event["event"] == "agent.message" && event["data"]["state"] == "final" {
            break;
        }
    }
    assert_eq!(tool_events.len(), 2, "{tool_events:?}");
    assert_eq!(tool_events[0]["phase"], "start");
    assert_eq!(tool_events[0]["name"], "sessions_list");
    assert_eq!(tool_events[0]["arguments"], json!({"limit": 5}));
    assert_eq!(tool_events[1]["phase"], "end");
    assert_eq!(
        tool_events[1]["result"]["sessions"][0]["key"], "t1",
        "the tool saw the store"
    );

    let requests = upstream.requests();
    assert_eq!(requests.len(), 2);
    let offered: Vec<&str> = requests[0].1["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(offered, ["sessions_list", "session_history"]);
    let messages = requests[1].1["messages"].as_array().unwrap();
    let tool_reply = messages
        .iter()
        .find(|m| m["role"] == "tool")
        .expect("tool result sent back");
    assert_eq!(tool_reply["tool_call_id"], "call_1");
    let content: serde_json::Value =
        serde_json::from_str(tool_reply["content"].as_str().unwrap()).unwrap();
    assert_eq!(content["sessions"][0]["key"], "t1");
}

mod anthropic {
    use crate::fake_anthropic::{FakeAnthropic, Script};
    use crate::support::*;
    use clawgate::protocol::ErrorCode;
    use serde_json::json;

    async fn gateway_for(upstream: &str) -> TestGateway {
        TestGateway::start_with_sections(&format!(
            "[agents]\ndefault = \"claude\"\n\n[agents.claude]\nprovider = \"anthropic\"\nbaseUrl = \"{upstream}\"\n\
             apiKey = \"sk-ant-test\"\nmodel = \"claude-fake\"\nsystemPrompt = \"Be brief.\"\ntimeoutMs = 2000\n"
        ))
        .await
    }

    #[tokio::test]
    async fn text_and_thinking_stream_and_the_request_follows_the_api() {
        let upstream = FakeAnthropic::start(Script::Reply {
            thinking: vec!["Greeting; ", "answer kindly."],
            text: vec!["Hi ", "there!"],
        })
        .await;
        let gw = gateway_for(&upstream.base_url).await;
        let mut ws = gw.operator().await;
        let frame = ws
            .call("chat", json!({"message": "hello", "sessionKey": "a1"}))
            .await;
        assert_eq!(
            frame["result"]["message"]["content"], "Hi there!",
            "{frame}"
        );
        assert_eq!(
            frame["result"]["usage"],
            json!({"inputTokens": 25, "outputTokens": 15})
        );
        let mut thinking = String::new();
        let mut seqs = Vec::new();
        loop {
            let frame = ws.recv().await;
            match frame["event"].as_str() {
                Some("agent.thinking") => {
                    thinking.push_str(frame["data"]["delta"].as_str().unwrap())
                }
                Some("agent.message") if frame["data"]["state"] == "final" => {
                    seqs.push(frame["data"]["runSeq"].as_u64().unwrap());
                    break;
                }
                _ => {}
            }
            if let Some(seq) = frame["data"]["runSeq"].as_u64() {
                seqs.push(seq);
            }
        }
        assert_eq!(thinking, "Greeting; answer kindly.");
        assert_eq!(
            seqs,
            (1..=seqs.len() as u64).collect::<Vec<_>>(),
            "one sequence across agent events"
        );

        ws.call("chat", json!({"message": "again", "sessionKey": "a1"}))
            .await;
        let requests = upstream.requests();
        let (headers, body) = &requests[1];
        assert_eq!(headers["x-api-key"], "sk-ant-test");
        assert_eq!(headers["anthropic-version"], "2023-06-01");
        assert_eq!(body["system"], "Be brief.");
        assert_eq!(body["max_tokens"], 4096);
        let roles: Vec<&str> = body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["role"].as_str().unwrap())
            .collect();
        assert_eq!(roles, ["user", "assistant", "user"]);
    }

    #[tokio::test]
    async fn tool_use_runs_the_tool_and_returns_the_result() {
        let upstream = FakeAnthropic::start(Script::ToolThenText(
            "session_history",
            r#"{"sessionKey": "a2", "limit": 3}"#,
            vec!["Done."],
        ))
        .await;
        let gw = TestGateway::start_with_sections(&format!(
            "[agents]\ndefault = \"claude\"\n\n[agents.claude]\nprovider = \"anthropic\"\nbaseUrl = \"{}\"\n\
             model = \"claude-fake\"\ntools = [\"session_history\"]\n",
            upstream.base_url
        ))
        .await;
        let mut ws = gw.operator().await;
        let frame = ws
            .call("chat", json!({"message": "summarise", "sessionKey": "a2"}))
            .await;
        assert_eq!(frame["result"]["message"]["content"], "Done.", "{frame}");
        let requests = upstream.requests();
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].1["tools"][0]["name"], "session_history");
        assert!(requests[0].1["tools"][0]["input_schema"]["properties"]["sessionKey"].is_object());
        let last = requests[1].1["messages"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone();
        let result = &last["content"][0];
        assert_eq!(result["type"], "tool_result");
        assert_eq!(result["tool_use_id"], "toolu_1");
        let content: serde_json::Value =
            serde_json::from_str(result["content"].as_str().unwrap()).unwrap();
        assert_eq!(
            content["messages"][0]["content"], "summarise",
            "the tool read the session"
        );
    }

    #[tokio::test]
    async fn errors_before_and_during_the_stream_are_upstream_errors() {
        for (script, retryable) in [
            (Script::Status(400), false),
            (Script::Status(529), true),
            (Script::OverloadedAfter(vec!["half "]), true),
        ] {
            let upstream = FakeAnthropic::start(script.clone()).await;
            let gw = gateway_for(&upstream.base_url).await;
            let mut ws = gw.operator().await;
            let frame = ws
                .call("chat", json!({"message": "hi", "sessionKey": "e"}))
                .await;
            assert_eq!(
                error_code(&frame),
                ErrorCode::UpstreamError.code(),
                "{script:?}: {frame}"
            );
            assert_eq!(
                frame["error"]["retryable"].as_bool().unwrap_or(false),
                retryable,
                "{script:?}"
            );
            let history = ws
                .call("sessions.history", json!({"sessionKey": "e"}))
                .await;
            assert_eq!(
                history["result"]["messages"].as_array().unwrap().len(),
                1,
                "{script:?}"
            );
        }
    }
}
