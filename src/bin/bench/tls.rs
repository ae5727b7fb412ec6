//! TLS: round trips over wss:// against plain ws:// to the same gateway
//! build in the same run, and the memory an idle TLS connection costs.
//! The client pins the gateway's generated certificate, as a client of a
//! self-signed gateway would.

use super::{idle_memory, throughput, Server, Throughput};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The client config that trusts the running TLS gateway's certificate.
static PINNED: Mutex<Option<Arc<rustls::ClientConfig>>> = Mutex::new(None);

/// Pins the certificate a gateway generated in `state_dir`.
pub fn pin(state_dir: &std::path::Path) {
    let cert = state_dir.join("tls").join(clawgate::tls::GENERATED_CERT);
    let fingerprint = clawgate::tls::file_fingerprint(&cert).expect("the gateway's certificate");
    let trust = clawgate::tls::client::Trust::Pinned(fingerprint);
    let config = clawgate::tls::client::client_config(&trust, None).expect("client config");
    *PINNED.lock().expect("pin lock") = Some(config);
}

/// The connector for a wss:// URL.
pub fn connector() -> Option<tokio_tungstenite::Connector> {
    let config = PINNED.lock().expect("pin lock").clone()?;
    Some(tokio_tungstenite::Connector::Rustls(config))
}

pub struct TlsFigures {
    /// (connections, ws://, wss://), medians of alternating runs.
    rows: Vec<(usize, Throughput, Throughput)>,
    /// (idle connections, bytes per plain one, bytes per TLS one).
    memory: Vec<(usize, f64, f64)>,
}

pub async fn tls(conns: &[usize], measure: Duration, repeat: usize, idle: &[usize]) -> TlsFigures {
    let mut rows = Vec::new();
    for &n in conns {
        let (mut plain, mut tls) = (Vec::new(), Vec::new());
        for _ in 0..repeat.max(1) {
            for server in [Server::Gateway, Server::GatewayTls] {
                let process = super::ServerProcess::start(server);
                let run = throughput(server, &process.url, n, measure).await;
                if server == Server::GatewayTls {
                    &mut tls
                } else {
                    &mut plain
                }
                .push(run);
            }
        }
        rows.push((n, median(plain), median(tls)));
    }
    let plain = idle_memory(Server::Gateway, idle).await;
    let tls = idle_memory(Server::GatewayTls, idle).await;
    let memory = plain
        .iter()
        .zip(&tls)
        .map(|((count, p), (_, t))| (*count, *p, *t))
        .collect();
    TlsFigures { rows, memory }
}

fn median(mut runs: Vec<Throughput>) -> Throughput {
    runs.sort_by(|a, b| a.per_second.total_cmp(&b.per_second));
    runs.swap_remove(runs.len() / 2)
}

impl TlsFigures {
    pub fn summary(&self) -> String {
        let mut lines: Vec<String> = self
            .rows
            .iter()
            .map(|(n, ws, wss)| {
                format!(
                    "tls at {n:>3} conns: ws {:>8.0} rt/s p50 {:>5.0}µs p99 {:>5.0}µs | wss {:>8.0} rt/s p50 {:>5.0}µs p99 {:>5.0}µs | wss/ws {:.2}",
                    ws.per_second, ws.p50_us, ws.p99_us, wss.per_second, wss.p50_us, wss.p99_us,
                    wss.per_second / ws.per_second
                )
            })
            .collect();
        lines.extend(self.memory.iter().map(|(count, plain, tls)| {
            format!(
                "tls {count:>6} idle: ws {:.1} KB/conn | wss {:.1} KB/conn",
                plain / 1024.0,
                tls / 1024.0
            )
        }));
        lines.join("\n")
    }

    pub fn markdown(&self) -> String {
        let mut o = String::from(
            "\n## TLS\n\nThe same gateway with `gateway.tls.enabled` (the generated self-signed ECDSA P-256 certificate; rustls with ring, TLS 1.3, the client pinning the certificate's fingerprint) and without, alternating runs, medians; `health` in a closed loop per connection.\n\n| connections | ws:// rt/s | p50 | p99 | wss:// rt/s | p50 | p99 | wss/ws |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for (n, ws, wss) in &self.rows {
            o.push_str(&format!(
                "| {n} | {:.0} | {:.0} µs | {:.0} µs | {:.0} | {:.0} µs | {:.0} µs | {:.0}% |\n",
                ws.per_second,
                ws.p50_us,
                ws.p99_us,
                wss.per_second,
                wss.p50_us,
                wss.p99_us,
                100.0 * wss.per_second / ws.per_second
            ));
        }
        o.push_str("\nMemory per idle connection (server resident memory growth over the open connections, each past `connect`):\n\n| connections | ws:// | wss:// |\n|---:|---:|---:|\n");
        for (count, plain, tls) in &self.memory {
            o.push_str(&format!(
                "| {count} | {:.1} KB | {:.1} KB |\n",
                plain / 1024.0,
                tls / 1024.0
            ));
        }
        o
    }
}
