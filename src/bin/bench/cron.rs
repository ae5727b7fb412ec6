//! The cron scheduler under load: many jobs due every second. How late do
//! runs start after their slot, does every slot run, and what do cron.add
//! and cron.list cost with that many jobs.

use super::{percentile, sorted, Server, ServerProcess};
use clawgate::protocol::types::{CronAddParams, CronListParams, CronPayload, CronSchedule};
use clawgate::protocol::{Event, Method};
use std::time::{Duration, Instant};

pub struct CronFigures {
    gateways: usize,
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
             lateness is a run's `startedAtMs` minus its slot, as `cron.started` reports them.\n{}",
            self.jobs,
            self.seconds,
            self.table()
        )
    }

    pub fn jobs(&self) -> usize {
        self.jobs
    }

    pub fn seconds(&self) -> u64 {
        self.seconds
    }

    /// The figures as a Markdown table.
    pub fn table(&self) -> String {
        format!(
            "\n| figure | value |\n|---|---:|\n\
             | `cron.add`, p50 | {:.2} ms |\n| `cron.add`, p99 | {:.2} ms |\n| `cron.list` of all jobs, p50 | {:.2} ms |\n\
             | runs started / slots due | {} / {} |\n\
             | lateness p50 | {:.1} ms |\n| lateness p99 | {:.1} ms |\n| lateness max | {:.1} ms |\n",
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
            "cron with {} jobs every second on {} gateway(s): add p50 {:.2} ms | list p50 {:.2} ms | {} of {} slots run | late p50 {:.1} ms p99 {:.1} ms max {:.1} ms",
            self.jobs,
            self.gateways,
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

pub async fn cron_load(jobs: usize, seconds: u64) -> CronFigures {
    let dir = std::env::temp_dir().join(format!("clawgate-bench-cron-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("state dir");
    let process = ServerProcess::start_with(
        Server::Gateway,
        &["--state-dir", dir.to_str().expect("utf-8 path")],
    );
    let figures = cron_on(std::slice::from_ref(&process.url), jobs, seconds).await;
    drop(process);
    let _ = std::fs::remove_dir_all(&dir);
    figures
}

/// Adds the jobs through each gateway in turn (in a cluster, those that
/// do not run cron pass the calls on), and reads `cron.started` on a
/// client of the last one.
pub async fn cron_on(urls: &[String], jobs: usize, seconds: u64) -> CronFigures {
    let mut clients = Vec::new();
    for url in urls {
        clients.push(super::client(url).await);
    }
    let mut client = super::client(urls.last().expect("a gateway")).await;
    let mut adds = Vec::with_capacity(jobs);
    for i in 0..jobs {
        let params = CronAddParams {
            name: Some(format!("bench {i}").parse().expect("a job name")),
            schedule: CronSchedule::Cron {
                expr: "* * * * * *".parse().expect("a cron expression"),
                tz: None,
            },
            payload: CronPayload::SystemEvent {
                text: "beat".parse().expect("a text"),
            },
            agent_id: None,
            delete_after_run: None,
            enabled: None,
            session_key: None,
            timeout_ms: None,
        };
        let started = Instant::now();
        let through = i % clients.len();
        clients[through]
            .cron_add(&params)
            .await
            .expect("adding a job");
        adds.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    // Timed as JSON, by name: the figure is the gateway's. Decoding the
    // 1,000 jobs into typed structs adds about 2 ms on the client.
    let list_params = serde_json::to_value(CronListParams::default()).expect("params");
    let mut lists = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        let list = clients[0]
            .call(Method::CronList.name(), list_params.clone())
            .await
            .expect("listing the jobs");
        lists.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(list["jobs"].as_array().map(Vec::len), Some(jobs));
    }
    // Measure whole seconds, starting at the next one.
    let now_ms = clawgate::clock::now_ms();
    let from = (now_ms / 1000 + 1) * 1000;
    let until = from + seconds * 1000;
    let mut late = Vec::new();
    let deadline = Instant::now() + Duration::from_millis(until - now_ms + 2000);
    while let Ok(Ok(event)) = tokio::time::timeout_at(deadline.into(), client.next_event()).await {
        let Event::CronStarted(started) = event else {
            continue;
        };
        let slot = started.scheduled_at_ms.unwrap_or(0);
        if (from..until).contains(&slot) {
            late.push(started.started_at_ms.saturating_sub(slot) as f64);
        }
    }
    let late = sorted(late);
    let adds = sorted(adds);
    CronFigures {
        gateways: urls.len(),
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
