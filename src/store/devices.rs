//! Paired device identities, as their protocol type. Device tokens are
//! never stored: they are derived from a key kept outside the database.

use super::{Result, Store, StoreError};
use crate::protocol::types::PairedDevice;
use rusqlite::params;

impl Store {
    pub async fn devices(&self) -> Result<Vec<PairedDevice>> {
        self.with(|db| {
            let mut stmt = db.prepare("SELECT record_json FROM devices ORDER BY id")?;
            let rows = stmt.query_map([], |row| row.get::<_, String>(0))?;
            let mut devices = Vec::new();
            for json in rows {
                match serde_json::from_str(&json?) {
                    Ok(device) => devices.push(device),
                    Err(e) => tracing::warn!("a stored device is unreadable: {e}"),
                }
            }
            Ok(devices)
        })
        .await
    }

    /// Inserts or replaces the device's record.
    pub async fn put_device(&self, device: PairedDevice) -> Result<()> {
        let json = serde_json::to_string(&device).map_err(|e| StoreError(e.to_string()))?;
        self.with(move |db| {
            db.execute(
                "INSERT INTO devices (id, record_json) VALUES (?1, ?2)
                 ON CONFLICT(id) DO UPDATE SET record_json = excluded.record_json",
                params![device.device_id, json],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn remove_device(&self, id: String) -> Result<bool> {
        self.with(move |db| Ok(db.execute("DELETE FROM devices WHERE id = ?1", params![id])? > 0))
            .await
    }
}
