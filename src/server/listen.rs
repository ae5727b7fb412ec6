//! Where the gateway listens: the bind mode resolved against the
//! machine's interfaces, once, at startup.

use crate::config::{is_loopback_host, keys};
use crate::protocol::types::{GatewayConfig, GatewayConfigBind};
use std::net::{IpAddr, Ipv4Addr};

/// The addresses to listen on (all on one port) and why.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenPlan {
    /// The bind mode, or `host` when `gateway.host` overrides it.
    pub mode: String,
    /// Hosts to bind, the first being the one shown to people.
    pub hosts: Vec<String>,
    pub reason: String,
}

impl ListenPlan {
    /// Whether any listener is reachable from another machine.
    pub fn beyond_loopback(&self) -> bool {
        self.hosts.iter().any(|h| !is_loopback_host(h))
    }

    /// Whether a process on this machine reaches the gateway at 127.0.0.1.
    pub fn covers_loopback_v4(&self) -> bool {
        self.hosts.iter().any(|h| {
            h.parse::<IpAddr>()
                .is_ok_and(|ip| ip == IpAddr::V4(Ipv4Addr::LOCALHOST) || ip.is_unspecified())
        })
    }
}

/// An address of a network interface.
#[derive(Debug, Clone)]
pub struct InterfaceAddr {
    pub name: String,
    pub ip: IpAddr,
}

/// The machine's interface addresses now.
pub fn interfaces() -> std::io::Result<Vec<InterfaceAddr>> {
    Ok(if_addrs::get_if_addrs()?
        .into_iter()
        .map(|i| InterfaceAddr {
            ip: i.ip(),
            name: i.name,
        })
        .collect())
}

/// Tailscale gives each machine an address in 100.64.0.0/10 (the shared
/// address space it uses for IPv4) and one in fd7a:115c:a1e0::/48.
pub fn is_tailnet(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            a == 100 && (64..128).contains(&b)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            s[0] == 0xfd7a && s[1] == 0x115c && s[2] == 0xa1e0
        }
    }
}

/// Tailscale's interface: `tailscale0` on Linux (any `tailscale*` name
/// given to `tailscaled --tun`), `utun*` on macOS. 100.64.0.0/10 is
/// also carrier-grade NAT space, so an address there on another
/// interface is an ISP's, reachable by its other customers.
pub fn is_tailscale_interface(name: &str) -> bool {
    name.starts_with("tailscale") || name.starts_with("utun")
}

pub const TAILNET_RANGES: &str = "100.64.0.0/10 and fd7a:115c:a1e0::/48";

/// Resolves the bind mode. `can_bind` tells whether an address can be
/// listened on (auto falls back when loopback cannot).
pub fn plan(
    gateway: &GatewayConfig,
    interfaces: &[InterfaceAddr],
    can_bind: impl Fn(IpAddr) -> bool,
) -> Result<ListenPlan, String> {
    let loopback = Ipv4Addr::LOCALHOST.to_string();
    if let Some(host) = &gateway.host {
        return Ok(ListenPlan {
            mode: "host".into(),
            hosts: vec![host.to_string()],
            reason: format!("{}: {} only", keys::GATEWAY_HOST, host.as_str()),
        });
    }
    let mode = gateway.bind.to_string();
    let (hosts, reason) = match gateway.bind {
        GatewayConfigBind::Loopback => (vec![loopback.clone()], format!("{loopback} only")),
        GatewayConfigBind::Lan => (
            vec![Ipv4Addr::UNSPECIFIED.to_string()],
            "0.0.0.0: every interface".into(),
        ),
        GatewayConfigBind::Auto if can_bind(IpAddr::V4(Ipv4Addr::LOCALHOST)) => (
            vec![loopback.clone()],
            format!("auto prefers loopback, and {loopback} can be bound"),
        ),
        GatewayConfigBind::Auto => (
            vec![Ipv4Addr::UNSPECIFIED.to_string()],
            format!("auto prefers loopback, but {loopback} cannot be bound here, so 0.0.0.0: every interface"),
        ),
        GatewayConfigBind::Tailnet => {
            let mut found: Vec<(&str, IpAddr)> = interfaces
                .iter()
                .filter(|i| is_tailnet(i.ip) && is_tailscale_interface(&i.name))
                .map(|i| (i.name.as_str(), i.ip))
                .collect();
            // IPv4 first: it is what people type.
            found.sort_by_key(|(_, ip)| (ip.is_ipv6(), *ip));
            found.dedup_by_key(|(_, ip)| *ip);
            if found.is_empty() {
                return Err(no_tailnet_address(interfaces));
            }
            let listed: Vec<String> = found
                .iter()
                .map(|(name, ip)| format!("{ip} on {name}"))
                .collect();
            let mut hosts: Vec<String> = found.iter().map(|(_, ip)| ip.to_string()).collect();
            hosts.push(loopback.clone());
            (
                hosts,
                format!(
                    "the Tailscale addresses ({}) and {loopback} for local clients",
                    listed.join(", ")
                ),
            )
        }
    };
    Ok(ListenPlan {
        reason: format!("bind {mode}: {reason}"),
        mode,
        hosts,
    })
}

fn no_tailnet_address(interfaces: &[InterfaceAddr]) -> String {
    let seen: Vec<String> = interfaces
        .iter()
        .map(|i| format!("{} {}", i.name, i.ip))
        .collect();
    format!(
        "gateway.bind is tailnet, but no Tailscale interface (tailscale*, utun*) has a Tailscale address: looked for {TAILNET_RANGES} among {}. \
         Start Tailscale (`tailscale up`) and restart the gateway, or choose another bind",
        if seen.is_empty() {
            "no addresses at all".to_string()
        } else {
            seen.join(", ")
        }
    )
}

/// Whether a listener can be opened on `ip` (any port).
pub fn can_bind(ip: IpAddr) -> bool {
    std::net::TcpListener::bind((ip, 0)).is_ok()
}

/// `::1` and other v6 literals need brackets before a port.
pub fn with_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway(bind: &str) -> GatewayConfig {
        crate::testing::config(&format!(
            "[gateway]\nbind = \"{bind}\"\n[gateway.auth]\nmode = \"token\"\ntoken = \"t\""
        ))
        .gateway
        .clone()
    }

    fn iface(name: &str, ip: &str) -> InterfaceAddr {
        InterfaceAddr {
            name: name.into(),
            ip: ip.parse().unwrap(),
        }
    }

    #[test]
    fn tailnet_listens_on_every_tailscale_address_and_loopback() {
        let ifaces = [
            iface("lo", "127.0.0.1"),
            iface("eth0", "192.168.1.5"),
            iface("tailscale0", "fd7a:115c:a1e0::12"),
            iface("tailscale0", "100.101.2.3"),
            iface("eth1", "100.63.0.1"),
            iface("eth1", "100.128.0.1"),
        ];
        let plan = plan(&gateway("tailnet"), &ifaces, |_| true).unwrap();
        assert_eq!(
            plan.hosts,
            ["100.101.2.3", "fd7a:115c:a1e0::12", "127.0.0.1"]
        );
        assert!(
            plan.reason.contains("100.101.2.3 on tailscale0"),
            "{}",
            plan.reason
        );
        assert!(plan.beyond_loopback());
        assert!(plan.covers_loopback_v4());
    }

    #[test]
    fn tailnet_without_an_address_names_what_it_looked_for() {
        let ifaces = [iface("lo", "127.0.0.1"), iface("eth0", "10.0.0.7")];
        let err = plan(&gateway("tailnet"), &ifaces, |_| true).unwrap_err();
        assert!(
            err.contains("100.64.0.0/10 and fd7a:115c:a1e0::/48"),
            "{err}"
        );
        assert!(err.contains("eth0 10.0.0.7"), "{err}");
    }

    #[test]
    fn carrier_grade_nat_addresses_on_other_interfaces_are_not_the_tailnet() {
        let ifaces = [iface("lo", "127.0.0.1"), iface("wwan0", "100.72.9.1")];
        let err = plan(&gateway("tailnet"), &ifaces, |_| true).unwrap_err();
        assert!(err.contains("wwan0 100.72.9.1"), "{err}");
        let ifaces = [iface("wwan0", "100.72.9.1"), iface("utun3", "100.101.2.3")];
        let plan = plan(&gateway("tailnet"), &ifaces, |_| true).unwrap();
        assert_eq!(plan.hosts, ["100.101.2.3", "127.0.0.1"]);
    }

    #[test]
    fn auto_prefers_loopback_and_falls_back_to_every_interface() {
        let plan_ok = plan(&gateway("auto"), &[], |_| true).unwrap();
        assert_eq!(plan_ok.hosts, ["127.0.0.1"]);
        assert!(!plan_ok.beyond_loopback());
        let fallback = plan(&gateway("auto"), &[], |_| false).unwrap();
        assert_eq!(fallback.hosts, ["0.0.0.0"]);
        assert!(
            fallback.reason.contains("cannot be bound"),
            "{}",
            fallback.reason
        );
        assert!(fallback.beyond_loopback());
    }
}
