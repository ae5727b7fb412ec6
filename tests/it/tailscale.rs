//! Publishing through Tailscale Serve and Funnel, and Serve's identity
//! headers, against a stand-in `tailscale` CLI (tests/stand-ins) that
//! records its calls and answers as the real one documents.

use crate::network::{gateway_in_namespace_with_env, namespaces_available, TAILNET};
use crate::support::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::MaybeTlsStream;

const NAME: &str = "gw.tail1234.ts.net";
const USER: &str = "alice@example.com";
const USER_IP: &str = "100.101.1.2";

/// PATH with the stand-in first, its log, and the tailnet's users.
pub struct StandIn {
    pub log: PathBuf,
    pub whois: PathBuf,
    path: String,
}

impl StandIn {
    pub fn new(dir: &Path) -> StandIn {
        let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/stand-ins");
        let whois = dir.join("tailnet-users");
        std::fs::write(
            &whois,
            format!("{USER_IP} {USER}\n100.101.1.3 bob@example.com\n"),
        )
        .unwrap();
        StandIn {
            log: dir.join("tailscale.log"),
            whois,
            path: format!(
                "{}:{}",
                bin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        }
    }

    pub fn env(&self) -> Vec<(&str, &str)> {
        vec![
            ("PATH", self.path.as_str()),
            ("FAKE_TAILSCALE_LOG", self.log.to_str().unwrap()),
            ("FAKE_TAILSCALE_WHOIS", self.whois.to_str().unwrap()),
        ]
    }

    pub fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// A port free now: Tailscale publishing needs a fixed one.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(gateway: &str, auth: &str, extra_env: &[(&str, &str)]) -> (TestGateway, StandIn) {
    let dir = temp_dir("tailscale");
    let stand_in = StandIn::new(&dir);
    let config = dir.join("clawgate.toml");
    let port = free_port();
    std::fs::write(
        &config,
        format!("[gateway]\nport = {port}\n{gateway}\n[gateway.auth]\n{auth}\n"),
    )
    .unwrap();
    let mut env = stand_in.env();
    env.extend_from_slice(extra_env);
    let gw = TestGateway::spawn(&dir, &["--config", config.to_str().unwrap()], &env);
    (gw, stand_in)
}

const TOKEN_AUTH: &str = "mode = \"token\"\ntoken = \"test-token-8f3a\"";

fn sidecar<'a>(health: &'a Value, name: &str) -> &'a Value {
    health["sidecars"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no {name} sidecar in {health}"))
}

fn port(gw: &TestGateway) -> String {
    gw.url.rsplit(':').next().unwrap().to_string()
}

/// The status of GET /healthz sent with this Host header.
async fn status_for_host(gw: &TestGateway, host: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(gw.url.trim_start_matches("ws://"))
        .await
        .unwrap();
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    response[9..12].parse().unwrap()
}

#[tokio::test]
async fn serve_reaches_a_tls_gateway_over_tls() {
    let (gw, stand_in) = start(
        "[gateway.tailscale]\nmode = \"serve\"\n[gateway.tls]\nenabled = true",
        TOKEN_AUTH,
        &[],
    );
    let calls = stand_in.calls();
    assert_eq!(
        calls[0],
        format!("serve --bg --yes https+insecure://127.0.0.1:{}", port(&gw)),
        "{calls:?}"
    );
}

#[tokio::test]
async fn serve_is_published_at_start_and_reset_at_shutdown() {
    let (mut gw, stand_in) = start("[gateway.tailscale]\nmode = \"serve\"", TOKEN_AUTH, &[]);
    let port = port(&gw);
    let calls = stand_in.calls();
    assert_eq!(calls[0], format!("serve --bg --yes {port}"), "{calls:?}");
    assert!(calls.contains(&"status --json".to_string()), "{calls:?}");
    let health = gw.client().await.call("health", json!({})).await.unwrap();
    let tailscale = sidecar(&health, "tailscale");
    assert_eq!(tailscale["state"], "running", "{health}");
    assert_eq!(tailscale["url"], format!("https://{NAME}/"));
    // Serve keeps the Host its clients used: the gateway answers to it.
    assert_eq!(status_for_host(&gw, NAME).await, 200);
    assert_eq!(status_for_host(&gw, "other.tail1234.ts.net").await, 421);
    assert!(gw.terminate().success());
    // Only the gateway's route goes (`reset` would clear the machine's).
    assert_eq!(stand_in.calls().last().unwrap(), "serve --https=443 off");
}

#[tokio::test]
async fn funnel_is_published_and_left_in_place_without_reset_on_exit() {
    let (mut gw, stand_in) = start(
        "[gateway.tailscale]\nmode = \"funnel\"\nresetOnExit = false",
        "mode = \"password\"\npassword = \"a long password\"",
        &[],
    );
    assert_eq!(
        stand_in.calls()[0],
        format!("funnel --bg --yes {}", port(&gw))
    );
    assert!(gw.terminate().success());
    assert_eq!(stand_in.calls().len(), 2, "{:?}", stand_in.calls());
    assert!(
        !stand_in.calls().iter().any(|c| c.ends_with("off")),
        "{:?}",
        stand_in.calls()
    );
}

#[test]
fn funnel_without_a_credential_is_refused_at_startup() {
    let dir = temp_dir("funnel");
    let config = dir.join("clawgate.toml");
    std::fs::write(
        &config,
        "[gateway]\nport = 18789\n[gateway.auth]\nmode = \"none\"\n[gateway.tailscale]\nmode = \"funnel\"\n",
    )
    .unwrap();
    let stand_in = StandIn::new(&dir);
    let out = std::process::Command::new(bin())
        .args(["run", "--config", config.to_str().unwrap(), "--state-dir"])
        .arg(dir.join("state"))
        .envs(stand_in.env())
        .env("HOME", &dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("gateway.tailscale.mode"), "{stderr}");
    assert!(stderr.contains("needs a credential"), "{stderr}");
    assert!(stand_in.calls().is_empty(), "nothing was published");
}

/// The detail of the tailscale sidecar of a serve gateway started with
/// `env`, which must report it failed.
async fn failed_publish_detail(env: &[(&str, &str)]) -> String {
    let (gw, _stand_in) = start("[gateway.tailscale]\nmode = \"serve\"", TOKEN_AUTH, env);
    let health = gw.client().await.call("health", json!({})).await.unwrap();
    let tailscale = sidecar(&health, "tailscale");
    assert_eq!(tailscale["state"], "failed", "{health}");
    tailscale["detail"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_failing_or_missing_tailscale_cli_is_reported_in_health_and_the_gateway_keeps_serving() {
    let detail = failed_publish_detail(&[("FAKE_TAILSCALE_FAIL", "serve")]).await;
    assert!(detail.contains("tailscale serve --bg --yes"), "{detail}");
    assert!(detail.contains("doesn't appear to be running"), "{detail}");

    let detail = failed_publish_detail(&[("PATH", "/nonexistent")]).await;
    assert!(detail.contains("not found on PATH"), "{detail}");

    // Published, but the name clients use is unknown: Serve's requests
    // would be refused, and health says so.
    let detail = failed_publish_detail(&[("FAKE_TAILSCALE_FAIL", "status")]).await;
    assert!(detail.contains("MagicDNS name"), "{detail}");
    assert!(detail.contains("gateway.allowedHosts"), "{detail}");
}

#[test]
fn a_required_publish_that_fails_stops_startup() {
    let dir = temp_dir("required");
    let config = dir.join("clawgate.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nport = {}\n[gateway.auth]\n{TOKEN_AUTH}\n[gateway.tailscale]\nmode = \"serve\"\nrequired = true\n",
            free_port()
        ),
    )
    .unwrap();
    let stand_in = StandIn::new(&dir);
    let out = std::process::Command::new(bin())
        .args(["run", "--config", config.to_str().unwrap(), "--state-dir"])
        .arg(dir.join("state"))
        .envs(stand_in.env())
        .env("FAKE_TAILSCALE_FAIL", "serve")
        .env("HOME", &dir)
        .stdout(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("gateway.tailscale.required"), "{stderr}");
    assert!(stderr.contains("doesn't appear to be running"), "{stderr}");
}

/// The headers Tailscale Serve puts on a request it proxies for USER.
fn serve_headers(login: &str) -> Vec<(&'static str, String)> {
    vec![
        ("host", NAME.to_string()),
        ("x-forwarded-for", USER_IP.to_string()),
        ("x-forwarded-proto", "https".to_string()),
        ("x-forwarded-host", NAME.to_string()),
        ("tailscale-user-login", login.to_string()),
        ("tailscale-user-name", "Alice".to_string()),
    ]
}

/// A WebSocket over `tcp` whose upgrade request carries `headers`.
async fn ws_with_headers(
    tcp: tokio::net::TcpStream,
    url: &str,
    headers: &[(&'static str, String)],
) -> Ws {
    let mut request = url.into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(*name, value.parse().unwrap());
    }
    let (stream, _) = tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(tcp))
        .await
        .expect("upgrade");
    Ws::from_stream(stream)
}

/// connect with no credential at all.
async fn connect_bare(ws: &mut Ws) -> Value {
    ws.call(
        "connect",
        json!({
            "protocol": {"min": 1, "max": 1},
            "client": {"name": "tailnet-browser", "version": "1"},
            "role": "operator",
        }),
    )
    .await
}

async fn loopback_ws(gw: &TestGateway, headers: &[(&'static str, String)]) -> Ws {
    let addr = gw.url.trim_start_matches("ws://");
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    ws_with_headers(tcp, &gw.url, headers).await
}

#[tokio::test]
async fn serve_identity_lets_the_tailnet_user_in_only_when_tailscale_confirms_it() {
    let (gw, stand_in) = start("[gateway.tailscale]\nmode = \"serve\"", TOKEN_AUTH, &[]);
    let mut ws = loopback_ws(&gw, &serve_headers(USER)).await;
    let hello = connect_bare(&mut ws).await;
    let scopes = &hello["result"]["scopes"];
    assert!(
        scopes
            .as_array()
            .unwrap()
            .contains(&json!("operator.admin")),
        "{hello}"
    );
    assert!(stand_in
        .calls()
        .contains(&format!("whois --json {USER_IP}")));

    // A login Tailscale does not confirm for that address.
    let mut ws = loopback_ws(&gw, &serve_headers("bob@example.com")).await;
    let refused = connect_bare(&mut ws).await;
    assert_eq!(
        refused["error"]["message"]
            .as_str()
            .map(|m| m.contains("could not be confirmed")),
        Some(true),
        "{refused}"
    );

    // Without every header Serve sets, the identity is not considered.
    let mut partial = serve_headers(USER);
    partial.retain(|(name, _)| *name != "x-forwarded-proto");
    let mut ws = loopback_ws(&gw, &partial).await;
    let refused = connect_bare(&mut ws).await;
    assert_eq!(
        refused["error"]["message"], "this gateway requires auth.token",
        "{refused}"
    );
}

#[tokio::test]
async fn serve_headers_on_another_local_users_socket_are_ignored() {
    // Making a socket as another user needs root, as namespaces do.
    if !namespaces_available() {
        return;
    }
    let (gw, stand_in) = start("[gateway.tailscale]\nmode = \"serve\"", TOKEN_AUTH, &[]);
    let addr: std::net::SocketAddr = gw.url.trim_start_matches("ws://").parse().unwrap();
    let tcp = std::thread::spawn(move || {
        // SAFETY: the raw system call changes the ids of this thread only
        // (glibc's setresuid would change every thread's); the thread
        // ends after making the socket, which stays nobody's.
        let changed = unsafe { libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534) };
        assert_eq!(changed, 0);
        let tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.set_nonblocking(true).unwrap();
        tcp
    })
    .join()
    .unwrap();
    let tcp = tokio::net::TcpStream::from_std(tcp).unwrap();
    let mut ws = ws_with_headers(tcp, &gw.url, &serve_headers(USER)).await;
    let refused = connect_bare(&mut ws).await;
    assert_eq!(
        refused["error"]["message"], "this gateway requires auth.token",
        "{refused}"
    );
    assert!(!stand_in.calls().iter().any(|c| c.starts_with("whois")));
}

#[tokio::test]
async fn serve_identity_is_off_when_allow_tailscale_is_off_and_for_password_auth() {
    for auth in [
        format!("{TOKEN_AUTH}\nallowTailscale = false"),
        "mode = \"password\"\npassword = \"a long password\"".to_string(),
    ] {
        let (gw, stand_in) = start("[gateway.tailscale]\nmode = \"serve\"", &auth, &[]);
        let mut ws = loopback_ws(&gw, &serve_headers(USER)).await;
        let refused = connect_bare(&mut ws).await;
        let message = refused["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("this gateway requires auth."),
            "{auth}: {refused}"
        );
        assert!(
            !stand_in.calls().iter().any(|c| c.starts_with("whois")),
            "{auth}: whois was not even asked"
        );
    }
}

#[tokio::test]
async fn serve_identity_headers_from_a_peer_that_is_not_the_local_serve_proxy_are_ignored() {
    if !namespaces_available() {
        return;
    }
    let dir = temp_dir("tsns");
    let stand_in = StandIn::new(&dir);
    // The namespace is the gateway's own: any fixed port is free there.
    let gw = gateway_in_namespace_with_env(
        TAILNET,
        "port = 18789\nbind = \"tailnet\"\n[gateway.tailscale]\nmode = \"serve\"",
        "",
        &stand_in.env(),
    );
    let pid = gw.child.id();
    let port: u16 = port(&gw).parse().unwrap();
    let connect_from_namespace = move |ip: &str| {
        let addr: std::net::SocketAddr = format!("{ip}:{port}").parse().unwrap();
        std::thread::spawn(move || {
            use std::os::fd::AsRawFd;
            let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).unwrap();
            // SAFETY: setns on this fresh thread only; the socket made
            // after it belongs to the gateway's namespace.
            assert_eq!(
                unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) },
                0
            );
            let tcp = std::net::TcpStream::connect(addr).unwrap();
            tcp.set_nonblocking(true).unwrap();
            tcp
        })
        .join()
        .unwrap()
    };
    // The same headers over the tailnet address: the peer is not loopback.
    let tcp = tokio::net::TcpStream::from_std(connect_from_namespace("100.100.1.1")).unwrap();
    let mut ws = ws_with_headers(
        tcp,
        &format!("ws://100.100.1.1:{port}"),
        &serve_headers(USER),
    )
    .await;
    let refused = connect_bare(&mut ws).await;
    assert_eq!(
        refused["error"]["message"], "this gateway requires auth.token",
        "{refused}"
    );
    assert!(!stand_in.calls().iter().any(|c| c.starts_with("whois")));
    // Over loopback in the same namespace, from a socket of the gateway's
    // own user, they are honoured (the proxy the headers claim to be).
    let tcp = tokio::net::TcpStream::from_std(connect_from_namespace("127.0.0.1")).unwrap();
    let mut ws =
        ws_with_headers(tcp, &format!("ws://127.0.0.1:{port}"), &serve_headers(USER)).await;
    let hello = connect_bare(&mut ws).await;
    assert!(hello.get("result").is_some(), "{hello}");
    drop(dir);
}
