//! The Control UI and WebChat in Debian's headless Chromium (driven by
//! playwright-core from tests/browser/), against a gateway whose agent is
//! the fake OpenAI upstream asking for an exec approval.

use crate::fake_openai::{FakeOpenAi, Script};
use crate::support::*;
use std::path::Path;
use std::process::Command;

#[tokio::test]
async fn the_control_ui_and_webchat_work_in_a_real_browser() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        root.join("tests/browser/node_modules/playwright-core")
            .is_dir(),
        "npm ci --prefix tests/browser"
    );
    let upstream = FakeOpenAi::start(Script::ToolThenText(
        "exec",
        r#"{"command": "echo approved"}"#,
        vec!["All ", "done."],
    ))
    .await;
    let gw = TestGateway::start_with_sections(&format!(
        "[agents.main]\nprovider = \"openai\"\nbaseUrl = \"{}\"\nmodel = \"fake-model\"\ntools = [\"exec\"]\n",
        upstream.base_url
    ))
    .await;
    let shots = root.join("target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    run_script(
        "tests/browser/web.mjs",
        vec![
            gw.http.trim_end_matches('/').to_string(),
            TOKEN.to_string(),
            shots.to_str().unwrap().to_string(),
        ],
    )
    .await;
    for page in ["control-ui.png", "approval.png", "chat.png"] {
        assert!(shots.join(page).is_file(), "{page}");
    }
}

/// Runs a script of tests/browser/ with node and checks it printed OK.
pub async fn run_script(script: &str, args: Vec<String>) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(script);
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .args(args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("OK"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
