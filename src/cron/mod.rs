//! The cron service: jobs (from the store and from `cron.jobs` in the
//! config), the scheduler that starts them on time, and their runs.
//!
//! The job table lives behind one lock that is never held across an
//! await. Every change to it is queued for the store while the lock is
//! held (see [`writer`]), so the store sees changes in the table's order.

mod jobs;
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
use std::sync::atomic::{AtomicU64, Ordering};
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
