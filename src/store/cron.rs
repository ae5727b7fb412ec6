//! Cron jobs and their run history. A job is stored whole, as the JSON
//! of its protocol type; runs are rows, so history can be paged and pruned.

use super::{Result, Store, StoreError};
use crate::protocol::types::{CronJob, CronRun, CronRunStatus, CronTrigger};
use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};

const RUN_COLUMNS: &str = "id, job_id, status, trigger, scheduled_at, started_at, finished_at, duration_ms, error, summary, session_key, run_id";

impl Store {
    /// Every stored job. A row that no longer decodes is logged and left
    /// in place rather than lost.
    pub async fn cron_jobs(&self) -> Result<Vec<CronJob>> {
        self.with(|db| {
            let mut stmt = db.prepare("SELECT id, job_json FROM cron_jobs ORDER BY id")?;
            let rows = stmt
                .query_map([], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows
                .into_iter()
                .filter_map(|(id, json)| match serde_json::from_str(&json) {
                    Ok(job) => Some(job),
                    Err(e) => {
                        tracing::error!(job = %id, "stored cron job unreadable, skipped: {e}");
                        None
                    }
                })
                .collect())
        })
        .await
    }

    pub async fn cron_save_job(&self, job: CronJob) -> Result<()> {
        self.with(move |db| save_job(db, &job)).await
    }

    /// Deletes a job and its history; false when there was no such job.
    pub async fn cron_delete_job(&self, id: String) -> Result<bool> {
        self.with(move |db| {
            let tx = db.transaction()?;
            tx.execute("DELETE FROM cron_runs WHERE job_id = ?1", params![id])?;
            let deleted = tx.execute("DELETE FROM cron_jobs WHERE id = ?1", params![id])? > 0;
            tx.commit()?;
            Ok(deleted)
        })
        .await
    }

    /// Records a new run (its id is assigned here) together with the job's
    /// new state, in one transaction, and prunes the job's history to
    /// `keep` runs.
    pub async fn cron_record_run(&self, run: CronRun, job: CronJob, keep: u64) -> Result<CronRun> {
        self.with(move |db| {
            let tx = db.transaction()?;
            tx.execute(
                &format!("INSERT INTO cron_runs ({RUN_COLUMNS}) VALUES (NULL, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"),
                params_from_iter(run_values(&run)),
            )?;
            let id = tx.last_insert_rowid();
            save_job(&tx, &job)?;
            prune(&tx, &run.job_id, keep)?;
            tx.commit()?;
            let id = std::num::NonZeroU64::new(id as u64)
                .ok_or_else(|| StoreError("run id 0".into()))?;
            Ok(CronRun { id, ..run })
        })
        .await
    }

    /// Rewrites a finished run and, when the job still exists, its state.
    pub async fn cron_finish_run(&self, run: CronRun, job: Option<CronJob>) -> Result<()> {
        self.with(move |db| {
            let tx = db.transaction()?;
            let mut values = run_values(&run);
            values.push(SqlValue::Integer(run.id.get() as i64));
            tx.execute(
                "UPDATE cron_runs SET job_id = ?1, status = ?2, trigger = ?3, scheduled_at = ?4,
                 started_at = ?5, finished_at = ?6, duration_ms = ?7, error = ?8, summary = ?9,
                 session_key = ?10, run_id = ?11 WHERE id = ?12",
                params_from_iter(values),
            )?;
            if let Some(job) = &job {
                save_job(&tx, job)?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Runs newest first, at most `limit`, with ids below `before`.
    pub async fn cron_runs(
        &self,
        job_id: String,
        limit: usize,
        before: Option<u64>,
    ) -> Result<(Vec<CronRun>, Option<u64>)> {
        self.with(move |db| {
            let mut stmt = db.prepare_cached(&format!(
                "SELECT {RUN_COLUMNS} FROM cron_runs WHERE job_id = ?1 AND (?2 IS NULL OR id < ?2)
                 ORDER BY id DESC LIMIT ?3"
            ))?;
            let mut runs = stmt
                .query_map(
                    params![job_id, before.map(|b| b as i64), (limit + 1) as i64],
                    run_from_row,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let next_before = if runs.len() > limit {
                runs.truncate(limit);
                runs.last().map(|r| r.id.get())
            } else {
                None
            };
            Ok((runs, next_before))
        })
        .await
    }

    /// Runs a previous process left running (it stopped mid-run), oldest first.
    pub async fn cron_unfinished_runs(&self) -> Result<Vec<CronRun>> {
        self.with(|db| {
            let mut stmt = db.prepare(&format!(
                "SELECT {RUN_COLUMNS} FROM cron_runs WHERE status = 'running' ORDER BY id"
            ))?;
            let runs = stmt
                .query_map([], run_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(runs)
        })
        .await
    }

    pub async fn cron_run(&self, id: u64) -> Result<Option<CronRun>> {
        self.with(move |db| {
            Ok(db
                .query_row(
                    &format!("SELECT {RUN_COLUMNS} FROM cron_runs WHERE id = ?1"),
                    params![id as i64],
                    run_from_row,
                )
                .optional()?)
        })
        .await
    }
}

fn save_job(db: &Connection, job: &CronJob) -> Result<()> {
    let json = serde_json::to_string(job).map_err(|e| StoreError(e.to_string()))?;
    db.execute(
        "INSERT INTO cron_jobs (id, job_json) VALUES (?1, ?2)
         ON CONFLICT(id) DO UPDATE SET job_json = excluded.job_json",
        params![job.id, json],
    )?;
    Ok(())
}

/// Keeps the newest `keep` runs of a job.
fn prune(db: &Connection, job_id: &str, keep: u64) -> rusqlite::Result<()> {
    db.execute(
        "DELETE FROM cron_runs WHERE job_id = ?1 AND id <= (
            SELECT id FROM cron_runs WHERE job_id = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
        params![job_id, keep as i64],
    )?;
    Ok(())
}

/// The eleven values after `id`, in RUN_COLUMNS order.
fn run_values(run: &CronRun) -> Vec<SqlValue> {
    let text = |v: &Option<String>| v.clone().map_or(SqlValue::Null, SqlValue::Text);
    let int = |v: Option<u64>| v.map_or(SqlValue::Null, |v| SqlValue::Integer(v as i64));
    vec![
        SqlValue::Text(run.job_id.clone()),
        SqlValue::Text(run.status.to_string()),
        SqlValue::Text(run.trigger.to_string()),
        int(run.scheduled_at_ms),
        int(Some(run.started_at_ms)),
        int(run.finished_at_ms),
        int(run.duration_ms),
        text(&run.error),
        text(&run.summary),
        text(&run.session_key),
        text(&run.run_id),
    ]
}

fn run_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<CronRun> {
    let status: String = row.get(2)?;
    let trigger: String = row.get(3)?;
    let id = std::num::NonZeroU64::new(row.get::<_, i64>(0)? as u64)
        .ok_or(rusqlite::Error::IntegralValueOutOfRange(0, 0))?;
    Ok(CronRun {
        id,
        job_id: row.get(1)?,
        status: status.parse().unwrap_or(CronRunStatus::Error),
        trigger: trigger.parse().unwrap_or(CronTrigger::Schedule),
        scheduled_at_ms: row.get::<_, Option<i64>>(4)?.map(|v| v as u64),
        started_at_ms: row.get::<_, i64>(5)? as u64,
        finished_at_ms: row.get::<_, Option<i64>>(6)?.map(|v| v as u64),
        duration_ms: row.get::<_, Option<i64>>(7)?.map(|v| v as u64),
        error: row.get(8)?,
        summary: row.get(9)?,
        session_key: row.get(10)?,
        run_id: row.get(11)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cron::JobDraft;
    use crate::protocol::types::{CronJobSource, CronPayload, CronSchedule};
    use std::num::NonZeroU64;

    fn job() -> CronJob {
        JobDraft {
            name: "beat".into(),
            enabled: true,
            schedule: CronSchedule::Every {
                every_ms: 1000,
                anchor_ms: None,
            },
            payload: CronPayload::SystemEvent {
                text: "beat".parse().unwrap(),
            },
            agent_id: None,
            session_key: None,
            delete_after_run: false,
            timeout_ms: None,
        }
        .into_job("job-1".into(), CronJobSource::Api, 1_000)
    }

    fn run(at: u64) -> CronRun {
        CronRun {
            id: NonZeroU64::MIN,
            job_id: "job-1".into(),
            status: CronRunStatus::Ok,
            trigger: CronTrigger::Schedule,
            scheduled_at_ms: Some(at),
            started_at_ms: at,
            finished_at_ms: Some(at + 5),
            duration_ms: Some(5),
            error: None,
            summary: Some(format!("run at {at}")),
            session_key: None,
            run_id: None,
        }
    }

    #[tokio::test]
    async fn history_is_pruned_to_the_newest_runs_and_pages_backwards() {
        let dir = std::env::temp_dir().join(format!("clawgate-store-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::open(&dir).unwrap();
        for i in 0..10 {
            store
                .cron_record_run(run(i * 1000), job(), 4)
                .await
                .unwrap();
        }
        let (page, next) = store.cron_runs("job-1".into(), 3, None).await.unwrap();
        let starts: Vec<u64> = page.iter().map(|r| r.started_at_ms).collect();
        assert_eq!(starts, [9000, 8000, 7000]);
        let (rest, last) = store.cron_runs("job-1".into(), 3, next).await.unwrap();
        assert_eq!(rest.len(), 1, "only the newest four are kept");
        assert_eq!(rest[0].started_at_ms, 6000);
        assert_eq!(last, None);
        assert_eq!(
            rest[0],
            store.cron_run(rest[0].id.get()).await.unwrap().unwrap()
        );
        assert_eq!(store.cron_jobs().await.unwrap(), vec![job()]);
        assert!(store.cron_delete_job("job-1".into()).await.unwrap());
        assert!(store
            .cron_runs("job-1".into(), 10, None)
            .await
            .unwrap()
            .0
            .is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
