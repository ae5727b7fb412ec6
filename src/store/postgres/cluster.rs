//! What gateways in a cluster share besides the records: the members
//! alive and leases (tables of migration 8).

use super::{count, int, PgStore};
use crate::protocol::types::{ClusterLease, ClusterMember};
use crate::store::{ClusterStore, StoreFuture};
use deadpool_postgres::GenericClient;

impl ClusterStore for PgStore {
    fn heartbeat(
        &self,
        member: String,
        version: String,
        started_at_ms: u64,
        now_ms: u64,
    ) -> StoreFuture<'_, ()> {
        self.run(async move {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(
                    "INSERT INTO cluster_members (name, version, started_at, seen_at)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (name) DO UPDATE SET version = excluded.version,
                         started_at = excluded.started_at, seen_at = excluded.seen_at",
                )
                .await?;
            client
                .execute(
                    &stmt,
                    &[&member, &version, &int(started_at_ms), &int(now_ms)],
                )
                .await?;
            Ok(())
        })
    }

    fn members(&self, seen_since_ms: u64) -> StoreFuture<'_, Vec<ClusterMember>> {
        self.run(async move {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(
                    "SELECT name, version, started_at, seen_at FROM cluster_members
                     WHERE seen_at >= $1 ORDER BY name",
                )
                .await?;
            let rows = client.query(&stmt, &[&count(seen_since_ms)]).await?;
            rows.iter()
                .map(|row| {
                    Ok(ClusterMember {
                        name: row.try_get(0)?,
                        version: row.try_get(1)?,
                        started_at_ms: row.try_get::<_, i64>(2)?.max(0) as u64,
                        last_seen_ms: row.try_get::<_, i64>(3)?.max(0) as u64,
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
        now_ms: u64,
        ttl_ms: u64,
    ) -> StoreFuture<'_, bool> {
        self.run(async move {
            let client = self.client().await?;
            // One statement: taking a free or lapsed lease and renewing
            // one's own are atomic, whoever else tries at the same time.
            // A lease this member already holds is taken over: its work
            // on this gateway is guarded locally (and a member restarted
            // under its name gets its leases back at once).
            let stmt = client
                .prepare_cached(
                    "INSERT INTO cluster_leases (name, holder, token, expires_at)
                     VALUES ($1, $2, $3, $4::BIGINT + $5::BIGINT)
                     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,
                         token = excluded.token, expires_at = excluded.expires_at
                     WHERE cluster_leases.holder = excluded.holder OR cluster_leases.expires_at <= $4
                     RETURNING name",
                )
                .await?;
            let row = client
                .query_opt(
                    &stmt,
                    &[&name, &holder, &token, &int(now_ms), &count(ttl_ms)],
                )
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

    fn leases(&self, now_ms: u64) -> StoreFuture<'_, Vec<ClusterLease>> {
        self.run(async move {
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(
                    "SELECT name, holder, expires_at FROM cluster_leases
                     WHERE expires_at > $1 ORDER BY name",
                )
                .await?;
            let rows = client.query(&stmt, &[&int(now_ms)]).await?;
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
}
