//! The helpers started once the gateway listens: publishing through
//! Tailscale Serve or Funnel, and advertising on the LAN. Their failures
//! are reported in health (`sidecars`) and never stop a running gateway;
//! only `gateway.tailscale.required` makes a failed publish fatal at start.

use crate::config::{dotted, keys};
use crate::discovery::{self, Advertisement, Beacon};
use crate::gateway::Gateway;
use crate::health::HealthService;
use crate::protocol::types::{
    AuthConfigMode, MdnsConfigMode, SidecarHealth, SidecarHealthName, SidecarHealthState,
    TailscaleConfigMode,
};
use crate::protocol::SUPPORTED_PROTOCOL;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// What was started, to undo at shutdown.
#[derive(Default)]
pub struct Sidecars {
    published: Option<TailscaleConfigMode>,
    advertisement: Option<Advertisement>,
}

/// Starts what the config asks for, once the listeners are bound.
pub async fn start(gw: &Arc<Gateway>) -> std::io::Result<Sidecars> {
    let config = gw.config();
    let Some(bind) = gw.info.bind.get() else {
        return Ok(Sidecars::default());
    };
    let mut sidecars = Sidecars::default();
    let tailscale = &config.gateway.tailscale;
    if tailscale.mode != TailscaleConfigMode::Off {
        // Tailscale proxies from loopback: to a TLS gateway over TLS, without
        // checking a certificate that is usually self-signed.
        let target = if config.gateway.tls.enabled {
            format!("https+insecure://127.0.0.1:{}", bind.port)
        } else {
            bind.port.to_string()
        };
        match gw.tailscale.publish(tailscale.mode, &target).await {
            Ok(Some(url)) => {
                let detail = format!("tailscale {} --bg {target}", tailscale.mode);
                tracing::info!(%url, "published through {detail}");
                gw.rt.health.set_sidecar(health(
                    SidecarHealthName::Tailscale,
                    Ok(detail),
                    Some(url),
                ));
                sidecars.published = Some(tailscale.mode);
            }
            Ok(None) => {
                // Serve keeps the Host its clients used; without the name
                // the Host check would refuse every proxied request.
                let detail = format!(
                    "published, but `tailscale status --json` did not give the MagicDNS name, so requests through {} are refused as a foreign Host until the name is listed in {}",
                    tailscale.mode,
                    dotted(keys::GATEWAY_ALLOWED_HOSTS)
                );
                tracing::warn!("{detail}");
                gw.rt
                    .health
                    .set_sidecar(health(SidecarHealthName::Tailscale, Err(detail), None));
                sidecars.published = Some(tailscale.mode);
            }
            Err(e) if tailscale.required => {
                return Err(std::io::Error::other(format!(
                    "{} is on and publishing failed: {e}",
                    dotted(keys::GATEWAY_TAILSCALE_REQUIRED)
                )));
            }
            Err(e) => {
                tracing::warn!("tailscale {} failed: {e}", tailscale.mode);
                gw.rt
                    .health
                    .set_sidecar(health(SidecarHealthName::Tailscale, Err(e), None));
            }
        }
    } else if config.gateway.host.is_none()
        && config.gateway.bind == crate::protocol::types::GatewayConfigBind::Tailnet
    {
        // Clients on the tailnet may use the MagicDNS name as Host.
        gw.tailscale.learn_name().await;
    }
    let mdns = &config.discovery.mdns;
    let reachable: Vec<IpAddr> = bind
        .addresses
        .iter()
        .filter_map(|a| a.parse::<IpAddr>().ok())
        .filter(|ip| !ip.is_loopback())
        .collect();
    if mdns.mode != MdnsConfigMode::Off && !reachable.is_empty() {
        let instance = mdns
            .instance_name
            .as_ref()
            .map(|n| n.to_string())
            .unwrap_or_else(|| format!("{} (clawgate)", discovery::host_name()));
        let beacon = Beacon {
            port: bind.port,
            addresses: reachable
                .into_iter()
                .filter(|ip| !ip.is_unspecified())
                .collect(),
            txt: txt(gw, mdns.mode),
            openclaw_txt: Some(openclaw_txt(gw, mdns.mode, &instance)),
            instance,
        };
        let advertised = beacon.clone();
        let reporter = Arc::clone(&gw.rt.health);
        let reported = AtomicBool::new(false);
        let on_error = move |e: String| {
            // The daemon repeats an error on every send: the first says it.
            if !reported.swap(true, Ordering::Relaxed) {
                report_mdns_error(&reporter, e);
            }
        };
        // Socket setup and a thread: not for an async worker.
        let outcome = tokio::task::spawn_blocking(move || discovery::advertise(&beacon, on_error))
            .await
            .unwrap_or_else(|e| Err(format!("the mDNS advertiser stopped: {e}")));
        match outcome {
            Ok(advertisement) => {
                let detail = format!("advertising {}", advertisement.fullnames().join(", "));
                tracing::info!("{detail}");
                gw.rt
                    .health
                    .set_sidecar(health(SidecarHealthName::Discovery, Ok(detail), None));
                if gw.rt.health.tls().is_some() {
                    tokio::spawn(follow_certificate(
                        Arc::clone(gw),
                        advertisement.updater(),
                        advertised,
                    ));
                }
                sidecars.advertisement = Some(advertisement);
            }
            Err(e) => {
                tracing::warn!("LAN discovery failed: {e}");
                gw.rt
                    .health
                    .set_sidecar(health(SidecarHealthName::Discovery, Err(e), None));
            }
        }
    }
    Ok(sidecars)
}

impl Sidecars {
    /// Stops advertising: called as shutdown begins, so nobody finds a
    /// gateway that no longer takes connections.
    pub async fn withdraw(&mut self) {
        if let Some(advertisement) = self.advertisement.take() {
            let _ = tokio::task::spawn_blocking(move || advertisement.stop()).await;
        }
    }

    /// Withdraws the advertisement and, with resetOnExit, the route
    /// Tailscale published: after the drain, so clients that came through
    /// Serve get their answers first.
    pub async fn stop(mut self, gw: &Gateway) {
        self.withdraw().await;
        let Some(mode) = self.published else { return };
        if !gw.config().gateway.tailscale.reset_on_exit {
            return;
        }
        match gw.tailscale.unpublish(mode).await {
            Ok(()) => tracing::info!("tailscale {mode} route removed"),
            Err(e) => tracing::warn!("tailscale {mode} cleanup failed: {e}"),
        }
    }
}

/// Announces the new fingerprint when the served certificate changes, so
/// the TXT record keeps naming the certificate clients will get.
async fn follow_certificate(gw: Arc<Gateway>, updater: discovery::Updater, mut beacon: Beacon) {
    let interval =
        std::time::Duration::from_millis(gw.config().gateway.tls.watch_interval_ms as u64);
    let updater = Arc::new(updater);
    let mut closing = gw.shutdown_signal();
    let fingerprint = |gw: &Gateway| gw.rt.health.tls().map(|tls| tls.fingerprint);
    let mut announced = fingerprint(&gw);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = closing.wait_for(|closing| *closing) => return,
        }
        let now = fingerprint(&gw);
        if now == announced {
            continue;
        }
        let mode = gw.config().discovery.mdns.mode;
        beacon.txt = txt(&gw, mode);
        beacon.openclaw_txt = Some(openclaw_txt(&gw, mode, &beacon.instance));
        let (updater, changed) = (Arc::clone(&updater), beacon.clone());
        match tokio::task::spawn_blocking(move || updater.update(&changed)).await {
            Ok(Ok(())) => {
                tracing::info!("LAN discovery advertises the new TLS certificate");
                announced = now;
            }
            Ok(Err(e)) => tracing::warn!("{e}"),
            Err(_) => return,
        }
    }
}

/// The TXT record: what a client needs to choose a gateway, no secret.
fn txt(gw: &Gateway, mode: MdnsConfigMode) -> Vec<(String, String)> {
    let config = gw.config();
    let port = gw.info.bind.get().map_or(0, |b| b.port);
    let (min, max) = SUPPORTED_PROTOCOL;
    let mut txt = vec![
        ("role", "gateway".to_string()),
        ("version", env!("CARGO_PKG_VERSION").to_string()),
        ("protocolMin", min.to_string()),
        ("protocolMax", max.to_string()),
        ("gatewayPort", port.to_string()),
        (
            "auth",
            if config.gateway.auth.mode == AuthConfigMode::None {
                "none"
            } else {
                "required"
            }
            .to_string(),
        ),
    ];
    match gw.rt.health.tls() {
        Some(tls) => txt.extend([("tls", "1".to_string()), ("tlsSha256", tls.fingerprint)]),
        None => txt.push(("tls", "0".to_string())),
    }
    if mode == MdnsConfigMode::Full {
        if let Some(name) = gw.tailscale.dns_name() {
            txt.push(("tailnetDns", name.to_string()));
        }
    }
    txt.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// The TXT record OpenClaw's gateway publishes with `_openclaw-gw._tcp`
/// and its apps read: where to connect, never a secret. Advertised only
/// beyond loopback, so always directly reachable.
fn openclaw_txt(gw: &Gateway, mode: MdnsConfigMode, instance: &str) -> Vec<(String, String)> {
    let port = gw.info.bind.get().map_or(0, |b| b.port);
    let mut txt = vec![
        ("role", "gateway".to_string()),
        ("transport", "gateway".to_string()),
        ("gatewayPort", port.to_string()),
        ("lanHost", format!("{}.local", discovery::host_name())),
        ("displayName", instance.to_string()),
        ("gatewayDirectReachable", "1".to_string()),
    ];
    if let Some(tls) = gw.rt.health.tls() {
        txt.extend([
            ("gatewayTls", "1".to_string()),
            // OpenClaw's apps compare fingerprints as lowercase hex.
            (
                "gatewayTlsSha256",
                tls.fingerprint.replace(':', "").to_ascii_lowercase(),
            ),
        ]);
    }
    if mode == MdnsConfigMode::Full {
        if let Some(name) = gw.tailscale.dns_name() {
            txt.push(("tailnetDns", name.to_string()));
        }
    }
    txt.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn health(
    name: SidecarHealthName,
    outcome: Result<String, String>,
    url: Option<String>,
) -> SidecarHealth {
    let (state, detail) = match outcome {
        Ok(detail) => (SidecarHealthState::Running, detail),
        Err(detail) => (SidecarHealthState::Failed, detail),
    };
    SidecarHealth {
        name,
        state,
        detail: Some(detail),
        url,
    }
}

fn report_mdns_error(health: &HealthService, error: String) {
    tracing::warn!("LAN discovery: {error}");
    health.set_sidecar(self::health(SidecarHealthName::Discovery, Err(error), None));
}
