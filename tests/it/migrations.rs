//! Config format versions end to end: a file written before a rename
//! still runs (the old key read under its new name, with a warning),
//! `clawgate config upgrade` prints or rewrites it with its comments, and
//! a newer file or one with both names is refused with its location.

use crate::fake_openai::{FakeOpenAi, Script};
use crate::support::*;
use serde_json::json;
use std::path::Path;
use std::process::{Command, Output};

fn clawgate(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env_remove("CLAWGATE_CONFIG")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn old_file(upstream: &FakeOpenAi) -> String {
    format!(
        "# my gateway\n[gateway]\nport = 0\n\n[gateway.auth]\nmode = \"token\"\ntoken = \"{TOKEN}\"\n\n\
         [agents.main]\nprovider = \"openai\"\nbaseUrl = \"{}\"\nmodel = \"m\"\n# keep it short\nsystem = \"Be brief.\" # tone\n",
        upstream.base_url
    )
}

#[tokio::test]
async fn a_file_from_before_a_rename_runs_and_upgrades_with_its_comments() {
    let upstream = FakeOpenAi::start(Script::Text(vec!["ok"])).await;
    let gw = TestGateway::start_with_file(&old_file(&upstream)).await;
    let path = gw.config_path();
    let mut ws = gw.operator().await;
    let answer = ws.call("chat", json!({"message": "hi"})).await;
    assert!(answer["error"].is_null(), "{answer}");
    let body = &upstream.requests()[0].1;
    assert_eq!(body["messages"][0]["role"], "system");
    assert_eq!(body["messages"][0]["content"], "Be brief.");
    let shown = ws.call("config", json!({"key": "agents.main"})).await;
    assert_eq!(
        shown["result"]["value"]["systemPrompt"], "Be brief.",
        "{shown}"
    );

    let validated = clawgate(&["config", "validate", path.to_str().unwrap()]);
    assert!(validated.status.success());
    assert!(
        text(&validated.stderr).contains(
            "warning: agents.main.system is now agents.main.systemPrompt (config version 2"
        ),
        "{}",
        text(&validated.stderr)
    );

    let before = std::fs::read_to_string(&path).unwrap();
    let printed = clawgate(&["config", "upgrade", path.to_str().unwrap()]);
    assert!(printed.status.success());
    let upgraded = text(&printed.stdout);
    assert!(upgraded.starts_with("version = 2\n"), "{upgraded}");
    assert!(
        upgraded.contains("# keep it short\nsystemPrompt = \"Be brief.\" # tone\n"),
        "{upgraded}"
    );
    assert!(upgraded.contains("# my gateway\n[gateway]"), "{upgraded}");
    assert!(text(&printed.stderr).contains("agents.main.system → agents.main.systemPrompt"));
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        before,
        "printing leaves the file alone"
    );

    let written = clawgate(&["config", "upgrade", "--write", path.to_str().unwrap()]);
    assert!(written.status.success(), "{}", text(&written.stderr));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), upgraded);
    let clean = clawgate(&["config", "validate", path.to_str().unwrap()]);
    assert!(clean.status.success() && !text(&clean.stderr).contains("warning"));
    let again = clawgate(&["config", "upgrade", "--write", path.to_str().unwrap()]);
    assert!(text(&again.stderr).contains("already config version 2"));
    // The running gateway reloads the rewritten file with no change.
    let reloaded = ws.call("config.reload", json!({})).await;
    assert!(reloaded["error"].is_null(), "{reloaded}");
    assert_eq!(reloaded["result"]["changed"], json!([]), "{reloaded}");
}

fn refused(dir: &Path, name: &str, toml: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, toml).unwrap();
    let out = clawgate(&["config", "validate", path.to_str().unwrap()]);
    assert!(!out.status.success(), "{name} was accepted");
    text(&out.stderr)
}

#[test]
fn a_newer_file_or_both_names_are_refused_where_they_are_written() {
    let dir = temp_dir("migrations");
    let newer = refused(&dir, "newer.toml", "version = 7\n[gateway]\nport = 0\n");
    assert!(
        newer.contains("newer.toml:1:")
            && newer.contains("config version 7; this clawgate reads up to version 2"),
        "{newer}"
    );
    let both = refused(
        &dir,
        "both.toml",
        "[agents.main]\nprovider = \"echo\"\nsystem = \"a\"\nsystemPrompt = \"b\"\n",
    );
    assert!(
        both.contains("both.toml:4:")
            && both.contains("both agents.main.system (its name before config version 2) and agents.main.systemPrompt are set"),
        "{both}"
    );
    let json = dir.join("old.json");
    std::fs::write(
        &json,
        r#"{"agents": {"main": {"provider": "echo", "system": "x"}}}"#,
    )
    .unwrap();
    let out = clawgate(&["config", "upgrade", "--write", json.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(value["version"], 2);
    assert_eq!(value["agents"]["main"]["systemPrompt"], "x");
}

#[tokio::test]
async fn config_set_on_an_older_file_writes_todays_names() {
    let gw = TestGateway::start_with_sections(
        "[agents.main]\nprovider = \"echo\"\n# tone\nsystem = \"Be brief.\"\n",
    )
    .await;
    let mut ws = gw.operator().await;
    let set = ws
        .call(
            "config.set",
            json!({"key": "agents.main.systemPrompt", "value": "Be terse."}),
        )
        .await;
    assert!(set["error"].is_null(), "{set}");
    let file = std::fs::read_to_string(gw.config_path()).unwrap();
    assert!(
        file.contains("# tone\nsystemPrompt = \"Be terse.\"") && !file.contains("\nsystem ="),
        "{file}"
    );
    assert!(file.starts_with("version = 2\n"), "{file}");
    let shown = ws
        .call("config", json!({"key": "agents.main.systemPrompt"}))
        .await;
    assert_eq!(shown["result"]["value"], "Be terse.", "{shown}");
}
