//! Store upkeep: idempotency keys past their day and exec audit entries
//! past their retention are deleted, at start, every hour, and when the
//! retention changes.

use super::{now_ms, Gateway};
use crate::idempotency;
use std::sync::Arc;
use std::time::Duration;

const EVERY: Duration = Duration::from_secs(60 * 60);
const DAY_MS: u64 = 24 * 60 * 60 * 1000;

impl Gateway {
    pub fn spawn_maintenance(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let gw = Arc::clone(self);
        let mut follower = self.rt.config.follow();
        tokio::spawn(async move {
            let shutdown = gw.rt.shutdown.clone();
            let mut next = tokio::time::Instant::now();
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(next) => {
                        gw.prune_store().await;
                        next = tokio::time::Instant::now() + EVERY;
                    }
                    change = follower.next() => match change {
                        Some(change) if change.before.approvals.audit_retention_days
                            != change.after.approvals.audit_retention_days => gw.prune_store().await,
                        Some(_) => {}
                        None => return,
                    },
                    _ = shutdown.wait() => return,
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
