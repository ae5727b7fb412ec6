//! Membership: each gateway records that it is alive every third of
//! `cluster.leaseMs`, and shows in health the members it sees, the
//! leases held and whether it can reach the store and the bus.

use super::Membership;
use crate::clock::now_ms;
use crate::health::HealthService;
use crate::protocol::types::{
    ClusterHealth, ClusterHealthBus, ClusterHealthBusState, ClusterHealthStore,
    ClusterHealthStoreState,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// The prefix of the leases session turns hold.
pub const SESSION_LEASE_PREFIX: &str = "session:";

/// Records the membership and the cluster's state in health now.
pub async fn refresh(membership: &Membership, health: &HealthService) {
    health.set_cluster(view(membership).await);
}

/// Renews the membership and refreshes the cluster in health until
/// aborted.
pub fn spawn(membership: Arc<Membership>, health: Arc<HealthService>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let every = Duration::from_millis((membership.lease_ms / 3).max(1));
        loop {
            health.set_cluster(view(&membership).await);
            tokio::time::sleep(every).await;
        }
    })
}

async fn view(membership: &Membership) -> ClusterHealth {
    let store = &membership.store;
    let now = now_ms();
    let seen = store
        .heartbeat(
            membership.name.clone(),
            env!("CARGO_PKG_VERSION").to_string(),
            membership.started_at_ms,
            now,
        )
        .await;
    let members = store.members(now.saturating_sub(membership.lease_ms)).await;
    let leases = store.leases(now).await;
    let store_error = [
        seen.err(),
        members.as_ref().err().cloned(),
        leases.as_ref().err().cloned(),
    ]
    .into_iter()
    .flatten()
    .next();
    let bus_state = membership
        .nats
        .as_ref()
        .map(|client| match client.connection_state() {
            async_nats::connection::State::Connected => ClusterHealthBusState::Connected,
            _ => ClusterHealthBusState::Disconnected,
        });
    ClusterHealth {
        member: membership.name.clone(),
        store: ClusterHealthStore::Postgres,
        bus: if membership.nats.is_some() {
            ClusterHealthBus::Nats
        } else {
            ClusterHealthBus::Local
        },
        store_state: Some(if store_error.is_some() {
            ClusterHealthStoreState::Unavailable
        } else {
            ClusterHealthStoreState::Ok
        }),
        store_error: store_error.map(|e| e.to_string()),
        bus_state,
        members: members.unwrap_or_default(),
        // A session's lease lives for one turn: too short to show.
        leases: leases
            .unwrap_or_default()
            .into_iter()
            .filter(|lease| !lease.name.starts_with(SESSION_LEASE_PREFIX))
            .collect(),
    }
}
