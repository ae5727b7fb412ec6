//! The event bus across gateways: every event goes to this gateway's own
//! subscribers at once and, through one NATS subject, to every other
//! gateway's. One publisher task keeps each gateway's events in order
//! (NATS keeps a connection's messages in order per subject), and a
//! gateway skips its own events when they come back.

use crate::bus::{EventBus, Kind, PluginEvent, Published, Subscription};
use crate::protocol::types::Scope;
use crate::protocol::EventKind;
use async_nats::HeaderMap;
use futures_util::StreamExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc};

const ORIGIN: &str = "Clawgate-Origin";
const KIND: &str = "Clawgate-Kind";
const SCOPE: &str = "Clawgate-Scope";
const TARGET: &str = "Clawgate-Target";

/// Events waiting for the NATS connection; beyond this, events for the
/// other gateways are dropped (and counted) rather than piling up.
const OUTBOUND_CAPACITY: usize = 16 * 1024;

pub struct NatsBus {
    local: broadcast::Sender<Arc<Published>>,
    outbound: mpsc::Sender<Arc<Published>>,
    dropped: Arc<AtomicU64>,
}

impl NatsBus {
    /// Starts the tasks that carry events between this gateway and the
    /// subject `<prefix>.events`.
    pub async fn start(
        client: async_nats::Client,
        prefix: &str,
        member: &str,
        local_capacity: usize,
    ) -> Result<NatsBus, async_nats::SubscribeError> {
        let subject = format!("{prefix}.events");
        let local = broadcast::channel(local_capacity).0;
        let (outbound, queue) = mpsc::channel(OUTBOUND_CAPACITY);
        let incoming = client.subscribe(subject.clone()).await?;
        tokio::spawn(deliver_incoming(
            incoming,
            local.clone(),
            member.to_string(),
        ));
        tokio::spawn(publish_outbound(client, subject, queue, member.to_string()));
        Ok(NatsBus {
            local,
            outbound,
            dropped: Arc::default(),
        })
    }

    /// Events not sent to the other gateways because NATS fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl EventBus for NatsBus {
    fn send(&self, published: Published) {
        let published = Arc::new(published);
        let _ = self.local.send(Arc::clone(&published));
        if self.outbound.try_send(published).is_err() {
            let before = self.dropped.fetch_add(1, Ordering::Relaxed);
            if before.is_power_of_two() {
                tracing::warn!(
                    dropped = before + 1,
                    "cluster bus: NATS is behind; events are not reaching the other gateways"
                );
            }
        }
    }

    fn subscribe(&self) -> Subscription {
        self.local.subscribe()
    }
}

async fn publish_outbound(
    client: async_nats::Client,
    subject: String,
    mut queue: mpsc::Receiver<Arc<Published>>,
    member: String,
) {
    while let Some(published) = queue.recv().await {
        let mut headers = HeaderMap::new();
        headers.insert(ORIGIN, member.as_str());
        headers.insert(KIND, published.kind.name());
        if let Kind::Plugin(event) = &published.kind {
            headers.insert(SCOPE, event.scope.to_string().as_str());
        }
        if let Some(target) = &published.target {
            headers.insert(TARGET, target.as_str());
        }
        let payload = published.data.clone().into();
        if let Err(e) = client
            .publish_with_headers(subject.clone(), headers, payload)
            .await
        {
            tracing::warn!(
                event = published.kind.name(),
                "cluster bus: cannot publish to NATS: {e}"
            );
        }
    }
}

async fn deliver_incoming(
    mut incoming: async_nats::Subscriber,
    local: broadcast::Sender<Arc<Published>>,
    member: String,
) {
    while let Some(message) = incoming.next().await {
        let Some(headers) = &message.headers else {
            continue;
        };
        let header = |name: &str| headers.get(name).map(|v| v.as_str().to_string());
        if header(ORIGIN).as_deref() == Some(member.as_str()) {
            continue;
        }
        let Some(published) = decode(
            header(KIND),
            header(SCOPE),
            header(TARGET),
            &message.payload,
        ) else {
            tracing::debug!("cluster bus: skipped an event this gateway cannot read");
            continue;
        };
        let _ = local.send(Arc::new(published));
    }
    tracing::warn!("cluster bus: the NATS subscription ended");
}

/// An event from another gateway: a schema event by name, or a plugin's
/// event with the scope its gateway gave it.
fn decode(
    kind: Option<String>,
    scope: Option<String>,
    target: Option<String>,
    payload: &[u8],
) -> Option<Published> {
    let name = kind?;
    let data = std::str::from_utf8(payload).ok()?.to_string();
    let kind = match EventKind::from_name(&name) {
        Some(core) => Kind::Core(core),
        None => Kind::Plugin(Arc::new(PluginEvent {
            name,
            scope: scope?.parse::<Scope>().ok()?,
        })),
    };
    Some(Published { kind, data, target })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_core_and_plugin_events_and_refuses_unscoped_plugin_events() {
        let core = decode(
            Some(EventKind::HealthChanged.name().into()),
            None,
            None,
            b"{}",
        )
        .unwrap();
        assert_eq!(core.kind, EventKind::HealthChanged);
        let plugin = decode(
            Some("weather.alert".into()),
            Some("operator.read".into()),
            Some("conn-1".into()),
            b"{\"a\":1}",
        )
        .unwrap();
        assert_eq!(plugin.kind.name(), "weather.alert");
        assert_eq!(plugin.kind.scope(), Some(Scope::OperatorRead));
        assert_eq!(plugin.target.as_deref(), Some("conn-1"));
        // A plugin event without a scope would reach everyone: dropped.
        assert!(decode(Some("weather.alert".into()), None, None, b"{}").is_none());
        assert!(decode(None, None, None, b"{}").is_none());
    }
}
