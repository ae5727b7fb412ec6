//! The TLS side of the listener: which pair to serve (gateway.tls), the
//! handshake in front of HTTP, and a clear answer to plain HTTP.

use super::listen::{InterfaceAddr, ListenPlan};
use crate::config::{dotted, keys, Config};
use crate::gateway::Gateway;
use crate::tls::{Certificates, PairFiles};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// TLS for every listener: the acceptor and the pair it serves.
#[derive(Clone)]
pub struct Tls {
    pub acceptor: TlsAcceptor,
    pub certificates: Arc<Certificates>,
}

/// gateway.tls as a served pair; None when TLS is off.
pub fn start(
    gw: &Gateway,
    plan: &ListenPlan,
    interfaces: &[InterfaceAddr],
) -> Result<Option<Tls>, String> {
    let config = gw.config();
    let tls = &config.gateway.tls;
    if !tls.enabled {
        return Ok(None);
    }
    let base = gw.info.config_path.as_deref().and_then(Path::parent);
    let resolve = |path: &str| match base {
        Some(dir) if Path::new(path).is_relative() => dir.join(path),
        _ => PathBuf::from(path),
    };
    let ca = tls.ca_path.as_deref().map(|p| resolve(p));
    let files = match (&tls.cert_path, &tls.key_path) {
        (Some(cert), Some(key)) => PairFiles {
            cert: resolve(cert),
            key: resolve(key),
            ca,
            generated: false,
        },
        _ => {
            let names = machine_names(plan, interfaces);
            let (cert, key, created) = crate::tls::generated_pair(&gw.rt.state_dir, &names)?;
            if created {
                tracing::info!(cert = %cert.display(), names = names.join(", "), "generated a self-signed TLS certificate");
            }
            PairFiles {
                cert,
                key,
                ca,
                generated: true,
            }
        }
    };
    let certificates = Certificates::load(files, Arc::clone(&gw.rt.health))?;
    let server_config = certificates.server_config()?;
    Ok(Some(Tls {
        acceptor: TlsAcceptor::from(server_config),
        certificates,
    }))
}

/// The names a generated certificate is for: localhost, the host name,
/// and every address clients may use (the listen addresses, or every
/// interface's when listening on all).
fn machine_names(plan: &ListenPlan, interfaces: &[InterfaceAddr]) -> Vec<String> {
    let host = crate::discovery::host_name();
    let mut names = vec![
        "localhost".to_string(),
        host.clone(),
        format!("{host}.local"),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let everywhere = plan.hosts.iter().any(|h| {
        h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_unspecified())
    });
    if everywhere {
        names.extend(interfaces.iter().map(|i| i.ip.to_string()));
    } else {
        names.extend(plan.hosts.iter().cloned());
    }
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

/// Why the plain listener is a risk, or None when it is not: loopback
/// only, or a tailnet (WireGuard encrypts it).
pub fn plaintext_risk(config: &Config, plan: &ListenPlan) -> Option<String> {
    let exposed = plan.hosts.iter().any(|h| {
        !crate::config::is_loopback_host(h)
            && !h
                .parse::<std::net::IpAddr>()
                .is_ok_and(super::listen::is_tailnet)
    });
    (exposed && !config.gateway.tls.enabled).then(|| {
        format!(
            "listening beyond loopback ({}) without TLS: the gateway credential, transcripts and exec approvals cross the network in clear, readable and replayable by anyone on it; set {} = true",
            plan.reason,
            dotted(keys::GATEWAY_TLS_ENABLED)
        )
    })
}

/// The first byte of every TLS connection: a handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// The TLS handshake on a new connection, within `timeout`. A client
/// that speaks plain HTTP gets a 400 that names https:// and wss://.
pub async fn handshake(
    tls: &Tls,
    tcp: TcpStream,
    timeout: Duration,
) -> Option<TlsStream<TcpStream>> {
    let accepted = tokio::time::timeout(timeout, async {
        let mut first = [0u8; 1];
        if tcp.peek(&mut first).await.ok()? == 0 {
            return None;
        }
        if first[0] != TLS_HANDSHAKE {
            refuse_plain(tcp).await;
            return None;
        }
        match tls.acceptor.accept(tcp).await {
            Ok(stream) => Some(stream),
            Err(e) => {
                tracing::debug!("TLS handshake failed: {e}");
                None
            }
        }
    })
    .await;
    accepted.ok().flatten()
}

const PLAIN_REFUSAL: &str = "this gateway speaks TLS on this port: use https:// or wss://\n";

/// Answers a plain HTTP request on the TLS port, reading it first so
/// that closing does not reset the connection before the answer lands.
async fn refuse_plain(mut tcp: TcpStream) {
    let mut head = [0u8; 8192];
    let _ = tcp.read(&mut head).await;
    let response = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{PLAIN_REFUSAL}",
        PLAIN_REFUSAL.len()
    );
    let _ = tcp.write_all(response.as_bytes()).await;
    let _ = tcp.shutdown().await;
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while tcp.read(&mut head).await.is_ok_and(|n| n > 0) {}
    })
    .await;
}
