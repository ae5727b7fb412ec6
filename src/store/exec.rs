//! The exec audit log and the commands agents may run for good
//! (allow-always answers).

use super::{Result, Store};
use crate::protocol::types::{ApprovalAuditEntry, ApprovalAuditEntryDecision};
use rusqlite::params;
use std::num::NonZeroU64;

impl Store {
    /// What `agent_id` was allowed to run for good: each an exact argv,
    /// working directory and node, as [`crate::exec::Request`] binds it.
    pub async fn exec_allowed(&self, agent_id: String) -> Result<Vec<String>> {
        self.with(move |db| {
            let mut stmt =
                db.prepare_cached("SELECT command FROM exec_allowlist WHERE agent_id = ?1")?;
            let rows = stmt
                .query_map(params![agent_id], |row| row.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            Ok(rows)
        })
        .await
    }

    /// Records a decision, with `binding` allowed for good when the
    /// decision is allow-always, in one transaction.
    pub async fn record_exec_decision(
        &self,
        entry: ApprovalAuditEntry,
        binding: String,
    ) -> Result<u64> {
        self.with(move |db| {
            let tx = db.transaction()?;
            tx.execute(
                "INSERT INTO exec_audit (approval_id, command, argv_json, cwd, agent_id, session_key,
                 node_id, decision, decided_by, requested_at, decided_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    entry.approval_id,
                    entry.command,
                    serde_json::to_string(&entry.argv).expect("strings serialize"),
                    entry.cwd,
                    entry.agent_id,
                    entry.session_key,
                    entry.node_id,
                    entry.decision.to_string(),
                    entry.decided_by,
                    entry.requested_at_ms as i64,
                    entry.decided_at_ms as i64
                ],
            )?;
            let id = tx.last_insert_rowid() as u64;
            if entry.decision == ApprovalAuditEntryDecision::AllowAlways {
                tx.execute(
                    "INSERT OR IGNORE INTO exec_allowlist (agent_id, command, added_at)
                     VALUES (?1, ?2, ?3)",
                    params![entry.agent_id, binding, entry.decided_at_ms as i64],
                )?;
            }
            tx.commit()?;
            Ok(id)
        })
        .await
    }

    /// Audit entries newest first, at most `limit`, with ids below `before`.
    pub async fn exec_audit(
        &self,
        limit: usize,
        before: Option<u64>,
    ) -> Result<(Vec<ApprovalAuditEntry>, Option<u64>)> {
        self.with(move |db| {
            let mut stmt = db.prepare_cached(
                "SELECT id, approval_id, command, argv_json, cwd, agent_id, session_key, node_id,
                 decision, decided_by, requested_at, decided_at
                 FROM exec_audit WHERE (?1 IS NULL OR id < ?1) ORDER BY id DESC LIMIT ?2",
            )?;
            let mut entries = stmt
                .query_map(
                    params![before.map(|b| b as i64), (limit + 1) as i64],
                    |row| {
                        let argv: String = row.get(3)?;
                        let decision: String = row.get(8)?;
                        Ok(ApprovalAuditEntry {
                            id: NonZeroU64::new(row.get::<_, i64>(0)? as u64)
                                .unwrap_or(NonZeroU64::MIN),
                            approval_id: row.get(1)?,
                            command: row.get(2)?,
                            argv: serde_json::from_str(&argv).unwrap_or_default(),
                            cwd: row.get(4)?,
                            agent_id: row.get(5)?,
                            session_key: row.get(6)?,
                            node_id: row.get(7)?,
                            decision: decision
                                .parse()
                                .unwrap_or(ApprovalAuditEntryDecision::Denied),
                            decided_by: row.get(9)?,
                            requested_at_ms: row.get::<_, i64>(10)? as u64,
                            decided_at_ms: row.get::<_, i64>(11)? as u64,
                        })
                    },
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let next_before = if entries.len() > limit {
                entries.truncate(limit);
                entries.last().map(|e| e.id.get())
            } else {
                None
            };
            Ok((entries, next_before))
        })
        .await
    }
}
