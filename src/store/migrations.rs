//! Schema migrations, applied in order inside one transaction each and
//! tracked in SQLite's user_version.

use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    // 1: sessions, transcripts, idempotency keys.
    "CREATE TABLE sessions (
        key TEXT PRIMARY KEY,
        agent_id TEXT NOT NULL,
        label TEXT,
        model TEXT,
        thinking TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        message_count INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX sessions_by_activity ON sessions (updated_at DESC, key);
    CREATE INDEX sessions_by_agent ON sessions (agent_id, updated_at DESC);
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        session_key TEXT NOT NULL REFERENCES sessions (key) ON DELETE CASCADE,
        role TEXT NOT NULL,
        content TEXT NOT NULL,
        status TEXT NOT NULL,
        run_id TEXT,
        created_at INTEGER NOT NULL,
        usage_input INTEGER,
        usage_output INTEGER
    );
    CREATE INDEX messages_by_session ON messages (session_key, id);
    CREATE TABLE idempotency (
        key TEXT PRIMARY KEY,
        result_json TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );",
    // 2: cron jobs (the job as JSON, keyed by id) and their run history.
    "CREATE TABLE cron_jobs (
        id TEXT PRIMARY KEY,
        job_json TEXT NOT NULL
    );
    CREATE TABLE cron_runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id TEXT NOT NULL,
        status TEXT NOT NULL,
        trigger TEXT NOT NULL,
        scheduled_at INTEGER,
        started_at INTEGER NOT NULL,
        finished_at INTEGER,
        duration_ms INTEGER,
        error TEXT,
        summary TEXT,
        session_key TEXT,
        run_id TEXT
    );
    CREATE INDEX cron_runs_by_job ON cron_runs (job_id, id);",
    // 3: paired device nodes (their tokens only as SHA-256 hashes).
    "CREATE TABLE nodes (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        platform TEXT NOT NULL,
        caps_json TEXT NOT NULL,
        commands_json TEXT NOT NULL,
        token_hash TEXT NOT NULL UNIQUE,
        paired_at INTEGER NOT NULL
    );",
    // 4: the exec audit log, and commands allowed for good (allow-always).
    "CREATE TABLE exec_audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        approval_id TEXT,
        command TEXT NOT NULL,
        argv_json TEXT NOT NULL,
        cwd TEXT,
        agent_id TEXT NOT NULL,
        session_key TEXT,
        node_id TEXT,
        decision TEXT NOT NULL,
        decided_by TEXT,
        requested_at INTEGER NOT NULL,
        decided_at INTEGER NOT NULL
    );
    CREATE TABLE exec_allowlist (
        agent_id TEXT NOT NULL,
        command TEXT NOT NULL,
        added_at INTEGER NOT NULL,
        PRIMARY KEY (agent_id, command)
    );",
    // 5: where each channel account's inbound stream stopped (Telegram's
    // update offset), so a restart neither loses nor repeats a message.
    "CREATE TABLE channel_offsets (
        channel TEXT NOT NULL,
        account_id TEXT NOT NULL,
        next_offset INTEGER NOT NULL,
        PRIMARY KEY (channel, account_id)
    );",
    // 6: each agent's last heartbeat, so the schedule survives a restart.
    "CREATE TABLE heartbeats (
        agent_id TEXT PRIMARY KEY,
        run_json TEXT NOT NULL
    );",
    // 7: paired device identities (OpenClaw clients), one JSON record each.
    "CREATE TABLE devices (
        id TEXT PRIMARY KEY,
        record_json TEXT NOT NULL
    );",
    // 8: the cluster's members and leases. Used only by
    // the PostgreSQL store (cluster mode); here to keep the lists aligned.
    "CREATE TABLE cluster_members (
        name TEXT PRIMARY KEY,
        version TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        seen_at INTEGER NOT NULL
    );
    CREATE TABLE cluster_leases (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        token TEXT NOT NULL,
        expires_at INTEGER NOT NULL
    );",
    // 9: each member's config status, which member each node is
    // connected to, and the secrets members share (cluster mode only,
    // like 8).
    "ALTER TABLE cluster_members ADD COLUMN config_hash TEXT;
    ALTER TABLE cluster_members ADD COLUMN config_error TEXT;
    CREATE TABLE cluster_node_presence (
        node_id TEXT PRIMARY KEY,
        member TEXT NOT NULL,
        connected_at INTEGER NOT NULL
    );
    CREATE TABLE cluster_secrets (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );",
];

pub fn run(db: &Connection) -> rusqlite::Result<()> {
    let applied: i64 = db.pragma_query_value(None, "user_version", |row| row.get(0))?;
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied.max(0) as usize) {
        let tx = db.unchecked_transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}
