//! Exec approvals end to end: a fake model asks for the exec tool, the
//! agent's policy decides, people answer over real connections, the
//! command runs (or not) and every decision lands in the audit log.

use crate::fake_openai::{FakeOpenAi, Script};
use crate::support::*;
use clawgate::protocol::ErrorCode;
use serde_json::{json, Value};
use std::time::Duration;

/// A gateway whose default agent asks the fake model, which calls exec
/// with `arguments`; `exec` is the agent's [agents.gpt.exec] table.
async fn gateway(arguments: &'static str, exec: &str, extra: &str) -> (FakeOpenAi, TestGateway) {
    let upstream = FakeOpenAi::start(Script::ToolThenText("exec", arguments, vec!["Done."])).await;
    let gw = TestGateway::start_with_sections(&format!(
        "[agents]\ndefault = \"gpt\"\n\n[agents.gpt]\nprovider = \"openai\"\nbaseUrl = \"{}\"\n\
         model = \"fake-model\"\ntools = [\"exec\"]\n\n[agents.gpt.exec]\n{exec}\n{extra}",
        upstream.base_url
    ))
    .await;
    (upstream, gw)
}

/// The end of the turn's exec call: its result or error.
async fn tool_end(ws: &mut Ws) -> Value {
    loop {
        let event = ws.event("agent.tool").await;
        if event["data"]["phase"] == "end" {
            return event["data"].clone();
        }
    }
}

/// Waits for the response to request `id`.
async fn reply(ws: &mut Ws, id: &str) -> Value {
    loop {
        let frame = ws.recv().await;
        if frame["id"] == id {
            return frame;
        }
    }
}

/// Answers the next approval request; returns the request.
async fn answer_next(approver: &mut Ws, decision: &str) -> Value {
    let asked = approver.event("approvals.requested").await["data"].clone();
    let answer = approver
        .call(
            "approvals.respond",
            json!({"id": asked["id"], "decision": decision}),
        )
        .await;
    assert_eq!(answer["result"]["decision"], decision, "{answer}");
    asked
}

async fn audit(ws: &mut Ws) -> Vec<Value> {
    ws.call("approvals.audit", json!({})).await["result"]["entries"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn an_approved_command_runs_exactly_as_asked_and_a_late_answer_conflicts() {
    let (_upstream, gw) = gateway(r#"{"command": "echo 'hello world' ;id"}"#, "", "").await;
    let mut approver = gw.operator().await;
    let mut user = gw.operator().await;
    let chat = user
        .request("chat", json!({"message": "say hello", "sessionKey": "s1"}))
        .await;
    let asked = approver.event("approvals.requested").await["data"].clone();
    assert_eq!(asked["command"], "echo 'hello world' ';id'");
    assert_eq!(
        asked["argv"],
        json!(["echo", "hello world", ";id"]),
        "no shell"
    );
    assert_eq!(asked["agentId"], "gpt");
    assert_eq!(asked["sessionKey"], "s1");
    assert!(asked["expiresAtMs"].as_u64() > asked["requestedAtMs"].as_u64());
    let pending = approver.call("approvals.pending", json!({})).await;
    assert_eq!(pending["result"]["approvals"][0]["id"], asked["id"]);
    let answer = approver
        .call(
            "approvals.respond",
            json!({"id": asked["id"], "decision": "allow-once"}),
        )
        .await;
    assert_eq!(answer["result"]["decision"], "allow-once");
    let end = tool_end(&mut user).await;
    assert_eq!(end["result"]["stdout"], "hello world ;id\n", "{end}");
    assert_eq!(end["result"]["exitCode"], 0);
    let done = reply(&mut user, &chat).await;
    assert_eq!(done["result"]["message"]["content"], "Done.");
    let resolved = approver.event("approvals.resolved").await["data"].clone();
    assert_eq!(resolved["decision"], "allow-once");

    let late = approver
        .call(
            "approvals.respond",
            json!({"id": asked["id"], "decision": "deny"}),
        )
        .await;
    assert_eq!(error_code(&late), ErrorCode::Conflict.code());
    let unknown = approver
        .call(
            "approvals.respond",
            json!({"id": "appr-nope", "decision": "deny"}),
        )
        .await;
    assert_eq!(error_code(&unknown), ErrorCode::NotFound.code());
    let entries = audit(&mut approver).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["decision"], "allow-once");
    assert_eq!(entries[0]["approvalId"], asked["id"]);
    assert_eq!(entries[0]["argv"], asked["argv"]);
}

#[tokio::test]
async fn denied_and_unanswered_commands_do_not_run_and_the_model_is_told() {
    let marker = temp_dir("exec-marker").join("ran");
    let arguments: &'static str =
        Box::leak(format!(r#"{{"command": "touch {}"}}"#, marker.display()).into_boxed_str());
    let (upstream, gw) = gateway(arguments, "", "[approvals]\ntimeoutMs = 1000\n").await;
    let mut approver = gw.operator().await;
    let mut user = gw.operator().await;
    let chat = user
        .request("chat", json!({"message": "touch it", "sessionKey": "d1"}))
        .await;
    answer_next(&mut approver, "deny").await;
    let end = tool_end(&mut user).await;
    assert_eq!(end["error"], "not run: a person denied this command");
    reply(&mut user, &chat).await;
    let requests = upstream.requests();
    let told = requests.last().unwrap().1["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool")
        .cloned()
        .expect("the model got the tool result");
    assert!(
        told["content"].as_str().unwrap().contains("denied"),
        "{told}"
    );

    // Nobody answers: denied when approvals.timeoutMs passes.
    user.request("chat", json!({"message": "touch it", "sessionKey": "d2"}))
        .await;
    let end = tool_end(&mut user).await;
    assert_eq!(
        end["error"],
        "not run: nobody approved the command within 1000 ms"
    );
    let resolved = loop {
        let event = approver.event("approvals.resolved").await["data"].clone();
        if event["decision"] == "timeout" {
            break event;
        }
    };
    assert_eq!(resolved["decidedBy"], "timeout");
    assert!(!marker.exists(), "a refused command ran");
    let decisions: Vec<Value> = audit(&mut approver)
        .await
        .iter()
        .map(|e| e["decision"].clone())
        .collect();
    assert_eq!(decisions, [json!("timeout"), json!("deny")]);
}

#[tokio::test]
async fn allow_always_adds_the_command_and_later_runs_need_no_one() {
    let (_upstream, gw) = gateway(r#"{"command": "echo again"}"#, "", "").await;
    let mut approver = gw.operator().await;
    let mut user = gw.operator().await;
    let chat = user
        .request("chat", json!({"message": "1", "sessionKey": "a1"}))
        .await;
    answer_next(&mut approver, "allow-always").await;
    assert_eq!(tool_end(&mut user).await["result"]["stdout"], "again\n");
    reply(&mut user, &chat).await;
    user.call("chat", json!({"message": "2", "sessionKey": "a1"}))
        .await;
    assert_eq!(tool_end(&mut user).await["result"]["stdout"], "again\n");
    let pending = approver.call("approvals.pending", json!({})).await;
    assert_eq!(
        pending["result"]["approvals"],
        json!([]),
        "nobody was asked"
    );
    let entries = audit(&mut approver).await;
    assert_eq!(entries[0]["decision"], "allowed");
    assert_eq!(entries[0]["decidedBy"], "policy");
    assert_eq!(entries[1]["decision"], "allow-always");
}

#[tokio::test]
async fn allow_always_binds_the_argv_the_directory_and_the_host() {
    // The user's message names the directory the model asks to run `pwd` in.
    fn pwd_in(message: &str) -> String {
        format!(r#"{{"command": "pwd", "cwd": "{message}"}}"#)
    }
    let upstream = FakeOpenAi::start(Script::ToolByMessage("exec", pwd_in, vec!["ok"])).await;
    let gw = TestGateway::start_with_sections(&format!(
        "[agents]\ndefault = \"gpt\"\n\n[agents.gpt]\nprovider = \"openai\"\nbaseUrl = \"{}\"\n\
         model = \"fake-model\"\ntools = [\"exec\"]\n",
        upstream.base_url
    ))
    .await;
    let mut approver = gw.operator().await;
    let mut user = gw.operator().await;
    let tmp = std::env::temp_dir().display().to_string();
    let chat = user.request("chat", json!({"message": tmp})).await;
    answer_next(&mut approver, "allow-always").await;
    reply(&mut user, &chat).await;
    // The same command elsewhere is a new question.
    let chat = user.request("chat", json!({"message": "/"})).await;
    let asked = answer_next(&mut approver, "deny").await;
    assert_eq!(asked["cwd"], "/", "{asked}");
    reply(&mut user, &chat).await;
    // The approved one is not.
    user.call("chat", json!({"message": tmp})).await;
    let pending = approver.call("approvals.pending", json!({})).await;
    assert_eq!(pending["result"]["approvals"], json!([]));
    assert_eq!(audit(&mut approver).await[0]["decision"], "allowed");
}

#[tokio::test]
async fn two_operators_answer_at_once_and_only_the_first_counts() {
    let (_upstream, gw) = gateway(r#"{"command": "echo race"}"#, "", "").await;
    let mut first = gw.operator().await;
    let mut second = gw.operator().await;
    let mut user = gw.operator().await;
    user.request("chat", json!({"message": "go", "sessionKey": "r1"}))
        .await;
    let asked = first.event("approvals.requested").await["data"].clone();
    second.event("approvals.requested").await;
    let a = first
        .request(
            "approvals.respond",
            json!({"id": asked["id"], "decision": "allow-once"}),
        )
        .await;
    let b = second
        .request(
            "approvals.respond",
            json!({"id": asked["id"], "decision": "deny"}),
        )
        .await;
    let mut answers = Vec::new();
    for (ws, id) in [(&mut first, a), (&mut second, b)] {
        loop {
            let frame = ws.recv().await;
            if frame["id"] == id.as_str() {
                answers.push(frame);
                break;
            }
        }
    }
    let won: Vec<&Value> = answers.iter().filter(|f| f["error"].is_null()).collect();
    let lost: Vec<&Value> = answers.iter().filter(|f| !f["error"].is_null()).collect();
    assert_eq!((won.len(), lost.len()), (1, 1), "{answers:?}");
    assert_eq!(error_code(lost[0]), ErrorCode::Conflict.code());
    let end = tool_end(&mut user).await;
    match won[0]["result"]["decision"].as_str().unwrap() {
        "allow-once" => assert_eq!(end["result"]["stdout"], "race\n"),
        _ => assert_eq!(end["error"], "not run: a person denied this command"),
    }
    assert_eq!(audit(&mut first).await.len(), 1);
}

#[tokio::test]
async fn only_clients_with_the_approvals_scope_see_and_answer_requests() {
    let (_upstream, gw) = gateway(r#"{"command": "echo scoped"}"#, "", "").await;
    let mut approver = gw.operator().await;
    let mut writer = gw.raw().await;
    writer
        .connect(
            json!({"token": TOKEN}),
            Some(json!(["operator.read", "operator.write"])),
        )
        .await;
    let mut node = gw.raw().await;
    node.call(
        "connect",
        json!({"protocol": {"min": 1, "max": 1}, "client": {"name": "n", "version": "1"},
               "role": "node", "auth": {"token": TOKEN}}),
    )
    .await;
    writer
        .request("chat", json!({"message": "go", "sessionKey": "p1"}))
        .await;
    let asked = approver.event("approvals.requested").await["data"].clone();
    let refused = writer
        .call(
            "approvals.respond",
            json!({"id": asked["id"], "decision": "allow-once"}),
        )
        .await;
    assert_eq!(error_code(&refused), ErrorCode::Forbidden.code());
    let from_node = node
        .call(
            "approvals.respond",
            json!({"id": asked["id"], "decision": "allow-once"}),
        )
        .await;
    assert_eq!(error_code(&from_node), ErrorCode::Forbidden.code());
    let listed = writer.call("approvals.pending", json!({})).await;
    assert_eq!(error_code(&listed), ErrorCode::Forbidden.code());
    approver
        .call(
            "approvals.respond",
            json!({"id": asked["id"], "decision": "deny"}),
        )
        .await;
    // The writer saw the turn, never the approval request.
    loop {
        let frame = writer.recv().await;
        assert_ne!(frame["event"], "approvals.requested");
        if frame["event"] == "agent.tool" && frame["data"]["phase"] == "end" {
            break;
        }
    }
}

#[tokio::test]
async fn policy_decides_without_asking_and_commands_are_bounded() {
    // security = deny: refused, nobody asked.
    let (_upstream, gw) = gateway(r#"{"command": "echo no"}"#, "security = \"deny\"", "").await;
    let mut ws = gw.operator().await;
    ws.call("chat", json!({"message": "x", "sessionKey": "k"}))
        .await;
    let end = tool_end(&mut ws).await;
    assert!(
        end["error"]
            .as_str()
            .unwrap()
            .contains("exec.security = deny"),
        "{end}"
    );
    assert_eq!(audit(&mut ws).await[0]["decision"], "denied");

    // An allowlisted command runs at once, with a clean environment.
    let upstream = FakeOpenAi::start(Script::ToolThenText(
        "exec",
        r#"{"command": "env"}"#,
        vec!["ok"],
    ))
    .await;
    let dir = temp_dir("exec-env");
    let config = dir.join("clawgate.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[agents]\ndefault = \"gpt\"\n[agents.gpt]\nprovider = \"openai\"\nbaseUrl = \"{}\"\n\
             apiKey = \"${{SECRET_KEY}}\"\nmodel = \"fake-model\"\ntools = [\"exec\"]\n[agents.gpt.exec]\nask = \"off\"\nallowlist = [\"env\", \"sleep *\", \"seq *\"]\nmaxOutputBytes = 1024\n",
            token_config(),
            upstream.base_url
        ),
    )
    .unwrap();
    let gw = TestGateway::spawn(
        &dir,
        &["--config", config.to_str().unwrap()],
        &[("SECRET_KEY", "sk-must-not-leak")],
    );
    let mut ws = gw.operator().await;
    let chat = ws
        .call("chat", json!({"message": "x", "sessionKey": "k"}))
        .await;
    assert!(chat["error"].is_null(), "{chat}");
    let end = tool_end(&mut ws).await;
    let env = end["result"]["stdout"].as_str().unwrap();
    assert!(env.contains("PATH="), "{env}");
    assert!(
        !env.contains("sk-must-not-leak") && !env.contains("CLAWGATE"),
        "{env}"
    );
    assert_eq!(audit(&mut ws).await[0]["decision"], "allowed");
    drop(ws);
    drop(gw);

    // Outside the allowlist with ask = off: refused.
    let (_upstream, gw) = gateway(r#"{"command": "echo hi"}"#, "ask = \"off\"", "").await;
    let mut ws = gw.operator().await;
    ws.call("chat", json!({"message": "x", "sessionKey": "k"}))
        .await;
    let end = tool_end(&mut ws).await;
    assert!(end["error"]
        .as_str()
        .unwrap()
        .contains("not in this agent's exec allowlist"));

    // Long commands are killed at their timeout; long output is capped.
    let (_upstream, gw) = gateway(
        r#"{"command": "sleep 5", "timeoutMs": 300}"#,
        "security = \"full\"",
        "",
    )
    .await;
    let mut ws = gw.operator().await;
    let started = std::time::Instant::now();
    ws.call("chat", json!({"message": "x", "sessionKey": "k"}))
        .await;
    let end = tool_end(&mut ws).await;
    assert_eq!(end["result"]["timedOut"], true, "{end}");
    assert!(started.elapsed() < Duration::from_secs(4));
    // A child that left the process group dies with the command, and the
    // output written before the timeout is kept.
    let (_upstream, gw) = gateway(
        r#"{"command": "sh -c 'setsid sleep 97 & echo partial; sleep 30'", "timeoutMs": 700}"#,
        "security = \"full\"",
        "",
    )
    .await;
    let mut ws = gw.operator().await;
    ws.call("chat", json!({"message": "x", "sessionKey": "k"}))
        .await;
    let end = tool_end(&mut ws).await;
    assert_eq!(end["result"]["timedOut"], true, "{end}");
    assert_eq!(end["result"]["stdout"], "partial\n", "{end}");
    let survivors: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.trim() == "sleep 97")
        .collect();
    assert!(survivors.is_empty(), "{survivors:?}");
    let (_upstream, gw) = gateway(
        r#"{"command": "seq 1 20000"}"#,
        "security = \"full\"\nmaxOutputBytes = 1024",
        "",
    )
    .await;
    let mut ws = gw.operator().await;
    ws.call("chat", json!({"message": "x", "sessionKey": "k"}))
        .await;
    let end = tool_end(&mut ws).await;
    assert_eq!(end["result"]["truncated"], true);
    assert_eq!(end["result"]["stdout"].as_str().unwrap().len(), 1024);
    assert_eq!(end["result"]["exitCode"], 0);
}

#[tokio::test]
async fn exec_on_a_node_runs_the_approved_argv_there() {
    let (_unused, gw) = gateway(
        r#"{"command": "true"}"#,
        "",
        "[nodes]\nautoApproveLoopback = true\n",
    )
    .await;
    let mut node = gw.raw().await;
    node.call(
        "connect",
        json!({"protocol": {"min": 1, "max": 1}, "client": {"name": "n", "version": "1"},
               "role": "node", "auth": {"token": TOKEN}}),
    )
    .await;
    let paired = node
        .call(
            "nodes.register",
            json!({"name": "box", "platform": "linux", "commands": ["system.run"]}),
        )
        .await;
    let node_id = paired["result"]["nodeId"].as_str().unwrap().to_string();
    // A model that asks to run on this node, swapped in by a hot reload.
    let arguments: &'static str =
        Box::leak(format!(r#"{{"command": "uname -a", "nodeId": "{node_id}"}}"#).into_boxed_str());
    let upstream = FakeOpenAi::start(Script::ToolThenText("exec", arguments, vec!["ok"])).await;
    let mut approver = gw.operator().await;
    let set = approver
        .call(
            "config.set",
            json!({"key": "agents.gpt.baseUrl", "value": upstream.base_url}),
        )
        .await;
    assert!(set["error"].is_null(), "{set}");
    let mut user = gw.operator().await;
    user.request("chat", json!({"message": "where", "sessionKey": "n1"}))
        .await;
    let asked = answer_next(&mut approver, "allow-once").await;
    assert_eq!(asked["nodeId"], node_id.as_str());
    assert_eq!(asked["argv"], json!(["uname", "-a"]));
    let request = node.event("nodes.invoke.request").await["data"].clone();
    assert_eq!(request["command"], "system.run");
    assert_eq!(
        request["params"]["argv"], asked["argv"],
        "exactly the approved argv"
    );
    node.call(
        "nodes.result",
        json!({"invokeId": request["invokeId"], "ok": true, "payload": {"exitCode": 0, "stdout": "Linux box\n"}}),
    )
    .await;
    let end = tool_end(&mut user).await;
    assert_eq!(end["result"]["ok"], true, "{end}");
    assert_eq!(end["result"]["payload"]["stdout"], "Linux box\n");
    assert_eq!(audit(&mut approver).await[0]["nodeId"], node_id.as_str());
}

#[tokio::test]
async fn time_spent_waiting_for_a_person_does_not_count_against_the_model() {
    let upstream = FakeOpenAi::start(Script::ToolThenText(
        "exec",
        r#"{"command": "echo late"}"#,
        vec!["ok"],
    ))
    .await;
    // The model must answer each call within 500 ms; the person takes longer.
    let gw = TestGateway::start_with_sections(&format!(
        "[agents]\ndefault = \"gpt\"\n\n[agents.gpt]\nprovider = \"openai\"\nbaseUrl = \"{}\"\n\
         model = \"fake-model\"\ntools = [\"exec\"]\ntimeoutMs = 500\n",
        upstream.base_url
    ))
    .await;
    let mut approver = gw.operator().await;
    let mut user = gw.operator().await;
    let chat = user
        .request("chat", json!({"message": "slowly", "sessionKey": "t1"}))
        .await;
    approver.event("approvals.requested").await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    answer_next_pending(&mut approver, "allow-once").await;
    assert_eq!(tool_end(&mut user).await["result"]["stdout"], "late\n");
    let done = reply(&mut user, &chat).await;
    assert_eq!(done["result"]["message"]["content"], "ok", "{done}");
}

/// Answers the oldest pending approval.
async fn answer_next_pending(approver: &mut Ws, decision: &str) {
    let pending = approver.call("approvals.pending", json!({})).await;
    let id = pending["result"]["approvals"][0]["id"].clone();
    let answer = approver
        .call("approvals.respond", json!({"id": id, "decision": decision}))
        .await;
    assert!(answer["error"].is_null(), "{answer}");
}

#[tokio::test]
async fn an_openclaw_client_answers_exec_approvals_in_openclaws_shape() {
    use crate::openclaw_v4::{challenged, conforms, request, v4_event};
    let (_upstream, gw) = gateway(r#"{"command": "echo hi"}"#, "", "").await;
    let (mut approver, _) = challenged(&gw).await;
    let hello = request(
        &mut approver,
        "c",
        "connect",
        json!({
            "minProtocol": 4, "maxProtocol": 4,
            "client": {"id": "openclaw-macos", "version": "2026.9.6", "platform": "darwin", "mode": "ui"},
            "role": "operator", "scopes": ["operator.read", "operator.approvals"],
            "auth": {"token": TOKEN},
        }),
    )
    .await;
    assert_eq!(hello["ok"], true, "{hello}");
    let mut user = gw.operator().await;
    let chat = user
        .request("chat", json!({"message": "say hi", "sessionKey": "v4"}))
        .await;

    let asked = v4_event(&mut approver, "exec.approval.requested").await["payload"].clone();
    conforms("/definitions/ExecApprovalRequestParams", &asked["request"]);
    assert_eq!(asked["request"]["commandArgv"], json!(["echo", "hi"]));
    assert_eq!(asked["request"]["host"], "gateway");
    let id = asked["id"].as_str().unwrap().to_string();
    let listed = request(&mut approver, "l", "exec.approval.list", json!({})).await;
    assert_eq!(listed["payload"][0]["id"], id.as_str(), "{listed}");
    let got = request(&mut approver, "g", "exec.approval.get", json!({"id": id})).await;
    assert_eq!(got["payload"], asked);

    let resolve = json!({"id": id, "decision": "allow-once"});
    conforms("/definitions/ExecApprovalResolveParams", &resolve);
    let answered = request(&mut approver, "r", "exec.approval.resolve", resolve).await;
    assert_eq!(answered["payload"], json!({"ok": true}), "{answered}");
    let resolved = v4_event(&mut approver, "exec.approval.resolved").await["payload"].clone();
    assert_eq!(resolved["decision"], "allow-once");
    let end = tool_end(&mut user).await;
    assert_eq!(end["result"]["stdout"], "hi\n", "{end}");
    reply(&mut user, &chat).await;

    // Answered: it is gone, and answered or unknown ids have OpenClaw's
    // code.
    let again = request(
        &mut approver,
        "r1",
        "exec.approval.resolve",
        json!({"id": id, "decision": "deny"}),
    )
    .await;
    assert_eq!(again["error"]["code"], "APPROVAL_NOT_FOUND", "{again}");
    let gone = request(&mut approver, "g2", "exec.approval.get", json!({"id": id})).await;
    assert_eq!(gone["error"]["code"], "APPROVAL_NOT_FOUND", "{gone}");
    let unknown = request(
        &mut approver,
        "r2",
        "exec.approval.resolve",
        json!({"id": "appr-nope", "decision": "deny"}),
    )
    .await;
    assert_eq!(unknown["error"]["code"], "APPROVAL_NOT_FOUND", "{unknown}");
}

#[tokio::test]
async fn openclaws_unified_approval_methods_show_and_answer_exec_approvals() {
    use crate::openclaw_v4::{challenged, conforms, request, v4_event};
    let (_upstream, gw) = gateway(r#"{"command": "echo hi"}"#, "", "").await;
    let (mut approver, _) = challenged(&gw).await;
    let hello = request(
        &mut approver,
        "c",
        "connect",
        json!({
            "minProtocol": 4, "maxProtocol": 4,
            "client": {"id": "openclaw-ios", "version": "2026.9.6", "platform": "ios", "mode": "ui"},
            "role": "operator", "scopes": ["operator.approvals"],
            "auth": {"token": TOKEN},
        }),
    )
    .await;
    assert_eq!(hello["ok"], true, "{hello}");
    let mut user = gw.operator().await;
    let chat = user
        .request("chat", json!({"message": "say hi", "sessionKey": "v4"}))
        .await;
    let asked = v4_event(&mut approver, "exec.approval.requested").await["payload"].clone();
    let id = asked["id"].as_str().unwrap().to_string();

    let pending = request(&mut approver, "g", "approval.get", json!({"id": id})).await;
    conforms("/definitions/ApprovalGetResult", &pending["payload"]);
    let approval = &pending["payload"]["approval"];
    assert_eq!(approval["status"], "pending", "{pending}");
    assert_eq!(approval["presentation"]["commandText"], "echo hi");
    assert_eq!(approval["sourceSessionKey"], "v4");
    let wrong_kind = request(
        &mut approver,
        "k",
        "approval.resolve",
        json!({"id": id, "kind": "plugin", "decision": "deny"}),
    )
    .await;
    assert_eq!(wrong_kind["error"]["code"], "APPROVAL_NOT_FOUND");

    let resolve = json!({"id": id, "kind": "exec", "decision": "allow-once"});
    conforms("/definitions/ApprovalResolveParams", &resolve);
    let answered = request(&mut approver, "r", "approval.resolve", resolve).await;
    conforms("/definitions/ApprovalResolveResult", &answered["payload"]);
    assert_eq!(answered["payload"]["applied"], true, "{answered}");
    assert_eq!(answered["payload"]["approval"]["status"], "allowed");
    assert_eq!(answered["payload"]["approval"]["decision"], "allow-once");
    let end = tool_end(&mut user).await;
    assert_eq!(end["result"]["stdout"], "hi\n", "{end}");
    reply(&mut user, &chat).await;

    // First answer wins; the answered one stays readable.
    let late = request(
        &mut approver,
        "r2",
        "approval.resolve",
        json!({"id": id, "kind": "exec", "decision": "deny"}),
    )
    .await;
    assert_eq!(late["payload"]["applied"], false, "{late}");
    assert_eq!(late["payload"]["approval"]["status"], "allowed");
    let history = request(&mut approver, "h", "approval.history", json!({"limit": 10})).await;
    conforms("/definitions/ApprovalHistoryResult", &history["payload"]);
    assert_eq!(
        history["payload"]["items"][0]["id"],
        id.as_str(),
        "{history}"
    );
    let unknown = request(
        &mut approver,
        "u",
        "approval.get",
        json!({"id": "appr-nope"}),
    )
    .await;
    assert_eq!(unknown["error"]["code"], "APPROVAL_NOT_FOUND", "{unknown}");
}
