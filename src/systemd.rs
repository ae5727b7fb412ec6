//! The systemd notification protocol (sd_notify(3)), hand-rolled: one
//! datagram per state change to the socket named in `NOTIFY_SOCKET`, a
//! path or, with a leading `@`, an abstract socket. Without the variable
//! nothing is sent; a failed send is a warning, never a failed start.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

pub struct Notifier {
    socket: UnixDatagram,
    target: std::os::unix::net::SocketAddr,
    /// Half of WATCHDOG_USEC, when the watchdog is on for this process.
    watchdog: Option<Duration>,
}

impl Notifier {
    /// The notifier systemd asked for through the environment, if any.
    pub fn from_env() -> Option<Notifier> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        let watchdog = watchdog_interval(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
        );
        let opened = UnixDatagram::unbound().and_then(|socket| {
            let target = address(path.as_encoded_bytes())?;
            Ok((socket, target))
        });
        match opened {
            Ok((socket, target)) => Some(Notifier {
                socket,
                target,
                watchdog,
            }),
            Err(e) => {
                tracing::warn!("NOTIFY_SOCKET is set but unusable: {e}");
                None
            }
        }
    }

    /// The gateway accepts connections.
    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}"));
    }

    /// A graceful shutdown has begun.
    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=draining connections");
    }

    /// Pings the watchdog at half its timeout for as long as the runtime
    /// runs, so a hung runtime stops the pings and systemd restarts us.
    pub fn spawn_watchdog(self: &std::sync::Arc<Self>) {
        let Some(every) = self.watchdog else {
            return;
        };
        let notifier = std::sync::Arc::clone(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            loop {
                ticks.tick().await;
                notifier.send("WATCHDOG=1");
            }
        });
    }

    fn send(&self, state: &str) {
        if let Err(e) = self.socket.send_to_addr(state.as_bytes(), &self.target) {
            tracing::warn!("cannot notify the service manager: {e}");
        }
    }
}

/// Half of WATCHDOG_USEC (systemd's advice), when it is set, positive,
/// and meant for this process (WATCHDOG_PID unset or ours).
fn watchdog_interval(usec: Option<&str>, pid: Option<&str>) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|u| *u > 0)?;
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    Some(Duration::from_micros(usec / 2))
}

fn address(path: &[u8]) -> std::io::Result<std::os::unix::net::SocketAddr> {
    match path.strip_prefix(b"@") {
        Some(name) => abstract_address(name),
        None => std::os::unix::net::SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(path)),
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn abstract_address(name: &[u8]) -> std::io::Result<std::os::unix::net::SocketAddr> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    std::os::unix::net::SocketAddr::from_abstract_name(name)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn abstract_address(_: &[u8]) -> std::io::Result<std::os::unix::net::SocketAddr> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "abstract sockets exist only on Linux",
    ))
}

#[cfg(test)]
mod tests {
    use super::watchdog_interval;
    use std::time::Duration;

    #[test]
    fn the_watchdog_pings_at_half_its_timeout_and_only_for_its_pid() {
        assert_eq!(
            watchdog_interval(Some("200000"), None),
            Some(Duration::from_millis(100))
        );
        let me = std::process::id().to_string();
        assert_eq!(
            watchdog_interval(Some("2000000"), Some(&me)),
            Some(Duration::from_secs(1))
        );
        assert_eq!(watchdog_interval(Some("2000000"), Some("1")), None);
        assert_eq!(watchdog_interval(Some("0"), None), None);
        assert_eq!(watchdog_interval(Some("soon"), None), None);
        assert_eq!(watchdog_interval(None, None), None);
    }
}
