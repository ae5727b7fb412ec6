//! The cron scheduler under load: many jobs due every second. How late do
//! runs start after their slot, does every slot run, and what do cron.add
//! and cron.list cost with that many jobs.

use super::{open, percentile, sorted, Server, ServerProcess, Ws};
use clawgate::protocol::{EventKind, Method};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

pub struct CronFigures {
    jobs: usize,
    seconds: u64,
    add_p50_ms: f64,
    add_p99_ms: f64,
    list_p50_ms: f64,
    runs: usize,
    expected_runs: usize,
    late_p50_ms: f64,
    late_p99_ms: f64,
    late_max_ms: f64,
}

impl CronFigures {
    pub fn markdown(&self) -> String {
        format!(
            "\n## Cron\n\n{} jobs, each due every second (`* * * * * *`, a systemEvent payload), on one gateway for {} s; \
             lateness is a run's `startedAtMs` minus its slot, as `cron.started` reports them.\n\n\
             | figure | value |\n|---|---:|\n\
             | `cron.add`, p50 | {:.2} ms |\n| `cron.add`, p99 | {:.2} ms |\n| `cron.list` of all jobs, p50 | {:.2} ms |\n\
             | runs started / slots due | {} / {} |\n\
             | lateness p50 | {:.1} ms |\n| lateness p99 | {:.1} ms |\n| lateness max | {:.1} ms |\n",
            self.jobs,
            self.seconds,
            self.add_p50_ms,
            self.add_p99_ms,
            self.list_p50_ms,
            self.runs,
            self.expected_runs,
            self.late_p50_ms,
            self.late_p99_ms,
            self.late_max_ms
        )
    }

    pub fn summary(&self) -> String {
        format!(
            "cron with {} jobs every second: add p50 {:.2} ms | list p50 {:.2} ms | {} of {} slots run | late p50 {:.1} ms p99 {:.1} ms max {:.1} ms",
            self.jobs,
            self.add_p50_ms,
            self.list_p50_ms,
            self.runs,
            self.expected_runs,
            self.late_p50_ms,
            self.late_p99_ms,
            self.late_max_ms
        )
    }
}

/// Sends a request and returns its response, dropping events meanwhile.
async fn call(ws: &mut Ws, method: Method, params: Value) -> Value {
    let frame = json!({"id": "b", "method": method.name(), "params": params}).to_string();
    ws.send(Message::Text(frame.into())).await.expect("send");
    loop {
        if let Message::Text(text) = ws.next().await.expect("open").expect("frame") {
            let value: Value = serde_json::from_str(text.as_str()).expect("JSON");
            if value.get("id").is_some() {
                return value;
            }
        }
    }
}

pub async fn cron_load(jobs: usize, seconds: u64) -> CronFigures {
    let dir = std::env::temp_dir().join(format!("clawgate-bench-cron-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("state dir");
    let process = ServerProcess::start_with(
        Server::Gateway,
        &["--state-dir", dir.to_str().expect("utf-8 path")],
    );
    let mut ws = open(Server::Gateway, &process.url).await;
    let mut adds = Vec::with_capacity(jobs);
    for i in 0..jobs {
        let params = json!({
            "name": format!("bench {i}"),
            "schedule": {"kind": "cron", "expr": "* * * * * *"},
            "payload": {"kind": "systemEvent", "text": "beat"},
        });
        let started = Instant::now();
        let reply = call(&mut ws, Method::CronAdd, params).await;
        adds.push(started.elapsed().as_secs_f64() * 1000.0);
        assert!(reply.get("result").is_some(), "cron.add failed: {reply}");
    }
    let mut lists = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        let reply = call(&mut ws, Method::CronList, json!({})).await;
        lists.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(reply["result"]["jobs"].as_array().map(Vec::len), Some(jobs));
    }
    // Measure whole seconds, starting at the next one.
    let now_ms = clawgate::clock::now_ms();
    let from = (now_ms / 1000 + 1) * 1000;
    let until = from + seconds * 1000;
    let mut late = Vec::new();
    let deadline = Instant::now() + Duration::from_millis(until - now_ms + 2000);
    while let Ok(Some(Ok(message))) = tokio::time::timeout_at(deadline.into(), ws.next()).await {
        let Message::Text(text) = message else {
            continue;
        };
        let frame: Value = serde_json::from_str(text.as_str()).expect("JSON");
        if frame["event"] != EventKind::CronStarted.name() {
            continue;
        }
        let slot = frame["data"]["scheduledAtMs"].as_u64().unwrap_or(0);
        if (from..until).contains(&slot) {
            let started = frame["data"]["startedAtMs"].as_u64().expect("startedAtMs");
            late.push(started.saturating_sub(slot) as f64);
        }
    }
    drop(process);
    let _ = std::fs::remove_dir_all(&dir);
    let late = sorted(late);
    let adds = sorted(adds);
    CronFigures {
        jobs,
        seconds,
        add_p50_ms: percentile(&adds, 0.5),
        add_p99_ms: percentile(&adds, 0.99),
        list_p50_ms: percentile(&sorted(lists), 0.5),
        runs: late.len(),
        expected_runs: jobs * seconds as usize,
        late_p50_ms: percentile(&late, 0.5),
        late_p99_ms: percentile(&late, 0.99),
        late_max_ms: late.last().copied().unwrap_or(0.0),
    }
}
