//! Paired device nodes. A node's token is never stored, only its hash.

use super::{Result, Store};
use rusqlite::params;

/// A paired node as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredNode {
    pub id: String,
    pub name: String,
    pub platform: String,
    pub caps: Vec<String>,
    pub commands: Vec<String>,
    pub token_hash: String,
    pub paired_at_ms: u64,
}

impl Store {
    pub async fn nodes(&self) -> Result<Vec<StoredNode>> {
        self.with(|db| {
            let mut stmt = db.prepare(
                "SELECT id, name, platform, caps_json, commands_json, token_hash, paired_at
                 FROM nodes ORDER BY id",
            )?;
            let rows = stmt
                .query_map([], |row| {
                    let list = |i: usize| -> rusqlite::Result<Vec<String>> {
                        let json: String = row.get(i)?;
                        Ok(serde_json::from_str(&json).unwrap_or_default())
                    };
                    Ok(StoredNode {
                        id: row.get(0)?,
                        name: row.get(1)?,
                        platform: row.get(2)?,
                        caps: list(3)?,
                        commands: list(4)?,
                        token_hash: row.get(5)?,
                        paired_at_ms: row.get::<_, i64>(6)? as u64,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    pub async fn add_node(&self, node: StoredNode) -> Result<()> {
        self.with(move |db| {
            let caps = serde_json::to_string(&node.caps).expect("strings serialize");
            let commands = serde_json::to_string(&node.commands).expect("strings serialize");
            db.execute(
                "INSERT INTO nodes (id, name, platform, caps_json, commands_json, token_hash, paired_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT(id) DO UPDATE SET name = excluded.name, platform = excluded.platform,
                   caps_json = excluded.caps_json, commands_json = excluded.commands_json,
                   token_hash = excluded.token_hash",
                params![
                    node.id,
                    node.name,
                    node.platform,
                    caps,
                    commands,
                    node.token_hash,
                    node.paired_at_ms as i64
                ],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn remove_node(&self, id: String) -> Result<bool> {
        self.with(move |db| Ok(db.execute("DELETE FROM nodes WHERE id = ?1", params![id])? > 0))
            .await
    }
}
