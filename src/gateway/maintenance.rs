//! Periodic upkeep, in one place: each task runs at start and then at
//! its interval (store-prune and session-prune also when their retention
//! changes), and how its last run went shows in `status`.
//!
//! - store-prune: idempotency keys past their day, exec audit entries past
//!   `approvals.auditRetentionDays`;
//! - store-compact: the SQLite write-ahead log checkpointed into the
//!   database, and `PRAGMA optimize`;
//! - session-prune: sessions idle longer than `session.retentionDays`;
//! - presence-prune (every minute): presence entries gone five minutes.

use super::{now_ms, Gateway};
use crate::idempotency;
use crate::protocol::types::{MaintenanceStatus, MaintenanceStatusLastOutcome, MaintenanceTask};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const HOUR: Duration = Duration::from_secs(60 * 60);
const DAY_MS: u64 = 24 * 60 * 60 * 1000;
/// The tasks, in the order they run, and how often.
const TASKS: [(MaintenanceTask, Duration); 4] = [
    (MaintenanceTask::StorePrune, HOUR),
    (MaintenanceTask::SessionPrune, HOUR),
    (MaintenanceTask::StoreCompact, HOUR),
    (MaintenanceTask::PresencePrune, Duration::from_secs(60)),
];
/// Sessions deleted per run at most, so one run stays short.
const SESSIONS_PER_RUN: usize = 1000;

/// How each task last ran.
pub struct MaintenanceLog {
    tasks: Mutex<Vec<MaintenanceStatus>>,
}

impl Default for MaintenanceLog {
    fn default() -> Self {
        let tasks = TASKS
            .iter()
            .map(|(task, every)| MaintenanceStatus {
                task: *task,
                every_ms: std::num::NonZeroU64::new(every.as_millis() as u64).expect("not zero"),
                last_run_at_ms: None,
                last_took_ms: None,
                last_outcome: None,
                last_result: None,
                last_error: None,
                next_run_at_ms: None,
            })
            .collect();
        MaintenanceLog {
            tasks: Mutex::new(tasks),
        }
    }
}

impl MaintenanceLog {
    pub fn statuses(&self) -> Vec<MaintenanceStatus> {
        self.tasks.lock().expect("maintenance log").clone()
    }

    fn record(
        &self,
        task: MaintenanceTask,
        began_ms: u64,
        took: Duration,
        outcome: Result<String, String>,
    ) {
        let mut tasks = self.tasks.lock().expect("maintenance log");
        let Some(status) = tasks.iter_mut().find(|s| s.task == task) else {
            return;
        };
        status.last_run_at_ms = Some(began_ms);
        status.last_took_ms = Some(took.as_millis() as u64);
        status.next_run_at_ms = Some(began_ms + status.every_ms.get());
        match outcome {
            Ok(result) => {
                status.last_outcome = Some(MaintenanceStatusLastOutcome::Ok);
                status.last_result = Some(result);
                status.last_error = None;
            }
            Err(error) => {
                status.last_outcome = Some(MaintenanceStatusLastOutcome::Error);
                status.last_error = Some(error);
            }
        }
    }
}

impl Gateway {
    pub fn spawn_maintenance(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let gw = Arc::clone(self);
        let mut follower = self.rt.config.follow();
        tokio::spawn(async move {
            let shutdown = gw.rt.shutdown.clone();
            let start = tokio::time::Instant::now();
            let mut next = [start; TASKS.len()];
            loop {
                let soonest = *next.iter().min().expect("tasks");
                tokio::select! {
                    _ = tokio::time::sleep_until(soonest) => {
                        for (i, (task, every)) in TASKS.iter().enumerate() {
                            if next[i] <= tokio::time::Instant::now() {
                                gw.run_maintenance(*task).await;
                                next[i] = tokio::time::Instant::now() + *every;
                            }
                        }
                    }
                    change = follower.next() => match change {
                        Some(change) => {
                            let (before, after) = (&change.before, &change.after);
                            if before.approvals.audit_retention_days != after.approvals.audit_retention_days {
                                gw.run_maintenance(MaintenanceTask::StorePrune).await;
                            }
                            if before.session.retention_days != after.session.retention_days {
                                gw.run_maintenance(MaintenanceTask::SessionPrune).await;
                            }
                        }
                        None => return,
                    },
                    _ = shutdown.wait() => return,
                }
            }
        })
    }

    async fn run_maintenance(&self, task: MaintenanceTask) {
        let began_ms = now_ms();
        let started = Instant::now();
        let outcome = match task {
            MaintenanceTask::StorePrune => self.prune_store(began_ms).await,
            MaintenanceTask::SessionPrune => self.prune_sessions(began_ms).await,
            MaintenanceTask::PresencePrune => Ok(format!(
                "{} presence entries expired",
                self.rt.presence.prune(began_ms)
            )),
            MaintenanceTask::StoreCompact => self
                .rt
                .stores
                .upkeep
                .compact()
                .await
                .map(|pages| format!("{pages} write-ahead log pages checkpointed"))
                .map_err(|e| e.to_string()),
        };
        match &outcome {
            Ok(result) => tracing::debug!(%task, "maintenance: {result}"),
            Err(e) => tracing::warn!(%task, "maintenance failed: {e}"),
        }
        self.maintenance
            .record(task, began_ms, started.elapsed(), outcome);
    }

    async fn prune_sessions(&self, now: u64) -> Result<String, String> {
        let days = self.config().session.retention_days as u64;
        if days == 0 {
            return Ok("kept: session.retentionDays is 0".to_string());
        }
        let deleted = self
            .rt
            .stores
            .upkeep
            .prune_sessions(now.saturating_sub(days * DAY_MS), SESSIONS_PER_RUN)
            .await
            .map_err(|e| e.to_string())?;
        if deleted > 0 {
            tracing::info!(deleted, days, "deleted idle sessions");
        }
        Ok(format!("{deleted} sessions idle over {days} days deleted"))
    }

    async fn prune_store(&self, now: u64) -> Result<String, String> {
        let days = self.config().approvals.audit_retention_days as u64;
        let audit_before = (days > 0).then(|| now.saturating_sub(days * DAY_MS));
        let (keys, audit) = self
            .rt
            .stores
            .upkeep
            .prune(now.saturating_sub(idempotency::TTL_MS), audit_before)
            .await
            .map_err(|e| e.to_string())?;
        if keys + audit > 0 {
            tracing::info!(
                keys,
                audit,
                "pruned expired idempotency keys and audit entries"
            );
        }
        Ok(format!(
            "{keys} idempotency keys, {audit} audit entries deleted"
        ))
    }
}
