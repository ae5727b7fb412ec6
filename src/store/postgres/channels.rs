//! Where each channel account's inbound stream stopped, and each agent's
//! last heartbeat (as its protocol type, in JSON).

use super::PgStore;
use crate::protocol::types::HeartbeatRun;
use crate::store::{ChannelStore, HeartbeatStore, StoreFuture};
use deadpool_postgres::GenericClient;

impl ChannelStore for PgStore {
    fn channel_offset(&self, channel: String, account: String) -> StoreFuture<'_, Option<i64>> {
        self.run(async move {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(
                    "SELECT next_offset FROM channel_offsets WHERE channel = $1 AND account_id = $2",
                )
                .await?;
            let row = client.query_opt(&stmt, &[&channel, &account]).await?;
            Ok(row.map(|row| row.try_get(0)).transpose()?)
        })
    }

    fn set_channel_offset(
        &self,
        channel: String,
        account: String,
        next: i64,
    ) -> StoreFuture<'_, ()> {
        self.run(async move {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(
                    "INSERT INTO channel_offsets (channel, account_id, next_offset) VALUES ($1, $2, $3)
                     ON CONFLICT (channel, account_id) DO UPDATE SET next_offset = excluded.next_offset",
                )
                .await?;
            client.execute(&stmt, &[&channel, &account, &next]).await?;
            Ok(())
        })
    }
}

impl HeartbeatStore for PgStore {
    /// Each agent's last heartbeat, by agent; a row this build cannot
    /// read is skipped, not fatal.
    fn last_heartbeats(&self) -> StoreFuture<'_, Vec<HeartbeatRun>> {
        self.run(async move {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached("SELECT run_json FROM heartbeats ORDER BY agent_id")
                .await?;
            let mut runs = Vec::new();
            for row in client.query(&stmt, &[]).await? {
                let json: String = row.try_get(0)?;
                match serde_json::from_str(&json) {
                    Ok(run) => runs.push(run),
                    Err(e) => tracing::warn!("a stored heartbeat is unreadable: {e}"),
                }
            }
            Ok(runs)
        })
    }

    fn record_heartbeat(&self, run: HeartbeatRun) -> StoreFuture<'_, ()> {
        self.run(async move {
            let json = serde_json::to_string(&run)?;
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(
                    "INSERT INTO heartbeats (agent_id, run_json) VALUES ($1, $2)
                     ON CONFLICT (agent_id) DO UPDATE SET run_json = excluded.run_json",
                )
                .await?;
            client.execute(&stmt, &[&run.agent_id, &json]).await?;
            Ok(())
        })
    }
}
