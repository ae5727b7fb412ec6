//! Nodes in a cluster: each gateway keeps a table of the paired nodes,
//! and a node paired or removed on another gateway reaches this one's
//! table through its `nodes.changed` event. The table is then brought in
//! line with the shared store, so a node paired anywhere can connect to
//! any gateway, and one removed anywhere is closed everywhere.

use super::{invoke, Node, NodeService};
use crate::bus::Kind;
use crate::protocol::types::{NodesChangedEvent, NodesChangedEventChange};
use crate::protocol::EventKind;
use crate::store::StoreError;
use std::collections::HashSet;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

impl NodeService {
    /// In a cluster: follows pairings and removals made on any gateway.
    pub fn spawn_follower(self: &Arc<Self>) -> Option<JoinHandle<()>> {
        self.rt.membership.as_ref()?;
        let mut events = self.rt.bus.subscribe();
        let nodes = Arc::clone(self);
        Some(tokio::spawn(async move {
            // Also now and then: NATS drops what it cannot deliver, and a
            // write of which gateway a node is on may have failed.
            let every = nodes
                .rt
                .membership
                .as_ref()
                .map_or(1000, |m| m.lease_ms / 3);
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(every.max(1000)));
            loop {
                let event = tokio::select! {
                    event = events.recv() => event,
                    _ = tick.tick() => {
                        nodes.refresh_presence().await;
                        if let Err(e) = nodes.reconcile().await {
                            tracing::warn!("nodes: cannot read the nodes paired on other gateways: {e}");
                        }
                        continue;
                    }
                };
                let follow = match event {
                    Ok(event) => {
                        event.kind == Kind::Core(EventKind::NodesChanged)
                            && serde_json::from_str::<NodesChangedEvent>(&event.data).is_ok_and(
                                |e| {
                                    matches!(
                                        e.change,
                                        NodesChangedEventChange::Paired
                                            | NodesChangedEventChange::Removed
                                    )
                                },
                            )
                    }
                    // Some events were missed: one may have been a pairing.
                    Err(RecvError::Lagged(_)) => true,
                    Err(RecvError::Closed) => return,
                };
                if follow {
                    if let Err(e) = nodes.reconcile().await {
                        tracing::warn!(
                            "nodes: cannot read the nodes paired on other gateways: {e}"
                        );
                    }
                }
            }
        }))
    }

    /// Brings the table in line with the store: adds the nodes paired
    /// elsewhere, updates what changed, drops (and disconnects) the ones
    /// removed.
    async fn reconcile(&self) -> Result<(), StoreError> {
        let _writing = self.writing.lock().await;
        let stored = self.rt.stores.nodes.nodes().await?;
        let ids: HashSet<String> = stored.iter().map(|n| n.id.clone()).collect();
        let mut table = self.lock();
        for node in stored {
            match table.nodes.get_mut(&node.id) {
                Some(known) => known.stored = node,
                None => {
                    table.nodes.insert(
                        node.id.clone(),
                        Node {
                            stored: node,
                            live: None,
                        },
                    );
                }
            }
        }
        let removed: Vec<String> = table
            .nodes
            .keys()
            .filter(|id| !ids.contains(*id))
            .cloned()
            .collect();
        for id in removed {
            if let Some(live) = table.nodes.remove(&id).and_then(|mut n| n.live.take()) {
                live.kick.kick("the node was removed");
                self.record_presence(super::presence::Change::Left {
                    node_id: id.clone(),
                });
            }
            invoke::fail_waiting(&mut table, &id, "the node was removed");
        }
        self.publish_health(&table);
        Ok(())
    }
}
