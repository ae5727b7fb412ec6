//! The exec audit log and the commands agents may run for good.

use super::{int, page_limit, PgResult, PgStore};
use crate::protocol::types::{ApprovalAuditEntry, ApprovalAuditEntryDecision};
use crate::store::{AuditStore, StoreFuture};
use deadpool_postgres::GenericClient;
use std::num::NonZeroU64;
use tokio_postgres::Row;

impl AuditStore for PgStore {
    /// What `agent_id` was allowed to run for good, in byte order (the
    /// order SQLite returns them in, from its primary key index).
    fn exec_allowed(&self, agent_id: String) -> StoreFuture<'_, Vec<String>> {
        self.run(async move {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(
                    "SELECT command FROM exec_allowlist WHERE agent_id = $1 ORDER BY command",
                )
                .await?;
            let rows = client.query(&stmt, &[&agent_id]).await?;
            Ok(rows
                .iter()
                .map(|row| row.try_get(0))
                .collect::<Result<Vec<String>, _>>()?)
        })
    }

    /// Records a decision, with `binding` allowed for good when the
    /// decision is allow-always, in one transaction; the entry's id.
    fn record_exec_decision(
        &self,
        entry: ApprovalAuditEntry,
        binding: String,
    ) -> StoreFuture<'_, u64> {
        self.run(async move {
            let argv = serde_json::to_string(&entry.argv)?;
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let insert = tx
                .prepare_cached(
                    "INSERT INTO exec_audit (approval_id, command, argv_json, cwd, agent_id, session_key,
                     node_id, decision, decided_by, requested_at, decided_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
                )
                .await?;
            let id: i64 = tx
                .query_one(
                    &insert,
                    &[
                        &entry.approval_id,
                        &entry.command,
                        &argv,
                        &entry.cwd,
                        &entry.agent_id,
                        &entry.session_key,
                        &entry.node_id,
                        &entry.decision.to_string(),
                        &entry.decided_by,
                        &int(entry.requested_at_ms),
                        &int(entry.decided_at_ms),
                    ],
                )
                .await?
                .try_get(0)?;
            if entry.decision == ApprovalAuditEntryDecision::AllowAlways {
                let allow = tx
                    .prepare_cached(
                        "INSERT INTO exec_allowlist (agent_id, command, added_at)
                         VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    )
                    .await?;
                tx.execute(
                    &allow,
                    &[&entry.agent_id, &binding, &int(entry.decided_at_ms)],
                )
                .await?;
            }
            tx.commit().await?;
            Ok(id as u64)
        })
    }

    /// Audit entries newest first, at most `limit`, with ids below `before`.
    fn exec_audit(
        &self,
        limit: usize,
        before: Option<u64>,
    ) -> StoreFuture<'_, (Vec<ApprovalAuditEntry>, Option<u64>)> {
        self.run(async move {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(
                    "SELECT id, approval_id, command, argv_json, cwd, agent_id, session_key, node_id,
                     decision, decided_by, requested_at, decided_at
                     FROM exec_audit WHERE ($1::BIGINT IS NULL OR id < $1) ORDER BY id DESC LIMIT $2",
                )
                .await?;
            let rows = client
                .query(&stmt, &[&before.map(int), &page_limit(limit)])
                .await?;
            let mut entries = rows.iter().map(entry_from_row).collect::<PgResult<Vec<_>>>()?;
            let next_before = if entries.len() > limit {
                entries.truncate(limit);
                entries.last().map(|e| e.id.get())
            } else {
                None
            };
            Ok((entries, next_before))
        })
    }
}

fn entry_from_row(row: &Row) -> PgResult<ApprovalAuditEntry> {
    let argv: String = row.try_get(3)?;
    let decision: String = row.try_get(8)?;
    Ok(ApprovalAuditEntry {
        id: NonZeroU64::new(row.try_get::<_, i64>(0)? as u64).unwrap_or(NonZeroU64::MIN),
        approval_id: row.try_get(1)?,
        command: row.try_get(2)?,
        argv: serde_json::from_str(&argv).unwrap_or_default(),
        cwd: row.try_get(4)?,
        agent_id: row.try_get(5)?,
        session_key: row.try_get(6)?,
        node_id: row.try_get(7)?,
        decision: decision
            .parse()
            .unwrap_or(ApprovalAuditEntryDecision::Denied),
        decided_by: row.try_get(9)?,
        requested_at_ms: row.try_get::<_, i64>(10)? as u64,
        decided_at_ms: row.try_get::<_, i64>(11)? as u64,
    })
}
