//! health and status through the typed client; the HTTP health routes.

use crate::support::*;
use serde_json::json;

#[tokio::test]
async fn health_reports_version_time_uptime_and_sections() {
    let gw = TestGateway::start("").await;
    let mut client = gw.client().await;
    let health = client.health(&params(json!({}))).await.unwrap();
    assert!(health.version >= 1);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(health.timestamp.abs_diff(now) < 60_000);
    assert!(health.uptime >= 0.0);
    assert!(health.channels.is_empty());
    assert!(health.nodes.is_empty());
    assert_eq!(health.cron.jobs, 0);
}

#[tokio::test]
async fn status_reports_where_the_gateway_listens_and_who_is_connected() {
    let gw = TestGateway::start("").await;
    let mut first = gw.client().await;
    let _second = gw.operator().await;
    let _pending = gw.raw().await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let status = first.status(&params(json!({}))).await.unwrap();
    assert_eq!(status.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(status.protocol.get(), 1);
    assert_eq!(status.bind.host, "127.0.0.1");
    assert_eq!(status.bind.mode, "loopback");
    assert!(gw.url.ends_with(&format!(":{}", status.bind.port)));
    let connections = &status.connections;
    assert_eq!(
        (connections.operator, connections.node, connections.total),
        (2, 0, 3)
    );
    assert_eq!(status.auth_mode, "token");
    assert!(status
        .config_path
        .as_deref()
        .unwrap()
        .ends_with("clawgate.toml"));
    assert!(status.state_dir.ends_with("state"));
    let agents: Vec<(&str, &str, Option<&str>, bool, bool)> = status
        .agents
        .iter()
        .map(|a| {
            (
                a.id.as_str(),
                a.provider.as_str(),
                a.model.as_deref(),
                a.offline,
                a.default,
            )
        })
        .collect();
    assert_eq!(
        agents,
        [("main", "echo", None, true, true)],
        "with nothing configured, main is the offline echo agent"
    );
}

#[tokio::test]
async fn http_health_liveness_readiness_and_404() {
    let gw = TestGateway::start("").await;
    let (code, health) = gw.get_authorized("/health").await;
    assert_eq!(code, 200);
    assert_eq!(health["state"], "ready");
    assert!(health["version"].as_u64().is_some());
    // Without the credential: liveness, and nothing about nodes, channels
    // or the config.
    let (code, anonymous) = gw.get("/health").await;
    assert_eq!(code, 200);
    assert_eq!(anonymous["state"], "ready");
    assert!(
        anonymous.get("config").is_none() && anonymous.get("nodes").is_none(),
        "{anonymous}"
    );
    let (code, _) = http_get_with(&gw.http, "/health", "Authorization: Bearer wrong\r\n").await;
    assert_eq!(code, 401);
    assert_eq!(gw.get("/healthz").await, (200, json!({"ok": true})));
    let (code, ready) = gw.get("/readyz").await;
    assert_eq!((code, ready["ready"].clone()), (200, json!(true)));
    let (code, body) = gw.get("/nothing/here").await;
    assert_eq!(code, 404);
    assert_eq!(body["path"], "/nothing/here");
    let (code, _) = gw.get("/ws").await;
    assert_eq!(
        code, 426,
        "a plain GET on the WebSocket path asks for an upgrade"
    );
}
