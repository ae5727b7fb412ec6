//! What gateways in a cluster share besides the records: the members
//! alive and leases (tables of migration 8). Every time here is the
//! database's clock, so gateways whose clocks differ still agree on when
//! a lease lapses.

use super::{count, PgStore};
use crate::protocol::types::{ClusterLease, ClusterMember};
use crate::store::{ClusterStore, MemberConfig, NodePresence, StoreFuture};
use deadpool_postgres::GenericClient;

/// The database's time, in milliseconds since the Unix epoch.
macro_rules! now_ms {
    () => {
        "(extract(epoch from clock_timestamp()) * 1000)::BIGINT"
    };
}

/// Records that a node is connected to a member.
const RECORD_NODE: &str = "INSERT INTO cluster_node_presence (node_id, member, connected_at)
     VALUES ($1, $2, $3)
     ON CONFLICT (node_id) DO UPDATE SET member = excluded.member,
         connected_at = excluded.connected_at";
/// Forgets every node connected to a member.
const FORGET_NODES: &str = "DELETE FROM cluster_node_presence WHERE member = $1";

impl ClusterStore for PgStore {
    fn heartbeat(
        &self,
        member: String,
        version: String,
        started_at_ms: u64,
        stale_after_ms: u64,
        config: MemberConfig,
    ) -> StoreFuture<'_, bool> {
        self.run(async move {
            let client = self.client().await?;
            // The name is this incarnation's (same start) or one whose
            // gateway stopped renewing it; never a live other one's.
            let stmt = client
                .prepare_cached(concat!(
                    "INSERT INTO cluster_members
                         (name, version, started_at, seen_at, config_hash, config_error)
                     VALUES ($1, $2, $3, ",
                    now_ms!(),
                    ", $5, $6)
                     ON CONFLICT (name) DO UPDATE SET version = excluded.version,
                         started_at = excluded.started_at, seen_at = excluded.seen_at,
                         config_hash = excluded.config_hash, config_error = excluded.config_error
                     WHERE cluster_members.started_at = excluded.started_at
                        OR cluster_members.seen_at <= excluded.seen_at - $4
                     RETURNING name"
                ))
                .await?;
            let row = client
                .query_opt(
                    &stmt,
                    &[
                        &member,
                        &version,
                        &count(started_at_ms),
                        &count(stale_after_ms),
                        &config.hash,
                        &config.error,
                    ],
                )
                .await?;
            Ok(row.is_some())
        })
    }

    fn leave(&self, member: String, started_at_ms: u64) -> StoreFuture<'_, ()> {
        self.run(async move {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached("DELETE FROM cluster_members WHERE name = $1 AND started_at = $2")
                .await?;
            client
                .execute(&stmt, &[&member, &count(started_at_ms)])
                .await?;
            Ok(())
        })
    }

    fn members(&self, within_ms: u64) -> StoreFuture<'_, Vec<ClusterMember>> {
        self.run(async move {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(concat!(
                    "SELECT name, version, started_at, seen_at, config_hash, config_error
                     FROM cluster_members
                     WHERE seen_at >= ",
                    now_ms!(),
                    " - $1 ORDER BY name"
                ))
                .await?;
            let rows = client.query(&stmt, &[&count(within_ms)]).await?;
            rows.iter()
                .map(|row| {
                    Ok(ClusterMember {
                        name: row.try_get(0)?,
                        version: row.try_get(1)?,
                        started_at_ms: row.try_get::<_, i64>(2)?.max(0) as u64,
                        last_seen_ms: row.try_get::<_, i64>(3)?.max(0) as u64,
                        config_hash: row.try_get(4)?,
                        config_error: row.try_get(5)?,
                    })
                })
                .collect()
        })
    }

    fn acquire_lease(
        &self,
        name: String,
        holder: String,
        token: String,
        ttl_ms: u64,
    ) -> StoreFuture<'_, bool> {
        self.run(async move {
            let client = self.client().await?;
            // One statement, so two gateways trying at once cannot both
            // win. A lease is taken when free or lapsed, or when this same
            // process holds it under an older token (the part before ':'
            // names the process): its work here is guarded locally, and
            // the older holder's release then finds nothing to drop.
            let stmt = client
                .prepare_cached(concat!(
                    "INSERT INTO cluster_leases (name, holder, token, expires_at)
                     VALUES ($1, $2, $3, ",
                    now_ms!(),
                    " + $4)
                     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,
                         token = excluded.token, expires_at = excluded.expires_at
                     WHERE cluster_leases.expires_at <= ",
                    now_ms!(),
                    " OR split_part(cluster_leases.token, ':', 1) = split_part(excluded.token, ':', 1)
                     RETURNING name"
                ))
                .await?;
            let row = client
                .query_opt(&stmt, &[&name, &holder, &token, &count(ttl_ms)])
                .await?;
            Ok(row.is_some())
        })
    }

    fn renew_lease(&self, name: String, token: String, ttl_ms: u64) -> StoreFuture<'_, bool> {
        self.run(async move {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(concat!(
                    "UPDATE cluster_leases SET expires_at = ",
                    now_ms!(),
                    " + $3 WHERE name = $1 AND token = $2 RETURNING name"
                ))
                .await?;
            let row = client
                .query_opt(&stmt, &[&name, &token, &count(ttl_ms)])
                .await?;
            Ok(row.is_some())
        })
    }

    fn release_lease(&self, name: String, token: String) -> StoreFuture<'_, ()> {
        self.run(async move {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached("DELETE FROM cluster_leases WHERE name = $1 AND token = $2")
                .await?;
            client.execute(&stmt, &[&name, &token]).await?;
            Ok(())
        })
    }

    fn leases(&self) -> StoreFuture<'_, Vec<ClusterLease>> {
        self.run(async move {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(concat!(
                    "SELECT name, holder, expires_at FROM cluster_leases
                     WHERE expires_at > ",
                    now_ms!(),
                    " ORDER BY name"
                ))
                .await?;
            let rows = client.query(&stmt, &[]).await?;
            rows.iter()
                .map(|row| {
                    Ok(ClusterLease {
                        name: row.try_get(0)?,
                        holder: row.try_get(1)?,
                        expires_at_ms: row.try_get::<_, i64>(2)?.max(0) as u64,
                    })
                })
                .collect()
        })
    }

    fn node_connected(
        &self,
        node_id: String,
        member: String,
        connected_at_ms: u64,
    ) -> StoreFuture<'_, ()> {
        self.run(async move {
            let client = self.client().await?;
            let stmt = client.prepare_cached(RECORD_NODE).await?;
            client
                .execute(&stmt, &[&node_id, &member, &count(connected_at_ms)])
                .await?;
            Ok(())
        })
    }

    fn node_disconnected(&self, node_id: String, member: String) -> StoreFuture<'_, ()> {
        self.run(async move {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(
                    "DELETE FROM cluster_node_presence WHERE node_id = $1 AND member = $2",
                )
                .await?;
            client.execute(&stmt, &[&node_id, &member]).await?;
            Ok(())
        })
    }

    fn forget_nodes_of(&self, member: String) -> StoreFuture<'_, ()> {
        self.run(async move {
            let client = self.client().await?;
            let stmt = client.prepare_cached(FORGET_NODES).await?;
            client.execute(&stmt, &[&member]).await?;
            Ok(())
        })
    }

    fn node_presence(&self, within_ms: u64) -> StoreFuture<'_, Vec<NodePresence>> {
        self.run(async move {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(concat!(
                    "SELECT p.node_id, p.member, p.connected_at
                     FROM cluster_node_presence p
                     JOIN cluster_members m ON m.name = p.member
                     WHERE m.seen_at >= ",
                    now_ms!(),
                    " - $1 ORDER BY p.node_id"
                ))
                .await?;
            let rows = client.query(&stmt, &[&count(within_ms)]).await?;
            rows.iter()
                .map(|row| {
                    Ok(NodePresence {
                        node_id: row.try_get(0)?,
                        member: row.try_get(1)?,
                        connected_at_ms: row.try_get::<_, i64>(2)?.max(0) as u64,
                    })
                })
                .collect()
        })
    }

    fn shared_secret(&self, name: String, candidate: String) -> StoreFuture<'_, String> {
        self.run(async move {
            let client = self.client().await?;
            // Two statements: the second sees whichever insert committed
            // first, this one's or a concurrent member's.
            let insert = client
                .prepare_cached(
                    "INSERT INTO cluster_secrets (name, value) VALUES ($1, $2)
                     ON CONFLICT (name) DO NOTHING",
                )
                .await?;
            client.execute(&insert, &[&name, &candidate]).await?;
            let select = client
                .prepare_cached("SELECT value FROM cluster_secrets WHERE name = $1")
                .await?;
            Ok(client.query_one(&select, &[&name]).await?.try_get(0)?)
        })
    }

    fn set_nodes_of(&self, member: String, nodes: Vec<NodePresence>) -> StoreFuture<'_, ()> {
        self.run(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let clear = tx.prepare_cached(FORGET_NODES).await?;
            tx.execute(&clear, &[&member]).await?;
            let insert = tx.prepare_cached(RECORD_NODE).await?;
            for node in &nodes {
                tx.execute(
                    &insert,
                    &[&node.node_id, &member, &count(node.connected_at_ms)],
                )
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }
}
