//! Presence across a cluster: `presence.list` on any gateway shows who is
//! connected to every member, each entry naming its gateway. The asking
//! gateway asks the others on `<prefix>.presence.list` and gathers their
//! entries, waiting half a second at most for a member that does not
//! answer.

use super::Gateway;
use crate::cluster::rpc::{self, MemberAnswer};
use crate::protocol::types::{PresenceEntry, PresenceSnapshot};
use crate::protocol::RpcError;
use futures_util::StreamExt;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::task::JoinHandle;

/// How long the asking gateway waits for the others' entries.
const GATHER: Duration = Duration::from_millis(500);

fn bus(gw: &Gateway) -> Option<(String, String, async_nats::Client)> {
    let membership = gw.rt.membership.as_ref()?;
    let (subject, client) = membership.bus("presence.gather")?;
    Some((subject, membership.name.clone(), client))
}

impl Gateway {
    /// This gateway's presence, each entry naming it in a cluster.
    fn presence_here(&self) -> PresenceSnapshot {
        let mut snapshot = self.rt.presence.snapshot();
        if let Some(membership) = &self.rt.membership {
            for entry in &mut snapshot.entries {
                entry.gateway = Some(membership.name.clone());
            }
        }
        snapshot
    }

    /// presence.list: this gateway's entries and, in a cluster, the other
    /// members' (those that answer in time).
    pub(super) async fn presence_everywhere(&self) -> PresenceSnapshot {
        let mut snapshot = self.presence_here();
        let Some((subject, me, client)) = bus(self) else {
            return snapshot;
        };
        let others = match &self.rt.membership {
            Some(membership) => membership.others().await,
            None => Vec::new(),
        };
        if others.is_empty() {
            return snapshot;
        }
        match rpc::gather::<_, Vec<PresenceEntry>>(&client, subject, &me, &others, GATHER, |_| {
            false
        })
        .await
        {
            Ok(answers) => {
                for from in answers {
                    snapshot.entries.extend(from.answer);
                }
            }
            Err(e) => tracing::warn!("presence: cannot ask the other gateways: {e}"),
        }
        snapshot.entries.sort_by(|a, b| {
            b.last_activity_at_ms
                .cmp(&a.last_activity_at_ms)
                .then_with(|| a.key.cmp(&b.key))
        });
        snapshot
    }

    /// In a cluster: answers other gateways' presence.list with this
    /// gateway's entries.
    pub(super) fn serve_presence(self: &Arc<Self>) -> Option<JoinHandle<()>> {
        let (subject, me, client) = bus(self)?;
        let gw: Weak<Gateway> = Arc::downgrade(self);
        Some(tokio::spawn(async move {
            let mut asks = match client.subscribe(subject).await {
                Ok(asks) => asks,
                Err(e) => {
                    tracing::warn!("presence: cannot answer the other gateways: {e}");
                    return;
                }
            };
            while let Some(ask) = asks.next().await {
                let Some(gw) = gw.upgrade() else { return };
                // The question names who asks; its own it answers itself.
                if rpc::body::<String>(&ask).is_ok_and(|from| from == me) {
                    continue;
                }
                let from = MemberAnswer {
                    member: me.clone(),
                    answer: gw.presence_here().entries,
                };
                rpc::reply(&client, &ask, Ok::<_, RpcError>(from)).await;
            }
        }))
    }
}
