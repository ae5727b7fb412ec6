//! Paired nodes (their tokens only as hashes) and paired device
//! identities (as their protocol type, in JSON).

use super::{int, PgStore};
use crate::protocol::types::PairedDevice;
use crate::store::{DeviceStore, NodeStore, StoreFuture, StoredNode};
use deadpool_postgres::GenericClient;

impl NodeStore for PgStore {
    fn nodes(&self) -> StoreFuture<'_, Vec<StoredNode>> {
        self.run(async move {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(
                    "SELECT id, name, platform, caps_json, commands_json, token_hash, paired_at
                     FROM nodes ORDER BY id",
                )
                .await?;
            let mut nodes = Vec::new();
            for row in client.query(&stmt, &[]).await? {
                let list = |i: usize| -> Result<Vec<String>, tokio_postgres::Error> {
                    let json: String = row.try_get(i)?;
                    Ok(serde_json::from_str(&json).unwrap_or_default())
                };
                nodes.push(StoredNode {
                    id: row.try_get(0)?,
                    name: row.try_get(1)?,
                    platform: row.try_get(2)?,
                    caps: list(3)?,
                    commands: list(4)?,
                    token_hash: row.try_get(5)?,
                    paired_at_ms: row.try_get::<_, i64>(6)? as u64,
                });
            }
            Ok(nodes)
        })
    }

    /// Inserts, or replaces the node with the same id (keeping when it
    /// was first paired).
    fn add_node(&self, node: StoredNode) -> StoreFuture<'_, ()> {
        self.run(async move {
            let caps = serde_json::to_string(&node.caps)?;
            let commands = serde_json::to_string(&node.commands)?;
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(
                    "INSERT INTO nodes (id, name, platform, caps_json, commands_json, token_hash, paired_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (id) DO UPDATE SET name = excluded.name, platform = excluded.platform,
                       caps_json = excluded.caps_json, commands_json = excluded.commands_json,
                       token_hash = excluded.token_hash",
                )
                .await?;
            client
                .execute(
                    &stmt,
                    &[
                        &node.id,
                        &node.name,
                        &node.platform,
                        &caps,
                        &commands,
                        &node.token_hash,
                        &int(node.paired_at_ms),
                    ],
                )
                .await?;
            Ok(())
        })
    }

    fn remove_node(&self, id: String) -> StoreFuture<'_, bool> {
        self.run(async move {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached("DELETE FROM nodes WHERE id = $1")
                .await?;
            Ok(client.execute(&stmt, &[&id]).await? > 0)
        })
    }
}

impl DeviceStore for PgStore {
    /// Every device; a record this build cannot read is skipped.
    fn devices(&self) -> StoreFuture<'_, Vec<PairedDevice>> {
        self.run(async move {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached("SELECT record_json FROM devices ORDER BY id")
                .await?;
            let mut devices = Vec::new();
            for row in client.query(&stmt, &[]).await? {
                let json: String = row.try_get(0)?;
                match serde_json::from_str(&json) {
                    Ok(device) => devices.push(device),
                    Err(e) => tracing::warn!("a stored device is unreadable: {e}"),
                }
            }
            Ok(devices)
        })
    }

    fn put_device(&self, device: PairedDevice) -> StoreFuture<'_, ()> {
        self.run(async move {
            let json = serde_json::to_string(&device)?;
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(
                    "INSERT INTO devices (id, record_json) VALUES ($1, $2)
                     ON CONFLICT (id) DO UPDATE SET record_json = excluded.record_json",
                )
                .await?;
            client.execute(&stmt, &[&device.device_id, &json]).await?;
            Ok(())
        })
    }

    fn remove_device(&self, id: String) -> StoreFuture<'_, bool> {
        self.run(async move {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached("DELETE FROM devices WHERE id = $1")
                .await?;
            Ok(client.execute(&stmt, &[&id]).await? > 0)
        })
    }
}
