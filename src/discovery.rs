//! LAN discovery with multicast DNS-SD (Bonjour): the gateway advertises
//! itself as `_clawgate._tcp`, and as OpenClaw's `_openclaw-gw._tcp` for
//! OpenClaw's apps; `clawgate discover` browses for either.
//! The TXT record says what a client needs to choose and connect (port,
//! protocol range, version, whether auth and TLS are on), never a secret;
//! it is unauthenticated, so clients connect by the resolved address and
//! still authenticate.

use mdns_sd::{DaemonEvent, IfKind, ServiceDaemon, ServiceEvent, ServiceInfo};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

pub const SERVICE_TYPE: &str = "_clawgate._tcp.local.";
/// The service OpenClaw's gateway advertises and its apps browse for.
pub const OPENCLAW_SERVICE_TYPE: &str = "_openclaw-gw._tcp.local.";

/// What to advertise.
#[derive(Clone)]
pub struct Beacon {
    pub instance: String,
    pub port: u16,
    /// The addresses clients should use; empty means every address of the
    /// machine (a gateway listening on 0.0.0.0).
    pub addresses: Vec<IpAddr>,
    pub txt: Vec<(String, String)>,
    /// Also advertised as OpenClaw's gateway service with this TXT record.
    pub openclaw_txt: Option<Vec<(String, String)>>,
}

/// A running advertisement; withdrawn (with a goodbye packet) by `stop`.
pub struct Advertisement {
    daemon: ServiceDaemon,
    /// One per service type, the gateway's own first.
    fullnames: Vec<String>,
}

/// The machine's host name, for the instance name and the `.local` host.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length, and gethostname writes
    // at most that many bytes.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]);
    let label = name.split('.').next().unwrap_or("");
    let label: String = label
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(63)
        .collect();
    if ok && !label.is_empty() {
        label
    } else {
        "clawgate".to_string()
    }
}

/// A daemon on the mDNS port that leaves IPv6 loopback alone: multicast
/// there goes nowhere, and only fills the log with send errors.
fn daemon() -> Result<ServiceDaemon, String> {
    let daemon = ServiceDaemon::new().map_err(|e| format!("cannot start mDNS: {e}"))?;
    let _ = daemon.disable_interface(IfKind::LoopbackV6);
    Ok(daemon)
}

/// Linux interface flags (include/uapi/linux/if.h).
const IFF_UP: u32 = 0x1;
const IFF_LOOPBACK: u32 = 0x8;
const IFF_POINTOPOINT: u32 = 0x10;
const IFF_MULTICAST: u32 = 0x1000;

/// Refuses early when the LAN cannot carry mDNS (the daemon would start
/// and stay silent): of the machine's LAN interfaces (neither loopback
/// nor point-to-point: a VPN tunnel carries no LAN multicast), one must
/// be up with multicast on. A machine with no LAN interface advertises on
/// loopback, to browsers on the same machine. Where the flags cannot be
/// read, the daemon is left to try.
fn check_multicast() -> Result<(), String> {
    let Some(interfaces) = interface_flags() else {
        return Ok(());
    };
    let mut refused = Vec::new();
    for (name, flags) in interfaces {
        if flags & (IFF_LOOPBACK | IFF_POINTOPOINT) != 0 {
            continue;
        }
        if flags & IFF_UP == 0 {
            refused.push(format!("{name} (down)"));
        } else if flags & IFF_MULTICAST == 0 {
            refused.push(format!("{name} (multicast off)"));
        } else {
            return Ok(());
        }
    }
    if refused.is_empty() {
        return Ok(());
    }
    Err(format!(
        "multicast is unavailable: no LAN interface is up with multicast on ({})",
        refused.join(", ")
    ))
}

/// The flags of each interface that has an IP address (getifaddrs: the
/// network namespace of this process, unlike /sys/class/net).
fn interface_flags() -> Option<Vec<(String, u32)>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return None;
    }
    let mut out = Vec::new();
    let mut cursor = head;
    while !cursor.is_null() {
        // SAFETY: a node of the list getifaddrs returned, alive until
        // freeifaddrs; its name is a C string and its address, when
        // present, starts with a family.
        let entry = unsafe { &*cursor };
        let family = if entry.ifa_addr.is_null() {
            None
        } else {
            Some(i32::from(unsafe { (*entry.ifa_addr).sa_family }))
        };
        if matches!(family, Some(libc::AF_INET | libc::AF_INET6)) {
            let name = unsafe { std::ffi::CStr::from_ptr(entry.ifa_name) };
            out.push((name.to_string_lossy().into_owned(), entry.ifa_flags));
        }
        cursor = entry.ifa_next;
    }
    // SAFETY: the list getifaddrs allocated, no longer borrowed.
    unsafe { libc::freeifaddrs(head) };
    out.sort();
    out.dedup_by(|a, b| a.0 == b.0);
    Some(out)
}

/// Starts advertising; `on_error` hears what goes wrong later (a network
/// that drops multicast, say).
pub fn advertise(
    beacon: &Beacon,
    on_error: impl Fn(String) + Send + 'static,
) -> Result<Advertisement, String> {
    check_multicast()?;
    let daemon = daemon()?;
    let services = services(beacon)?;
    let fullnames = services
        .iter()
        .map(|s| s.get_fullname().to_string())
        .collect();
    let events = daemon
        .monitor()
        .map_err(|e| format!("cannot watch mDNS: {e}"))?;
    for info in services {
        daemon
            .register(info)
            .map_err(|e| format!("cannot advertise over mDNS: {e}"))?;
    }
    std::thread::Builder::new()
        .name("mdns-monitor".into())
        .spawn(move || {
            while let Ok(event) = events.recv() {
                match event {
                    DaemonEvent::Error(e) => on_error(e.to_string()),
                    DaemonEvent::NameChange(change) => tracing::info!(
                        "mDNS: another service had our name; now {}",
                        change.new_name
                    ),
                    _ => {}
                }
            }
        })
        .map_err(|e| format!("cannot start the mDNS monitor: {e}"))?;
    Ok(Advertisement { daemon, fullnames })
}

/// The beacon as each service type it is advertised as.
fn services(beacon: &Beacon) -> Result<Vec<ServiceInfo>, String> {
    let host = format!("{}.local.", host_name());
    let mut services = vec![service(beacon, SERVICE_TYPE, &host, &beacon.txt)?];
    if let Some(txt) = &beacon.openclaw_txt {
        services.push(service(beacon, OPENCLAW_SERVICE_TYPE, &host, txt)?);
    }
    Ok(services)
}

/// The beacon as one service type with this TXT record.
fn service(
    beacon: &Beacon,
    service_type: &str,
    host: &str,
    txt: &[(String, String)],
) -> Result<ServiceInfo, String> {
    let txt: Vec<(&str, &str)> = txt.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let info = ServiceInfo::new(
        service_type,
        &beacon.instance,
        host,
        beacon.addresses.as_slice(),
        beacon.port,
        txt.as_slice(),
    )
    .map_err(|e| format!("cannot describe the mDNS service: {e}"))?;
    Ok(if beacon.addresses.is_empty() {
        info.enable_addr_auto()
    } else {
        info
    })
}

impl Advertisement {
    /// The services advertised, e.g. `kitchen._clawgate._tcp.local.`.
    pub fn fullnames(&self) -> &[String] {
        &self.fullnames
    }

    /// A handle that announces a changed beacon (same names, new TXT
    /// record) while the advertisement runs.
    pub fn updater(&self) -> Updater {
        Updater(self.daemon.clone())
    }

    /// Sends the goodbyes and stops the daemon, waiting at most a second
    /// for each.
    pub fn stop(self) {
        for fullname in &self.fullnames {
            if let Ok(done) = self.daemon.unregister(fullname) {
                let _ = done.recv_timeout(Duration::from_secs(1));
            }
        }
        if let Ok(done) = self.daemon.shutdown() {
            let _ = done.recv_timeout(Duration::from_secs(1));
        }
    }
}

/// Announces a changed beacon of a running [`Advertisement`].
pub struct Updater(ServiceDaemon);

impl Updater {
    /// Registers the services again with the beacon's TXT records, which
    /// mDNS announces to the network.
    pub fn update(&self, beacon: &Beacon) -> Result<(), String> {
        for info in services(beacon)? {
            self.0
                .register(info)
                .map_err(|e| format!("cannot update the mDNS advertisement: {e}"))?;
        }
        Ok(())
    }
}

/// A gateway found on the network.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Found {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub addresses: Vec<IpAddr>,
    /// A URL built from the resolved address (not from the TXT data), wss://
    /// when the TXT record says the gateway serves TLS.
    pub ws_url: Option<String>,
    pub txt: BTreeMap<String, String>,
}

/// Browses for `timeout` and returns the gateways of `service_type`
/// ([`SERVICE_TYPE`] or [`OPENCLAW_SERVICE_TYPE`]) that answered, by name.
pub fn browse(service_type: &str, timeout: Duration) -> Result<Vec<Found>, String> {
    let daemon = daemon()?;
    let events = daemon
        .browse(service_type)
        .map_err(|e| format!("cannot browse mDNS: {e}"))?;
    let deadline = Instant::now() + timeout;
    let mut found: BTreeMap<String, Found> = BTreeMap::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match events.recv_timeout(left) {
            Ok(ServiceEvent::ServiceResolved(service)) => {
                let mut addresses: Vec<IpAddr> = service
                    .get_addresses()
                    .iter()
                    .map(|a| a.to_ip_addr())
                    .collect();
                addresses.sort_by_key(|ip| (ip.is_ipv6(), ip.is_loopback(), *ip));
                let tls = service
                    .get_property_val_str("tls")
                    .or_else(|| service.get_property_val_str("gatewayTls"))
                    == Some("1");
                let scheme = if tls { "wss" } else { "ws" };
                let ws_url = addresses.first().map(|ip| match ip {
                    IpAddr::V4(v4) => format!("{scheme}://{v4}:{}", service.get_port()),
                    IpAddr::V6(v6) => format!("{scheme}://[{v6}]:{}", service.get_port()),
                });
                let name = service
                    .get_fullname()
                    .trim_end_matches(service_type)
                    .trim_end_matches('.')
                    .replace("\\", "");
                let txt = service
                    .get_properties()
                    .iter()
                    .map(|p| (p.key().to_string(), p.val_str().to_string()))
                    .collect();
                found.insert(
                    name.clone(),
                    Found {
                        name,
                        host: service.get_hostname().trim_end_matches('.').to_string(),
                        port: service.get_port(),
                        addresses,
                        ws_url,
                        txt,
                    },
                );
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let _ = daemon.stop_browse(service_type);
    if let Ok(done) = daemon.shutdown() {
        let _ = done.recv_timeout(Duration::from_secs(1));
    }
    Ok(found.into_values().collect())
}
