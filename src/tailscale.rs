//! The local Tailscale daemon, through its `tailscale` CLI: publishing the
//! gateway with `tailscale serve` or `tailscale funnel`, learning the
//! machine's MagicDNS name, and confirming the identity Serve attests
//! with `tailscale whois`.

use crate::protocol::types::{AuthConfigMode, GatewayConfig, TailscaleConfigMode};
use axum::http::HeaderMap;
use serde_json::Value;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::process::Stdio;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

/// Long enough for a daemon that is busy provisioning a certificate.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(15);
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// The CLI's output is small; more than this is not the CLI we know.
const MAX_OUTPUT_BYTES: u64 = 256 * 1024;
const WHOIS_TTL: Duration = Duration::from_secs(60);
const WHOIS_FAILURE_TTL: Duration = Duration::from_secs(5);
const WHOIS_CACHE_ENTRIES: usize = 256;

/// The headers Tailscale Serve sets on what it proxies (it removes any a
/// client sent): the tailnet user, and the forwarding headers that mark a
/// request as proxied.
const USER_LOGIN: &str = "tailscale-user-login";
const FORWARDED: [&str; 3] = ["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"];

/// When `tailscale whois` answered, and the login it named or its error.
type WhoisAnswer = (Instant, Result<String, String>);

pub struct Tailscale {
    program: String,
    /// The machine's MagicDNS name (no trailing dot), once learned: Serve
    /// keeps the Host clients used, so the gateway must answer to it.
    dns_name: OnceLock<String>,
    whois: Mutex<HashMap<IpAddr, WhoisAnswer>>,
}

pub use crate::protocol::ServeClaim;

/// The claim a request makes, when it came from a loopback peer (Serve
/// dials the gateway locally) with every header Serve sets, over a
/// socket of root (tailscaled) or of the gateway's own user: any other
/// local user could write those headers. Whether the claim holds is for
/// [`Tailscale::confirm`] to say.
pub async fn claim(peer: SocketAddr, local: SocketAddr, headers: &HeaderMap) -> Option<ServeClaim> {
    if !peer.ip().to_canonical().is_loopback() {
        return None;
    }
    let made = claim_in(headers)?;
    // Reading the socket table is file I/O: off the async workers.
    let owner = tokio::task::spawn_blocking(move || loopback_peer_uid(peer, local))
        .await
        .ok()
        .flatten();
    match owner {
        Some(uid) if uid == 0 || uid == current_uid() => Some(made),
        Some(uid) => {
            tracing::warn!(
                uid,
                "Tailscale Serve headers from another local user's socket were ignored"
            );
            None
        }
        None => None,
    }
}

// SAFETY: geteuid cannot fail.
fn current_uid() -> u32 {
    unsafe { libc::geteuid() }
}

/// The owner of the client end of a loopback TCP connection, from the
/// kernel's socket tables; None when it cannot be told.
fn loopback_peer_uid(peer: SocketAddr, local: SocketAddr) -> Option<u32> {
    use std::io::BufRead;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(file) = std::fs::File::open(table) else {
            continue;
        };
        for line in std::io::BufReader::new(file).lines().map_while(Result::ok) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 8 {
                continue;
            }
            if proc_socket_addr(fields[1]) == Some(peer)
                && proc_socket_addr(fields[2]) == Some(local)
            {
                return fields[7].parse().ok();
            }
        }
    }
    None
}

/// An address as /proc/net/tcp prints it: the address words in native
/// byte order, then the port, in hex. IPv4-mapped IPv6 compares as IPv4.
fn proc_socket_addr(field: &str) -> Option<SocketAddr> {
    let (addr, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let mut bytes = Vec::with_capacity(16);
    for word in addr.as_bytes().chunks(8) {
        let word = u32::from_str_radix(std::str::from_utf8(word).ok()?, 16).ok()?;
        bytes.extend_from_slice(&word.to_ne_bytes());
    }
    let ip = match bytes.len() {
        4 => IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?),
        16 => IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?).to_canonical(),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The claim the headers make, whoever sent them.
fn claim_in(headers: &HeaderMap) -> Option<ServeClaim> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    if FORWARDED.iter().any(|h| header(h).is_none()) {
        return None;
    }
    // Serve sets a single address; a list means another proxy added
    // to it, and the first entry is then whatever a client wrote.
    let client = header(FORWARDED[0])?;
    if client.contains(',') {
        return None;
    }
    Some(ServeClaim {
        login: header(USER_LOGIN)?.to_string(),
        client: client.parse().ok()?,
    })
}

/// Whether a connect through Serve may authenticate by the tailnet
/// identity: only with Serve (Funnel traffic carries no identity), and
/// by default only with token auth (a password is an explicit boundary).
pub fn identity_allowed(gateway: &GatewayConfig) -> bool {
    gateway.tailscale.mode == TailscaleConfigMode::Serve
        && gateway
            .auth
            .allow_tailscale
            .unwrap_or(gateway.auth.mode == AuthConfigMode::Token)
}

impl Default for Tailscale {
    fn default() -> Self {
        Tailscale::new("tailscale")
    }
}

impl Tailscale {
    pub fn new(program: &str) -> Self {
        Tailscale {
            program: program.to_string(),
            dns_name: OnceLock::new(),
            whois: Mutex::new(HashMap::new()),
        }
    }

    pub fn dns_name(&self) -> Option<&str> {
        self.dns_name.get().map(String::as_str)
    }

    /// Asks the daemon to publish `target` (a local port, or a URL such as
    /// `https+insecure://127.0.0.1:<port>` for a gateway serving TLS) in
    /// the background, so it outlives this call; returns the URL it is
    /// reachable at, when the daemon says.
    pub async fn publish(
        &self,
        mode: TailscaleConfigMode,
        target: &str,
    ) -> Result<Option<String>, String> {
        self.run(&[command(mode), "--bg", "--yes", target], PUBLISH_TIMEOUT)
            .await?;
        Ok(self
            .learn_name()
            .await
            .map(|name| format!("https://{name}/")))
    }

    /// Removes the route serve or funnel published (only that one:
    /// `reset` would clear every route of the machine).
    pub async fn unpublish(&self, mode: TailscaleConfigMode) -> Result<(), String> {
        self.run(&[command(mode), "--https=443", "off"], PUBLISH_TIMEOUT)
            .await
            .map(drop)
    }

    /// Reads the MagicDNS name from `tailscale status --json`; None when
    /// the daemon cannot say.
    pub async fn learn_name(&self) -> Option<String> {
        if let Some(name) = self.dns_name.get() {
            return Some(name.clone());
        }
        let out = match self.run(&["status", "--json"], QUERY_TIMEOUT).await {
            Ok(out) => out,
            Err(e) => {
                tracing::debug!("cannot read the MagicDNS name: {e}");
                return None;
            }
        };
        let name = json_in(&out)?["Self"]["DNSName"]
            .as_str()?
            .trim_end_matches('.')
            .to_ascii_lowercase();
        if name.is_empty() {
            return None;
        }
        Some(self.dns_name.get_or_init(|| name).clone())
    }

    /// Whether the daemon confirms the claim: `tailscale whois` of the
    /// forwarded address names the login the header gave.
    pub async fn confirm(&self, claim: &ServeClaim) -> Result<String, String> {
        let login = self.whois(claim.client).await?;
        if login.trim().eq_ignore_ascii_case(claim.login.trim()) {
            Ok(login)
        } else {
            Err(format!(
                "tailscale whois {} names another user than Tailscale-User-Login",
                claim.client
            ))
        }
    }

    /// The login of the tailnet user at `ip`, cached briefly.
    async fn whois(&self, ip: IpAddr) -> Result<String, String> {
        if let Some((at, known)) = self.whois.lock().expect("whois lock").get(&ip) {
            let ttl = if known.is_ok() {
                WHOIS_TTL
            } else {
                WHOIS_FAILURE_TTL
            };
            if at.elapsed() < ttl {
                return known.clone();
            }
        }
        let ip_text = ip.to_string();
        let answer = self
            .run(&["whois", "--json", &ip_text], QUERY_TIMEOUT)
            .await
            .and_then(|out| {
                let profile =
                    &json_in(&out).ok_or("tailscale whois printed no JSON")?["UserProfile"];
                profile["LoginName"]
                    .as_str()
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .ok_or_else(|| "tailscale whois names no user (a tagged device?)".to_string())
            });
        let mut cache = self.whois.lock().expect("whois lock");
        if cache.len() >= WHOIS_CACHE_ENTRIES {
            cache.retain(|_, (at, _)| at.elapsed() < WHOIS_TTL);
            if cache.len() >= WHOIS_CACHE_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(ip, (Instant::now(), answer.clone()));
        answer
    }

    /// Runs the CLI; its stdout, or what went wrong in one line.
    async fn run(&self, args: &[&str], timeout: Duration) -> Result<String, String> {
        let shown = format!("{} {}", self.program, args.join(" "));
        let mut child = tokio::process::Command::new(&self.program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => format!(
                    "the {} CLI was not found on PATH; install Tailscale or set gateway.tailscale.mode to off",
                    self.program
                ),
                _ => format!("cannot run {shown}: {e}"),
            })?;
        let mut stdout = child.stdout.take().expect("piped").take(MAX_OUTPUT_BYTES);
        let mut stderr = child.stderr.take().expect("piped").take(MAX_OUTPUT_BYTES);
        let finished = tokio::time::timeout(timeout, async {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let (read_out, read_err) =
                tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
            read_out.and(read_err)?;
            Ok::<_, std::io::Error>((child.wait().await?, out, err))
        })
        .await;
        let (status, out, err) = match finished {
            Err(_) => return Err(format!("{shown} did not finish within {timeout:?}")),
            Ok(Err(e)) => return Err(format!("{shown}: {e}")),
            Ok(Ok(done)) => done,
        };
        if status.success() {
            return Ok(String::from_utf8_lossy(&out).into_owned());
        }
        let said = String::from_utf8_lossy(&err);
        let said = said.lines().map(str::trim).find(|l| !l.is_empty());
        Err(match said {
            Some(line) => format!("{shown} failed: {line}"),
            None => format!("{shown} failed ({status})"),
        })
    }
}

fn command(mode: TailscaleConfigMode) -> &'static str {
    match mode {
        TailscaleConfigMode::Funnel => "funnel",
        _ => "serve",
    }
}

/// The JSON object in the CLI's output (which may carry a warning line
/// before it).
fn json_in(out: &str) -> Option<Value> {
    let start = out.find('{')?;
    let end = out.rfind('}')?;
    serde_json::from_str(out.get(start..=end)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, v.parse().unwrap());
        }
        map
    }

    const SERVE: [(&str, &str); 4] = [
        ("x-forwarded-for", "100.101.1.2"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "gw.example.ts.net"),
        ("tailscale-user-login", "alice@example.com"),
    ];

    #[test]
    fn only_a_loopback_peer_with_every_serve_header_makes_a_claim() {
        let made = claim_in(&headers(&SERVE)).unwrap();
        assert_eq!(made.login, "alice@example.com");
        assert_eq!(made.client, "100.101.1.2".parse::<IpAddr>().unwrap());
        let remote: IpAddr = "100.101.1.2".parse().unwrap();
        let local: SocketAddr = "100.100.1.1:18789".parse().unwrap();
        let serve = headers(&SERVE);
        let from_remote = claim(SocketAddr::new(remote, 40000), local, &serve);
        assert_eq!(
            futures_util::FutureExt::now_or_never(from_remote),
            Some(None)
        );
        for missing in 0..SERVE.len() {
            let mut partial = SERVE.to_vec();
            partial.remove(missing);
            assert_eq!(claim_in(&headers(&partial)), None);
        }
        let mut chained = SERVE.to_vec();
        chained[0] = ("x-forwarded-for", "100.101.1.2, 100.101.1.9");
        assert_eq!(claim_in(&headers(&chained)), None);
    }

    #[test]
    fn the_owner_of_a_loopback_client_socket_is_found() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let server = listener.local_addr().unwrap();
        let client = std::net::TcpStream::connect(server).unwrap();
        let peer = client.local_addr().unwrap();
        assert_eq!(loopback_peer_uid(peer, server), Some(current_uid()));
        let elsewhere: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(loopback_peer_uid(peer, elsewhere), None);
    }

    #[test]
    fn json_is_found_after_a_warning_line() {
        let out =
            "Warning: client version != tailscaled\n{\"Self\": {\"DNSName\": \"gw.ts.net.\"}}\n";
        assert_eq!(json_in(out).unwrap()["Self"]["DNSName"], "gw.ts.net.");
    }
}
