//! Devices in a cluster: one token key for every gateway, kept in the
//! shared store, and each change to a paired device (approved, removed, a
//! token rotated or revoked) announced on `<prefix>.devices.changed`, so
//! that every gateway reads the paired devices again and closes the
//! connections whose token no longer holds. A device paired through one
//! gateway may then connect through any.

use super::DeviceService;
use crate::cluster::Lease;
use crate::protocol::RpcError;
use crate::runtime::Runtime;
use crate::store::StoreError;
use futures_util::StreamExt;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// The name of the token key in the shared store.
const KEY_NAME: &str = "device-tokens";
/// How often the devices are read again without a notice.
const RECONCILE_EVERY: std::time::Duration = std::time::Duration::from_secs(30);
/// The lease a gateway holds while it changes a device record.
const EDIT_LEASE: &str = "devices";

fn subject(rt: &Runtime) -> Option<(String, async_nats::Client)> {
    rt.membership.as_ref()?.bus("devices.changed")
}

impl DeviceService {
    /// In a cluster: the token key every gateway uses (`candidate` if
    /// this gateway is the first to ask). None outside a cluster.
    pub(super) async fn shared_key(&self, candidate: String) -> Option<Result<String, String>> {
        let membership = self.rt.membership.as_ref()?;
        Some(
            membership
                .store
                .shared_secret(KEY_NAME.to_string(), candidate)
                .await
                .map_err(|e| {
                    format!("cannot read the device token key from the shared store: {e}")
                }),
        )
    }

    /// Tells the other gateways that a paired device changed.
    pub(super) fn announce_change(&self) {
        let Some((subject, client)) = subject(&self.rt) else {
            return;
        };
        tokio::spawn(async move {
            if let Err(e) = client.publish(subject, Default::default()).await {
                tracing::warn!("devices: cannot tell the other gateways of a change: {e}");
            }
        });
    }

    /// In a cluster: follows the changes made on any gateway.
    pub fn spawn_follower(self: &Arc<Self>) -> Option<JoinHandle<()>> {
        let (subject, client) = subject(&self.rt)?;
        let devices = Arc::clone(self);
        Some(tokio::spawn(async move {
            let mut changes = match client.subscribe(subject).await {
                Ok(changes) => changes,
                Err(e) => {
                    tracing::warn!("devices: cannot follow the other gateways' changes: {e}");
                    return;
                }
            };
            // Also now and then: NATS drops what it cannot deliver.
            let mut every = tokio::time::interval(RECONCILE_EVERY);
            loop {
                tokio::select! {
                    change = changes.next() => if change.is_none() { return },
                    _ = every.tick() => {}
                }
                if let Err(e) = devices.reconcile().await {
                    tracing::warn!("devices: cannot read the paired devices: {e}");
                }
            }
        }))
    }

    /// In a cluster: for a read-change-write of a device record, holds
    /// the `devices` lease (no other gateway edits a device meanwhile) and
    /// reads the devices again, so the change starts from the stored
    /// record. The caller holds `writing`. None outside a cluster.
    pub(super) async fn edit_guard(&self) -> Result<Option<Lease>, RpcError> {
        let Some(membership) = &self.rt.membership else {
            return Ok(None);
        };
        let lease = membership.leases.acquire(EDIT_LEASE).await?;
        self.reload().await?;
        Ok(Some(lease))
    }

    async fn reconcile(&self) -> Result<(), StoreError> {
        let _writing = self.writing.lock().await;
        self.reload().await
    }

    /// Brings the table in line with the store, closing every connection
    /// whose device is gone or whose token was replaced or revoked. The
    /// caller holds `writing`.
    async fn reload(&self) -> Result<(), StoreError> {
        let stored = self.rt.stores.devices.devices().await?;
        let mut table = self.lock();
        table.devices = stored
            .into_iter()
            .map(|d| (d.device_id.clone(), d))
            .collect();
        let super::Table { devices, live, .. } = &mut *table;
        live.retain(|_, connection| {
            let holds = devices
                .get(&connection.device_id)
                .and_then(|d| d.roles.iter().find(|g| g.role == connection.role))
                .is_some_and(|g| g.token_active && g.token_generation == connection.generation);
            if !holds {
                connection
                    .kick
                    .kick("the device was removed, or its token replaced or revoked");
            }
            holds
        });
        Ok(())
    }
}
