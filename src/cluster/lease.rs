//! Leases in the shared store: work only one gateway may do at a time (a
//! session's turn, a channel account). The holder renews its lease at a
//! third of its life; a gateway that dies stops renewing, and the lease
//! lapses for another to take.

use crate::clock::now_ms;
use crate::store::{ClusterStore, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// How long a waiting gateway sleeps between attempts, at most.
const MAX_POLL: Duration = Duration::from_millis(200);

#[derive(Clone)]
pub struct Leases {
    store: Arc<dyn ClusterStore>,
    member: String,
    ttl_ms: u64,
}

impl Leases {
    pub fn new(store: Arc<dyn ClusterStore>, member: String, ttl_ms: u64) -> Self {
        Leases {
            store,
            member,
            ttl_ms,
        }
    }

    pub fn member(&self) -> &str {
        &self.member
    }

    /// The lease `name` if nobody else holds it.
    pub async fn try_acquire(&self, name: &str) -> Result<Option<Lease>, StoreError> {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let taken = self
            .store
            .acquire_lease(
                name.to_string(),
                self.member.clone(),
                token.clone(),
                now_ms(),
                self.ttl_ms,
            )
            .await?;
        Ok(taken.then(|| self.hold(name, token)))
    }

    /// Waits until the lease `name` is free and takes it.
    pub async fn acquire(&self, name: &str) -> Result<Lease, StoreError> {
        let mut pause = Duration::from_millis(10);
        loop {
            if let Some(lease) = self.try_acquire(name).await? {
                return Ok(lease);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_POLL);
        }
    }

    fn hold(&self, name: &str, token: String) -> Lease {
        let leases = self.clone();
        let lease_name = name.to_string();
        let renew_token = token.clone();
        let renewer = tokio::spawn(async move {
            let every = Duration::from_millis(leases.ttl_ms / 3);
            loop {
                tokio::time::sleep(every).await;
                let renewed = leases
                    .store
                    .acquire_lease(
                        lease_name.clone(),
                        leases.member.clone(),
                        renew_token.clone(),
                        now_ms(),
                        leases.ttl_ms,
                    )
                    .await;
                match renewed {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(lease = %lease_name, "cluster: lost a lease to another gateway");
                        return;
                    }
                    Err(e) => tracing::warn!(lease = %lease_name, "cluster: cannot renew a lease: {e}"),
                }
            }
        });
        Lease {
            name: name.to_string(),
            store: Arc::clone(&self.store),
            token,
            renewer,
        }
    }
}

/// A held lease: renewed while it lives, released when dropped.
pub struct Lease {
    name: String,
    store: Arc<dyn ClusterStore>,
    token: String,
    renewer: JoinHandle<()>,
}

impl Lease {
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewer.abort();
        let store = Arc::clone(&self.store);
        let name = std::mem::take(&mut self.name);
        let token = std::mem::take(&mut self.token);
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Err(e) = store.release_lease(name.clone(), token).await {
                    tracing::warn!(lease = %name, "cluster: cannot release a lease (it lapses by itself): {e}");
                }
            });
        }
    }
}
