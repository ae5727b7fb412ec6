//! Presence across a cluster: `presence.list` on any gateway shows who is
//! connected to every member, each entry naming its gateway. The asking
//! gateway sends `<prefix>.presence.list` (naming itself) to all and
//! gathers the answers of the members it knows are alive, waiting half a
//! second at most for one that does not answer.

use super::Gateway;
use crate::protocol::types::{PresenceEntry, PresenceSnapshot};
use futures_util::StreamExt;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::task::JoinHandle;

/// How long the asking gateway waits for the others' entries.
const GATHER: Duration = Duration::from_millis(500);

fn bus(gw: &Gateway) -> Option<(String, String, async_nats::Client)> {
    let membership = gw.rt.membership.as_ref()?;
    Some((
        format!("{}.presence.list", membership.subject_prefix),
        membership.name.clone(),
        membership.nats.clone()?,
    ))
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
        let others = self
            .rt
            .health
            .snapshot()
            .cluster
            .map_or(0, |c| c.members.iter().filter(|m| m.name != me).count());
        if others == 0 {
            return snapshot;
        }
        let inbox = client.new_inbox();
        let Ok(mut answers) = client.subscribe(inbox.clone()).await else {
            return snapshot;
        };
        if client
            .publish_with_reply(subject, inbox, me.into_bytes().into())
            .await
            .is_err()
        {
            return snapshot;
        }
        let deadline = tokio::time::Instant::now() + GATHER;
        let mut answered = 0;
        while answered < others {
            let Ok(Some(answer)) = tokio::time::timeout_at(deadline, answers.next()).await else {
                break;
            };
            let Ok(entries) = serde_json::from_slice::<Vec<PresenceEntry>>(&answer.payload) else {
                continue;
            };
            answered += 1;
            snapshot.entries.extend(entries);
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
                let Some(reply) = ask.reply else { continue };
                // The question names who asks; its own it answers itself.
                if ask.payload.as_ref() == me.as_bytes() {
                    continue;
                }
                let entries = gw.presence_here().entries;
                let body = serde_json::to_vec(&entries).expect("entries serialize");
                if let Err(e) = client.publish(reply, body.into()).await {
                    tracing::warn!("presence: cannot answer another gateway: {e}");
                }
            }
        }))
    }
}
