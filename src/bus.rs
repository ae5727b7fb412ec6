//! The event bus: every server event goes through it to the connections
//! that may see it. `EventBus` is the seam; `LocalBus` (one in-process
//! broadcast channel) is the embedded implementation. A bus spanning
//! several gateways (NATS) implements the same two methods and feeds its
//! subscribers the same `Published` frames.

use crate::protocol::types::Scope;
use crate::protocol::{Event, EventKind};
use std::sync::Arc;
use tokio::sync::broadcast;

/// What an event is: one of the schema's, or one a plugin declared.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    Core(EventKind),
    Plugin(Arc<PluginEvent>),
}

/// A plugin's event as clients see it: `<plugin>.<event>`, with the scope
/// its manifest gives.
#[derive(Debug, PartialEq)]
pub struct PluginEvent {
    pub name: String,
    pub scope: Scope,
}

impl Kind {
    pub fn name(&self) -> &str {
        match self {
            Kind::Core(kind) => kind.name(),
            Kind::Plugin(event) => &event.name,
        }
    }

    /// The scope a connection needs to receive it, if any.
    pub fn scope(&self) -> Option<Scope> {
        match self {
            Kind::Core(kind) => kind.scope(),
            Kind::Plugin(event) => Some(event.scope),
        }
    }
}

impl PartialEq<EventKind> for Kind {
    fn eq(&self, other: &EventKind) -> bool {
        matches!(self, Kind::Core(kind) if kind == other)
    }
}

/// An event as every connection receives it: serialized once.
#[derive(Debug)]
pub struct Published {
    pub kind: Kind,
    pub data: String,
    /// The one connection this event is for; None for everyone allowed.
    pub target: Option<String>,
}

/// What a subscriber reads: every event published after it subscribed, in
/// order. A subscriber that falls too far behind sees `Lagged` and is
/// disconnected by its connection.
pub type Subscription = broadcast::Receiver<Arc<Published>>;

/// Where services publish events and connections subscribe to them.
pub trait EventBus: Send + Sync {
    /// Sends `published` to every subscriber (each filters by target and
    /// scope).
    fn send(&self, published: Published);

    fn subscribe(&self) -> Subscription;
}

/// The handle services hold: typed events in, serialized once.
#[derive(Clone)]
pub struct Bus(Arc<dyn EventBus>);

impl Bus {
    pub fn new(bus: Arc<dyn EventBus>) -> Self {
        Bus(bus)
    }

    /// The in-process bus.
    pub fn local() -> Self {
        Bus(Arc::new(LocalBus::new(LOCAL_CAPACITY)))
    }

    pub fn publish(&self, event: Event) {
        self.encode_and_send(event, None);
    }

    /// Sends an event to one connection only.
    pub fn publish_to(&self, conn_id: &str, event: Event) {
        self.encode_and_send(event, Some(conn_id.to_string()));
    }

    fn encode_and_send(&self, event: Event, target: Option<String>) {
        let data = match event.payload_json() {
            Ok(text) => text,
            Err(e) => {
                tracing::error!(event = event.kind().name(), "cannot encode event: {e}");
                return;
            }
        };
        self.0.send(Published {
            kind: Kind::Core(event.kind()),
            data,
            target,
        });
    }

    /// Publishes a plugin's event, its payload already checked and
    /// serialized.
    pub fn publish_plugin(&self, event: Arc<PluginEvent>, data: String) {
        self.0.send(Published {
            kind: Kind::Plugin(event),
            data,
            target: None,
        });
    }

    pub fn subscribe(&self) -> Subscription {
        self.0.subscribe()
    }
}

/// The embedded bus: one tokio broadcast channel.
pub struct LocalBus {
    tx: broadcast::Sender<Arc<Published>>,
}

/// Events a subscriber may fall behind by before it is dropped. Each
/// connection moves events from the bus into its own outbound queue
/// (`gateway.limits.outboundQueueFrames`, which follows reloads) as soon
/// as it runs, so a client that reads slowly fills that queue, not this
/// one; the bus only needs room for a burst published between two turns of
/// a busy connection task.
pub const LOCAL_CAPACITY: usize = 4096;

impl LocalBus {
    pub fn new(capacity: usize) -> Self {
        LocalBus {
            tx: broadcast::channel(capacity).0,
        }
    }
}

impl EventBus for LocalBus {
    fn send(&self, published: Published) {
        // No subscribers is fine: nobody is connected.
        let _ = self.tx.send(Arc::new(published));
    }

    fn subscribe(&self) -> Subscription {
        self.tx.subscribe()
    }
}
