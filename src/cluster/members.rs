//! Membership: each gateway records that it is alive every third of
//! `cluster.leaseMs`, and shows in health the members it sees, the
//! leases held and whether it can reach the store and the bus.

use super::Membership;
use crate::health::HealthService;
use crate::protocol::types::{
    ClusterHealth, ClusterHealthBus, ClusterHealthBusState, ClusterHealthStore,
    ClusterHealthStoreState,
};
use crate::store::MemberConfig;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// How often a starting gateway looks again at a member of its name.
const JOIN_POLL: Duration = Duration::from_millis(250);

impl Membership {
    /// Records this gateway as a member. A member of the same name that
    /// stopped without leaving (killed, its host gone) is waited for until
    /// it lapses, at most `cluster.leaseMs`; one that still renews its
    /// membership is another live gateway, and this one refuses to start.
    pub async fn join(&self) -> Result<(), String> {
        let cannot_reach = |e| format!("cannot record this gateway in the shared store: {e}");
        let mut previous_seen = None;
        let mut announced = false;
        loop {
            if self
                .heartbeat(MemberConfig::default())
                .await
                .map_err(cannot_reach)?
            {
                // Nodes an earlier gateway of this name had are gone with it.
                return self
                    .store
                    .forget_nodes_of(self.name.clone())
                    .await
                    .map_err(cannot_reach);
            }
            let members = self
                .store
                .members(self.lease_ms)
                .await
                .map_err(cannot_reach)?;
            let Some(twin) = members.into_iter().find(|m| m.name == self.name) else {
                continue; // it lapsed just now
            };
            if previous_seen.is_some_and(|seen| twin.last_seen_ms > seen) {
                return Err(format!(
                    "another gateway is running as cluster member {:?} (started at {} ms since the epoch, version {}): give each gateway its own cluster.name",
                    self.name, twin.started_at_ms, twin.version
                ));
            }
            previous_seen = Some(twin.last_seen_ms);
            if !announced {
                announced = true;
                tracing::info!(member = %self.name, "cluster: a gateway of this name was alive within cluster.leaseMs; waiting until it lapses (it stopped: this one takes its place) or renews (it runs: this one refuses to start)");
            }
            tokio::time::sleep(JOIN_POLL).await;
        }
    }

    /// Removes this gateway from the members at a clean stop, so a
    /// restart under its name need not wait for it to lapse.
    pub async fn leave(&self) {
        if let Err(e) = self
            .store
            .leave(self.name.clone(), self.started_at_ms)
            .await
        {
            tracing::warn!("cluster: cannot leave the members (the entry lapses by itself): {e}");
        }
    }

    async fn heartbeat(&self, config: MemberConfig) -> Result<bool, crate::store::StoreError> {
        self.store
            .heartbeat(
                self.name.clone(),
                env!("CARGO_PKG_VERSION").to_string(),
                self.started_at_ms,
                self.lease_ms,
                config,
            )
            .await
    }
}

/// The prefix of the leases session turns hold.
pub const SESSION_LEASE_PREFIX: &str = "session:";

/// Records the membership and the cluster's state in health now.
pub async fn refresh(membership: &Membership, health: &HealthService) {
    health.set_cluster(view(membership, health).await);
}

/// Renews the membership and refreshes the cluster in health until
/// aborted.
pub fn spawn(membership: Arc<Membership>, health: Arc<HealthService>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let every = Duration::from_millis((membership.lease_ms / 3).max(1));
        loop {
            health.set_cluster(view(&membership, &health).await);
            if membership.displacement().is_some() {
                return;
            }
            tokio::time::sleep(every).await;
        }
    })
}

async fn view(membership: &Membership, health: &HealthService) -> ClusterHealth {
    let store = &membership.store;
    let config = health.config();
    let seen = membership
        .heartbeat(MemberConfig {
            hash: config.hash,
            error: config.last_error.filter(|_| !config.reload_ok),
        })
        .await;
    if matches!(seen, Ok(false)) {
        let reason = format!(
            "another gateway now runs as cluster member {:?} (this one could not renew its membership within cluster.leaseMs): this one stops; give each gateway its own cluster.name",
            membership.name
        );
        tracing::error!("cluster: {reason}");
        membership.displaced.send_replace(Some(reason));
    }
    let members = store.members(membership.lease_ms).await;
    if let Ok(members) = &members {
        *membership.seen.lock().expect("members seen") =
            members.iter().map(|m| m.name.clone()).collect();
    }
    let leases = store.leases().await;
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
