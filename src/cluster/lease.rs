//! Leases in the shared store: work only one gateway may do at a time (a
//! session's turn, a channel account). The holder renews its lease at a
//! third of its life; a gateway that dies stops renewing, and the lease
//! lapses for another to take.

use crate::clock::now_ms;
use crate::store::{ClusterStore, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
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
        let (lost_tx, lost) = watch::channel(false);
        let renewer = tokio::spawn(async move {
            let every = Duration::from_millis(leases.ttl_ms / 3);
            // Until when the lease is surely ours: a renewal that fails
            // for longer cannot prove it, and another may have taken it.
            let mut held_until = now_ms() + leases.ttl_ms;
            loop {
                tokio::time::sleep(every).await;
                let attempt = now_ms();
                let renewed = leases
                    .store
                    .acquire_lease(
                        lease_name.clone(),
                        leases.member.clone(),
                        renew_token.clone(),
                        attempt,
                        leases.ttl_ms,
                    )
                    .await;
                match renewed {
                    Ok(true) => held_until = attempt + leases.ttl_ms,
                    Ok(false) => {
                        tracing::warn!(lease = %lease_name, "cluster: lost a lease to another gateway");
                        let _ = lost_tx.send(true);
                        return;
                    }
                    Err(e) if now_ms() >= held_until => {
                        tracing::warn!(lease = %lease_name, "cluster: a lease lapsed: cannot renew it: {e}");
                        let _ = lost_tx.send(true);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(lease = %lease_name, "cluster: cannot renew a lease: {e}")
                    }
                }
            }
        });
        Lease {
            name: name.to_string(),
            store: Arc::clone(&self.store),
            token,
            renewer,
            lost,
        }
    }
}

/// A held lease: renewed while it lives, released when dropped.
pub struct Lease {
    name: String,
    store: Arc<dyn ClusterStore>,
    token: String,
    renewer: JoinHandle<()>,
    lost: watch::Receiver<bool>,
}

impl Lease {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A signal that turns true when the lease is lost.
    pub fn lost_signal(&self) -> watch::Receiver<bool> {
        self.lost.clone()
    }

    /// Gives the lease up now, and waits until the store has it.
    pub async fn release(mut self) {
        self.renewer.abort();
        let name = std::mem::take(&mut self.name);
        let token = std::mem::take(&mut self.token);
        if let Err(e) = self.store.release_lease(name.clone(), token).await {
            tracing::warn!(lease = %name, "cluster: cannot release a lease (it lapses by itself): {e}");
        }
    }

    /// Resolves when the lease is lost (taken by another gateway after it
    /// lapsed, or not renewable for its whole life).
    pub async fn lost(&self) {
        wait_lost(self.lost.clone()).await
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewer.abort();
        if self.name.is_empty() {
            return; // released already
        }
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

/// Resolves when a lease's [`Lease::lost_signal`] turns true.
pub async fn wait_lost(mut lost: watch::Receiver<bool>) {
    loop {
        if *lost.borrow_and_update() {
            return;
        }
        if lost.changed().await.is_err() {
            // The renewer ended without losing it: the lease was dropped.
            return std::future::pending().await;
        }
    }
}
