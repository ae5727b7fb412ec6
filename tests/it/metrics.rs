//! GET /metrics: off by default, behind the credential when on, valid for
//! Debian's promtool, and scraped by a real Prometheus server.

use crate::support::*;
use serde_json::json;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ON: &str = "[gateway.http.metrics]\nenabled = true\n";

fn bearer() -> String {
    format!("Authorization: Bearer {TOKEN}\r\n")
}

#[tokio::test]
async fn metrics_are_off_by_default_and_need_the_credential_when_on() {
    let off = TestGateway::start("").await;
    let (status, _, _) = http_get_raw(&off.http, "/metrics", &bearer()).await;
    assert_eq!(status, 404, "off unless configured");

    let gw = TestGateway::start_with_sections(ON).await;
    let (status, head, _) = http_get_raw(&gw.http, "/metrics", "").await;
    assert_eq!(status, 401);
    assert!(
        head.to_lowercase().contains("www-authenticate: bearer"),
        "{head}"
    );
    let (status, _, _) = http_get_raw(&gw.http, "/metrics", "Authorization: Bearer nope\r\n").await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn the_exposition_counts_what_clients_did_and_promtool_accepts_it() {
    let gw = TestGateway::start_with_sections(ON).await;
    let mut ws = gw.operator().await;
    ws.call("status", json!({})).await;
    ws.call("status", json!({"bogus": 1})).await;
    ws.call("chat", json!({"message": "count my tokens"})).await;
    let unknown = ws.call("no.such.method", json!({})).await;
    assert!(unknown.get("error").is_some());

    let (status, head, text) = http_get_raw(&gw.http, "/metrics", &bearer()).await;
    assert_eq!(status, 200);
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    for series in [
        r#"clawgate_rpc_calls_total{method="status",outcome="ok"} 1"#,
        r#"clawgate_rpc_calls_total{method="status",outcome="invalid_params"} 1"#,
        r#"clawgate_rpc_calls_total{method="(unknown)",outcome="method_not_found"} 1"#,
        r#"clawgate_rpc_calls_total{method="connect",outcome="ok"} 1"#,
        r#"clawgate_chat_turns_total{agent="main",outcome="complete"} 1"#,
        r#"clawgate_connections{role="operator"} 1"#,
        r#"clawgate_rpc_duration_seconds_count{method="status"} 2"#,
        r#"clawgate_upstream_duration_seconds_count{agent="main",provider="echo"} 1"#,
    ] {
        assert!(text.contains(series), "{series} missing in:\n{text}");
    }
    assert!(text.contains("clawgate_agent_tokens_total{agent=\"main\",direction=\"output\"}"));
    assert!(text.contains("clawgate_events_sent_total{event=\"agent.message\"}"));
    assert!(text.contains("process_resident_memory_bytes "));
    assert!(!text.contains(TOKEN));

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/test installs it)");
    use std::io::Write;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let (_, head, open) = http_get_raw(
        &gw.http,
        "/metrics",
        &format!(
            "{}Accept: application/openmetrics-text; version=1.0.0\r\n",
            bearer()
        ),
    )
    .await;
    assert!(head.contains("application/openmetrics-text"), "{head}");
    assert!(open.ends_with("# EOF\n"));
}

/// A Prometheus server on a free port with its own storage, killed on drop.
struct Prometheus {
    child: std::process::Child,
    base: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_prometheus(dir: &std::path::Path, target: &str) -> Prometheus {
    let token_file = dir.join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: clawgate\n    authorization:\n      credentials_file: {}\n    static_configs:\n      - targets: ['{target}']\n",
            token_file.display()
        ),
    )
    .unwrap();
    let port = free_port();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus (Debian package prometheus; scripts/test installs it)");
    Prometheus {
        child,
        base: format!("http://127.0.0.1:{port}"),
    }
}

#[tokio::test]
async fn a_real_prometheus_scrapes_the_gateway() {
    let gw = TestGateway::start_with_sections(ON).await;
    let mut ws = gw.operator().await;
    for _ in 0..3 {
        ws.call("status", json!({})).await;
    }
    let dir = temp_dir("prometheus");
    let target = gw.http.trim_start_matches("http://").to_string();
    let prometheus = start_prometheus(&dir, &target);
    // rpc calls of method status that succeeded, as Prometheus stored them.
    let query = "/api/v1/query?query=clawgate_rpc_calls_total%7Bmethod%3D%22status%22%2Coutcome%3D%22ok%22%7D";
    let deadline = Instant::now() + Duration::from_secs(60);
    let value = loop {
        let answer =
            tokio::time::timeout(Duration::from_secs(2), try_get(&prometheus.base, query)).await;
        if let Ok((200, _, body)) = answer {
            let answer: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            if let Some(value) = answer["data"]["result"][0]["value"][1].as_str() {
                break value.to_string();
            }
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never stored the series (is the target up? see {}/targets)",
            prometheus.base
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(value, "3");
    drop(prometheus);
    let _ = std::fs::remove_dir_all(dir);
}

/// A GET that reports a refused connection (Prometheus still starting) as
/// status 0 instead of panicking.
async fn try_get(base: &str, path: &str) -> (u16, String, String) {
    let host = base.trim_start_matches("http://");
    if tokio::net::TcpStream::connect(host).await.is_err() {
        return (0, String::new(), String::new());
    }
    http_get_raw(base, path, "").await
}
