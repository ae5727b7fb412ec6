use crate::protocol::{Event, EventKind};
use std::sync::Arc;
use tokio::sync::broadcast;

/// An event as every connection receives it: serialized once.
#[derive(Debug)]
pub struct Published {
    pub kind: EventKind,
    pub data: String,
}

/// The one broadcast bus of server events. Each connection subscribes and
/// filters by its scopes; one that falls too far behind is disconnected.
pub struct EventBus {
    tx: broadcast::Sender<Arc<Published>>,
}

const BUS_CAPACITY: usize = 1024;

impl EventBus {
    pub fn new() -> Self {
        EventBus {
            tx: broadcast::channel(BUS_CAPACITY).0,
        }
    }

    pub fn publish(&self, event: Event) {
        let data = match event.payload() {
            Ok(v) => v.to_string(),
            Err(e) => {
                tracing::error!(event = event.kind().name(), "cannot encode event: {e}");
                return;
            }
        };
        // No subscribers is fine: nobody is connected.
        let _ = self.tx.send(Arc::new(Published {
            kind: event.kind(),
            data,
        }));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Published>> {
        self.tx.subscribe()
    }
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}
