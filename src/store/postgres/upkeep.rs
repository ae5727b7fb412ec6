//! Removing what has expired.

use super::{count, int, PgStore};
use crate::store::{StoreFuture, UpkeepStore};
use deadpool_postgres::GenericClient;

/// The tables `compact` refreshes the statistics of.
const TABLES: &str = "sessions, messages, idempotency, cron_jobs, cron_runs, nodes, \
                      exec_audit, exec_allowlist, channel_offsets, heartbeats, devices";

impl UpkeepStore for PgStore {
    /// Drops idempotency keys older than `keys_before_ms` and, when given,
    /// audit entries older than `audit_before_ms`, in one transaction;
    /// how many of each.
    fn prune(
        &self,
        keys_before_ms: u64,
        audit_before_ms: Option<u64>,
    ) -> StoreFuture<'_, (usize, usize)> {
        self.run(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let keys = tx
                .prepare_cached("DELETE FROM idempotency WHERE created_at < $1")
                .await?;
            let keys = tx.execute(&keys, &[&int(keys_before_ms)]).await?;
            let audit = match audit_before_ms {
                Some(before) => {
                    let stmt = tx
                        .prepare_cached("DELETE FROM exec_audit WHERE decided_at < $1")
                        .await?;
                    tx.execute(&stmt, &[&int(before)]).await?
                }
                None => 0,
            };
            tx.commit().await?;
            Ok((keys as usize, audit as usize))
        })
    }

    /// PostgreSQL has no write-ahead log for a client to checkpoint (the
    /// server does it) and vacuums by itself, so this only refreshes the
    /// planner's statistics of the store's tables (`ANALYZE`, cheap) and
    /// returns 0 pages.
    fn compact(&self) -> StoreFuture<'_, u64> {
        self.run(async move {
            let client = self.client().await?;
            client.batch_execute(&format!("ANALYZE {TABLES}")).await?;
            Ok(0)
        })
    }

    /// Deletes at most `limit` sessions last updated before
    /// `idle_before_ms`, the longest idle first, with their transcripts
    /// (by the foreign key's cascade), in one statement; how many.
    fn prune_sessions(&self, idle_before_ms: u64, limit: usize) -> StoreFuture<'_, usize> {
        self.run(async move {
            let client = self.client().await?;
            // Sessions idle equally long go by key, descending: the order
            // SQLite reads them in (backwards along sessions_by_activity).
            // The outer condition is checked again on a row a turn updated
            // meanwhile, so a session that just became active stays.
            let stmt = client
                .prepare_cached(
                    "DELETE FROM sessions WHERE updated_at < $1 AND key IN
                     (SELECT key FROM sessions WHERE updated_at < $1
                      ORDER BY updated_at, key DESC LIMIT $2)",
                )
                .await?;
            let deleted = client
                .execute(&stmt, &[&int(idle_before_ms), &count(limit as u64)])
                .await?;
            Ok(deleted as usize)
        })
    }
}
