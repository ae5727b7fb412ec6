//! The generated clients: the TypeScript one type-checked with
//! `tsc --strict`; both driven (by Node and by Python) against a live
//! gateway that restarts under them.

use crate::support::*;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn tools() -> PathBuf {
    let tools = root().join("gen/tools/node_modules/.bin");
    assert!(
        tools.is_dir(),
        "the SDK tools are not installed: npm ci --prefix gen/tools"
    );
    tools
}

#[test]
fn the_typescript_client_type_checks_strictly() {
    let dir = temp_dir("tsc");
    let config = dir.join("tsconfig.json");
    let usage = root().join("tests/typescript/typed_usage.ts");
    std::fs::write(
        &config,
        serde_json::json!({
            "compilerOptions": {
                "strict": true, "noEmit": true, "module": "nodenext",
                "moduleResolution": "nodenext", "target": "es2022", "lib": ["es2022"],
                "noUnusedLocals": true, "exactOptionalPropertyTypes": true
            },
            "files": [usage]
        })
        .to_string(),
    )
    .unwrap();
    let out = Command::new(tools().join("tsc"))
        .args(["-p", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tsc --strict failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_typescript_client_works_against_a_live_gateway_that_restarts() {
    tools();
    let script = root().join("tests/typescript/live.mjs");
    let mut node = Command::new("node");
    node.arg("--experimental-websocket").arg(script);
    restart_under(node, "sdk-ts");
}

#[test]
fn the_python_client_works_against_a_live_gateway_that_restarts() {
    let mut python = Command::new("python3");
    python
        .arg(root().join("tests/python/sdk_live.py"))
        .env("PYTHONPATH", root().join("gen/python"));
    restart_under(python, "sdk-py");
}

/// Runs a client program (given the URL and token as its last two
/// arguments) against a gateway that restarts on the same port when the
/// program prints READY_FOR_RESTART; the program must then print OK.
fn restart_under(mut program: Command, tag: &str) {
    let dir = temp_dir(tag);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.join("clawgate.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nport = {port}\n[gateway.auth]\nmode = \"token\"\ntoken = \"{TOKEN}\"\n"
        ),
    )
    .unwrap();
    let args = ["--config", config.to_str().unwrap()];
    let mut gw = TestGateway::spawn(&dir, &args, &[]);
    gw.owns_dir = false;
    let mut node = program
        .arg(format!("ws://127.0.0.1:{port}/"))
        .arg(TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the client program starts");
    let mut lines = BufReader::new(node.stdout.take().unwrap()).lines();
    let first = lines.next().expect("a line").unwrap();
    assert_eq!(first, "READY_FOR_RESTART");
    assert!(gw.terminate().success());
    std::thread::sleep(Duration::from_millis(300));
    let gw = TestGateway::spawn(&dir, &args, &[]);
    let last = lines.next().expect("a line").unwrap();
    assert_eq!(last, "OK");
    let status = wait_exit(&mut node, Duration::from_secs(20)).expect("the client finished");
    assert!(status.success());
    drop(gw);
}

/// The first fenced block of `lang` in a README.
fn example(readme: &str, lang: &str) -> String {
    let text = std::fs::read_to_string(root().join(readme)).unwrap();
    let start = text.find(&format!("```{lang}\n")).expect("an example") + lang.len() + 4;
    let end = start + text[start..].find("```").unwrap();
    text[start..end].to_string()
}

#[tokio::test]
async fn the_readme_examples_of_both_clients_run() {
    let gw = TestGateway::start("").await;
    let url = gw.url.trim_end_matches('/').to_string();
    let dir = temp_dir("readme-examples");

    let client_js = root().join("gen/typescript/client.js");
    let js = example("gen/typescript/README.md", "js")
        .replace("ws://127.0.0.1:18789", &url)
        .replace(
            "\"./client.js\"",
            &format!("{:?}", client_js.to_str().unwrap()),
        );
    let script = dir.join("example.mjs");
    std::fs::write(&script, js).unwrap();
    let out = Command::new("node")
        .arg("--experimental-websocket")
        .arg(&script)
        .env("GATEWAY_TOKEN", TOKEN)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(printed.contains("ready hello"), "{printed}");
    assert!(printed.contains("not_found -32008"), "{printed}");

    let py = example("gen/python/README.md", "python").replace("ws://127.0.0.1:18789", &url);
    let script = dir.join("example.py");
    std::fs::write(&script, py).unwrap();
    let out = Command::new("python3")
        .arg(&script)
        .env("GATEWAY_TOKEN", TOKEN)
        .env("PYTHONPATH", root().join("gen/python"))
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(printed.lines().any(|l| l == "ready hello"), "{printed}");
    assert!(printed.contains("not_found -32008"), "{printed}");
    std::fs::remove_dir_all(dir).unwrap();
}
