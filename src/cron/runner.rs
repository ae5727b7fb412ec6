//! Running jobs: the scheduler loop, one run from start to record, the
//! skip of a slot that comes while the previous run still goes, and the
//! state a finished run leaves (next run, backoff, one-shot cleanup).

use super::payload::session_key;
use super::schedule::backoff_ms;
use super::{one_shot_done, CronService, Table};
use crate::clock::now_ms;
use crate::protocol::types::{
    CronFinishedEvent, CronJob, CronJobSource, CronPayload, CronRun, CronRunStatus,
    CronStartedEvent, CronTrigger,
};
use crate::protocol::{ErrorCode, Event, RpcError};
use crate::store::CronWrite;
use std::sync::Arc;
use std::time::Duration;

/// The longest the scheduler sleeps without looking at the wall clock
/// again (it may have been changed, or the machine suspended).
const MAX_SLEEP: Duration = Duration::from_secs(30);
/// Failed runs in a row after which a one-shot job stops retrying.
const ONE_SHOT_ATTEMPTS: u64 = 5;

impl CronService {
    /// Loads the jobs and starts the scheduler, which follows the config's
    /// cron section and stops when the gateway begins to shut down. In a
    /// cluster, the gateway holding the cron lease does both; the others
    /// wait to take over.
    pub async fn spawn_scheduler(
        self: &Arc<Self>,
    ) -> Result<tokio::task::JoinHandle<()>, crate::store::StoreError> {
        if let Some(membership) = &self.rt.membership {
            let first = self.try_lead(membership).await?;
            let cron = Arc::clone(self);
            return Ok(tokio::spawn(
                cron.lead_when_possible(Arc::clone(membership), first),
            ));
        }
        self.load().await?;
        Ok(self.spawn_loop())
    }

    /// The scheduler loop over a loaded table.
    pub(super) fn spawn_loop(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let mut follower = self.rt.config.follow();
        let cron = Arc::clone(self);
        tokio::spawn(async move {
            let shutdown = cron.rt.shutdown.clone();
            loop {
                let sleep = cron.start_due().unwrap_or(MAX_SLEEP).min(MAX_SLEEP);
                tokio::select! {
                    _ = tokio::time::sleep(sleep) => {}
                    _ = cron.wake.notified() => {}
                    change = follower.next() => match change {
                        Some(change) if change.before.cron != change.after.cron => {
                            if let Err(e) = cron.apply_config().await {
                                tracing::error!("cannot apply the cron config: {e}");
                            }
                        }
                        Some(_) => {}
                        None => return,
                    },
                    _ = shutdown.wait() => return,
                }
            }
        })
    }

    /// Starts every due job and records a skip for every due job that is
    /// still running. Returns how long until the next job is due.
    fn start_due(self: &Arc<Self>) -> Option<Duration> {
        let mut table = self.lock();
        if !table.enabled || self.rt.shutdown.is_draining() {
            return None;
        }
        let now = now_ms();
        let keep = self.rt.config().cron.history_limit.get();
        let due: Vec<(String, u64)> = table
            .jobs
            .values()
            .filter(|e| e.job.enabled)
            .filter_map(|e| Some((e.job.id.clone(), e.job.state.next_run_at_ms?)))
            .filter(|(_, at)| *at <= now)
            .collect();
        for (id, slot) in due {
            let entry = table.jobs.get_mut(&id).expect("listed");
            let next = entry
                .plan
                .as_ref()
                .and_then(|p| p.next_after(now.max(slot)));
            entry.job.state.next_run_at_ms = next;
            if entry.job.state.running {
                let run = CronRun {
                    status: CronRunStatus::Skipped,
                    finished_at_ms: Some(now),
                    duration_ms: Some(0),
                    error: Some("the previous run was still in progress".to_string()),
                    ..self.new_run(&entry.job, CronTrigger::Schedule, Some(slot), now)
                };
                // The scheduler does not wait for the store; the order of
                // writes is kept all the same.
                drop(self.writer.record(&run, Some(&entry.job), keep));
                self.publish_finished(&entry.job, run);
                continue;
            }
            entry.job.state.running = true;
            let trigger = if slot < self.rt.started_at_ms {
                CronTrigger::Catchup
            } else {
                CronTrigger::Schedule
            };
            let cron = Arc::clone(self);
            tokio::spawn(async move {
                let _ = cron.run_job(&id, trigger, Some(slot)).await;
            });
        }
        self.publish_health(&table);
        let next = table
            .jobs
            .values()
            .filter(|e| e.job.enabled)
            .filter_map(|e| e.job.state.next_run_at_ms)
            .min()?;
        Some(Duration::from_millis(next.saturating_sub(now_ms())))
    }

    /// A run of `job` starting now, with the next run id.
    fn new_run(&self, job: &CronJob, trigger: CronTrigger, slot: Option<u64>, now: u64) -> CronRun {
        let session_key =
            matches!(job.payload, CronPayload::AgentTurn { .. }).then(|| session_key(job));
        CronRun {
            id: self.next_run_id(),
            job_id: job.id.clone(),
            status: CronRunStatus::Running,
            trigger,
            scheduled_at_ms: slot,
            started_at_ms: now,
            finished_at_ms: None,
            duration_ms: None,
            error: None,
            summary: None,
            session_key,
            run_id: None,
        }
    }

    /// Runs `id` now from `cron.run`; waits for the run and returns it. Err
    /// when there is no such job, or it is already running.
    pub async fn run_now(&self, id: &str) -> Result<CronRun, RpcError> {
        {
            let mut table = self.lock();
            let entry = table
                .jobs
                .get_mut(id)
                .ok_or_else(|| RpcError::new(ErrorCode::NotFound, format!("no cron job {id}")))?;
            if entry.job.state.running {
                return Err(RpcError::new(
                    ErrorCode::Conflict,
                    format!("cron job {id} is already running; runs of one job never overlap"),
                )
                .with_retryable(true));
            }
            entry.job.state.running = true;
            self.publish_health(&table);
        }
        self.run_job(id, CronTrigger::Manual, None).await
    }

    /// One run of a job already marked running: waits for a permit if it is
    /// an agent turn, records the start, does the payload within the job's
    /// timeout, records the end.
    async fn run_job(
        &self,
        id: &str,
        trigger: CronTrigger,
        slot: Option<u64>,
    ) -> Result<CronRun, RpcError> {
        let is_turn = self
            .lock()
            .jobs
            .get(id)
            .is_some_and(|e| matches!(e.job.payload, CronPayload::AgentTurn { .. }));
        let _permit = if is_turn {
            Some(self.permits.acquire().await)
        } else {
            None
        };
        let keep = self.rt.config().cron.history_limit.get();
        let (job, run, stored) = {
            let table = self.lock();
            let Some(entry) = table.jobs.get(id) else {
                return Err(RpcError::new(
                    ErrorCode::NotFound,
                    format!("cron job {id} was removed before it started"),
                ));
            };
            let job = entry.job.clone();
            let run = self.new_run(&job, trigger, slot, now_ms());
            let stored = self.writer.record(&run, Some(&job), keep);
            (job, run, stored)
        };
        if let Err(e) = stored.stored().await {
            tracing::error!(job = %id, "cannot record the start of a cron run: {e}");
        }
        self.rt.bus.publish(Event::CronStarted(CronStartedEvent {
            job_id: job.id.clone(),
            name: job.name.clone(),
            run_number: run.id,
            trigger,
            scheduled_at_ms: slot,
            started_at_ms: run.started_at_ms,
            session_key: run.session_key.clone(),
        }));
        let timeout = Duration::from_millis(
            job.timeout_ms
                .unwrap_or(self.rt.config().cron.run_timeout_ms)
                .max(1) as u64,
        );
        let outcome = self.execute(&job, timeout, run.id).await;
        let finished = now_ms();
        let mut run = CronRun {
            finished_at_ms: Some(finished),
            duration_ms: Some(finished.saturating_sub(run.started_at_ms)),
            ..run
        };
        match outcome {
            Ok(done) => {
                run.status = CronRunStatus::Ok;
                run.summary = Some(done.summary);
                run.run_id = done.run_id;
            }
            Err(failed) => {
                run.status = CronRunStatus::Error;
                run.error = Some(failed.error);
                run.run_id = failed.run_id;
            }
        }
        self.finish(&run, keep).await;
        Ok(run)
    }

    /// Records a finished run and the state it leaves the job in.
    async fn finish(&self, run: &CronRun, keep: u64) {
        self.rt.metrics.cron_run(run.status);
        let now = now_ms();
        let stored = {
            let mut table = self.lock();
            let job = table
                .jobs
                .get_mut(&run.job_id)
                .map(|entry| settle(entry, run, now));
            let mut writes = vec![CronWrite::PutRun {
                run: run.clone(),
                keep,
            }];
            match &job {
                Some((job, false)) => writes.push(CronWrite::SaveJob(job.clone())),
                Some((_, true)) => {
                    table.jobs.remove(&run.job_id);
                    writes.push(CronWrite::DeleteJob(run.job_id.clone()));
                }
                None => {}
            }
            match &job {
                Some((job, _)) => self.publish_finished(job, run.clone()),
                // Removed while it ran: the id stands in for the name.
                None => self.rt.bus.publish(Event::CronFinished(CronFinishedEvent {
                    job_id: run.job_id.clone(),
                    name: run.job_id.clone(),
                    next_run_at_ms: None,
                    run: run.clone(),
                })),
            }
            self.publish_health(&table);
            self.writer.queue(writes)
        };
        self.wake();
        match run.status {
            CronRunStatus::Ok => {
                tracing::info!(job = %run.job_id, duration_ms = ?run.duration_ms, "cron run finished")
            }
            _ => tracing::warn!(job = %run.job_id, error = ?run.error, "cron run failed"),
        }
        if let Err(e) = stored.stored().await {
            tracing::error!(job = %run.job_id, "cannot record the cron run: {e}");
        }
    }
}

/// The job's state after `run`: last run, errors, next run (with backoff
/// after a failure), one-shot cleanup. Returns the job and whether it is
/// to be deleted.
fn settle(entry: &mut super::Entry, run: &CronRun, now: u64) -> (CronJob, bool) {
    let done = entry
        .plan
        .as_ref()
        .is_some_and(|plan| one_shot_done(&entry.job, plan));
    let job = &mut entry.job;
    let state = &mut job.state;
    state.running = false;
    state.last_run_at_ms = Some(run.started_at_ms);
    state.last_status = Some(run.status);
    state.last_error = run.error.clone();
    state.last_duration_ms = run.duration_ms;
    let ok = run.status == CronRunStatus::Ok;
    state.consecutive_errors = if ok { 0 } else { state.consecutive_errors + 1 };
    let natural = match &entry.plan {
        Some(plan) if job.enabled && !done => {
            if plan.is_one_shot() {
                state.next_run_at_ms
            } else {
                plan.next_after(now)
            }
        }
        _ => None,
    };
    let errors = state.consecutive_errors;
    let one_shot = entry.plan.as_ref().is_some_and(|p| p.is_one_shot());
    state.next_run_at_ms = match (ok, one_shot) {
        (false, true) if errors >= ONE_SHOT_ATTEMPTS => None,
        (false, true) => Some(now + backoff_ms(errors)),
        (false, false) => natural.map(|n| n.max(now + backoff_ms(errors))),
        (true, _) => natural,
    };
    let mut delete = false;
    if ok && one_shot && run.trigger != CronTrigger::Manual && job.source == CronJobSource::Api {
        if job.delete_after_run {
            delete = true;
        } else {
            job.enabled = false;
            job.updated_at_ms = now;
        }
    }
    (job.clone(), delete)
}

impl CronService {
    fn publish_finished(&self, job: &CronJob, run: CronRun) {
        self.rt.bus.publish(Event::CronFinished(CronFinishedEvent {
            job_id: job.id.clone(),
            name: job.name.clone(),
            next_run_at_ms: job.state.next_run_at_ms,
            run,
        }));
    }

    /// Updates the health snapshot's cron section, announcing a change.
    pub fn publish_health(&self, table: &Table) {
        self.rt.health.set_cron(table.health());
    }

    /// Waits until no run is in progress, or `limit` passes; false on timeout.
    pub async fn wait_idle(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if self.lock().health().running == 0 {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
