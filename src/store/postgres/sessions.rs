//! Sessions, their transcripts, and idempotent results.

use super::{count, int, page_limit, PgResult, PgStore};
use crate::protocol::types::{ChatMessage, ChatMessageRole, ChatMessageStatus, SessionInfo, Usage};
use crate::store::{ResultStore, SessionChange, SessionFilter, SessionStore, StoreFuture};
use deadpool_postgres::GenericClient;
use tokio_postgres::{IsolationLevel, Row};

const SESSION_COLUMNS: &str =
    "key, agent_id, label, model, thinking, created_at, updated_at, message_count";

impl SessionStore for PgStore {
    fn begin_turn(
        &self,
        session_key: String,
        agent_id: String,
        run_id: String,
        text: String,
        now_ms: u64,
    ) -> StoreFuture<'_, ()> {
        self.run(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let upsert = tx
                .prepare_cached(
                    "INSERT INTO sessions (key, agent_id, created_at, updated_at, message_count)
                     VALUES ($1, $2, $3, $3, 0)
                     ON CONFLICT (key) DO UPDATE SET updated_at = excluded.updated_at",
                )
                .await?;
            tx.execute(&upsert, &[&session_key, &agent_id, &int(now_ms)])
                .await?;
            let insert = Insert {
                session_key: &session_key,
                role: "user",
                text: &text,
                status: "complete",
                run_id: &run_id,
                now_ms,
                usage: None,
            };
            insert_message(&tx, insert).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn finish_turn(
        &self,
        session_key: String,
        run_id: String,
        text: String,
        status: ChatMessageStatus,
        usage: Usage,
        now_ms: u64,
    ) -> StoreFuture<'_, ChatMessage> {
        self.run(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let status_name = status.to_string();
            let insert = Insert {
                session_key: &session_key,
                role: "assistant",
                text: &text,
                status: &status_name,
                run_id: &run_id,
                now_ms,
                usage: Some(&usage),
            };
            let id = insert_message(&tx, insert).await?;
            tx.commit().await?;
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
    }

    fn session(&self, key: String) -> StoreFuture<'_, Option<SessionInfo>> {
        self.run(async move {
            let client = self.client().await?;
            session_row(&client, &key).await
        })
    }

    fn list_sessions(
        &self,
        filter: SessionFilter,
    ) -> StoreFuture<'_, (Vec<SessionInfo>, Option<String>)> {
        self.run(async move {
            let client = self.client().await?;
            let (cursor_at, cursor_key) =
                match filter.cursor.as_deref().and_then(|c| c.split_once(':')) {
                    Some((at, key)) => (at.parse::<i64>().ok(), Some(key.to_string())),
                    None => (None, None),
                };
            let search = filter.search.map(|s| format!("%{}%", s.to_lowercase()));
            // lower() in "C" lowercases ASCII only, and ESCAPE '' makes
            // a backslash literal: SQLite's lower() and LIKE.
            let stmt = client
                .prepare_cached(&format!(
                    r#"SELECT {SESSION_COLUMNS}
                     FROM sessions
                     WHERE ($1::BIGINT IS NULL OR updated_at < $1 OR (updated_at = $1 AND key > $2))
                       AND ($3::BIGINT IS NULL OR updated_at >= $3)
                       AND ($4::TEXT IS NULL
                            OR lower(coalesce(label, '') COLLATE "C") LIKE $4 ESCAPE ''
                            OR lower(key COLLATE "C") LIKE $4 ESCAPE '')
                       AND ($5::TEXT IS NULL OR agent_id = $5)
                     ORDER BY updated_at DESC, key ASC
                     LIMIT $6"#
                ))
                .await?;
            let rows = client
                .query(
                    &stmt,
                    &[
                        &cursor_at,
                        &cursor_key,
                        &filter.active_since_ms.map(int),
                        &search,
                        &filter.agent_id,
                        &page_limit(filter.limit),
                    ],
                )
                .await?;
            let mut sessions = rows
                .iter()
                .map(session_from_row)
                .collect::<Result<Vec<_>, _>>()?;
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
    }

    fn history(
        &self,
        key: String,
        limit: usize,
        before: Option<u64>,
    ) -> StoreFuture<'_, Option<(Vec<ChatMessage>, Option<u64>)>> {
        self.run(async move {
            let mut client = self.client().await?;
            // One snapshot for both reads, as SQLite's one connection gives.
            let tx = client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await?;
            if session_row(&tx, &key).await?.is_none() {
                tx.commit().await?;
                return Ok(None);
            }
            let stmt = tx
                .prepare_cached(
                    "SELECT id, role, content, status, run_id, created_at, usage_input, usage_output
                     FROM messages WHERE session_key = $1 AND ($2::BIGINT IS NULL OR id < $2)
                     ORDER BY id DESC LIMIT $3",
                )
                .await?;
            let rows = tx
                .query(&stmt, &[&key, &before.map(int), &page_limit(limit)])
                .await?;
            tx.commit().await?;
            let mut messages = rows
                .iter()
                .map(message_from_row)
                .collect::<Result<Vec<_>, _>>()?;
            let next_before = if messages.len() > limit {
                messages.truncate(limit);
                messages.last().map(|m| m.id)
            } else {
                None
            };
            messages.reverse();
            Ok(Some((messages, next_before)))
        })
    }

    fn patch_session(
        &self,
        key: String,
        change: SessionChange,
    ) -> StoreFuture<'_, Option<SessionInfo>> {
        self.run(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            for (column, value) in [
                ("label", change.label),
                ("model", change.model),
                ("thinking", change.thinking),
            ] {
                if let Some(value) = value {
                    let stmt = tx
                        .prepare_cached(&format!(
                            "UPDATE sessions SET {column} = $1 WHERE key = $2"
                        ))
                        .await?;
                    tx.execute(&stmt, &[&value, &key]).await?;
                }
            }
            let info = session_row(&tx, &key).await?;
            tx.commit().await?;
            Ok(info)
        })
    }

    fn clear_session(&self, key: String, keep: usize) -> StoreFuture<'_, Option<(u64, u64)>> {
        self.run(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            // The session's row locked: a turn storing a message waits.
            let lock = tx
                .prepare_cached("SELECT 1 FROM sessions WHERE key = $1 FOR UPDATE")
                .await?;
            if tx.query_opt(&lock, &[&key]).await?.is_none() {
                tx.commit().await?;
                return Ok(None);
            }
            let delete = tx
                .prepare_cached(
                    "DELETE FROM messages WHERE session_key = $1 AND id NOT IN
                     (SELECT id FROM messages WHERE session_key = $1 ORDER BY id DESC LIMIT $2)",
                )
                .await?;
            let removed = tx.execute(&delete, &[&key, &count(keep as u64)]).await?;
            let counted = tx
                .prepare_cached("SELECT COUNT(*) FROM messages WHERE session_key = $1")
                .await?;
            let kept: i64 = tx.query_one(&counted, &[&key]).await?.try_get(0)?;
            let update = tx
                .prepare_cached("UPDATE sessions SET message_count = $2 WHERE key = $1")
                .await?;
            tx.execute(&update, &[&key, &kept]).await?;
            tx.commit().await?;
            Ok(Some((removed, kept as u64)))
        })
    }

    fn delete_session(&self, key: String) -> StoreFuture<'_, bool> {
        self.run(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let messages = tx
                .prepare_cached("DELETE FROM messages WHERE session_key = $1")
                .await?;
            tx.execute(&messages, &[&key]).await?;
            let session = tx
                .prepare_cached("DELETE FROM sessions WHERE key = $1")
                .await?;
            let deleted = tx.execute(&session, &[&key]).await? > 0;
            tx.commit().await?;
            Ok(deleted)
        })
    }
}

impl ResultStore for PgStore {
    fn idempotent_result(&self, key: String, since_ms: u64) -> StoreFuture<'_, Option<String>> {
        self.run(async move {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(
                    "SELECT result_json FROM idempotency WHERE key = $1 AND created_at >= $2",
                )
                .await?;
            let row = client.query_opt(&stmt, &[&key, &int(since_ms)]).await?;
            Ok(row.map(|row| row.try_get(0)).transpose()?)
        })
    }

    fn remember_result(
        &self,
        key: String,
        result_json: String,
        now_ms: u64,
    ) -> StoreFuture<'_, ()> {
        self.run(async move {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(
                    "INSERT INTO idempotency (key, result_json, created_at) VALUES ($1, $2, $3)
                     ON CONFLICT (key) DO UPDATE
                     SET result_json = excluded.result_json, created_at = excluded.created_at",
                )
                .await?;
            client
                .execute(&stmt, &[&key, &result_json, &int(now_ms)])
                .await?;
            Ok(())
        })
    }
}

/// A message to store.
struct Insert<'a> {
    session_key: &'a str,
    role: &'a str,
    text: &'a str,
    status: &'a str,
    run_id: &'a str,
    now_ms: u64,
    usage: Option<&'a Usage>,
}

/// Stores a message and counts it on its session; its id.
async fn insert_message(tx: &deadpool_postgres::Transaction<'_>, m: Insert<'_>) -> PgResult<i64> {
    let insert = tx
        .prepare_cached(
            "INSERT INTO messages (session_key, role, content, status, run_id, created_at, usage_input, usage_output)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .await?;
    let id: i64 = tx
        .query_one(
            &insert,
            &[
                &m.session_key,
                &m.role,
                &m.text,
                &m.status,
                &m.run_id,
                &int(m.now_ms),
                &m.usage.map(|u| int(u.input_tokens)),
                &m.usage.map(|u| int(u.output_tokens)),
            ],
        )
        .await?
        .try_get(0)?;
    let count = tx
        .prepare_cached(
            "UPDATE sessions SET message_count = message_count + 1, updated_at = $2 WHERE key = $1",
        )
        .await?;
    tx.execute(&count, &[&m.session_key, &int(m.now_ms)])
        .await?;
    Ok(id)
}

async fn session_row<C: GenericClient>(db: &C, key: &str) -> PgResult<Option<SessionInfo>> {
    let stmt = db
        .prepare_cached(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE key = $1"
        ))
        .await?;
    match db.query_opt(&stmt, &[&key]).await? {
        Some(row) => Ok(Some(session_from_row(&row)?)),
        None => Ok(None),
    }
}

fn session_from_row(row: &Row) -> Result<SessionInfo, tokio_postgres::Error> {
    Ok(SessionInfo {
        key: row.try_get(0)?,
        agent_id: row.try_get(1)?,
        label: row.try_get(2)?,
        model: row.try_get(3)?,
        thinking: row.try_get(4)?,
        created_at_ms: row.try_get::<_, i64>(5)? as u64,
        updated_at_ms: row.try_get::<_, i64>(6)? as u64,
        message_count: row.try_get::<_, i64>(7)? as u64,
    })
}

fn message_from_row(row: &Row) -> Result<ChatMessage, tokio_postgres::Error> {
    let role: String = row.try_get(1)?;
    let status: String = row.try_get(3)?;
    let usage = match (
        row.try_get::<_, Option<i64>>(6)?,
        row.try_get::<_, Option<i64>>(7)?,
    ) {
        (Some(input), Some(output)) => Some(Usage {
            input_tokens: input as u64,
            output_tokens: output as u64,
        }),
        _ => None,
    };
    Ok(ChatMessage {
        id: row.try_get::<_, i64>(0)? as u64,
        role: role.parse().unwrap_or(ChatMessageRole::System),
        content: row.try_get(2)?,
        status: status.parse().unwrap_or(ChatMessageStatus::Complete),
        run_id: row.try_get(4)?,
        created_at_ms: row.try_get::<_, i64>(5)? as u64,
        usage,
    })
}
