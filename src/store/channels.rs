//! Where each channel account's inbound stream stopped.

use super::{Result, Store};
use rusqlite::{params, OptionalExtension};

impl Store {
    pub async fn channel_offset(&self, channel: String, account: String) -> Result<Option<i64>> {
        self.with(move |db| {
            Ok(db
                .query_row(
                    "SELECT next_offset FROM channel_offsets WHERE channel = ?1 AND account_id = ?2",
                    params![channel, account],
                    |row| row.get(0),
                )
                .optional()?)
        })
        .await
    }

    pub async fn set_channel_offset(
        &self,
        channel: String,
        account: String,
        next: i64,
    ) -> Result<()> {
        self.with(move |db| {
            db.execute(
                "INSERT INTO channel_offsets (channel, account_id, next_offset) VALUES (?1, ?2, ?3)
                 ON CONFLICT(channel, account_id) DO UPDATE SET next_offset = excluded.next_offset",
                params![channel, account, next],
            )?;
            Ok(())
        })
        .await
    }
}
