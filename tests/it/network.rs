//! Bind policy, Tailscale publishing and discovery, each tested in a
//! network namespace of its own (`unshare -n`): a TUN device named like
//! Tailscale's stands in for the tailnet, and clients reach the gateway
//! through `nsenter`. Skipped, with a note, where namespaces cannot be
//! made (not root, or a sandbox forbids them).

use crate::support::*;
use serde_json::Value;
use std::process::{Command, Output};

/// The tailnet: tailscale0 with a Tailscale IPv4 and IPv6 address, and a
/// LAN-like eth9 the gateway must not listen on.
pub const TAILNET: &str = "ip link set lo up \
    && ip tuntap add dev tailscale0 mode tun \
    && ip addr add 100.100.1.1/32 dev tailscale0 \
    && ip -6 addr add fd7a:115c:a1e0::1/128 dev tailscale0 nodad \
    && ip link set tailscale0 up \
    && ip tuntap add dev eth9 mode tun \
    && ip addr add 10.9.9.9/32 dev eth9 \
    && ip link set eth9 up";

/// Only loopback and the LAN-like eth9.
const NO_TAILNET: &str = "ip link set lo up \
    && ip tuntap add dev eth9 mode tun \
    && ip addr add 10.9.9.9/32 dev eth9 \
    && ip link set eth9 up";

/// Whether the namespace tests can run here. Where they cannot, they
/// fail, unless CLAWGATE_SKIP_NETNS_TESTS=1 says to skip them (a
/// developer without root): a skip must be asked for, never silent.
pub fn namespaces_available() -> bool {
    let ok = Command::new("unshare")
        .args([
            "-n",
            "sh",
            "-c",
            "ip link set lo up && ip tuntap add dev t0 mode tun",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CLAWGATE_SKIP_NETNS_TESTS").is_some(),
            "cannot create a network namespace with a TUN device (unshare -n, ip tuntap: needs root); \
             run the tests as root, or set CLAWGATE_SKIP_NETNS_TESTS=1 to skip these"
        );
        eprintln!("skipped (CLAWGATE_SKIP_NETNS_TESTS): no network namespaces here");
    }
    ok
}

/// The wrapper that runs a command in a new namespace after `setup`.
pub fn in_namespace(setup: &str) -> [String; 5] {
    [
        "unshare".into(),
        "-n".into(),
        "sh".into(),
        "-c".into(),
        format!("{setup} && exec \"$0\" \"$@\""),
    ]
}

/// Starts a gateway with token auth, `gateway` keys appended to
/// [gateway] and then `sections`, in a namespace prepared by `setup`.
pub fn gateway_in_namespace(setup: &str, gateway: &str, sections: &str) -> TestGateway {
    gateway_in_namespace_with_env(setup, gateway, sections, &[])
}

pub fn gateway_in_namespace_with_env(
    setup: &str,
    gateway: &str,
    sections: &str,
    env: &[(&str, &str)],
) -> TestGateway {
    let dir = temp_dir("netns");
    let config = dir.join("clawgate.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\n{}{gateway}\n[gateway.auth]\nmode = \"token\"\ntoken = \"{TOKEN}\"\n{sections}",
            if gateway.contains("port =") { "" } else { "port = 0\n" }
        ),
    )
    .unwrap();
    let wrapper = in_namespace(setup);
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    TestGateway::spawn_via(&wrapper, &dir, &["--config", config.to_str().unwrap()], env)
}

/// Runs `clawgate <args>` inside the gateway's namespace.
pub fn cli_in_namespace(gw: &TestGateway, args: &[&str]) -> Output {
    Command::new("nsenter")
        .arg(format!("--net=/proc/{}/ns/net", gw.child.id()))
        .arg(bin())
        .args(args)
        .env("HOME", &gw.dir)
        .output()
        .expect("nsenter runs")
}

fn call_at(gw: &TestGateway, url: &str, method: &str) -> Result<Value, String> {
    let out = cli_in_namespace(gw, &["call", method, "--url", url, "--token", TOKEN]);
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).expect("call prints JSON"))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn tailnet_bind_listens_on_the_tailscale_addresses_and_loopback_only() {
    if !namespaces_available() {
        return;
    }
    let gw = gateway_in_namespace(TAILNET, "bind = \"tailnet\"", "");
    let port = gw.url.rsplit(':').next().unwrap().to_string();
    assert_eq!(
        gw.url,
        format!("ws://100.100.1.1:{port}"),
        "the tailnet address is shown first"
    );
    let status = call_at(&gw, &gw.url, "status").expect("status over the tailnet address");
    let bind = &status["bind"];
    assert_eq!(bind["mode"], "tailnet");
    assert_eq!(
        bind["addresses"],
        serde_json::json!(["100.100.1.1", "fd7a:115c:a1e0::1", "127.0.0.1"])
    );
    let reason = bind["reason"].as_str().unwrap();
    assert!(reason.contains("100.100.1.1 on tailscale0"), "{reason}");
    for url in [
        format!("ws://[fd7a:115c:a1e0::1]:{port}"),
        format!("ws://127.0.0.1:{port}"),
    ] {
        let health = call_at(&gw, &url, "health").unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(health["state"], "ready", "{url}");
    }
    let lan = call_at(&gw, &format!("ws://10.9.9.9:{port}"), "health")
        .expect_err("nothing listens on the LAN address");
    assert!(lan.to_lowercase().contains("refused"), "{lan}");
}

#[test]
fn tailnet_bind_without_a_tailscale_address_refuses_to_start_saying_what_it_looked_for() {
    if !namespaces_available() {
        return;
    }
    let dir = temp_dir("notailnet");
    let wrapper = in_namespace(NO_TAILNET);
    let out = Command::new(&wrapper[0])
        .args(&wrapper[1..])
        .arg(bin())
        .args(["run", "--bind", "tailnet", "--port", "0", "--state-dir"])
        .arg(dir.join("state"))
        .current_dir(&dir)
        .env("HOME", &dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("100.64.0.0/10 and fd7a:115c:a1e0::/48"),
        "{stderr}"
    );
    assert!(stderr.contains("eth9 10.9.9.9"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn auto_bind_prefers_loopback_and_says_why() {
    let dir = temp_dir("auto");
    let gw = TestGateway::spawn(&dir, &["--bind", "auto", "--port", "0"], &[]);
    let out = Command::new(bin())
        .args(["call", "status", "--url", &gw.url, "--state-dir"])
        .arg(dir.join("state"))
        .env("HOME", &dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["bind"]["mode"], "auto");
    assert_eq!(
        status["bind"]["addresses"],
        serde_json::json!(["127.0.0.1"])
    );
    assert!(
        status["bind"]["reason"]
            .as_str()
            .unwrap()
            .contains("auto prefers loopback"),
        "{status}"
    );
}

fn discover_in_namespace(gw: &TestGateway) -> Value {
    discover_service_in_namespace(gw, &[])
}

/// Browses again until something answers (a responder still probing its
/// names answers the next browse), for at most 10 s.
fn discover_until_found(gw: &TestGateway, extra: &[&str]) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let found = discover_service_in_namespace(gw, extra);
        if found["gateways"].as_array().is_some_and(|g| !g.is_empty())
            || std::time::Instant::now() >= deadline
        {
            return found;
        }
    }
}

fn discover_service_in_namespace(gw: &TestGateway, extra: &[&str]) -> Value {
    let mut args = vec!["discover", "--json", "--timeout", "1500"];
    args.extend_from_slice(extra);
    let out = cli_in_namespace(gw, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("discover prints JSON")
}

fn health_in_namespace(gw: &TestGateway) -> Value {
    call_at(gw, &format!("ws://127.0.0.1:{}", port_of(gw)), "health").expect("health")
}

fn port_of(gw: &TestGateway) -> String {
    gw.url.rsplit(':').next().unwrap().to_string()
}

#[test]
fn a_lan_gateway_is_found_by_clawgate_discover_with_its_txt_record() {
    if !namespaces_available() {
        return;
    }
    let gw = gateway_in_namespace(
        "ip link set lo up",
        "bind = \"lan\"",
        "[discovery.mdns]\ninstanceName = \"kitchen gateway\"\n",
    );
    // Advertising starts once the gateway listens: wait until it has.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while health_in_namespace(&gw)["sidecars"][0]["state"] != "running" {
        assert!(
            std::time::Instant::now() < deadline,
            "discovery never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let found = discover_until_found(&gw, &[]);
    let gateways = found["gateways"].as_array().unwrap();
    assert_eq!(gateways.len(), 1, "{found}");
    let beacon = &gateways[0];
    let port = port_of(&gw);
    assert_eq!(beacon["name"], "kitchen gateway");
    assert_eq!(beacon["port"].to_string(), port);
    assert_eq!(beacon["wsUrl"], format!("ws://127.0.0.1:{port}"));
    let txt = &beacon["txt"];
    assert_eq!(txt["role"], "gateway");
    assert_eq!(txt["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(txt["protocolMin"], "1");
    assert_eq!(txt["protocolMax"], "1");
    assert_eq!(txt["auth"], "required");
    assert_eq!(txt["tls"], "0");
    assert_eq!(txt["gatewayPort"], port);
    assert!(
        !found.to_string().contains(TOKEN),
        "no secret is advertised"
    );
    // OpenClaw's apps find it too, under OpenClaw's service and TXT keys.
    let openclaw = discover_until_found(&gw, &["--openclaw"]);
    let gateways = openclaw["gateways"].as_array().unwrap();
    assert_eq!(gateways.len(), 1, "{openclaw}");
    assert_eq!(gateways[0]["name"], "kitchen gateway");
    let txt = &gateways[0]["txt"];
    assert_eq!(txt["role"], "gateway");
    assert_eq!(txt["transport"], "gateway");
    assert_eq!(txt["gatewayPort"], port);
    assert_eq!(txt["displayName"], "kitchen gateway");
    assert!(
        txt["lanHost"].as_str().unwrap().ends_with(".local"),
        "{txt}"
    );
    // The address it gives works: a client connects by it.
    let health = call_at(&gw, beacon["wsUrl"].as_str().unwrap(), "health").unwrap();
    let sidecars = health["sidecars"].as_array().unwrap();
    assert_eq!(sidecars[0]["name"], "discovery");
    assert_eq!(sidecars[0]["state"], "running", "{health}");
}

#[test]
fn a_tls_gateway_advertises_its_fingerprint_and_is_found_at_a_wss_url() {
    if !namespaces_available() {
        return;
    }
    let gw = gateway_in_namespace(
        "ip link set lo up",
        "bind = \"lan\"",
        "[gateway.tls]\nenabled = true\nwatchIntervalMs = 200\n[discovery.mdns]\ninstanceName = \"tls gateway\"\n",
    );
    let port = port_of(&gw);
    let fingerprint = crate::tls::fingerprint_of(&gw.dir.join("state/tls/gateway-cert.pem"));
    let url = format!("wss://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let out = cli_in_namespace(
            &gw,
            &[
                "call",
                "health",
                "--url",
                &url,
                "--token",
                TOKEN,
                "--tls-fingerprint",
                &fingerprint,
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let health: Value = serde_json::from_slice(&out.stdout).unwrap();
        if health["sidecars"][0]["state"] == "running" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "discovery never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let found = discover_until_found(&gw, &[]);
    let beacon = &found["gateways"][0];
    assert_eq!(beacon["wsUrl"], url, "{found}");
    assert_eq!(beacon["txt"]["tls"], "1");
    assert_eq!(beacon["txt"]["tlsSha256"], fingerprint.as_str());
    let openclaw = discover_until_found(&gw, &["--openclaw"]);
    let txt = &openclaw["gateways"][0]["txt"];
    assert_eq!(txt["gatewayTls"], "1", "{openclaw}");
    assert_eq!(
        txt["gatewayTlsSha256"],
        fingerprint.replace(':', "").to_lowercase(),
        "OpenClaw's form"
    );

    // A new pair on disk: once served, the record names it.
    let tls = gw.dir.join("state/tls");
    crate::tls::openssl(
        &tls,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "new-key.pem",
            "-out",
            "new-cert.pem",
            "-days",
            "2",
            "-subj",
            "/CN=renewed",
        ],
    );
    let renewed = crate::tls::fingerprint_of(&tls.join("new-cert.pem"));
    for (from, to) in [
        ("new-key.pem", "gateway-key.pem"),
        ("new-cert.pem", "gateway-cert.pem"),
    ] {
        save_file(
            &tls.join(to),
            &std::fs::read_to_string(tls.join(from)).unwrap(),
        );
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let found = discover_service_in_namespace(&gw, &[]);
        if found["gateways"][0]["txt"]["tlsSha256"] == renewed.as_str() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the record kept the old fingerprint: {found}"
        );
    }
}

#[test]
fn a_loopback_gateway_or_one_with_mdns_off_advertises_nothing() {
    if !namespaces_available() {
        return;
    }
    for (gateway, sections) in [
        ("", ""),
        ("bind = \"lan\"", "[discovery.mdns]\nmode = \"off\"\n"),
    ] {
        let gw = gateway_in_namespace("ip link set lo up", gateway, sections);
        let found = discover_in_namespace(&gw);
        assert_eq!(
            found["gateways"],
            serde_json::json!([]),
            "{gateway}: {found}"
        );
        let openclaw = discover_service_in_namespace(&gw, &["--openclaw"]);
        assert_eq!(openclaw["gateways"], serde_json::json!([]), "{openclaw}");
        let health = health_in_namespace(&gw);
        assert!(health.get("sidecars").is_none(), "{gateway}: {health}");
    }
}

#[test]
fn without_multicast_discovery_is_reported_failed_in_health_and_the_gateway_keeps_serving() {
    if !namespaces_available() {
        return;
    }
    // The one LAN interface has multicast switched off.
    let gw = gateway_in_namespace(
        "ip link set lo up && ip tuntap add dev tap0 mode tap && ip addr add 10.9.9.9/24 dev tap0 \
         && ip link set tap0 multicast off && ip link set tap0 up",
        "bind = \"lan\"",
        "",
    );
    let health = health_in_namespace(&gw);
    let discovery = &health["sidecars"][0];
    assert_eq!(discovery["name"], "discovery", "{health}");
    assert_eq!(discovery["state"], "failed", "{health}");
    let detail = discovery["detail"].as_str().unwrap();
    assert!(detail.contains("multicast is unavailable"), "{detail}");
    assert!(detail.contains("tap0 (multicast off)"), "{detail}");
    assert_eq!(health["state"], "ready");
}
