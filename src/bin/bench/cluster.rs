//! Cluster mode: `sessions` round trips (a store read) with 1, 2 and 3
//! gateways on one PostgreSQL and one NATS server, clients spread across
//! them, against one embedded gateway (SQLite) in the same run; and how
//! much later a chat's first event reaches a client on another gateway
//! than one on the gateway running the turn.

use super::{open, throughput_across, Server, ServerProcess, Throughput};
use clawgate::protocol::Method;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// A throwaway PostgreSQL (in a temp dir, as nobody when run as root) and
/// a nats-server, both on loopback; stopped when dropped.
struct Engines {
    dir: PathBuf,
    pg_port: u16,
    nats: Child,
    nats_url: String,
}

fn pg_tool(name: &str) -> Command {
    let bin = std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .and_then(|dirs| dirs.filter_map(|d| d.ok()).map(|d| d.path()).max())
        .map(|dir| dir.join("bin").join(name))
        .unwrap_or_else(|| PathBuf::from(name));
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            .arg(bin);
        cmd
    } else {
        Command::new(bin)
    }
}

fn run(cmd: &mut Command) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .expect("run a PostgreSQL tool");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

impl Engines {
    fn start() -> Engines {
        let dir = std::env::temp_dir().join(format!("clawgate-bench-pg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let _ = Command::new("chown").arg("nobody").arg(&dir).status();
        let data = dir.join("data");
        run(pg_tool("initdb").arg("-D").arg(&data).args([
            "--auth=trust",
            "-U",
            "clawgate",
            "-E",
            "UTF8",
            "--no-sync",
        ]));
        let pg_port = free_port();
        let conf = format!(
            "port = {pg_port}\nunix_socket_directories = '{}'\nlisten_addresses = '127.0.0.1'\nmax_connections = 200\n",
            dir.display()
        );
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .expect("postgresql.conf");
        std::io::Write::write_all(&mut file, conf.as_bytes()).expect("write conf");
        run(pg_tool("pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.join("log"))
            .args(["-w", "start"]));
        let mut nats = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", "-1"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nats-server (Debian package nats-server)");
        let mut lines = BufReader::new(nats.stderr.take().expect("stderr")).lines();
        let nats_url = loop {
            let line = lines.next().expect("nats-server starts").expect("line");
            if let Some((_, addr)) = line.split_once("Listening for client connections on ") {
                break format!("nats://{}", addr.trim());
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Engines {
            dir,
            pg_port,
            nats,
            nats_url,
        }
    }

    /// A new empty database's URL.
    fn database(&self, name: &str) -> String {
        run(pg_tool("createdb").args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.pg_port.to_string(),
            "-U",
            "clawgate",
            name,
        ]));
        format!("postgres://clawgate@127.0.0.1:{}/{name}", self.pg_port)
    }

    /// `count` gateways on database `name`.
    fn gateways(&self, name: &str, count: usize) -> Vec<ServerProcess> {
        let store = self.database(name);
        (0..count)
            .map(|i| {
                ServerProcess::start_with(
                    Server::Gateway,
                    &["--cluster", &store, &self.nats_url, &format!("bench-{i}")],
                )
            })
            .collect()
    }
}

impl Drop for Engines {
    fn drop(&mut self) {
        let _ = self.nats.kill();
        let _ = self.nats.wait();
        let _ = pg_tool("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub struct ClusterFigures {
    /// (connections, embedded, [1, 2, 3 gateways]).
    rows: Vec<(usize, Throughput, Vec<Throughput>)>,
    /// Microseconds from sending a chat to its first event: on the
    /// gateway running it, and on another.
    same: Vec<u64>,
    other: Vec<u64>,
    /// The cron load across three gateways.
    cron: super::cron::CronFigures,
}

pub async fn cluster(
    conns: &[usize],
    measure: Duration,
    repeat: usize,
    events: usize,
    (cron_jobs, cron_seconds): (usize, u64),
) -> ClusterFigures {
    let engines = Engines::start();
    let request =
        json!({"id": "1", "method": Method::Sessions.name(), "params": {"limit": 10}}).to_string();
    let mut rows = Vec::new();
    let mut db = 0;
    for &n in conns {
        let mut runs = Vec::new();
        for _ in 0..repeat.max(1) {
            let embedded = {
                let p = ServerProcess::start(Server::Gateway);
                throughput_across(
                    Server::Gateway,
                    std::slice::from_ref(&p.url),
                    n,
                    measure,
                    &request,
                )
                .await
            };
            let mut clustered = Vec::new();
            for count in 1..=3 {
                db += 1;
                let gateways = engines.gateways(&format!("bench{db}"), count);
                let urls: Vec<String> = gateways.iter().map(|g| g.url.clone()).collect();
                clustered
                    .push(throughput_across(Server::Gateway, &urls, n, measure, &request).await);
            }
            runs.push((embedded, clustered));
        }
        // Each column's median on its own: one disturbed run (this box
        // also runs PostgreSQL and NATS) must not pick a whole row.
        let mut embedded = Vec::new();
        let mut clustered: [Vec<Throughput>; 3] = Default::default();
        for (one, three) in runs {
            embedded.push(one);
            for (column, run) in clustered.iter_mut().zip(three) {
                column.push(run);
            }
        }
        let embedded = median(embedded);
        let clustered = clustered.into_iter().map(median).collect();
        rows.push((n, embedded, clustered));
    }
    let (same, other) = event_latency(&engines, events).await;
    let cron = {
        let gateways = engines.gateways("cron", 3);
        let urls: Vec<String> = gateways.iter().map(|g| g.url.clone()).collect();
        super::cron::cron_on(&urls, cron_jobs, cron_seconds).await
    };
    ClusterFigures {
        rows,
        same,
        other,
        cron,
    }
}

/// The run with the median throughput.
fn median(mut runs: Vec<Throughput>) -> Throughput {
    runs.sort_by(|a, b| a.per_second.total_cmp(&b.per_second));
    runs.swap_remove(runs.len() / 2)
}

/// Chats on gateway A, one after another; for each, when its first event
/// reaches a client on A and one on C.
async fn event_latency(engines: &Engines, events: usize) -> (Vec<u64>, Vec<u64>) {
    let gateways = engines.gateways("benchevents", 3);
    let mut caller = open(Server::Gateway, &gateways[0].url).await;
    let mut on_a = open(Server::Gateway, &gateways[0].url).await;
    let mut on_c = open(Server::Gateway, &gateways[2].url).await;
    let (mut same, mut other) = (Vec::new(), Vec::new());
    for i in 0..events {
        let run_id = format!("bench-run-{i}");
        let chat = json!({"id": format!("c{i}"), "method": Method::Chat.name(),
            "params": {"message": "ping", "sessionKey": format!("bench-{i}"), "runId": run_id}});
        let sent = Instant::now();
        caller
            .send(Message::Text(chat.to_string().into()))
            .await
            .expect("send");
        let (a, c) = tokio::join!(
            first_event(&mut on_a, &run_id, sent),
            first_event(&mut on_c, &run_id, sent)
        );
        same.push(a);
        other.push(c);
        // The caller's own frames: the events and the answer.
        loop {
            let frame = next_json(&mut caller).await;
            if frame["id"] == json!(format!("c{i}")) {
                break;
            }
        }
    }
    (same, other)
}

async fn next_json(ws: &mut super::Ws) -> Value {
    loop {
        if let Message::Text(text) = ws.next().await.expect("open").expect("frame") {
            return serde_json::from_str(text.as_str()).expect("JSON");
        }
    }
}

/// Microseconds from `sent` until this client sees the run's first event.
async fn first_event(ws: &mut super::Ws, run_id: &str, sent: Instant) -> u64 {
    loop {
        let frame = next_json(ws).await;
        if frame["data"]["runId"] == run_id {
            let at = sent.elapsed().as_micros() as u64;
            // Drain the rest of this run's events.
            let mut last = frame;
            while last["data"]["state"] == "delta" || last["data"]["runId"] != run_id {
                last = next_json(ws).await;
            }
            return at;
        }
    }
}

fn percentile(values: &[u64], q: f64) -> u64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted
        .get(((sorted.len() as f64 * q) as usize).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0)
}

impl ClusterFigures {
    pub fn summary(&self) -> String {
        let mut lines: Vec<String> = self
            .rows
            .iter()
            .map(|(n, embedded, clustered)| {
                format!(
                    "cluster sessions at {n:>2} conns: embedded {:.0} rt/s p50 {:.0}µs | 1 gw {:.0} rt/s p50 {:.0}µs | 2 gw {:.0} rt/s | 3 gw {:.0} rt/s",
                    embedded.per_second,
                    embedded.p50_us,
                    clustered[0].per_second,
                    clustered[0].p50_us,
                    clustered[1].per_second,
                    clustered[2].per_second,
                )
            })
            .collect();
        lines.push(format!(
            "first chat event: same gateway p50 {}µs p99 {}µs | other gateway p50 {}µs p99 {}µs",
            percentile(&self.same, 0.5),
            percentile(&self.same, 0.99),
            percentile(&self.other, 0.5),
            percentile(&self.other, 0.99),
        ));
        lines.push(self.cron.summary());
        lines.join("\n")
    }

    pub fn markdown(&self) -> String {
        let mut o = String::from(
            "\n## Cluster mode\n\n`sessions` (a store read) in closed loops, the connections spread evenly over 1, 2 and 3 gateways sharing one PostgreSQL database and one nats-server (all on this machine), against one embedded gateway (SQLite) in the same run; each figure is the median of the runs for its own column. On 2 cores, more gateways cannot add cores: the rows show what the cluster costs, not how it scales on more machines.\n\n\
             | conns | embedded rt/s | embedded p50 | 1 gw rt/s | 1 gw p50 | 2 gw rt/s | 3 gw rt/s | 1 gw / embedded |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for (n, embedded, clustered) in &self.rows {
            o.push_str(&format!(
                "| {n} | {:.0} | {:.0} µs | {:.0} | {:.0} µs | {:.0} | {:.0} | {:.0}% |\n",
                embedded.per_second,
                embedded.p50_us,
                clustered[0].per_second,
                clustered[0].p50_us,
                clustered[1].per_second,
                clustered[2].per_second,
                100.0 * clustered[0].per_second / embedded.per_second
            ));
        }
        o.push_str(&format!(
            "\nEvents across gateways: {} chats on gateway A, one at a time; the time from sending each to its first `agent.message` on a client of A and on a client of C (through NATS):\n\n\
             | where | p50 | p99 |\n|---|---:|---:|\n| same gateway | {} µs | {} µs |\n| other gateway | {} µs | {} µs |\n",
            self.same.len(),
            percentile(&self.same, 0.5),
            percentile(&self.same, 0.99),
            percentile(&self.other, 0.5),
            percentile(&self.other, 0.99),
        ));
        o.push_str(&format!(
            "\nCron across 3 gateways: the same load as the Cron section, {} jobs due every second for {} s, added through the three gateways in turn (two pass `cron.add` on to the one holding the `cron` lease); lateness read from `cron.started` on a client of the third gateway, so each event also crosses NATS when the leader is another gateway.\n{}",
            self.cron.jobs(),
            self.cron.seconds(),
            self.cron.table()
        ));
        o
    }
}
