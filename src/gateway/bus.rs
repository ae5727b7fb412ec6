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

/// The one broadcast bus of server events. Each connection subscribes and
/// filters by its scopes; one that falls too far behind is disconnected.
pub struct EventBus {
    tx: broadcast::Sender<Arc<Published>>,
}

/// Events a subscriber may fall behind by before it is dropped, at least.
const MIN_CAPACITY: usize = 1024;
const MAX_CAPACITY: usize = 65_536;

impl EventBus {
    /// `capacity` is the per-connection outbound queue, so a connection is
    /// dropped for its own queue filling up, not for the bus's.
    pub fn new(capacity: usize) -> Self {
        EventBus {
            tx: broadcast::channel(capacity.clamp(MIN_CAPACITY, MAX_CAPACITY)).0,
        }
    }

    pub fn publish(&self, event: Event) {
        self.send(event, None);
    }

    /// Sends an event to one connection only.
    pub fn publish_to(&self, conn_id: &str, event: Event) {
        self.send(event, Some(conn_id.to_string()));
    }

    fn send(&self, event: Event, target: Option<String>) {
        let data = match event.payload_json() {
            Ok(text) => text,
            Err(e) => {
                tracing::error!(event = event.kind().name(), "cannot encode event: {e}");
                return;
            }
        };
        // No subscribers is fine: nobody is connected.
        let _ = self.tx.send(Arc::new(Published {
            kind: event.kind(),
            data,
            target,
        }));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Published>> {
        self.tx.subscribe()
    }
}
