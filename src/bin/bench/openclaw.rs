//! OpenClaw's protocol v4 on the gateway's port: `health` round trips over
//! v4 frames against the same over native v1 frames, on fresh gateway
//! processes, alternating, in the same run.

use super::{round_trip, throughput_of, Server, ServerProcess, Throughput, Ws, TOKEN};
use clawgate::protocol::openclaw::V4Method;
use clawgate::protocol::Method;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// Reads the challenge and completes a v4 connect, as OpenClaw's CLI does.
pub async fn connect(ws: &mut Ws) {
    loop {
        let Some(Ok(Message::Text(text))) = ws.next().await else {
            panic!("no challenge");
        };
        let frame: Value = serde_json::from_str(text.as_str()).expect("JSON");
        if frame["type"] == "event" {
            break;
        }
    }
    let connect = json!({"type": "req", "id": "c", "method": Method::Connect.name(), "params": {
        "minProtocol": 4, "maxProtocol": 4,
        "client": {"id": "cli", "version": env!("CARGO_PKG_VERSION"), "platform": "linux", "mode": "cli"},
        "role": "operator", "scopes": ["operator.read"], "auth": {"token": TOKEN},
    }});
    let reply = round_trip(ws, connect.to_string()).await;
    assert_eq!(reply["ok"], true, "v4 connect failed: {reply}");
}

pub struct OpenClawFigures {
    /// (connections, native v1 `health`, v4 `health`).
    rows: Vec<(usize, Throughput, Throughput)>,
}

pub async fn openclaw(conns: &[usize], measure: Duration, repeat: usize) -> OpenClawFigures {
    let native = json!({"id": "1", "method": Method::Health.name(), "params": {}}).to_string();
    let v4 = json!({"type": "req", "id": "1", "method": V4Method::Health.name(), "params": {}})
        .to_string();
    let mut rows = Vec::new();
    for &n in conns {
        let mut runs = Vec::new();
        for _ in 0..repeat.max(1) {
            let a = {
                let p = ServerProcess::start(Server::Gateway);
                throughput_of(Server::Gateway, &p.url, n, measure, &native).await
            };
            let b = {
                let p = ServerProcess::start(Server::OpenClaw);
                throughput_of(Server::OpenClaw, &p.url, n, measure, &v4).await
            };
            runs.push((a, b));
        }
        runs.sort_by(|x, y| {
            (x.1.per_second / x.0.per_second).total_cmp(&(y.1.per_second / y.0.per_second))
        });
        let (a, b) = runs.swap_remove(runs.len() / 2);
        rows.push((n, a, b));
    }
    OpenClawFigures { rows }
}

impl OpenClawFigures {
    pub fn summary(&self) -> String {
        self.rows
            .iter()
            .map(|(n, native, v4)| {
                format!(
                    "openclaw v4 at {n:>2} conns: native {:.0} rt/s p50 {:.0}µs | v4 {:.0} rt/s p50 {:.0}µs p99 {:.0}µs ({:+.1}%)",
                    native.per_second,
                    native.p50_us,
                    v4.per_second,
                    v4.p50_us,
                    v4.p99_us,
                    100.0 * (v4.per_second - native.per_second) / native.per_second
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn markdown(&self) -> String {
        let mut o = String::from(
            "\n## OpenClaw protocol v4\n\n`health` in closed loops over OpenClaw's v4 frames (a client connected as OpenClaw's CLI is) against the same over native v1 frames, each on a fresh gateway, alternating; target: v4 within 10% of v1. For reference, OpenClaw 2026.9.6 itself did about 650 / 1,700 / 1,800 `health` round trips per second at 1 / 16 / 64 connections on this kind of machine (measured once, side by side, by the session that filed the issue).\n\n\
             | conns | v1 rt/s | v1 p50 | v4 rt/s | v4 p50 | v4 p99 | v4/v1 | within 10% |\n|---:|---:|---:|---:|---:|---:|---:|---|\n",
        );
        for (n, native, v4) in &self.rows {
            let ratio = v4.per_second / native.per_second;
            o.push_str(&format!(
                "| {n} | {:.0} | {:.0} µs | {:.0} | {:.0} µs | {:.0} µs | {:.0}% | {} |\n",
                native.per_second,
                native.p50_us,
                v4.per_second,
                v4.p50_us,
                v4.p99_us,
                100.0 * ratio,
                if ratio >= 0.9 { "met" } else { "not met" }
            ));
        }
        o
    }
}
