//! Store upkeep: idempotency keys past their day and exec audit entries
//! past their retention are deleted, at start and then every hour.

use super::{now_ms, Gateway};
use crate::idempotency;
use std::sync::Arc;
use std::time::Duration;

const EVERY: Duration = Duration::from_secs(60 * 60);
const DAY_MS: u64 = 24 * 60 * 60 * 1000;

impl Gateway {
    pub fn spawn_maintenance(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let gw = Arc::clone(self);
        tokio::spawn(async move {
            let mut shutdown = gw.shutdown_signal();
            loop {
                gw.prune_store().await;
                tokio::select! {
                    _ = tokio::time::sleep(EVERY) => {}
                    _ = shutdown.wait_for(|closing| *closing) => return,
                }
            }
        })
    }

    async fn prune_store(&self) {
        let now = now_ms();
        let days = self.config().approvals.audit_retention_days as u64;
        let audit_before = (days > 0).then(|| now.saturating_sub(days * DAY_MS));
        match self
            .rt
            .stores
            .upkeep
            .prune(now.saturating_sub(idempotency::TTL_MS), audit_before)
            .await
        {
            Ok((0, 0)) => {}
            Ok((keys, audit)) => {
                tracing::info!(
                    keys,
                    audit,
                    "pruned expired idempotency keys and audit entries"
                )
            }
            Err(e) => tracing::warn!("cannot prune the store: {e}"),
        }
    }
}
