//! The job table's changes: loading at startup, merging `cron.jobs` from
//! the config on every reload, and the definitions cron.add and
//! cron.update give.

use super::{CronService, Entry, Table};
use crate::clock::now_ms;
use crate::config::Config;
use crate::protocol::types::{
    CronJob, CronJobConfig, CronJobSource, CronJobState, CronPayload, CronRunStatus, CronSchedule,
};
use crate::store::{CronWrite, StoreError};
use std::sync::atomic::Ordering;

/// A job's definition: everything but its id, source, timestamps and state.
#[derive(Clone, Debug, PartialEq)]
pub struct JobDraft {
    pub name: String,
    pub enabled: bool,
    pub schedule: CronSchedule,
    pub payload: CronPayload,
    pub agent_id: Option<String>,
    pub session_key: Option<String>,
    pub delete_after_run: bool,
    pub timeout_ms: Option<i64>,
}

impl JobDraft {
    pub fn of(job: &CronJob) -> JobDraft {
        JobDraft {
            name: job.name.clone(),
            enabled: job.enabled,
            schedule: job.schedule.clone(),
            payload: job.payload.clone(),
            agent_id: job.agent_id.clone(),
            session_key: job.session_key.clone(),
            delete_after_run: job.delete_after_run,
            timeout_ms: job.timeout_ms,
        }
    }

    fn from_config(id: &str, job: &CronJobConfig) -> JobDraft {
        JobDraft {
            name: job
                .name
                .as_ref()
                .map(|n| n.to_string())
                .unwrap_or_else(|| id.to_string()),
            enabled: job.enabled,
            schedule: job.schedule.clone(),
            payload: job.payload.clone(),
            agent_id: job.agent_id.as_ref().map(|a| a.to_string()),
            session_key: job.session_key.as_ref().map(|s| s.to_string()),
            delete_after_run: false,
            timeout_ms: job.timeout_ms,
        }
    }

    /// A new job with this definition.
    pub fn into_job(self, id: String, source: CronJobSource, now_ms: u64) -> CronJob {
        let mut job = CronJob {
            id,
            name: String::new(),
            enabled: false,
            schedule: self.schedule.clone(),
            payload: self.payload.clone(),
            agent_id: None,
            session_key: None,
            delete_after_run: false,
            timeout_ms: None,
            source,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            state: CronJobState {
                next_run_at_ms: None,
                last_run_at_ms: None,
                last_status: None,
                last_error: None,
                last_duration_ms: None,
                consecutive_errors: 0,
                running: false,
            },
        };
        self.apply_to(&mut job);
        job
    }

    /// Writes this definition into `job`, keeping its identity and state.
    pub fn apply_to(self, job: &mut CronJob) {
        job.name = self.name;
        job.enabled = self.enabled;
        job.schedule = self.schedule;
        job.payload = self.payload;
        job.agent_id = self.agent_id;
        job.session_key = self.session_key;
        job.delete_after_run = self.delete_after_run;
        job.timeout_ms = self.timeout_ms;
    }
}

impl Table {
    /// Puts a job in the table with its plan; a schedule that no longer
    /// parses leaves the job in place but never due.
    pub fn insert(&mut self, mut job: CronJob, now_ms: u64) {
        let plan = match self.plan(&job, now_ms) {
            Ok(plan) => Some(plan),
            Err(e) => {
                tracing::error!(job = %job.id, "cron job cannot be scheduled: {}", e.message);
                job.state.next_run_at_ms = None;
                None
            }
        };
        self.jobs.insert(job.id.clone(), Entry { job, plan });
    }
}

impl CronService {
    /// Loads the stored jobs, settles the runs a stopped process left
    /// unfinished, merges the config's jobs, and starts the store writer.
    /// Call before the scheduler starts.
    pub async fn load(&self) -> Result<(), StoreError> {
        let now = now_ms();
        let stored = self.rt.stores.cron.cron_jobs().await?;
        let unfinished = self.rt.stores.cron.cron_unfinished_runs().await?;
        let last_run_id = self.rt.stores.cron.cron_last_run_id().await?;
        self.last_run_id.store(last_run_id, Ordering::Relaxed);
        self.writer.start(self.rt.stores.cron.clone());
        let keep = self.rt.config().cron.history_limit.get();
        let pending = {
            let mut table = self.lock();
            for mut job in stored {
                // No run is in progress in a process that is just starting.
                job.state.running = false;
                table.insert(job, now);
            }
            let mut writes = Vec::new();
            for mut run in unfinished {
                tracing::warn!(job = %run.job_id, "cron run {} was interrupted by a stop", run.id);
                run.status = CronRunStatus::Error;
                run.error = Some("the gateway stopped before the run finished".to_string());
                if let Some(entry) = table.jobs.get_mut(&run.job_id) {
                    let state = &mut entry.job.state;
                    state.last_run_at_ms = Some(run.started_at_ms);
                    state.last_status = Some(CronRunStatus::Error);
                    state.last_error = run.error.clone();
                    state.consecutive_errors += 1;
                    writes.push(CronWrite::SaveJob(entry.job.clone()));
                }
                writes.push(CronWrite::PutRun { run, keep });
            }
            // A job whose next run passed while the gateway was down keeps
            // it: it is due now and runs once, as a catch-up.
            let config = self.rt.config();
            writes.extend(sync_config(&mut table, &config, now));
            self.publish_health(&table);
            self.writer.queue(writes)
        };
        pending.stored().await
    }

    /// Applies the config's cron section: enabled, timezone and jobs.
    pub async fn apply_config(&self) -> Result<(), StoreError> {
        let config = self.rt.config();
        let pending = {
            let mut table = self.lock();
            let writes = sync_config(&mut table, &config, now_ms());
            self.publish_health(&table);
            self.writer.queue(writes)
        };
        self.wake();
        pending.stored().await
    }
}

/// Brings the table in line with the config; returns the store writes.
fn sync_config(table: &mut Table, config: &Config, now: u64) -> Vec<CronWrite> {
    let mut changed: Vec<String> = Vec::new();
    let default_tz = config.cron.timezone.as_ref().map(|t| t.to_string());
    let resumed = config.cron.enabled && !table.enabled;
    table.enabled = config.cron.enabled;
    if default_tz != table.default_tz {
        table.default_tz = default_tz;
        let ids: Vec<String> = table.jobs.keys().cloned().collect();
        for id in ids {
            let job = table.jobs.remove(&id).expect("listed").job;
            table.insert(job, now);
            if !table.jobs[&id].job.state.running {
                table.reschedule(&id, now);
            }
            changed.push(id);
        }
    }
    if resumed {
        // Paused jobs resume from their next slot; they do not catch up.
        let ids: Vec<String> = table.jobs.keys().cloned().collect();
        for id in ids {
            table.reschedule(&id, now);
            changed.push(id);
        }
    }
    for (id, declared) in &config.cron.jobs {
        let draft = JobDraft::from_config(id, declared);
        match table.jobs.get_mut(id) {
            Some(entry) if entry.job.source == CronJobSource::Api => {
                tracing::warn!(job = %id, "cron.jobs.{id} is ignored: a job added with cron.add has that id");
            }
            Some(entry) if JobDraft::of(&entry.job) == draft => {}
            Some(entry) => {
                let reschedule =
                    entry.job.schedule != draft.schedule || entry.job.enabled != draft.enabled;
                draft.apply_to(&mut entry.job);
                entry.job.updated_at_ms = now;
                let job = entry.job.clone();
                table.insert(job, now);
                if reschedule && !table.jobs[id].job.state.running {
                    table.reschedule(id, now);
                }
                changed.push(id.clone());
            }
            None => {
                table.insert(draft.into_job(id.clone(), CronJobSource::Config, now), now);
                table.reschedule(id, now);
                changed.push(id.clone());
            }
        }
    }
    let mut writes = Vec::new();
    let dropped: Vec<String> = table
        .jobs
        .iter()
        .filter(|(id, e)| {
            e.job.source == CronJobSource::Config && !config.cron.jobs.contains_key(*id)
        })
        .map(|(id, _)| id.clone())
        .collect();
    for id in dropped {
        table.jobs.remove(&id);
        tracing::info!(job = %id, "cron job removed from the config");
        writes.push(CronWrite::DeleteJob(id));
    }
    changed.sort();
    changed.dedup();
    writes.extend(
        changed
            .iter()
            .filter_map(|id| table.jobs.get(id))
            .map(|entry| CronWrite::SaveJob(entry.job.clone())),
    );
    writes
}
