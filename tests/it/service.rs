//! Running as a service: the example systemd unit's command line and
//! environment, the sd_notify protocol, JSON logs an operator can filter,
//! shell completions and the man page.

use crate::support::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A gateway started here rather than through TestGateway (which fixes
/// --state-dir and stderr); killed on drop.
struct Gateway {
    child: Child,
    url: String,
}

impl Gateway {
    fn spawn(dir: &Path, args: &[String], env: &[(String, String)], stderr: Stdio) -> Gateway {
        let mut child = Command::new(bin())
            .args(args)
            .current_dir(dir)
            .env("CLAWGATE_LOG", "warn")
            .env("HOME", dir)
            .env_remove("CLAWGATE_CONFIG")
            .env_remove("CLAWGATE_STATE_DIR")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_DATA_HOME")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("clawgate listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_string();
        Gateway { child, url }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The values of `Key=` lines in the example unit's [Service] section.
fn unit_values(key: &str) -> Vec<String> {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/clawgate.service"
    ))
    .unwrap();
    unit.lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(str::to_string)
        .collect()
}

/// Notifications sent to `socket` until one has the line `wanted`; all of
/// them, in order.
fn notifications_until(socket: &UnixDatagram, wanted: &str) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no {wanted} within {WAIT:?}; got {seen:?}");
        socket.set_read_timeout(Some(left)).unwrap();
        let Ok(n) = socket.recv(&mut buf) else {
            panic!("no {wanted} within {WAIT:?}; got {seen:?}");
        };
        let message = String::from_utf8_lossy(&buf[..n]).to_string();
        let done = message.lines().any(|l| l == wanted);
        seen.push(message);
        if done {
            return seen;
        }
    }
}

fn bind_notify_socket(dir: &Path) -> (UnixDatagram, PathBuf) {
    let path = dir.join("notify.sock");
    (UnixDatagram::bind(&path).unwrap(), path)
}

#[test]
fn the_example_unit_runs_a_gateway_that_tells_systemd_ready_watchdog_and_stopping() {
    let dir = temp_dir("unit");
    // ExecStart as systemd runs it, with this build's binary and a config
    // of the test's in place of /etc/clawgate/clawgate.toml.
    let exec_start = unit_values("ExecStart");
    let words: Vec<&str> = exec_start[0].split_whitespace().collect();
    assert_eq!(words[0], "/usr/local/bin/clawgate");
    let config = dir.join("clawgate.toml");
    std::fs::write(&config, token_config()).unwrap();
    let args: Vec<String> = words[1..]
        .iter()
        .map(|w| w.replace("/etc/clawgate/clawgate.toml", config.to_str().unwrap()))
        .collect();
    assert!(
        args.contains(&config.to_str().unwrap().to_string()),
        "{args:?}"
    );
    // Environment= as systemd expands it, %S being /var/lib.
    let var_lib = dir.join("var-lib");
    let mut env: Vec<(String, String)> = unit_values("Environment")
        .iter()
        .map(|assignment| {
            let (k, v) = assignment.split_once('=').unwrap();
            (k.to_string(), v.replace("%S", var_lib.to_str().unwrap()))
        })
        .collect();
    let (socket, path) = bind_notify_socket(&dir);
    env.push(("NOTIFY_SOCKET".into(), path.to_str().unwrap().into()));
    env.push(("WATCHDOG_USEC".into(), "200000".into()));
    let mut gw = Gateway::spawn(&dir, &args, &env, Stdio::inherit());

    let before_ready = notifications_until(&socket, "READY=1");
    // Ready means ready: the port takes connections the moment systemd hears it.
    let addr = gw.url.trim_start_matches("ws://").to_string();
    std::net::TcpStream::connect(&addr).expect("the port accepts once READY=1 is sent");
    assert!(
        before_ready.iter().all(|m| !m.contains("STOPPING")),
        "{before_ready:?}"
    );
    // The state went where the unit's Environment= says.
    assert!(
        var_lib.join("clawgate").join("clawgate.db").exists(),
        "CLAWGATE_STATE_DIR from the unit is honoured"
    );

    // WATCHDOG_USEC=200000: a ping every 100 ms.
    let started = Instant::now();
    for _ in 0..3 {
        notifications_until(&socket, "WATCHDOG=1");
    }
    assert!(started.elapsed() < Duration::from_secs(2));

    unsafe_kill(gw.child.id(), "TERM");
    notifications_until(&socket, "STOPPING=1");
    let status = wait_exit(&mut gw.child, Duration::from_secs(15)).expect("exits after SIGTERM");
    assert!(status.success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(target_os = "linux")]
#[test]
fn an_abstract_notify_socket_works_and_a_watchdog_meant_for_another_pid_is_left_alone() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("clawgate-it-{}", uuid::Uuid::new_v4().simple());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let socket = UnixDatagram::bind_addr(&addr).unwrap();
    let dir = temp_dir("abstract");
    let args = persistent_config(&dir);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let _gw = TestGateway::spawn(
        &dir,
        &args,
        &[
            ("NOTIFY_SOCKET", &format!("@{name}")),
            ("WATCHDOG_USEC", "100000"),
            ("WATCHDOG_PID", "1"),
        ],
    );
    let seen = notifications_until(&socket, "READY=1");
    assert!(seen.iter().all(|m| !m.contains("WATCHDOG")), "{seen:?}");
    socket
        .set_read_timeout(Some(Duration::from_millis(600)))
        .unwrap();
    let mut buf = [0u8; 256];
    if let Ok(n) = socket.recv(&mut buf) {
        panic!(
            "a watchdog for pid 1 is not ours to ping: got {:?}",
            String::from_utf8_lossy(&buf[..n])
        );
    }
}

#[tokio::test]
async fn an_unusable_notify_socket_does_not_stop_the_gateway() {
    let dir = temp_dir("nonotify");
    let args = persistent_config(&dir);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let missing = dir.join("no-such-dir").join("notify.sock");
    let gw = TestGateway::spawn(&dir, &args, &[("NOTIFY_SOCKET", missing.to_str().unwrap())]);
    let mut ws = gw.operator().await;
    let health = ws.call("health", json!({})).await;
    assert_eq!(health["result"]["state"], "ready", "{health}");
}

#[tokio::test]
async fn json_logs_carry_the_connection_method_and_run_as_fields() {
    let dir = temp_dir("jsonlogs");
    let config = dir.join("clawgate.toml");
    std::fs::write(
        &config,
        format!("{}\n[logging]\nformat = \"json\"\n", token_config()),
    )
    .unwrap();
    let args = [
        "run".to_string(),
        "--config".into(),
        config.to_str().unwrap().into(),
        "--state-dir".into(),
        dir.join("state").to_str().unwrap().into(),
    ];
    let env = [("CLAWGATE_LOG".to_string(), "clawgate=debug".to_string())];
    let mut gw = Gateway::spawn(&dir, &args, &env, Stdio::piped());
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let stderr = gw.child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });

    let mut ws = Ws::open(&gw.url).await;
    let hello = ws.connect(json!({"token": TOKEN}), None).await;
    let conn_id = hello["result"]["server"]["connId"].clone();
    assert!(conn_id.is_string(), "{hello}");
    ws.call("status", json!({})).await;
    let chat = ws
        .call("chat", json!({"message": "log me", "sessionKey": "logged"}))
        .await;
    let run_id = chat["result"]["runId"].clone();

    // Every line is JSON; span fields are in "spans", outermost first.
    let has = |line: &Value, key: &str, value: &Value| {
        line["spans"]
            .as_array()
            .is_some_and(|spans| spans.iter().any(|s| &s[key] == value))
    };
    let mut request_line = None;
    let mut run_line = None;
    let deadline = Instant::now() + WAIT;
    while request_line.is_none() || run_line.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(text) = lines.recv_timeout(left) else {
            panic!("no log line with connId {conn_id} and method status, or runId {run_id}");
        };
        let line: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
        if has(&line, "connId", &conn_id) && has(&line, "method", &json!("status")) {
            request_line = Some(line.clone());
        }
        if has(&line, "runId", &run_id) && has(&line, "sessionKey", &json!("logged")) {
            run_line = Some(line);
        }
    }
    let request_line = request_line.unwrap();
    assert!(request_line["fields"]["ms"].is_u64(), "{request_line}");
    let run_line = run_line.unwrap();
    assert!(has(&run_line, "agentId", &json!("main")), "{run_line}");
    assert!(has(&run_line, "method", &json!("chat")), "{run_line}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bash_completions_know_the_subcommands() {
    let out = Command::new(bin())
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let script = String::from_utf8(out.stdout).unwrap();
    assert!(script.contains("complete -F _clawgate"), "{script}");
    for sub in [
        "run",
        "call",
        "chat",
        "token",
        "config",
        "man",
        "completions",
    ] {
        assert!(
            script.contains(&format!("clawgate,{sub})")),
            "{sub} is completed"
        );
    }
    // The script is valid bash.
    let mut bash = Command::new("bash")
        .args(["-n"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    bash.stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(bash.wait().unwrap().success());
    let out = Command::new(bin())
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}

#[test]
fn the_man_page_is_roff_that_groff_renders() {
    let out = Command::new(bin()).arg("man").output().unwrap();
    assert!(out.status.success());
    let roff = String::from_utf8(out.stdout).unwrap();
    assert!(roff.contains(".TH CLAWGATE 1"), "{roff}");
    let mut groff = Command::new("groff")
        .args(["-man", "-Tutf8", "-P", "-cbou", "-ww"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("groff is installed (scripts/test installs groff-base)");
    groff
        .stdin
        .take()
        .unwrap()
        .write_all(roff.as_bytes())
        .unwrap();
    let rendered = groff.wait_with_output().unwrap();
    assert!(rendered.status.success());
    assert!(
        rendered.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let text = String::from_utf8(rendered.stdout).unwrap();
    for expected in [
        "NAME",
        "SYNOPSIS",
        "SUBCOMMANDS",
        "clawgate-chat(1)",
        "clawgate-run(1)",
    ] {
        assert!(text.contains(expected), "{expected} in:\n{text}");
    }

    // --dir writes a page per command.
    let dir = temp_dir("man");
    let out = Command::new(bin())
        .args(["man", "--dir", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let chat = std::fs::read_to_string(dir.join("clawgate-chat.1")).unwrap();
    assert!(chat.contains(".TH CLAWGATE-CHAT 1"), "{chat}");
    assert!(chat.contains("\\-\\-message"), "{chat}");
    assert!(dir.join("clawgate-config-validate.1").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
