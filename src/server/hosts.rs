//! Which Host and Origin headers the gateway answers. Both are compared
//! with fixed sets, never with each other: a page on a rebound name sends
//! a matching Host and Origin, so "Origin equals Host" proves nothing.
//! DNS rebinding needs a name, so besides the names an operator lists,
//! only loopback names, IP literals the connection really reached, and
//! the configured listen host are accepted.

use std::net::IpAddr;

/// Whether the request's Host names a site a browser keeps HSTS for:
/// a name, not an IP address or localhost.
pub fn names_a_site(headers: &axum::http::HeaderMap) -> bool {
    let Some(host) = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
    else {
        return false;
    };
    split_authority(host).is_some_and(|(name, _)| {
        parse_ip(&name).is_none() && name != "localhost" && !name.ends_with(".localhost")
    })
}

/// The fixed sets one request is checked against.
pub struct HostPolicy<'a> {
    /// The port the gateway listens on.
    pub port: u16,
    /// `gateway.host`, when set.
    pub listen_host: Option<&'a str>,
    /// The machine's MagicDNS name, once Tailscale said it: Serve keeps
    /// the Host clients used (port 443, or none), and tailnet clients of a
    /// tailnet bind may use it with the gateway's port.
    pub tailnet_name: Option<&'a str>,
    /// The local address this connection arrived on.
    pub local_ip: IpAddr,
    pub allowed_hosts: &'a [String],
    pub allowed_origins: &'a [String],
    /// Whether the listener speaks TLS (the own origins are https://).
    pub tls: bool,
}

impl HostPolicy<'_> {
    /// Whether a Host header names this gateway.
    pub fn host_allowed(&self, host: &str) -> bool {
        let Some((name, port)) = split_authority(host) else {
            return false;
        };
        (self.is_own_name(&name) && port.is_none_or(|p| p == self.port))
            || self.is_tailnet_name(&name, port.unwrap_or(443))
            || self.listed(&name, port)
    }

    /// Whether a browser page of this origin may call the gateway. Under
    /// TLS the gateway's own origins are https:// ones only, without it
    /// http:// ones only.
    pub fn origin_allowed(&self, origin: &str) -> bool {
        let origin = origin.trim_end_matches('/');
        if self
            .allowed_origins
            .iter()
            .any(|o| o.trim_end_matches('/').eq_ignore_ascii_case(origin))
        {
            return true;
        }
        let Some((scheme, authority)) = origin.split_once("://") else {
            return false;
        };
        let default_port = match scheme.to_ascii_lowercase().as_str() {
            "http" => 80,
            "https" => 443,
            _ => return false,
        };
        let Some((name, port)) = split_authority(authority) else {
            return false;
        };
        let port = port.unwrap_or(default_port);
        let own_scheme = if self.tls { "https" } else { "http" };
        (self.is_own_name(&name) && port == self.port && scheme.eq_ignore_ascii_case(own_scheme))
            || (scheme.eq_ignore_ascii_case("https") && self.is_tailnet_name(&name, port))
            || self.listed(&name, Some(port))
    }

    fn is_own_name(&self, name: &str) -> bool {
        if name == "localhost" {
            return true;
        }
        if let Some(ip) = parse_ip(name) {
            let ip = ip.to_canonical();
            if ip.is_loopback() || ip == self.local_ip.to_canonical() {
                return true;
            }
        }
        self.listen_host
            .is_some_and(|listen| split_authority(listen).is_some_and(|(listen, _)| listen == name))
    }

    fn is_tailnet_name(&self, name: &str, port: u16) -> bool {
        self.tailnet_name
            .is_some_and(|own| own.eq_ignore_ascii_case(name) && (port == 443 || port == self.port))
    }

    /// Whether `gateway.allowedHosts` lists the name (any port) or the
    /// name with this port.
    fn listed(&self, name: &str, port: Option<u16>) -> bool {
        self.allowed_hosts.iter().any(|entry| {
            split_authority(entry).is_some_and(|(listed, listed_port)| {
                listed == name && (listed_port.is_none() || listed_port == port)
            })
        })
    }
}

/// `name[:port]` or `[v6][:port]`, lowercased; None when malformed.
fn split_authority(authority: &str) -> Option<(String, Option<u16>)> {
    let authority = authority.trim();
    if authority.is_empty() || authority.contains(['@', '/', '?', '#', ' ']) {
        return None;
    }
    let (name, port) = if let Some(rest) = authority.strip_prefix('[') {
        let end = rest.find(']')?;
        let port = match &rest[end + 1..] {
            "" => None,
            after => Some(after.strip_prefix(':')?),
        };
        (&authority[..end + 2], port)
    } else {
        match authority.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok()?),
        None => None,
    };
    if name.is_empty() {
        return None;
    }
    Some((name.to_ascii_lowercase(), port))
}

fn parse_ip(name: &str) -> Option<IpAddr> {
    name.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy<'a>(hosts: &'a [String], origins: &'a [String]) -> HostPolicy<'a> {
        HostPolicy {
            port: 18789,
            listen_host: None,
            tailnet_name: None,
            local_ip: "127.0.0.1".parse().unwrap(),
            allowed_hosts: hosts,
            allowed_origins: origins,
            tls: false,
        }
    }

    #[test]
    fn loopback_names_at_our_port_are_hosts() {
        let p = policy(&[], &[]);
        for ok in [
            "127.0.0.1:18789",
            "localhost:18789",
            "LOCALHOST",
            "[::1]:18789",
            "127.0.0.2:18789",
        ] {
            assert!(p.host_allowed(ok), "{ok}");
        }
        for bad in [
            "attacker.example:18789",
            "attacker.example",
            "localhost:80",
            "localhost.attacker.example:18789",
            "127.0.0.1:18789@evil",
            "",
            "[::1",
        ] {
            assert!(!p.host_allowed(bad), "{bad}");
        }
    }

    #[test]
    fn listed_hosts_and_the_arrival_address() {
        let hosts = vec!["gw.example.com".to_string(), "box.lan:8443".to_string()];
        let mut p = policy(&hosts, &[]);
        p.local_ip = "192.168.1.5".parse().unwrap();
        assert!(p.host_allowed("gw.example.com"));
        assert!(p.host_allowed("GW.example.com:443"));
        assert!(p.host_allowed("box.lan:8443"));
        assert!(!p.host_allowed("box.lan:18789"));
        assert!(p.host_allowed("192.168.1.5:18789"));
        assert!(!p.host_allowed("192.168.1.6:18789"));
    }

    #[test]
    fn origins_are_checked_against_fixed_sets_only() {
        let origins = vec!["http://ui.example:8080".to_string()];
        let p = policy(&[], &origins);
        assert!(p.origin_allowed("http://127.0.0.1:18789"));
        assert!(p.origin_allowed("http://localhost:18789"));
        assert!(p.origin_allowed("http://ui.example:8080"));
        assert!(!p.origin_allowed("http://attacker.example:18789"));
        assert!(!p.origin_allowed("http://localhost"));
        assert!(!p.origin_allowed("https://localhost:18789"), "no TLS here");
        let tls = HostPolicy {
            tls: true,
            ..policy(&[], &origins)
        };
        assert!(tls.origin_allowed("https://localhost:18789"));
        assert!(
            !tls.origin_allowed("http://localhost:18789"),
            "not over TLS"
        );
        assert!(
            tls.origin_allowed("http://ui.example:8080"),
            "listed origins as listed"
        );
        assert!(!p.origin_allowed("null"));
        assert!(!p.origin_allowed("file://"));
        assert!(!p.origin_allowed("chrome-extension://abc"));
        let hosts = vec!["gw.example.com".to_string()];
        let p = policy(&hosts, &[]);
        assert!(p.origin_allowed("https://gw.example.com"));
    }

    #[test]
    fn the_magicdns_name_is_ours_once_tailscale_said_it() {
        let mut p = policy(&[], &[]);
        assert!(!p.host_allowed("gw.tail1234.ts.net"));
        p.tailnet_name = Some("gw.tail1234.ts.net");
        assert!(p.host_allowed("gw.tail1234.ts.net"));
        assert!(p.host_allowed("GW.tail1234.ts.net:443"));
        assert!(p.host_allowed("gw.tail1234.ts.net:18789"));
        assert!(!p.host_allowed("gw.tail1234.ts.net:8080"));
        assert!(!p.host_allowed("other.tail1234.ts.net"));
        assert!(p.origin_allowed("https://gw.tail1234.ts.net"));
        assert!(!p.origin_allowed("http://gw.tail1234.ts.net"));
    }
}
