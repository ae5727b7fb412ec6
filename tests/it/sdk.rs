//! The generated TypeScript client: type-checked with `tsc --strict`, and
//! driven by Node against a live gateway that restarts under it.

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
    let dir = temp_dir("sdk-ts");
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
    let mut node = Command::new("node")
        .arg("--experimental-websocket")
        .arg(root().join("tests/typescript/live.mjs"))
        .arg(format!("ws://127.0.0.1:{port}/"))
        .arg(TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node");
    let mut lines = BufReader::new(node.stdout.take().unwrap()).lines();
    let first = lines.next().expect("a line").unwrap();
    assert_eq!(first, "READY_FOR_RESTART");
    assert!(gw.terminate().success());
    std::thread::sleep(Duration::from_millis(300));
    let gw = TestGateway::spawn(&dir, &args, &[]);
    let last = lines.next().expect("a line").unwrap();
    assert_eq!(last, "OK");
    let status = wait_exit(&mut node, Duration::from_secs(20)).expect("node finished");
    assert!(status.success());
    drop(gw);
}
