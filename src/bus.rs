//! The event bus: every server event goes through it to the connections
//! that may see it. `EventBus` is the seam; `LocalBus` (one in-process
//! broadcast channel) is the embedded implementation. A bus spanning
//! several gateways (NATS) implements the same two methods and feeds its
//! subscribers the same `Published` frames.

use crate::protocol::{Event, EventKind};
use std::sync::Arc;
use tokio::sync::broadcast;

/// An event as every connection receives it: serialized once.
#[derive(Debug)]
pub struct Published {
    pub kind: EventKind,
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

    /// An in-process bus: `LocalBus` of `capacity`.
    pub fn local(capacity: usize) -> Self {
        Bus(Arc::new(LocalBus::new(capacity)))
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
            kind: event.kind(),
            data,
            target,
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

/// Events a subscriber may fall behind by before it is dropped, at least.
const MIN_CAPACITY: usize = 1024;
const MAX_CAPACITY: usize = 65_536;

impl LocalBus {
    /// `capacity` is the per-connection outbound queue, so a connection is
    /// dropped for its own queue filling up, not for the bus's.
    pub fn new(capacity: usize) -> Self {
        LocalBus {
            tx: broadcast::channel(capacity.clamp(MIN_CAPACITY, MAX_CAPACITY)).0,
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
