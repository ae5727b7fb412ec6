//! Cron jobs and their run history. A job is stored whole, as the JSON
//! of its protocol type; runs are rows, so history can be paged and pruned.

use super::{Result, Store, StoreError};

/// One change to the cron tables.
#[derive(Clone, Debug)]
pub enum CronWrite {
    /// Insert or replace a job.
    SaveJob(CronJob),
    /// Delete a job and its history.
    DeleteJob(String),
    /// Insert or replace a run (its id is given), keeping the newest
    /// `keep` runs of its job.
    PutRun { run: CronRun, keep: u64 },
}
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

    /// Applies cron changes in order, in one transaction.
    pub async fn cron_apply(&self, writes: Vec<CronWrite>) -> Result<()> {
        self.with(move |db| {
            let tx = db.transaction()?;
            let mut pruned: Vec<(String, u64)> = Vec::new();
            for write in &writes {
                match write {
                    CronWrite::SaveJob(job) => save_job(&tx, job)?,
                    CronWrite::DeleteJob(id) => {
                        tx.execute("DELETE FROM cron_runs WHERE job_id = ?1", params![id])?;
                        tx.execute("DELETE FROM cron_jobs WHERE id = ?1", params![id])?;
                    }
                    CronWrite::PutRun { run, keep } => {
                        let mut values = vec![SqlValue::Integer(run.id.get() as i64)];
                        values.extend(run_values(run));
                        tx.execute(
                            &format!("INSERT OR REPLACE INTO cron_runs ({RUN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"),
                            params_from_iter(values),
                        )?;
                        if !pruned.iter().any(|(id, _)| *id == run.job_id) {
                            pruned.push((run.job_id.clone(), *keep));
                        }
                    }
                }
            }
            for (job_id, keep) in pruned {
                prune(&tx, &job_id, keep)?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// The largest run id ever given out (ids are never reused).
    pub async fn cron_last_run_id(&self) -> Result<u64> {
        self.with(|db| {
            let highest: i64 = db.query_row(
                "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'cron_runs'), 0),
                            coalesce((SELECT max(id) FROM cron_runs), 0))",
                [],
                |row| row.get(0),
            )?;
            Ok(highest.max(0) as u64)
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
        store
            .cron_apply(vec![CronWrite::SaveJob(job())])
            .await
            .unwrap();
        for i in 0..10u64 {
            let run = CronRun {
                id: NonZeroU64::new(i + 1).unwrap(),
                ..run(i * 1000)
            };
            let writes = vec![CronWrite::PutRun { run, keep: 4 }];
            store.cron_apply(writes).await.unwrap();
        }
        assert_eq!(store.cron_last_run_id().await.unwrap(), 10);
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
        let delete = vec![CronWrite::DeleteJob("job-1".into())];
        store.cron_apply(delete).await.unwrap();
        assert!(store
            .cron_runs("job-1".into(), 10, None)
            .await
            .unwrap()
            .0
            .is_empty());
        assert!(store.cron_jobs().await.unwrap().is_empty());
        assert_eq!(
            store.cron_last_run_id().await.unwrap(),
            10,
            "ids are never reused"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
