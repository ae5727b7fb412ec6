//! Cron jobs (stored whole, as the JSON of their protocol type) and
//! their run history.

use super::{count, int, page_limit, PgResult, PgStore};
use crate::protocol::types::{CronJob, CronRun, CronRunStatus, CronTrigger};
use crate::store::{CronStore, CronWrite, StoreFuture};
use deadpool_postgres::{GenericClient, Transaction};
use std::num::NonZeroU64;
use tokio_postgres::Row;

const RUN_COLUMNS: &str = "id, job_id, status, trigger, scheduled_at, started_at, finished_at, duration_ms, error, summary, session_key, run_id";

/// Serializes the cron writes of gateways sharing the database, so the
/// run id sequence only grows ("clawgate" + 1).
const CRON_LOCK: i64 = 0x636c_6177_6761_7466;

impl CronStore for PgStore {
    /// Every stored job. A row that no longer decodes is logged and left
    /// in place rather than lost.
    fn cron_jobs(&self) -> StoreFuture<'_, Vec<CronJob>> {
        self.run(async move {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached("SELECT id, job_json FROM cron_jobs ORDER BY id")
                .await?;
            let mut jobs = Vec::new();
            for row in client.query(&stmt, &[]).await? {
                let (id, json): (String, String) = (row.try_get(0)?, row.try_get(1)?);
                match serde_json::from_str(&json) {
                    Ok(job) => jobs.push(job),
                    Err(e) => {
                        tracing::error!(job = %id, "stored cron job unreadable, skipped: {e}")
                    }
                }
            }
            Ok(jobs)
        })
    }

    fn cron_apply(&self, writes: Vec<CronWrite>) -> StoreFuture<'_, ()> {
        self.run(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            tx.execute(&format!("SELECT pg_advisory_xact_lock({CRON_LOCK})"), &[])
                .await?;
            let mut pruned: Vec<(String, u64)> = Vec::new();
            for write in &writes {
                match write {
                    CronWrite::SaveJob(job) => save_job(&tx, job).await?,
                    CronWrite::DeleteJob(id) => {
                        let runs = tx
                            .prepare_cached("DELETE FROM cron_runs WHERE job_id = $1")
                            .await?;
                        tx.execute(&runs, &[id]).await?;
                        let job = tx
                            .prepare_cached("DELETE FROM cron_jobs WHERE id = $1")
                            .await?;
                        tx.execute(&job, &[id]).await?;
                    }
                    CronWrite::PutRun { run, keep } => {
                        put_run(&tx, run).await?;
                        if !pruned.iter().any(|(id, _)| *id == run.job_id) {
                            pruned.push((run.job_id.clone(), *keep));
                        }
                    }
                }
            }
            for (job_id, keep) in pruned {
                prune(&tx, &job_id, keep).await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// The largest run id ever given out (ids are never reused).
    fn cron_last_run_id(&self) -> StoreFuture<'_, u64> {
        self.run(async move {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(
                    "SELECT GREATEST(
                        COALESCE((SELECT CASE WHEN is_called THEN last_value END FROM cron_runs_id_seq), 0),
                        COALESCE((SELECT max(id) FROM cron_runs), 0))",
                )
                .await?;
            let highest: i64 = client.query_one(&stmt, &[]).await?.try_get(0)?;
            Ok(highest.max(0) as u64)
        })
    }

    /// Runs newest first, at most `limit`, with ids below `before`.
    fn cron_runs(
        &self,
        job_id: String,
        limit: usize,
        before: Option<u64>,
    ) -> StoreFuture<'_, (Vec<CronRun>, Option<u64>)> {
        self.run(async move {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(&format!(
                    "SELECT {RUN_COLUMNS} FROM cron_runs
                     WHERE job_id = $1 AND ($2::BIGINT IS NULL OR id < $2)
                     ORDER BY id DESC LIMIT $3"
                ))
                .await?;
            let rows = client
                .query(&stmt, &[&job_id, &before.map(int), &page_limit(limit)])
                .await?;
            let mut runs = rows
                .iter()
                .map(run_from_row)
                .collect::<PgResult<Vec<_>>>()?;
            let next_before = if runs.len() > limit {
                runs.truncate(limit);
                runs.last().map(|r| r.id.get())
            } else {
                None
            };
            Ok((runs, next_before))
        })
    }

    /// Runs a previous process left running (it stopped mid-run), oldest first.
    fn cron_unfinished_runs(&self) -> StoreFuture<'_, Vec<CronRun>> {
        self.run(async move {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(&format!(
                    "SELECT {RUN_COLUMNS} FROM cron_runs WHERE status = 'running' ORDER BY id"
                ))
                .await?;
            let rows = client.query(&stmt, &[]).await?;
            rows.iter().map(run_from_row).collect()
        })
    }

    fn cron_run(&self, id: u64) -> StoreFuture<'_, Option<CronRun>> {
        self.run(async move {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(&format!(
                    "SELECT {RUN_COLUMNS} FROM cron_runs WHERE id = $1"
                ))
                .await?;
            match client.query_opt(&stmt, &[&int(id)]).await? {
                Some(row) => Ok(Some(run_from_row(&row)?)),
                None => Ok(None),
            }
        })
    }
}

async fn save_job(tx: &Transaction<'_>, job: &CronJob) -> PgResult<()> {
    let json = serde_json::to_string(job)?;
    let stmt = tx
        .prepare_cached(
            "INSERT INTO cron_jobs (id, job_json) VALUES ($1, $2)
             ON CONFLICT (id) DO UPDATE SET job_json = excluded.job_json",
        )
        .await?;
    tx.execute(&stmt, &[&job.id, &json]).await?;
    Ok(())
}

/// Inserts or replaces the run, and raises the id sequence to its id (as
/// SQLite's AUTOINCREMENT raises sqlite_sequence), so an id is never
/// given twice even after the run is deleted.
async fn put_run(tx: &Transaction<'_>, run: &CronRun) -> PgResult<()> {
    let stmt = tx
        .prepare_cached(&format!(
            "INSERT INTO cron_runs ({RUN_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (id) DO UPDATE SET job_id = excluded.job_id, status = excluded.status,
               trigger = excluded.trigger, scheduled_at = excluded.scheduled_at,
               started_at = excluded.started_at, finished_at = excluded.finished_at,
               duration_ms = excluded.duration_ms, error = excluded.error,
               summary = excluded.summary, session_key = excluded.session_key,
               run_id = excluded.run_id"
        ))
        .await?;
    let id = int(run.id.get());
    tx.execute(
        &stmt,
        &[
            &id,
            &run.job_id,
            &run.status.to_string(),
            &run.trigger.to_string(),
            &run.scheduled_at_ms.map(int),
            &int(run.started_at_ms),
            &run.finished_at_ms.map(int),
            &run.duration_ms.map(int),
            &run.error,
            &run.summary,
            &run.session_key,
            &run.run_id,
        ],
    )
    .await?;
    let raise = tx
        .prepare_cached(
            "SELECT setval('cron_runs_id_seq', $1::BIGINT) FROM cron_runs_id_seq
             WHERE NOT is_called OR last_value < $1",
        )
        .await?;
    tx.query(&raise, &[&id]).await?;
    Ok(())
}

/// Keeps the newest `keep` runs of a job.
async fn prune(tx: &Transaction<'_>, job_id: &str, keep: u64) -> PgResult<()> {
    let stmt = tx
        .prepare_cached(
            "DELETE FROM cron_runs WHERE job_id = $1 AND id <= (
                SELECT id FROM cron_runs WHERE job_id = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)",
        )
        .await?;
    tx.execute(&stmt, &[&job_id, &count(keep)]).await?;
    Ok(())
}

fn run_from_row(row: &Row) -> PgResult<CronRun> {
    let status: String = row.try_get(2)?;
    let trigger: String = row.try_get(3)?;
    let id = NonZeroU64::new(row.try_get::<_, i64>(0)? as u64)
        .ok_or_else(|| super::Failure::Other("a cron run with id 0".into()))?;
    let opt = |i: usize| -> PgResult<Option<u64>> {
        Ok(row.try_get::<_, Option<i64>>(i)?.map(|v| v as u64))
    };
    Ok(CronRun {
        id,
        job_id: row.try_get(1)?,
        status: status.parse().unwrap_or(CronRunStatus::Error),
        trigger: trigger.parse().unwrap_or(CronTrigger::Schedule),
        scheduled_at_ms: opt(4)?,
        started_at_ms: row.try_get::<_, i64>(5)? as u64,
        finished_at_ms: opt(6)?,
        duration_ms: opt(7)?,
        error: row.try_get(8)?,
        summary: row.try_get(9)?,
        session_key: row.try_get(10)?,
        run_id: row.try_get(11)?,
    })
}
