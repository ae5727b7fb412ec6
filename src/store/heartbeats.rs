//! Each agent's last heartbeat, as its protocol type.

use super::{Result, Store, StoreError};
use crate::protocol::types::HeartbeatRun;
use rusqlite::params;

impl Store {
    pub async fn last_heartbeats(&self) -> Result<Vec<HeartbeatRun>> {
        self.with(|db| {
            let mut stmt = db.prepare("SELECT run_json FROM heartbeats ORDER BY agent_id")?;
            let rows = stmt.query_map([], |row| row.get::<_, String>(0))?;
            let mut runs = Vec::new();
            for json in rows {
                let json = json?;
                // A row this build cannot read is skipped, not fatal.
                match serde_json::from_str(&json) {
                    Ok(run) => runs.push(run),
                    Err(e) => tracing::warn!("a stored heartbeat is unreadable: {e}"),
                }
            }
            Ok(runs)
        })
        .await
    }

    pub async fn record_heartbeat(&self, run: HeartbeatRun) -> Result<()> {
        let json = serde_json::to_string(&run).map_err(|e| StoreError(e.to_string()))?;
        self.with(move |db| {
            db.execute(
                "INSERT INTO heartbeats (agent_id, run_json) VALUES (?1, ?2)
                 ON CONFLICT(agent_id) DO UPDATE SET run_json = excluded.run_json",
                params![run.agent_id, json],
            )?;
            Ok(())
        })
        .await
    }
}
