//! Plugins: what a plugin method costs over a native one, and how long a
//! gateway takes to be ready with 0, 4 and 16 plugins configured. The
//! plugin is this binary (`--serve plugin`): a minimal Rust plugin whose
//! `ping` answers with its params, so the figures are the gateway's path
//! (validation, the stdio hop, the result check), not a language runtime's.

use super::{
    open, percentile, round_trip, sorted, throughput_of, Server, ServerProcess, Throughput,
};
use clawgate::protocol::Method;
use serde_json::{json, Value};
use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

/// The name the bench's plugins are configured under (`bench0`, `bench1`, …).
pub const PREFIX: &str = "bench";

/// Runs as a plugin: the manifest, then one answer per request.
pub fn serve_plugin() {
    let manifest = json!({
        "name": "bench", "version": env!("CARGO_PKG_VERSION"), "protocol": {"min": 1, "max": 1},
        "methods": {"ping": {"summary": "Answers with its params.", "scope": "operator.read",
            "params": {"type": "object", "properties": {"n": {"type": "integer"}}},
            "result": {"type": "object", "properties": {"n": {"type": "integer"}}}}},
    });
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    writeln!(out, "{manifest}").expect("write");
    out.flush().expect("flush");
    let mut lines = std::io::stdin().lock().lines();
    let _init = lines.next();
    for line in lines {
        let Ok(line) = line else { return };
        let frame: Value = serde_json::from_str(&line).expect("the gateway writes JSON");
        if frame.get("cancel").is_some() {
            continue;
        }
        writeln!(
            out,
            "{}",
            json!({"id": frame["id"], "result": frame["params"]})
        )
        .expect("write");
        out.flush().expect("flush");
    }
}

pub struct PluginFigures {
    /// (connections, native `health`, plugin `bench0.ping`).
    rows: Vec<(usize, Throughput, Throughput)>,
    /// (plugins configured, spawn-to-hello p50 ms, spawn-to-all-running p50 ms).
    startup: Vec<(usize, f64, f64)>,
}

pub async fn plugins(conns: &[usize], measure: Duration, repeat: usize) -> PluginFigures {
    let native = json!({"id": "1", "method": Method::Health.name(), "params": {}}).to_string();
    let plugin =
        json!({"id": "1", "method": format!("{PREFIX}0.ping"), "params": {"n": 1}}).to_string();
    let mut rows = Vec::new();
    for &n in conns {
        let mut runs = Vec::new();
        for _ in 0..repeat.max(1) {
            let p = ServerProcess::start_with(Server::Gateway, &["--plugins", "1"]);
            wait_running(&p.url, 1).await;
            let a = throughput_of(Server::Gateway, &p.url, n, measure, &native).await;
            let b = throughput_of(Server::Gateway, &p.url, n, measure, &plugin).await;
            runs.push((a, b));
        }
        runs.sort_by(|x, y| (x.1.p50_us / x.0.p50_us).total_cmp(&(y.1.p50_us / y.0.p50_us)));
        let (a, b) = runs.swap_remove(runs.len() / 2);
        rows.push((n, a, b));
    }
    let mut startup = Vec::new();
    for count in [0usize, 4, 16] {
        let (mut ready, mut running) = (Vec::new(), Vec::new());
        for _ in 0..repeat.max(5) {
            let started = Instant::now();
            let arg = count.to_string();
            let p = ServerProcess::start_with(Server::Gateway, &["--plugins", &arg]);
            let _ws = open(Server::Gateway, &p.url).await;
            ready.push(started.elapsed().as_secs_f64() * 1000.0);
            wait_running(&p.url, count).await;
            running.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        startup.push((
            count,
            percentile(&sorted(ready), 0.5),
            percentile(&sorted(running), 0.5),
        ));
    }
    PluginFigures { rows, startup }
}

/// Polls plugins.status until `count` plugins run.
async fn wait_running(url: &str, count: usize) {
    let mut ws = open(Server::Gateway, url).await;
    let request =
        json!({"id": "s", "method": Method::PluginsStatus.name(), "params": {}}).to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = round_trip(&mut ws, request.clone()).await;
        let running = status["result"]["plugins"].as_array().map_or(0, |list| {
            list.iter().filter(|p| p["state"] == "running").count()
        });
        if running >= count {
            return;
        }
        assert!(Instant::now() < deadline, "plugins never ran: {status}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

impl PluginFigures {
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for (n, native, plugin) in &self.rows {
            out.push_str(&format!(
                "plugin method at {n:>2} conns: native p50 {:.0}µs p99 {:.0}µs | plugin p50 {:.0}µs p99 {:.0}µs ({:+.0}µs at p50)\n",
                native.p50_us, native.p99_us, plugin.p50_us, plugin.p99_us, plugin.p50_us - native.p50_us
            ));
        }
        for (count, ready, running) in &self.startup {
            out.push_str(&format!(
                "{count:>2} plugins: ready (hello answered) {ready:.1} ms after spawn; all plugins running {running:.1} ms\n"
            ));
        }
        out.trim_end().to_string()
    }

    pub fn markdown(&self) -> String {
        let mut o = String::from(
            "\n## Plugins\n\nA plugin method (`bench0.ping`: params checked, one line of JSON each way over the plugin's stdio, result checked) against a native one (`health`), on the same gateway, in closed loops; the plugin is a minimal Rust program (this binary's `--serve plugin`).\n\n\
             | conns | native p50 | native p99 | plugin p50 | plugin p99 | plugin rt/s |\n|---:|---:|---:|---:|---:|---:|\n",
        );
        for (n, native, plugin) in &self.rows {
            o.push_str(&format!(
                "| {n} | {:.0} µs | {:.0} µs | {:.0} µs | {:.0} µs | {:.0} |\n",
                native.p50_us, native.p99_us, plugin.p50_us, plugin.p99_us, plugin.per_second
            ));
        }
        o.push_str(
            "\nStartup with plugins configured: from spawning the gateway process to its answer to `connect` (ready), and to every plugin running (medians; target: ready unchanged by the plugin count and under 100 ms).\n\n\
             | plugins | ready | all running |\n|---:|---:|---:|\n",
        );
        for (count, ready, running) in &self.startup {
            o.push_str(&format!("| {count} | {ready:.1} ms | {running:.1} ms |\n"));
        }
        o
    }
}
