use crate::support::*;
use std::process::Command;
use std::time::Duration;

#[tokio::test]
async fn call_prints_the_result_as_json() {
    let gw = TestGateway::start("").await;
    let out = Command::new(bin())
        .args(["call", "health", "--url", &gw.url, "--token", TOKEN])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let health: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(health["state"], "ready");
}

#[tokio::test]
async fn call_fails_with_the_error_on_stderr() {
    let gw = TestGateway::start("").await;
    let out = Command::new(bin())
        .args(["call", "health", "--url", &gw.url, "--token", "wrong"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unauthorized"), "{stderr}");
    let out = Command::new(bin())
        .args([
            "call",
            "status",
            r#"{"bogus": 1}"#,
            "--url",
            &gw.url,
            "--token",
            TOKEN,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid_params"));
}

fn run_expecting_exit(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new(bin());
    cmd.arg("run")
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .env_remove("XDG_CONFIG_HOME");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A gateway that starts instead of refusing must fail the test, not hang it.
    let Some(status) = wait_exit(&mut child, Duration::from_secs(20)) else {
        let _ = child.kill();
        panic!("the gateway started instead of exiting");
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status.code().unwrap_or(-1), stderr)
}

#[test]
fn an_invalid_config_file_stops_startup_with_exit_2_naming_the_field() {
    let dir = temp_dir("badcfg");
    std::fs::write(
        dir.join("clawgate.toml"),
        "[gateway]\nport = 70000\nprot = 1\n",
    )
    .unwrap();
    let (code, stderr) = run_expecting_exit(&dir, &[], &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("gateway.port"), "{stderr}");
    assert!(stderr.contains("65535"), "{stderr}");
    assert!(stderr.contains("did you mean `port`"), "{stderr}");
}

#[test]
fn binding_beyond_loopback_without_auth_is_refused() {
    let dir = temp_dir("lan");
    std::fs::write(
        dir.join("clawgate.toml"),
        "[gateway.auth]\nmode = \"none\"\n",
    )
    .unwrap();
    let (code, stderr) = run_expecting_exit(&dir, &["--bind", "lan", "--port", "0"], &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("without authentication"), "{stderr}");
    let (code, stderr) = run_expecting_exit(&dir, &["--host", "0.0.0.0", "--port", "0"], &[]);
    assert_eq!(code, 2, "{stderr}");
}

#[test]
fn a_secret_in_an_invalid_value_is_never_printed() {
    let dir = temp_dir("secret");
    let secret = "s3cret-value-9";
    std::fs::write(
        dir.join("clawgate.toml"),
        format!("[gateway]\nport = \"{secret}\"\n[gateway.auth]\nmode = \"token\"\ntoken = \"\"\ntokn = \"{secret}\"\n"),
    )
    .unwrap();
    let (code, stderr) = run_expecting_exit(&dir, &[], &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("gateway.port"), "{stderr}");
    assert!(stderr.contains("gateway.auth.token"), "{stderr}");
    assert!(stderr.contains("did you mean `token`"), "{stderr}");
    assert!(!stderr.contains(secret), "secret printed: {stderr}");
}

#[tokio::test]
async fn environment_variables_override_the_file() {
    let dir = temp_dir("env");
    std::fs::write(dir.join("clawgate.toml"), "[gateway]\nport = 1\n").unwrap();
    let gw = TestGateway::spawn(
        &dir,
        &[],
        &[
            ("CLAWGATE_GATEWAY__PORT", "0"),
            ("CLAWGATE_GATEWAY__AUTH__MODE", "token"),
            ("CLAWGATE_GATEWAY__AUTH__TOKEN", TOKEN),
        ],
    );
    let mut ws = gw.operator().await;
    let status = ws.call("status", serde_json::json!({})).await;
    assert_eq!(status["result"]["authMode"], "token");
}

#[test]
fn an_unknown_environment_key_is_an_error_naming_the_variable() {
    let dir = temp_dir("envbad");
    let (code, stderr) =
        run_expecting_exit(&dir, &["--port", "0"], &[("CLAWGATE_GATEWAY__PROT", "1")]);
    assert_eq!(code, 2);
    assert!(stderr.contains("CLAWGATE_GATEWAY__PROT"), "{stderr}");
}

#[tokio::test]
async fn agents_can_be_declared_through_the_environment() {
    let dir = temp_dir("envagents");
    let gw = TestGateway::spawn(
        &dir,
        &["--port", "0"],
        &[
            ("CLAWGATE_AGENTS__HELPER__PROVIDER", "echo"),
            ("CLAWGATE_AGENTS__DEFAULT", "helper"),
        ],
    );
    let mut ws = gw.local_operator().await;
    let status = ws.call("status", serde_json::json!({})).await;
    assert_eq!(
        status["result"]["agents"],
        serde_json::json!([{"id": "helper", "provider": "echo", "offline": true, "default": true}])
    );
    let reply = ws.call("chat", serde_json::json!({"message": "hey"})).await;
    assert_eq!(reply["result"]["agentId"], "helper");
}
