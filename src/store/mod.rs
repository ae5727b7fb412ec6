//! The embedded store: sessions and transcripts in SQLite (WAL) in the
//! state dir. Every write is one transaction, so a crash loses at most the
//! write in progress. Calls run on the blocking pool, never on a
//! connection task.

mod channels;
mod cron;
mod devices;
mod exec;
mod heartbeats;
mod migrations;
mod nodes;
pub mod postgres;
mod traits;

pub use cron::CronWrite;
pub use nodes::StoredNode;
pub use postgres::PgStore;
pub use traits::{
    AuditStore, ChannelStore, ClusterStore, CronStore, DeviceStore, HeartbeatStore, MemberConfig,
    NodePresence, NodeStore, ResultStore, SessionStore, StoreFuture, Stores, UpkeepStore,
};

use crate::protocol::types::{ChatMessage, ChatMessageRole, ChatMessageStatus, SessionInfo, Usage};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::{Arc, Mutex};

#[derive(Clone)]
pub struct Store {
    db: Arc<Mutex<Connection>>,
}

#[derive(Clone, Debug)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "store: {}", self.0)
    }
}

impl std::error::Error for StoreError {}

impl StoreError {
    /// Whether the database could not be reached (PostgreSQL down or
    /// unreachable), as opposed to refusing or failing the call.
    pub fn is_unavailable(&self) -> bool {
        self.0.starts_with(postgres::UNAVAILABLE)
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Which sessions to list.
#[derive(Clone, Debug, Default)]
pub struct SessionFilter {
    pub limit: usize,
    /// `updatedAtMs:key` of the last row of the previous page.
    pub cursor: Option<String>,
    pub active_since_ms: Option<u64>,
    pub search: Option<String>,
    pub agent_id: Option<String>,
}

/// A change to a session's settings: None keeps, Some(None) clears.
#[derive(Clone, Debug, Default)]
pub struct SessionChange {
    pub label: Option<Option<String>>,
    pub model: Option<Option<String>>,
    pub thinking: Option<Option<String>>,
}

impl Store {
    /// Opens (creating if needed) `clawgate.db` in `dir` and migrates it.
    pub fn open(dir: &Path) -> Result<Store> {
        let path = dir.join("clawgate.db");
        private_file(&path).map_err(|e| StoreError(format!("{}: {e}", path.display())))?;
        let db = Connection::open(&path)?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "NORMAL")?;
        db.pragma_update(None, "foreign_keys", "ON")?;
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        migrations::run(&db)?;
        Ok(Store {
            db: Arc::new(Mutex::new(db)),
        })
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn with<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || {
            let mut conn = db.lock().map_err(|_| StoreError("lock poisoned".into()))?;
            f(&mut conn)
        })
        .await
        .map_err(|e| StoreError(format!("store task failed: {e}")))?
    }

    /// Stores the user's message, creating the session if new.
    pub async fn begin_turn(
        &self,
        session_key: String,
        agent_id: String,
        run_id: String,
        text: String,
        now_ms: u64,
    ) -> Result<()> {
        self.with(move |db| {
            let tx = db.transaction()?;
            tx.execute(
                "INSERT INTO sessions (key, agent_id, created_at, updated_at, message_count)
                 VALUES (?1, ?2, ?3, ?3, 0)
                 ON CONFLICT(key) DO UPDATE SET updated_at = excluded.updated_at",
                params![session_key, agent_id, now_ms as i64],
            )?;
            insert_message(
                &tx,
                &session_key,
                "user",
                &text,
                "complete",
                &run_id,
                now_ms,
                None,
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Stores the assistant's reply (complete or aborted) and returns it.
    pub async fn finish_turn(
        &self,
        session_key: String,
        run_id: String,
        text: String,
        status: ChatMessageStatus,
        usage: Usage,
        now_ms: u64,
    ) -> Result<ChatMessage> {
        self.with(move |db| {
            let tx = db.transaction()?;
            let status_name = status.to_string();
            let id = insert_message(
                &tx,
                &session_key,
                "assistant",
                &text,
                &status_name,
                &run_id,
                now_ms,
                Some(&usage),
            )?;
            tx.commit()?;
            Ok(ChatMessage {
                id: id as u64,
                role: ChatMessageRole::Assistant,
                content: text,
                status,
                run_id: Some(run_id),
                created_at_ms: now_ms,
                usage: Some(usage),
            })
        })
        .await
    }

    pub async fn session(&self, key: String) -> Result<Option<SessionInfo>> {
        self.with(move |db| session_row(db, &key)).await
    }

    pub async fn list_sessions(
        &self,
        filter: SessionFilter,
    ) -> Result<(Vec<SessionInfo>, Option<String>)> {
        self.with(move |db| {
            let (cursor_at, cursor_key) =
                match filter.cursor.as_deref().and_then(|c| c.split_once(':')) {
                    Some((at, key)) => (at.parse::<i64>().ok(), Some(key.to_string())),
                    None => (None, None),
                };
            let search = filter.search.map(|s| format!("%{}%", s.to_lowercase()));
            let mut stmt = db.prepare_cached(
                "SELECT key, agent_id, label, model, thinking, created_at, updated_at, message_count
                 FROM sessions
                 WHERE (?1 IS NULL OR updated_at < ?1 OR (updated_at = ?1 AND key > ?2))
                   AND (?3 IS NULL OR updated_at >= ?3)
                   AND (?4 IS NULL OR lower(coalesce(label, '')) LIKE ?4 OR lower(key) LIKE ?4)
                   AND (?5 IS NULL OR agent_id = ?5)
                 ORDER BY updated_at DESC, key ASC
                 LIMIT ?6",
            )?;
            let rows = stmt
                .query_map(
                    params![
                        cursor_at,
                        cursor_key,
                        filter.active_since_ms.map(|v| v as i64),
                        search,
                        filter.agent_id,
                        (filter.limit + 1) as i64
                    ],
                    session_from_row,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut sessions = rows;
            let next = if sessions.len() > filter.limit {
                sessions.truncate(filter.limit);
                sessions
                    .last()
                    .map(|s| format!("{}:{}", s.updated_at_ms, s.key))
            } else {
                None
            };
            Ok((sessions, next))
        })
        .await
    }

    /// Messages oldest first, at most `limit`, with ids below `before`;
    /// None when the session does not exist.
    pub async fn history(
        &self,
        key: String,
        limit: usize,
        before: Option<u64>,
    ) -> Result<Option<(Vec<ChatMessage>, Option<u64>)>> {
        self.with(move |db| {
            if session_row(db, &key)?.is_none() {
                return Ok(None);
            }
            let mut stmt = db.prepare_cached(
                "SELECT id, role, content, status, run_id, created_at, usage_input, usage_output
                 FROM messages WHERE session_key = ?1 AND (?2 IS NULL OR id < ?2)
                 ORDER BY id DESC LIMIT ?3",
            )?;
            let mut messages = stmt
                .query_map(
                    params![key, before.map(|b| b as i64), (limit + 1) as i64],
                    message_from_row,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let next_before = if messages.len() > limit {
                messages.truncate(limit);
                messages.last().map(|m| m.id)
            } else {
                None
            };
            messages.reverse();
            Ok(Some((messages, next_before)))
        })
        .await
    }

    pub async fn patch_session(
        &self,
        key: String,
        change: SessionChange,
    ) -> Result<Option<SessionInfo>> {
        self.with(move |db| {
            let tx = db.transaction()?;
            for (column, value) in [
                ("label", change.label),
                ("model", change.model),
                ("thinking", change.thinking),
            ] {
                if let Some(value) = value {
                    tx.execute(
                        &format!("UPDATE sessions SET {column} = ?1 WHERE key = ?2"),
                        params![value, key],
                    )?;
                }
            }
            let info = session_row(&tx, &key)?;
            tx.commit()?;
            Ok(info)
        })
        .await
    }

    /// Removes all but the latest `keep` messages; None when the session
    /// does not exist.
    pub async fn clear_session(&self, key: String, keep: usize) -> Result<Option<(u64, u64)>> {
        self.with(move |db| {
            let tx = db.transaction()?;
            if session_row(&tx, &key)?.is_none() {
                return Ok(None);
            }
            let removed = tx.execute(
                "DELETE FROM messages WHERE session_key = ?1 AND id NOT IN \
                 (SELECT id FROM messages WHERE session_key = ?1 ORDER BY id DESC LIMIT ?2)",
                params![key, keep as i64],
            )?;
            let kept: i64 = tx.query_row(
                "SELECT COUNT(*) FROM messages WHERE session_key = ?1",
                params![key],
                |row| row.get(0),
            )?;
            tx.execute(
                "UPDATE sessions SET message_count = ?2 WHERE key = ?1",
                params![key, kept],
            )?;
            tx.commit()?;
            Ok(Some((removed as u64, kept as u64)))
        })
        .await
    }

    pub async fn delete_session(&self, key: String) -> Result<bool> {
        self.with(move |db| {
            let tx = db.transaction()?;
            tx.execute("DELETE FROM messages WHERE session_key = ?1", params![key])?;
            let deleted = tx.execute("DELETE FROM sessions WHERE key = ?1", params![key])? > 0;
            tx.commit()?;
            Ok(deleted)
        })
        .await
    }

    /// The stored result of an earlier request with this idempotency key,
    /// if it was stored at or after `since_ms`.
    pub async fn idempotent_result(&self, key: String, since_ms: u64) -> Result<Option<String>> {
        self.with(move |db| {
            Ok(db
                .query_row(
                    "SELECT result_json FROM idempotency WHERE key = ?1 AND created_at >= ?2",
                    params![key, since_ms as i64],
                    |row| row.get(0),
                )
                .optional()?)
        })
        .await
    }

    /// Deletes idempotency keys stored before `keys_before_ms` and, when
    /// given, exec audit entries decided before `audit_before_ms`; returns
    /// how many rows of each went.
    pub async fn prune(
        &self,
        keys_before_ms: u64,
        audit_before_ms: Option<u64>,
    ) -> Result<(usize, usize)> {
        self.with(move |db| {
            let keys = db.execute(
                "DELETE FROM idempotency WHERE created_at < ?1",
                params![keys_before_ms as i64],
            )?;
            let audit = match audit_before_ms {
                Some(before) => db.execute(
                    "DELETE FROM exec_audit WHERE decided_at < ?1",
                    params![before as i64],
                )?,
                None => 0,
            };
            Ok((keys, audit))
        })
        .await
    }

    /// Deletes the `limit` longest-idle sessions last updated before
    /// `idle_before_ms`, and their transcripts, in one transaction.
    pub async fn prune_sessions(&self, idle_before_ms: u64, limit: usize) -> Result<usize> {
        self.with(move |db| {
            let tx = db.transaction()?;
            let keys: Vec<String> = {
                let mut idle = tx.prepare(
                    "SELECT key FROM sessions WHERE updated_at < ?1 ORDER BY updated_at LIMIT ?2",
                )?;
                let rows = idle.query_map(params![idle_before_ms as i64, limit as i64], |row| {
                    row.get(0)
                })?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            for key in &keys {
                tx.execute("DELETE FROM messages WHERE session_key = ?1", params![key])?;
                tx.execute("DELETE FROM sessions WHERE key = ?1", params![key])?;
            }
            tx.commit()?;
            Ok(keys.len())
        })
        .await
    }

    /// `PRAGMA wal_checkpoint(TRUNCATE)`, then `PRAGMA optimize`; the
    /// pages checkpointed.
    pub async fn compact(&self) -> Result<u64> {
        self.with(|db| {
            let (_busy, _log, checkpointed): (i64, i64, i64) =
                db.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })?;
            db.execute_batch("PRAGMA optimize")?;
            Ok(checkpointed.max(0) as u64)
        })
        .await
    }

    pub async fn remember_result(
        &self,
        key: String,
        result_json: String,
        now_ms: u64,
    ) -> Result<()> {
        self.with(move |db| {
            db.execute(
                "INSERT OR REPLACE INTO idempotency (key, result_json, created_at) VALUES (?1, ?2, ?3)",
                params![key, result_json, now_ms as i64],
            )?;
            Ok(())
        })
        .await
    }
}

#[allow(clippy::too_many_arguments)]
fn insert_message(
    tx: &rusqlite::Transaction<'_>,
    session_key: &str,
    role: &str,
    text: &str,
    status: &str,
    run_id: &str,
    now_ms: u64,
    usage: Option<&Usage>,
) -> rusqlite::Result<i64> {
    tx.execute(
        "INSERT INTO messages (session_key, role, content, status, run_id, created_at, usage_input, usage_output)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            session_key,
            role,
            text,
            status,
            run_id,
            now_ms as i64,
            usage.map(|u| u.input_tokens as i64),
            usage.map(|u| u.output_tokens as i64)
        ],
    )?;
    let id = tx.last_insert_rowid();
    tx.execute(
        "UPDATE sessions SET message_count = message_count + 1, updated_at = ?2 WHERE key = ?1",
        params![session_key, now_ms as i64],
    )?;
    Ok(id)
}

fn session_row(db: &Connection, key: &str) -> Result<Option<SessionInfo>> {
    Ok(db
        .query_row(
            "SELECT key, agent_id, label, model, thinking, created_at, updated_at, message_count
             FROM sessions WHERE key = ?1",
            params![key],
            session_from_row,
        )
        .optional()?)
}

fn session_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<SessionInfo> {
    Ok(SessionInfo {
        key: row.get(0)?,
        agent_id: row.get(1)?,
        label: row.get(2)?,
        model: row.get(3)?,
        thinking: row.get(4)?,
        created_at_ms: row.get::<_, i64>(5)? as u64,
        updated_at_ms: row.get::<_, i64>(6)? as u64,
        message_count: row.get::<_, i64>(7)? as u64,
    })
}

fn message_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ChatMessage> {
    let role: String = row.get(1)?;
    let status: String = row.get(3)?;
    let usage = match (row.get::<_, Option<i64>>(6)?, row.get::<_, Option<i64>>(7)?) {
        (Some(input), Some(output)) => Some(Usage {
            input_tokens: input as u64,
            output_tokens: output as u64,
        }),
        _ => None,
    };
    Ok(ChatMessage {
        id: row.get::<_, i64>(0)? as u64,
        role: role.parse().unwrap_or(ChatMessageRole::System),
        content: row.get(2)?,
        status: status.parse().unwrap_or(ChatMessageStatus::Complete),
        run_id: row.get(4)?,
        created_at_ms: row.get::<_, i64>(5)? as u64,
        usage,
    })
}

/// Creates the database file readable by its owner only (SQLite gives its
/// -wal and -shm files the same mode), or narrows an existing one.
fn private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    for file in ["", "-wal", "-shm"] {
        let path = std::path::PathBuf::from(format!("{}{file}", path.display()));
        if let Ok(meta) = std::fs::metadata(&path) {
            if meta.permissions().mode() & 0o077 != 0 {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
            }
        }
    }
    Ok(())
}

/// A store failure as a caller sees it: `unavailable` while the shared
/// database cannot be reached (try again later), else an internal error;
/// the cause goes to the log, never to the client.
impl From<StoreError> for crate::protocol::RpcError {
    fn from(e: StoreError) -> Self {
        use crate::protocol::{ErrorCode, RpcError};
        if e.is_unavailable() {
            tracing::warn!("{e}");
            return RpcError::new(
                ErrorCode::Unavailable,
                "the store cannot be reached now; try again shortly (see the gateway log)",
            );
        }
        tracing::error!("{e}");
        RpcError::new(
            ErrorCode::InternalError,
            "the session store failed; see the gateway log",
        )
    }
}
