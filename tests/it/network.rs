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
const TAILNET: &str = "ip link set lo up \
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
        eprintln!("skipped: cannot create a network namespace with a TUN device here (needs root)");
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
    let dir = temp_dir("netns");
    let config = dir.join("clawgate.toml");
    std::fs::write(
        &config,
        format!("[gateway]\nport = 0\n{gateway}\n[gateway.auth]\nmode = \"token\"\ntoken = \"{TOKEN}\"\n{sections}"),
    )
    .unwrap();
    let wrapper = in_namespace(setup);
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    TestGateway::spawn_via(&wrapper, &dir, &["--config", config.to_str().unwrap()], &[])
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
