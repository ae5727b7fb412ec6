//! Which gateway each node is on, in a cluster: a gateway records in the
//! shared store when a node connects to it or leaves it, and `nodes.list`
//! on any gateway shows the nodes connected to the live members.

use super::NodeService;
use crate::cluster::Membership;
use crate::protocol::types::NodeInfo;
use crate::store::NodePresence;
use std::sync::Arc;
use tokio::sync::mpsc;

pub(super) enum Change {
    Connected { node_id: String, at_ms: u64 },
    Left { node_id: String },
}

impl NodeService {
    /// Records a node connecting here or leaving, in order, without
    /// holding up the connection.
    pub(super) fn record_presence(&self, change: Change) {
        let Some(membership) = &self.rt.membership else {
            return;
        };
        let writer = self
            .presence
            .get_or_init(|| spawn_writer(Arc::clone(membership)));
        let _ = writer.send(change);
    }

    /// Records again, in one write, every node connected here: whatever
    /// a lost or reordered write left behind is put right.
    pub(super) async fn refresh_presence(&self) {
        let Some(membership) = &self.rt.membership else {
            return;
        };
        let here: Vec<NodePresence> = self
            .list()
            .into_iter()
            .filter(|n| n.online)
            .map(|n| NodePresence {
                node_id: n.node_id,
                member: membership.name.clone(),
                connected_at_ms: n.connected_at_ms.unwrap_or_default(),
            })
            .collect();
        if let Err(e) = membership
            .store
            .set_nodes_of(membership.name.clone(), here)
            .await
        {
            tracing::warn!("nodes: cannot record which gateway the nodes are on: {e}");
        }
    }

    /// The paired nodes; in a cluster, a node connected to another member
    /// is online there, and every online node names its gateway.
    pub async fn list_everywhere(&self) -> Vec<NodeInfo> {
        let mut nodes = self.list();
        let Some(membership) = &self.rt.membership else {
            return nodes;
        };
        for node in nodes.iter_mut().filter(|n| n.online) {
            node.gateway = Some(membership.name.clone());
        }
        match membership.store.node_presence(membership.lease_ms).await {
            Ok(presence) => {
                for elsewhere in presence {
                    let Some(node) = nodes
                        .iter_mut()
                        .find(|n| n.node_id == elsewhere.node_id && !n.online)
                    else {
                        continue;
                    };
                    node.online = true;
                    node.connected_at_ms = Some(elsewhere.connected_at_ms);
                    node.gateway = Some(elsewhere.member);
                }
            }
            Err(e) => {
                tracing::warn!("nodes: cannot read which gateways the nodes are on: {e}")
            }
        }
        nodes
    }
}

fn spawn_writer(membership: Arc<Membership>) -> mpsc::UnboundedSender<Change> {
    let (tx, mut changes) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(change) = changes.recv().await {
            let store = &membership.store;
            let name = membership.name.clone();
            let written = match change {
                Change::Connected { node_id, at_ms } => {
                    store.node_connected(node_id, name, at_ms).await
                }
                Change::Left { node_id } => store.node_disconnected(node_id, name).await,
            };
            if let Err(e) = written {
                tracing::warn!("nodes: cannot record which gateway a node is on: {e}");
            }
        }
    });
    tx
}
