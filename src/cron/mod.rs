//! The cron service: jobs (from the store and from `cron.jobs` in the
//! config), the scheduler that starts them on time, and their runs.
//!
//! The job table lives behind one lock that is never held across an
//! await. Every change to it is queued for the store while the lock is
//! held (see [`writer`]), so the store sees changes in the table's order.

mod jobs;
mod leader;
mod payload;
mod rpc;
mod runner;
pub use crate::schedule;
mod writer;

pub use jobs::JobDraft;
pub use writer::Pending;

use crate::agent::Turns;
use crate::protocol::types::{CronFailure, CronHealth, CronJob, CronJobSource};
use crate::runtime::Runtime;
use schedule::Plan;
use std::collections::BTreeMap;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{Notify, Semaphore};

pub struct CronService {
    rt: Runtime,
    /// Agent-turn jobs run their turns here.
    turns: Arc<Turns>,
    table: Mutex<Table>,
    /// Wakes the scheduler when jobs change.
    wake: Notify,
    /// Agent turns of different jobs in progress at once
    /// (cron.maxConcurrentRuns); system events need none.
    permits: Semaphore,
    writer: writer::Writer,
    /// The last run id given out; ids are never reused.
    last_run_id: AtomicU64,
    /// In a cluster: whether this gateway holds the cron lease, and the lease.
    leading: AtomicBool,
    lease: Mutex<Option<crate::cluster::Lease>>,
    /// The task answering the other gateways' cron calls while leading.
    responder: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// The jobs and what the scheduler needs to know about the config.
pub struct Table {
    pub jobs: BTreeMap<String, Entry>,
    pub enabled: bool,
    /// cron.timezone: the zone of expressions that name none.
    pub default_tz: Option<String>,
}

/// A job and its schedule, ready to compute run times. `plan` is None
/// when the stored schedule no longer parses (the job then never runs).
pub struct Entry {
    pub job: CronJob,
    pub plan: Option<Plan>,
}

impl CronService {
    pub fn new(rt: Runtime, turns: Arc<Turns>) -> Arc<CronService> {
        let config = rt.config();
        Arc::new(CronService {
            rt,
            turns,
            table: Mutex::new(Table {
                jobs: BTreeMap::new(),
                enabled: config.cron.enabled,
                default_tz: config.cron.timezone.as_ref().map(|t| t.to_string()),
            }),
            wake: Notify::new(),
            permits: Semaphore::new(config.cron.max_concurrent_runs.get() as usize),
            writer: writer::Writer::new(),
            last_run_id: AtomicU64::new(0),
            leading: AtomicBool::new(false),
            lease: Mutex::new(None),
            responder: Mutex::new(None),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().expect("cron table")
    }

    fn next_run_id(&self) -> NonZeroU64 {
        let id = self.last_run_id.fetch_add(1, Ordering::Relaxed) + 1;
        NonZeroU64::new(id).expect("counted from 1")
    }

    /// Waits until the store has every change made so far.
    pub async fn flush(&self) -> Result<(), crate::store::StoreError> {
        self.writer.flush().await
    }

    /// Tells the scheduler to look at the jobs again.
    fn wake(&self) {
        self.wake.notify_one();
    }
}

impl Table {
    /// The health section: enabled jobs, runs in progress, the next due
    /// time, and the jobs whose last run failed.
    pub fn health(&self) -> CronHealth {
        let enabled_jobs = self.jobs.values().filter(|e| e.job.enabled);
        let failing = self
            .jobs
            .values()
            .filter_map(|e| {
                Some(CronFailure {
                    id: e.job.id.clone(),
                    name: e.job.name.clone(),
                    consecutive_errors: NonZeroU64::new(e.job.state.consecutive_errors)?,
                    last_error: e.job.state.last_error.clone(),
                })
            })
            .collect();
        CronHealth {
            enabled: self.enabled,
            jobs: enabled_jobs.clone().count() as u64,
            running: self.jobs.values().filter(|e| e.job.state.running).count() as u64,
            next_run_at_ms: if self.enabled {
                enabled_jobs
                    .filter_map(|e| e.job.state.next_run_at_ms)
                    .min()
            } else {
                None
            },
            failing,
        }
    }

    /// The plan of a schedule under this table's default zone.
    pub fn plan(&self, job: &CronJob, now_ms: u64) -> Result<Plan, schedule::Invalid> {
        Plan::new(
            &job.schedule,
            self.default_tz.as_deref(),
            job.created_at_ms,
            now_ms,
        )
    }

    /// Sets a job's next run from its schedule as of `now_ms`: none when
    /// disabled; a past one-shot runs at once.
    pub fn reschedule(&mut self, id: &str, now_ms: u64) {
        if let Some(entry) = self.jobs.get_mut(id) {
            entry.job.state.next_run_at_ms = match (&entry.plan, entry.job.enabled) {
                (Some(plan), true) if !one_shot_done(&entry.job, plan) => plan.first_run(now_ms),
                _ => None,
            };
        }
    }

    pub fn is_config_job(&self, id: &str) -> bool {
        self.jobs
            .get(id)
            .is_some_and(|e| e.job.source == CronJobSource::Config)
    }
}

/// Whether a one-shot job already ran successfully at or after its time
/// (it may stay, disabled or declared in the config, but does not run
/// again until its time changes).
pub fn one_shot_done(job: &CronJob, plan: &Plan) -> bool {
    match plan {
        Plan::At { at_ms } => {
            job.state.last_status == Some(crate::protocol::types::CronRunStatus::Ok)
                && job.state.last_run_at_ms.is_some_and(|t| t >= *at_ms)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::types::{CronAddParams, CronRunParams, CronRunStatus};
    use crate::protocol::EventKind;
    use crate::store::{CronWrite, SessionStore};
    use crate::testing;
    use serde_json::json;

    async fn service(fakes: &testing::Fakes) -> Arc<CronService> {
        let turns = Arc::new(Turns::new(fakes.rt.clone()));
        let cron = CronService::new(fakes.rt.clone(), turns);
        cron.spawn_scheduler().await.unwrap().abort();
        cron
    }

    fn add(payload: serde_json::Value) -> CronAddParams {
        serde_json::from_value(json!({
            "schedule": {"kind": "every", "everyMs": 3_600_000},
            "payload": payload,
        }))
        .unwrap()
    }

    fn run(id: &str) -> CronRunParams {
        serde_json::from_value(json!({"id": id, "mode": "force"})).unwrap()
    }

    #[tokio::test]
    async fn a_job_added_is_stored_and_a_manual_run_is_recorded() {
        let fakes = testing::runtime(testing::config(""));
        let cron = service(&fakes).await;
        let job = cron
            .add(add(json!({"kind": "systemEvent", "text": "stand up"})))
            .await
            .unwrap();
        assert!(job.state.next_run_at_ms.is_some());
        let ran = cron.run(run(&job.id)).await.unwrap();
        assert!(ran.ran);
        assert_eq!(ran.run.unwrap().status, CronRunStatus::Ok);
        assert_eq!(
            fakes.bus.payloads(EventKind::SystemEvent)[0]["text"],
            "stand up"
        );
        let names = fakes.bus.names();
        let started = names
            .iter()
            .position(|n| *n == EventKind::CronStarted.name());
        let finished = names
            .iter()
            .position(|n| *n == EventKind::CronFinished.name());
        assert!(started < finished && started.is_some(), "{names:?}");
        cron.flush().await.unwrap();
        let writes = fakes.store.cron_writes.lock().unwrap();
        assert!(matches!(&writes[0], CronWrite::SaveJob(saved) if saved.id == job.id));
        assert!(writes.iter().any(|w| matches!(
            w,
            CronWrite::PutRun { run, .. } if run.status == CronRunStatus::Ok
        )));
        assert_eq!(fakes.rt.health.snapshot().cron.jobs, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_agent_turn_job_talks_in_its_own_session() {
        let fakes = testing::runtime(testing::config(""));
        let cron = service(&fakes).await;
        let job = cron
            .add(add(json!({"kind": "agentTurn", "message": "good morning"})))
            .await
            .unwrap();
        let ran = cron.run(run(&job.id)).await.unwrap().run.unwrap();
        assert_eq!(ran.status, CronRunStatus::Ok, "{:?}", ran.error);
        let session = format!("cron:{}", job.id);
        assert_eq!(ran.session_key.as_deref(), Some(session.as_str()));
        let (messages, _) = fakes
            .store
            .history(session, 10, None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[1].content, "good morning");
    }

    #[tokio::test]
    async fn the_scheduler_stops_when_the_gateway_drains() {
        let fakes = testing::runtime(testing::config(""));
        let cron = CronService::new(fakes.rt.clone(), Arc::new(Turns::new(fakes.rt.clone())));
        let scheduler = cron.spawn_scheduler().await.unwrap();
        fakes.shutdown.send_replace(true);
        let stopped = tokio::time::timeout(std::time::Duration::from_secs(5), scheduler).await;
        assert!(stopped.is_ok(), "the scheduler kept running");
    }
}
