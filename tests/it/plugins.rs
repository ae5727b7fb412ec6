//! Out-of-process plugins, with the example plugin (examples/plugins/
//! notes.py) and a misbehaving one (tests/plugins/rogue.py), each a real
//! Python process the gateway starts.

use crate::fake_openai::{FakeOpenAi, Script};
use crate::support::{bin, save_file, temp_dir, TestGateway, Ws, TOKEN, WAIT};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// The Python interpreter itself (not a shim such as pyenv's, which is a
/// shell script that adds its own environment).
pub fn python() -> &'static str {
    static PYTHON: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PYTHON.get_or_init(|| {
        let out = std::process::Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .expect("python3");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    })
}

/// A `[plugins.<name>]` section running a Python script of the repository.
pub fn plugin_section(name: &str, script: &str, extra: &str) -> String {
    let path = root().join(script);
    format!(
        "[plugins.{name}]\ncommand = {:?}\nargs = [{:?}{extra}]\n",
        python(),
        path.to_str().unwrap()
    )
}

/// Waits until `plugins.status` shows `name` in `state`; returns its status.
pub async fn wait_state(ws: &mut Ws, name: &str, state: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let status = ws.call("plugins.status", json!({})).await;
        let found = status["result"]["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .cloned();
        if let Some(p) = found.filter(|p| p["state"] == state) {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "plugin {name} never {state}: {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn error(frame: &Value) -> (i64, String) {
    (
        frame["error"]["code"]
            .as_i64()
            .unwrap_or_else(|| panic!("not an error: {frame}")),
        frame["error"]["message"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn a_plugin_adds_methods_and_events_that_clients_use_like_the_gateways_own() {
    let dir = temp_dir("notes");
    let file = dir.join("notes.json");
    let section = plugin_section("notes", "examples/plugins/notes.py", "")
        + &format!("config = {{ file = {:?} }}\n", file.to_str().unwrap());
    let gw = TestGateway::start_with_sections(&section).await;
    let mut ws = gw.operator().await;
    let status = wait_state(&mut ws, "notes", "running").await;
    assert_eq!(status["version"], "1.0.0");
    assert_eq!(status["methods"], json!(["notes.add", "notes.list"]));
    assert!(status["pid"].as_u64().unwrap() > 0);

    // A client connecting now sees the plugin's methods and events in its hello.
    let mut other = gw.raw().await;
    let hello = other.connect(json!({"token": TOKEN}), None).await;
    assert!(hello["result"]["methods"]
        .as_array()
        .unwrap()
        .contains(&json!("notes.add")));
    assert!(hello["result"]["events"]
        .as_array()
        .unwrap()
        .contains(&json!("notes.added")));
    let status = ws.call("status", json!({})).await;
    assert_eq!(status["result"]["plugins"][0]["name"], "notes", "{status}");
    assert_eq!(status["result"]["plugins"][0]["state"], "running");
    assert_eq!(
        hello["result"]["pluginScopes"],
        json!({"notes.add": "operator.write", "notes.list": "operator.read", "notes.added": "operator.read"})
    );

    let added = ws.call("notes.add", json!({"text": "buy milk"})).await;
    assert_eq!(added["result"], json!({"id": 1, "count": 1}), "{added}");
    // The event reaches every client allowed to see it.
    let event = other.event("notes.added").await;
    assert_eq!(event["data"], json!({"id": 1, "text": "buy milk"}));
    let listed = ws.call("notes.list", json!({})).await;
    assert_eq!(listed["result"]["notes"][0]["text"], "buy milk");
    // The plugin kept it where its config section said.
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(saved[0]["text"], "buy milk");

    // Scopes are the gateway's: a read-only client may list, not add.
    let mut reader = gw.raw().await;
    reader
        .connect(json!({"token": TOKEN}), Some(json!(["operator.read"])))
        .await;
    let refused = reader.call("notes.add", json!({"text": "x"})).await;
    assert_eq!(
        error(&refused),
        (-32002, "notes.add requires scope operator.write".into())
    );
    assert!(reader
        .call("notes.list", json!({}))
        .await
        .get("result")
        .is_some());
    // Unknown methods under the plugin's name are unknown.
    assert_eq!(error(&ws.call("notes.burn", json!({})).await).0, -32601);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn the_gateway_holds_plugin_params_results_and_events_to_the_manifest() {
    let gw =
        TestGateway::start_with_sections(&plugin_section("rogue", "tests/plugins/rogue.py", ""))
            .await;
    let mut ws = gw.operator().await;
    wait_state(&mut ws, "rogue", "running").await;

    // Params that do not match are refused before the plugin sees them.
    let refused = ws
        .call("rogue.echo", json!({"text": "far too long for ten"}))
        .await;
    let (code, message) = error(&refused);
    assert_eq!(code, -32602, "{refused}");
    assert!(
        message.starts_with("invalid params for rogue.echo"),
        "{message}"
    );
    assert_eq!(refused["error"]["data"]["errors"][0]["pointer"], "/text");
    assert_eq!(
        error(&ws.call("rogue.echo", json!({"txt": "hi"})).await).0,
        -32602
    );
    let ok = ws.call("rogue.echo", json!({"text": "hi"})).await;
    assert_eq!(ok["result"], json!({"text": "hi"}));
    let seen = ws.call("rogue.seen", json!({})).await;
    assert_eq!(
        seen["result"]["seen"],
        json!(["echo"]),
        "the plugin saw only the valid call"
    );

    // A result that breaks its schema never reaches the client.
    let bad = ws.call("rogue.bad", json!({})).await;
    let (code, message) = error(&bad);
    assert_eq!(code, -32603);
    assert!(
        message.contains(
            "plugin rogue answered rogue.bad with a result that does not match its schema"
        ),
        "{message}"
    );
    assert!(!bad.to_string().contains("never forwarded"));

    // A plugin's own error keeps its code, attributed to the plugin.
    let failed = ws.call("rogue.fail", json!({})).await;
    assert_eq!(
        error(&failed),
        (-32008, "plugin rogue: no such thing".into())
    );

    // Events: undeclared ones and ones that break their schema are dropped.
    assert!(ws
        .call("rogue.emit", json!({}))
        .await
        .get("result")
        .is_some());
    let ping = ws.event("rogue.ping").await;
    assert_eq!(ping["data"], json!({"n": 7}));

    // A method needing operator.admin, from a client with operator.read only.
    let mut reader = gw.raw().await;
    reader
        .connect(json!({"token": TOKEN}), Some(json!(["operator.read"])))
        .await;
    assert_eq!(error(&reader.call("rogue.wipe", json!({})).await).0, -32002);
    // And the reader never receives events beyond its scopes, but does get rogue.ping.
    assert!(reader
        .call("rogue.emit", json!({}))
        .await
        .get("result")
        .is_some());
    assert_eq!(reader.event("rogue.ping").await["data"], json!({"n": 7}));
}

#[tokio::test]
async fn a_plugin_runs_with_a_clean_environment() {
    let section =
        plugin_section("rogue", "tests/plugins/rogue.py", "") + "env = { GREETING = \"hi\" }\n";
    let dir = temp_dir("plugin-env");
    save_file(
        &dir.join("clawgate.toml"),
        &format!("{}\n{section}", crate::support::token_config()),
    );
    let config = dir.join("clawgate.toml");
    let gw = TestGateway::spawn(
        &dir,
        &["--config", config.to_str().unwrap()],
        &[
            ("CLAWGATE_TOKEN", "from-the-environment"),
            ("AWS_SECRET_ACCESS_KEY", "leak"),
        ],
    );
    let mut ws = gw.operator().await;
    wait_state(&mut ws, "rogue", "running").await;
    let env = ws.call("rogue.env", json!({})).await;
    let mut names: Vec<String> = serde_json::from_value(env["result"]["env"].clone()).unwrap();
    // Python may add LC_CTYPE when it coerces a C locale.
    names.retain(|n| n != "LC_CTYPE");
    assert_eq!(names, vec!["GREETING", "PATH"], "{env}");

    // It runs nicer than the gateway, so spinning cannot starve it.
    let pid = wait_state(&mut ws, "rogue", "running").await["pid"]
        .as_u64()
        .unwrap();
    let nice = |pid: u64| -> i64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        // Fields after the command name (which may hold spaces): state is 3rd, nice 19th.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        after.split(' ').nth(16).unwrap().parse().unwrap()
    };
    assert_eq!(nice(pid) - nice(u64::from(gw.child.id())), 10);
}

#[tokio::test]
async fn a_crashing_or_hanging_plugin_fails_its_calls_and_the_gateway_carries_on() {
    let section = plugin_section("rogue", "tests/plugins/rogue.py", "") + "callTimeoutMs = 300\n";
    let gw = TestGateway::start_with_sections(&section).await;
    let mut ws = gw.operator().await;
    wait_state(&mut ws, "rogue", "running").await;

    let started = Instant::now();
    let hung = ws.call("rogue.hang", json!({})).await;
    let (code, message) = error(&hung);
    assert_eq!(code, -32005, "{hung}");
    assert!(
        message.contains("did not answer rogue.hang within 300 ms"),
        "{message}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    // The plugin was told it may stop.
    let seen = ws.call("rogue.seen", json!({})).await;
    assert!(
        seen["result"]["seen"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s.as_str().unwrap().starts_with("cancel ")),
        "{seen}"
    );

    let crashed = ws.call("rogue.crash", json!({})).await;
    let (code, message) = error(&crashed);
    assert_eq!(code, -32006, "{crashed}");
    assert!(
        message.contains("plugin rogue stopped during the call"),
        "{message}"
    );
    assert_eq!(crashed["error"]["retryAfterMs"], 1000, "{crashed}");
    // The gateway answers meanwhile, and the plugin comes back.
    assert!(ws.call("health", json!({})).await.get("result").is_some());
    let status = wait_state(&mut ws, "rogue", "running").await;
    assert_eq!(status["restarts"], 1);
    assert!(
        status["lastError"].as_str().unwrap().contains("exited"),
        "{status}"
    );
    let health = ws.call("health", json!({})).await;
    let rogue = &health["result"]["plugins"]["rogue"];
    assert_eq!(rogue["state"], "running", "{health}");
    assert_eq!(rogue["restarts"], 1, "{health}");
    assert_eq!(
        ws.call("rogue.echo", json!({"text": "back"})).await["result"],
        json!({"text": "back"})
    );
}

#[tokio::test]
async fn a_plugin_still_starting_answers_unavailable_and_ready_does_not_wait_for_it() {
    let started = Instant::now();
    let section = plugin_section(
        "rogue",
        "tests/plugins/rogue.py",
        ", \"--slow-start\", \"1.5\"",
    );
    let gw = TestGateway::start_with_sections(&section).await;
    let mut ws = gw.operator().await;
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "ready waited for the plugin"
    );
    let early = ws.call("rogue.echo", json!({"text": "hi"})).await;
    let (code, message) = error(&early);
    assert_eq!(
        (code, message.as_str()),
        (-32006, "plugin rogue is starting"),
        "{early}"
    );
    wait_state(&mut ws, "rogue", "running").await;
    assert_eq!(
        ws.call("rogue.echo", json!({"text": "hi"})).await["result"],
        json!({"text": "hi"})
    );
}

#[tokio::test]
async fn a_refused_manifest_is_reported_with_its_location_and_retried() {
    let section = plugin_section("rogue", "tests/plugins/rogue.py", ", \"--bad-manifest\"");
    let gw = TestGateway::start_with_sections(&section).await;
    let mut ws = gw.operator().await;
    let status = wait_state(&mut ws, "rogue", "failed").await;
    let why = status["lastError"].as_str().unwrap();
    assert!(why.starts_with("the manifest is invalid:"), "{why}");
    assert!(why.contains("/methods/echo/scope"), "{why}");
    assert!(
        why.contains("/methods/echo") && why.contains("result"),
        "{why}"
    );
    let call = ws.call("rogue.echo", json!({"text": "hi"})).await;
    let (code, message) = error(&call);
    assert_eq!(code, -32006);
    assert!(
        message.starts_with("plugin rogue failed and is being restarted: the manifest is invalid"),
        "{message}"
    );
}

/// `clawgate plugin check` on `manifest`: (exit code, stdout, stderr).
fn plugin_check(dir: &std::path::Path, manifest: &Value) -> (Option<i32>, String, String) {
    let path = dir.join("manifest.json");
    std::fs::write(&path, manifest.to_string()).unwrap();
    let out = std::process::Command::new(bin())
        .args(["plugin", "check"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn plugin_check_locates_every_problem_of_a_manifest() {
    let dir = temp_dir("manifest");
    let manifest = json!({
        "name": "weather", "version": "1.0.0", "protocol": {"min": 1, "max": 1},
        "methods": {"forecast": {"summary": "s", "scope": "operator.read",
            "params": {"type": "object"}, "result": {"type": "object"}}},
        "events": {"alert": {"summary": "s", "scope": "operator.read", "payload": {"type": "object"}}}
    });
    let (code, stdout, _) = plugin_check(&dir, &manifest);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.contains("method weather.forecast (scope operator.read)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("event  weather.alert (scope operator.read)"),
        "{stdout}"
    );

    let mut bad = manifest.clone();
    bad["protocol"] = json!({"min": 2, "max": 3});
    bad["methods"]["forecast"]["params"] =
        json!({"type": "object", "properties": {"x": {"$ref": "https://example.com/s.json"}}});
    bad["methods"]["Forecast"] = bad["methods"]["forecast"].clone();
    let (code, _, stderr) = plugin_check(&dir, &bad);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("the manifest is invalid:") && stderr.contains("/methods"),
        "{stderr}"
    );
    bad["methods"].as_object_mut().unwrap().remove("Forecast");
    let (_, _, stderr) = plugin_check(&dir, &bad);
    assert!(
        stderr.contains("speaks plugin protocol 2..=3; this gateway speaks 1"),
        "{stderr}"
    );
    bad["protocol"] = json!({"min": 1, "max": 1});
    let (code, _, stderr) = plugin_check(&dir, &bad);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("/methods/forecast/params is not a usable JSON Schema"),
        "{stderr}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn plugins_are_added_and_removed_by_editing_the_file_never_over_rpc() {
    let gw = TestGateway::start_with_sections("").await;
    let mut ws = gw.operator().await;
    assert_eq!(
        error(&ws.call("rogue.echo", json!({"text": "hi"})).await).0,
        -32601
    );

    // An admin client cannot make the gateway start a program.
    let set = ws
        .call(
            "config.set",
            json!({"key": "plugins.rogue.command", "value": "/bin/sh"}),
        )
        .await;
    let (code, message) = error(&set);
    assert_eq!(code, -32002, "{set}");
    assert_eq!(
        message,
        "plugins.rogue.command can only be changed in the config file on disk, not over RPC"
    );

    // The owner adds it in the file: it starts without a restart.
    let base = std::fs::read_to_string(gw.config_path()).unwrap();
    let section = plugin_section("rogue", "tests/plugins/rogue.py", "");
    save_file(&gw.config_path(), &format!("{base}\n{section}"));
    let status = wait_state(&mut ws, "rogue", "running").await;
    let pid = status["pid"].as_u64().unwrap();
    assert_eq!(
        ws.call("rogue.echo", json!({"text": "hi"})).await["result"],
        json!({"text": "hi"})
    );

    // Settings that are not file-only may change over RPC; the plugin restarts alone.
    let set = ws
        .call(
            "config.set",
            json!({"key": "plugins.rogue.callTimeoutMs", "value": 2000}),
        )
        .await;
    assert!(set.get("result").is_some(), "{set}");
    let deadline = Instant::now() + WAIT;
    loop {
        let status = wait_state(&mut ws, "rogue", "running").await;
        if status["pid"].as_u64() != Some(pid) {
            break;
        }
        assert!(Instant::now() < deadline, "the plugin was not restarted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Disabling it over RPC is allowed.
    let set = ws
        .call(
            "config.set",
            json!({"key": "plugins.rogue.enabled", "value": false}),
        )
        .await;
    assert!(set.get("result").is_some(), "{set}");
    wait_state(&mut ws, "rogue", "disabled").await;
    let (code, message) = error(&ws.call("rogue.echo", json!({"text": "hi"})).await);
    assert_eq!(
        (code, message.as_str()),
        (-32006, "plugin rogue is disabled (plugins.rogue.enabled)")
    );

    // Removing it from the file stops it; its methods are gone.
    save_file(&gw.config_path(), &base);
    let deadline = Instant::now() + WAIT;
    loop {
        let status = ws.call("plugins.status", json!({})).await;
        if status["result"]["plugins"] == json!([]) {
            break;
        }
        assert!(Instant::now() < deadline, "still listed: {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        error(&ws.call("rogue.echo", json!({"text": "hi"})).await).0,
        -32601
    );
}

#[tokio::test]
async fn a_plugin_cannot_take_the_gateways_own_names() {
    let dir = temp_dir("plugin-name");
    let config = dir.join("clawgate.toml");
    save_file(&config, "[plugins.cron]\ncommand = \"python3\"\n");
    let out = std::process::Command::new(bin())
        .args(["config", "validate"])
        .arg(&config)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("cron is the gateway's own namespace"),
        "{text}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn stopping_the_gateway_stops_its_plugins() {
    let mut gw =
        TestGateway::start_with_sections(&plugin_section("rogue", "tests/plugins/rogue.py", ""))
            .await;
    let mut ws = gw.operator().await;
    let pid = wait_state(&mut ws, "rogue", "running").await["pid"]
        .as_u64()
        .unwrap();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    drop(ws);
    let status = gw.terminate();
    assert!(status.success(), "{status:?}");
    let deadline = Instant::now() + WAIT;
    // Gone, or a zombie reaped by init.
    while std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z ")) {
        assert!(
            Instant::now() < deadline,
            "plugin {pid} outlived the gateway"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_agent_calls_a_plugin_tool_announced_like_the_built_in_ones() {
    let upstream = FakeOpenAi::start(Script::ToolByMessage(
        "notes_add",
        |message| message.to_string(),
        vec!["noted"],
    ))
    .await;
    let sections = format!(
        "[agents]\ndefault = \"gpt\"\n[agents.gpt]\nprovider = \"openai\"\nbaseUrl = \"{}\"\nmodel = \"m\"\ntools = [\"notes.add\"]\n{}",
        upstream.base_url,
        plugin_section("notes", "examples/plugins/notes.py", "")
    );
    let gw = TestGateway::start_with_sections(&sections).await;
    let mut ws = gw.operator().await;
    wait_state(&mut ws, "notes", "running").await;
    let reply = ws
        .call(
            "chat",
            json!({"message": "{\"text\": \"buy milk\"}", "sessionKey": "s"}),
        )
        .await;
    assert_eq!(reply["result"]["message"]["content"], "noted", "{reply}");
    let start = ws.event("agent.tool").await;
    assert_eq!(start["data"]["phase"], "start");
    assert_eq!(start["data"]["name"], "notes_add");
    let end = ws.event("agent.tool").await;
    assert_eq!(end["data"]["phase"], "end");
    assert_eq!(end["data"]["result"], json!({"id": 1, "count": 1}), "{end}");
    let listed = ws.call("notes.list", json!({})).await;
    assert_eq!(listed["result"]["notes"][0]["text"], "buy milk");
    // The model was offered the tool with the method's summary and params schema.
    let (_, request) = upstream.requests()[0].clone();
    let tool = &request["tools"][0]["function"];
    assert_eq!(tool["name"], "notes_add", "{request}");
    assert!(tool["description"]
        .as_str()
        .unwrap()
        .starts_with("Add a note"));
    assert_eq!(tool["parameters"]["required"], json!(["text"]));
    // notes.list is a tool too, but this agent's list does not name it.
    assert_eq!(request["tools"].as_array().unwrap().len(), 1);

    // An argument the schema refuses goes back to the model, never to the plugin.
    let reply = ws
        .call(
            "chat",
            json!({"message": "{\"text\": \"\"}", "sessionKey": "s"}),
        )
        .await;
    assert!(reply["result"].is_object(), "{reply}");
    let end = loop {
        let event = ws.event("agent.tool").await;
        if event["data"]["phase"] == "end" {
            break event;
        }
    };
    assert!(
        end["data"]["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid params for notes.add"),
        "{end}"
    );
    assert_eq!(
        ws.call("notes.list", json!({})).await["result"]["notes"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// One HTTP/1.1 request with `headers` (lines ending in \r\n) and a
/// body: status, response head, body.
async fn http(
    base: &str,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status: u16 = response[9..12].parse().unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (status, head.to_lowercase(), body.to_string())
}

#[tokio::test]
async fn a_plugin_serves_http_behind_the_gateways_checks() {
    let sections = plugin_section("rogue", "tests/plugins/rogue.py", "")
        + &plugin_section("notes", "examples/plugins/notes.py", "")
        + &plugin_section("quiet", "tests/plugins/rogue.py", ", \"--no-http\"");
    let gw = TestGateway::start_with_sections(&sections).await;
    let mut ws = gw.operator().await;
    wait_state(&mut ws, "rogue", "running").await;
    wait_state(&mut ws, "notes", "running").await;
    wait_state(&mut ws, "quiet", "running").await;
    let bearer = format!("Authorization: Bearer {TOKEN}\r\nCookie: session=1\r\n");

    // The example plugin's page of notes.
    ws.call("notes.add", json!({"text": "buy milk"})).await;
    let (status, head, body) = http(&gw.http, "GET", "/plugins/notes/", &bearer, "").await;
    assert_eq!((status, body.as_str()), (200, "1. buy milk\n"), "{head}");
    assert!(
        head.contains("content-type: text/plain; charset=utf-8"),
        "{head}"
    );

    let (status, head, body) = http(
        &gw.http,
        "POST",
        "/plugins/rogue/items/7?full=1",
        &format!("{bearer}Content-Type: application/json\r\n"),
        "{\"a\": 1}",
    )
    .await;
    assert_eq!(status, 201, "{head}\n{body}");
    let seen: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        seen,
        json!({"method": "POST", "path": "/items/7", "query": "full=1",
               "headers": {"content-type": "application/json"}, "body": "{\"a\": 1}"}),
        "only the body and harmless headers reach the plugin"
    );
    assert!(head.contains("content-type: application/json"), "{head}");
    assert!(
        !head.contains("set-cookie") && !head.contains("x-plugin"),
        "{head}"
    );
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");

    // The credential is the gateway's.
    let (status, head, _) = http(&gw.http, "GET", "/plugins/rogue/", "", "").await;
    assert_eq!(status, 401);
    assert!(head.contains("www-authenticate: bearer"), "{head}");
    let (status, _, _) = http(
        &gw.http,
        "GET",
        "/plugins/rogue/",
        "Authorization: Bearer wrong\r\n",
        "",
    )
    .await;
    assert_eq!(status, 401);
    // A page of another origin is refused before anything else.
    let (status, _, _) = http(
        &gw.http,
        "POST",
        "/plugins/rogue/x",
        &format!("{bearer}Origin: https://evil.example\r\n"),
        "",
    )
    .await;
    assert_eq!(status, 403);
    // A response that breaks PluginHttpResponse is not passed on.
    let (status, _, body) = http(&gw.http, "GET", "/plugins/rogue/bad", &bearer, "").await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("does not match PluginHttpResponse"), "{body}");
    // Plugins without HTTP, and names of no plugin, are not found.
    assert_eq!(
        http(&gw.http, "GET", "/plugins/quiet/", &bearer, "")
            .await
            .0,
        404
    );
    assert_eq!(
        http(&gw.http, "GET", "/plugins/nobody/x", &bearer, "")
            .await
            .0,
        404
    );
    assert_eq!(
        http(&gw.http, "GET", "/plugins/nobody/x", "", "").await.0,
        401,
        "no credential, no names"
    );
}

/// The Rust example plugin (examples/room_plugin.rs), which `cargo test`
/// builds beside the test binary.
fn room_plugin() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile = exe.parent().unwrap().parent().unwrap();
    let path = profile.join("examples").join("room_plugin");
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test` (or `cargo build --examples` first)",
        path.display()
    );
    path
}

/// A `[plugins.room]` section with its chat channel's lobby account.
pub fn room_section(extra: &str, lobby: &str) -> String {
    format!(
        "[plugins.room]\ncommand = {:?}\n{extra}\n[plugins.room.channels.chat.lobby]\n{lobby}\n",
        room_plugin().to_str().unwrap()
    )
}

/// The account's line of channels.status, once it is connected.
async fn wait_account(ws: &mut Ws, channel: &str, account: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let status = ws.call("channels.status", json!({})).await;
        let found = status["result"]["channels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["channel"] == channel && c["accountId"] == account)
            .cloned();
        if let Some(c) = found.filter(|c| c["status"] == "connected") {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "{channel}:{account} never connected: {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_plugin_channel_goes_through_the_gateways_policy_agent_and_reply() {
    let lobby = "allowFrom = [\"alice\"]\ngroups = [\"#team\"]\nconfig = { topic = \"general\" }";
    let sections = room_section("grants = [\"sessions.history\"]", lobby);
    let gw = TestGateway::start_with_sections(&sections).await;
    let mut ws = gw.operator().await;
    wait_state(&mut ws, "room", "running").await;
    wait_account(&mut ws, "room.chat", "lobby").await;
    let say = |from: &str, text: &str| json!({"account": "lobby", "from": from, "text": text});

    // A stranger is dropped by the account's allowlist: the plugin did
    // nothing to filter, and no agent ever sees the message.
    let said = ws.call("room.say", say("mallory", "let me in")).await;
    assert_eq!(said["result"], json!({"accepted": true}), "{said}");
    ws.call("room.say", say("alice", "hello room")).await;
    let delivered = ws.event("room.delivered").await;
    assert_eq!(
        delivered["data"],
        json!({"account": "lobby", "peer": "alice", "text": "hello room"}),
        "the echo agent's answer to alice, and nothing for mallory"
    );
    // In a group, alice is answered only when she mentions the assistant,
    // and the reply goes to the group.
    let in_group = |mentioned: bool| {
        json!({"account": "lobby", "from": "alice", "text": "team news",
               "group": "#team", "mentioned": mentioned})
    };
    ws.call("room.say", in_group(false)).await;
    ws.call("room.say", in_group(true)).await;
    let delivered = ws.event("room.delivered").await;
    assert_eq!(delivered["data"]["group"], "#team", "{delivered}");
    // The reply is counted once the plugin has answered its delivery.
    let deadline = Instant::now() + WAIT;
    let account = loop {
        let account = wait_account(&mut ws, "room.chat", "lobby").await;
        if account["replied"] == 2 || Instant::now() > deadline {
            break account;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        (
            &account["received"],
            &account["dropped"],
            &account["replied"]
        ),
        (&json!(4), &json!(2), &json!(2)),
        "{account}"
    );

    // The plugin calls back sessions.history, which its grants allow:
    // direct messages share the main session (session.dmScope main).
    let sessions = ws.call("sessions", json!({})).await;
    let keys: Vec<&str> = sessions["result"]["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["agent:main:room.chat:group:#team", "agent:main:main"]
    );
    let recalled = ws
        .call("room.recall", json!({"sessionKey": "agent:main:main"}))
        .await;
    assert_eq!(
        recalled["result"],
        json!({"messages": 2, "last": "hello room"}),
        "{recalled}"
    );

    // Its HTTP route shows what it delivered.
    let bearer = format!("Authorization: Bearer {TOKEN}\r\n");
    let (status, _, body) = http(&gw.http, "GET", "/plugins/room/outbox", &bearer, "").await;
    assert_eq!(status, 200, "{body}");
    let outbox: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(outbox.as_array().unwrap().len(), 2, "{outbox}");
}

#[tokio::test]
async fn a_plugin_calls_back_only_the_methods_its_grants_name() {
    let gw = TestGateway::start_with_sections(&room_section("", "allowFrom = [\"alice\"]")).await;
    let mut ws = gw.operator().await;
    wait_state(&mut ws, "room", "running").await;
    let recalled = ws
        .call("room.recall", json!({"sessionKey": "agent:main:main"}))
        .await;
    assert_eq!(
        error(&recalled),
        (
            -32002,
            "plugin room: plugin room may not call sessions.history (plugins.room.grants)".into()
        )
    );

    // Grants name the gateway's methods, never connect.
    let dir = temp_dir("plugin-grants");
    let config = dir.join("clawgate.toml");
    let grants = "grants = [\"connect\", \"sessions.histroy\"]";
    save_file(&config, &room_section(grants, ""));
    let out = std::process::Command::new(bin())
        .args(["config", "validate"])
        .arg(&config)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("connect cannot be granted"), "{text}");
    assert!(text.contains("did you mean sessions.history?"), "{text}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn channel_accounts_a_plugin_cannot_take_keep_it_from_starting() {
    // An account whose config does not match the channel's schema.
    let lobby = "config = { topic = 7 }";
    let gw = TestGateway::start_with_sections(&room_section("", lobby)).await;
    let mut ws = gw.operator().await;
    let failed = wait_state(&mut ws, "room", "failed").await;
    let why = failed["lastError"].as_str().unwrap();
    assert!(
        why.starts_with(
            "plugins.room.channels.chat.lobby.config does not match the channel's config schema"
        ) && why.contains("at /topic"),
        "{why}"
    );
    // A channel kind the plugin does not provide.
    let sections = format!(
        "[plugins.room]\ncommand = {:?}\n[plugins.room.channels.fax.office]\n",
        room_plugin().to_str().unwrap()
    );
    let gw = TestGateway::start_with_sections(&sections).await;
    let mut ws = gw.operator().await;
    let failed = wait_state(&mut ws, "room", "failed").await;
    assert_eq!(
        failed["lastError"],
        "plugins.room.channels.fax: the plugin provides no channel fax (it provides: chat)"
    );
}

/// The manifest a plugin program writes as its first line.
fn manifest_of(program: &std::path::Path) -> Value {
    use std::io::BufRead;
    let mut child = std::process::Command::new(program)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    drop(child.stdin.take());
    child.wait().unwrap();
    serde_json::from_str(&line).unwrap()
}

#[tokio::test]
async fn gen_writes_typed_client_additions_for_a_plugin() {
    let dir = temp_dir("plugin-gen");
    let manifest = dir.join("room.json");
    std::fs::write(&manifest, manifest_of(&room_plugin()).to_string()).unwrap();
    let out = dir.join("out");
    let gen = std::process::Command::new(bin())
        .args(["gen", "--root"])
        .arg(root())
        .arg("--plugin")
        .arg(&manifest)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        gen.status.success(),
        "{}",
        String::from_utf8_lossy(&gen.stderr)
    );

    // TypeScript: the additions type-check against the generated client,
    // and a wrong param type does not.
    let usage = dir.join("usage.ts");
    let client = root().join("gen/typescript/client.js");
    std::fs::write(
        &usage,
        format!(
            "import {{ ClawgateClient }} from {client:?};\n\
             import {{ roomCount, onRoomDelivered }} from {:?};\n\
             export async function use(client: ClawgateClient): Promise<number> {{\n\
               onRoomDelivered(client, (data) => {{ const peer: string = data.peer; void peer; }});\n\
               // @ts-expect-error text is a string\n\
               await roomCount(client, {{ text: 7 }});\n\
               const counted = await roomCount(client, {{ text: \"a b\" }});\n\
               return counted.words + counted.chars;\n\
             }}\n",
            out.join("typescript/room.js").to_str().unwrap()
        ),
    )
    .unwrap();
    let tsconfig = dir.join("tsconfig.json");
    std::fs::write(
        &tsconfig,
        json!({"compilerOptions": {"strict": true, "noEmit": true, "module": "nodenext",
               "moduleResolution": "nodenext", "target": "es2022", "lib": ["es2022"],
               "allowJs": false}, "files": [usage]})
        .to_string(),
    )
    .unwrap();
    let tsc = std::process::Command::new(root().join("gen/tools/node_modules/.bin/tsc"))
        .args(["-p", tsconfig.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        tsc.status.success(),
        "tsc --strict failed:\n{}",
        String::from_utf8_lossy(&tsc.stdout)
    );

    // Python, against a live gateway running the plugin.
    let gw = TestGateway::start_with_sections(&room_section("", "allowFrom = [\"alice\"]")).await;
    let mut ws = gw.operator().await;
    wait_account(&mut ws, "room.chat", "lobby").await;
    let script = "import asyncio, sys\n\
        from clawgate_client import Client\n\
        import room_plugin as room\n\
        async def main():\n\
        \x20   client = Client(sys.argv[1], token=sys.argv[2])\n\
        \x20   await client.connect()\n\
        \x20   counted = await room.room_count(client, room.RoomCountParams(text='one two'))\n\
        \x20   assert (counted.words, counted.chars) == (2, 7), counted\n\
        \x20   delivered = asyncio.get_running_loop().create_future()\n\
        \x20   room.on_room_delivered(client, lambda data, seq: delivered.set_result(data))\n\
        \x20   await room.room_say(client, {'account': 'lobby', 'from': 'alice', 'text': 'hi there'})\n\
        \x20   event = await asyncio.wait_for(delivered, 10)\n\
        \x20   assert isinstance(event, room.RoomDeliveredEvent) and event.text == 'hi there', event\n\
        \x20   print('OK')\n\
        \x20   await client.close()\n\
        asyncio.run(main())\n";
    let path = format!(
        "{}:{}",
        root().join("gen/python").display(),
        out.join("python").display()
    );
    let run = tokio::process::Command::new(python())
        .args(["-c", script, &gw.url, TOKEN])
        .env("PYTHONPATH", path)
        .output()
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&run.stdout).trim(),
        "OK",
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn protocol_check_catches_a_plugin_release_that_breaks_its_own_methods() {
    let dir = temp_dir("plugin-compat");
    let old = manifest_of(&room_plugin());
    let mut new = old.clone();
    new["version"] = json!("1.1.0");
    // The count tool's result may now be a string: clients that add it up break.
    new["methods"]["count"]["result"]["properties"]["words"] =
        json!({"type": ["integer", "string"]});
    // say needs a param old callers do not send.
    new["methods"]["say"]["params"]["required"]
        .as_array_mut()
        .unwrap()
        .push(json!("channel"));
    new["methods"]["say"]["params"]["properties"]["channel"] = json!({"type": "string"});
    new["events"].as_object_mut().unwrap().remove("delivered");
    // An account config the owner wrote may no longer be accepted.
    new["channels"]["chat"]["config"]["properties"]["topic"] =
        json!({"type": "string", "maxLength": 10});
    new["methods"]["ping"] = json!({"summary": "Ping.", "scope": "operator.read",
                                    "params": {"type": "object"}, "result": {"type": "object"}});
    let (old_path, new_path) = (dir.join("room-1.0.json"), dir.join("room-1.1.json"));
    std::fs::write(&old_path, old.to_string()).unwrap();
    std::fs::write(&new_path, new.to_string()).unwrap();
    let check = |against: &std::path::Path, current: &std::path::Path| {
        let out = std::process::Command::new(bin())
            .args(["protocol", "check", "--format", "json", "--against"])
            .arg(against)
            .arg("--current")
            .arg(current)
            .output()
            .unwrap();
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        let found: Vec<(String, String)> = doc["reports"][0]["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["id"].as_str().unwrap().to_string(),
                    f["severity"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        (out.status.code(), found)
    };
    let (code, found) = check(&old_path, &new_path);
    assert_eq!(code, Some(1), "{found:?}");
    for (id, severity) in [
        ("event.removed:event room.delivered", "breaking"),
        (
            "output.type.widened:method room.count result.words",
            "breaking",
        ),
        (
            "input.property.added-required:method room.say params.channel",
            "breaking",
        ),
        (
            "config.maxLength.narrowed:config.channels.chat.*.topic",
            "breaking",
        ),
        ("method.added:method room.ping", "additive"),
    ] {
        assert!(
            found.contains(&(id.to_string(), severity.to_string())),
            "{id} not found as {severity}: {found:?}"
        );
    }
    // The same release against itself is fine.
    assert_eq!(check(&old_path, &old_path), (Some(0), vec![]));
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn plugin_methods_are_counted_beside_the_gateways_own() {
    let sections = "[gateway.http.metrics]\nenabled = true\n".to_string() + &room_section("", "");
    let gw = TestGateway::start_with_sections(&sections).await;
    let mut ws = gw.operator().await;
    wait_state(&mut ws, "room", "running").await;
    ws.call("room.count", json!({"text": "a b"})).await;
    ws.call("room.count", json!({"text": 7})).await;
    let bearer = format!("Authorization: Bearer {TOKEN}\r\n");
    let (status, _, text) = crate::support::http_get_raw(&gw.http, "/metrics", &bearer).await;
    assert_eq!(status, 200);
    for series in [
        r#"clawgate_rpc_calls_total{method="room.count",outcome="ok"} 1"#,
        r#"clawgate_rpc_calls_total{method="room.count",outcome="invalid_params"} 1"#,
        r#"clawgate_rpc_duration_seconds_count{method="room.count"} 2"#,
    ] {
        assert!(text.contains(series), "{series} missing in:\n{text}");
    }
}

#[tokio::test]
async fn a_plugin_flooding_channel_messages_is_cut_to_its_rate() {
    let sections = room_section("maxEventsPerSecond = 2", "dmPolicy = \"open\"");
    let gw = TestGateway::start_with_sections(&sections).await;
    let mut ws = gw.operator().await;
    wait_account(&mut ws, "room.chat", "lobby").await;
    for i in 0..20 {
        let say = json!({"account": "lobby", "from": format!("user{i}"), "text": "hi"});
        ws.call("room.say", say).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let account = wait_account(&mut ws, "room.chat", "lobby").await;
    let received = account["received"].as_u64().unwrap();
    assert!(
        (1..=4).contains(&received),
        "{received} of 20 messages passed a limit of 2 per second"
    );
}
